"""Helpers shared by the CLI commands."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kernelnet.config import RunConfig


def fmt(value: Any) -> str:
    """Compact human formatting of a metric value."""
    if isinstance(value, float):
        if math.isinf(value) or math.isnan(value):
            return str(value)
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5) else f"{value:.4g}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[str] | None = None, err: bool = False) -> None:
    """Print rows as an aligned plain-text table."""
    if not rows:
        return
    columns = columns or list(rows[0])
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)), err=err)
    click.echo("  ".join("-" * w for w in widths), err=err)
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)), err=err)


def print_pairs(pairs: list[tuple[str, Any]]) -> None:
    """Print key/value lines aligned on the key."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {fmt(value)}")


def build_run_config(filter_: str, model: str, normalize: bool, kernel_size: int | None, seed: int,
                     **settings: Any) -> RunConfig:
    """The :class:`RunConfig` of ``--filter``/``--model``/``--normalize``/``--kernel-size`` (default: the target's
    side) plus ``settings``; refuses ``--normalize`` with ``--model double``. Imports numpy only when called."""
    from kernelnet.config import RunConfig
    from kernelnet.runtime.errors import KernelnetError
    from kernelnet.filters import resolve_filter

    if normalize and model == "double":
        raise KernelnetError("--normalize applies to --model single only (double is a magnitude already)")
    target = resolve_filter(filter_, kernel_size, seed)
    return RunConfig(filter=filter_, target_kernel=tuple(tuple(float(v) for v in row) for row in target.kernel),
                     model=model, normalize=normalize, kernel_size=kernel_size or target.size, seed=seed, **settings)


TRAIN_MODULES = ("torch", "onnx", "safetensors", "skimage", "matplotlib")


def need_train_extra(command: str) -> None:
    """Refuse ``command`` with one line when the learning side's packages (the ``[train]`` extra) are missing."""
    import importlib.util

    from kernelnet.runtime.errors import KernelnetError

    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise KernelnetError(f"kernelnet {command} needs the [train] extra ({', '.join(missing)} missing): "
                             "pip install 'kernelnet[train]'")


def parse_tile(text: str | None) -> int | tuple[int, int] | None:
    """``auto``/None → None, ``off`` → 0, ``N`` → N, ``RxC`` → (R, C) (0 = full axis)."""
    if text is None or text == "auto":
        return None
    if text == "off":
        return 0
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 0:
        from kernelnet.runtime.errors import KernelnetError

        raise KernelnetError(f"invalid --tile {text!r}: use auto, off, N or RxC (e.g. 512 or 256x0 for strips)")
    return parts[0] if len(parts) == 1 else (parts[0], parts[1])


