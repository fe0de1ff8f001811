"""``kernelnet export --format onnx``: dynamic-shape ONNX built from the run's filter spec, checked and verified
against the trained PyTorch model (onnxsim only when asked: the graph is built minimal, and its fusions would fold
an output stage's scale into the kernel, moving float32 rounding at ties away from the spec's order).

The graph has one input ``input`` (N, 1, H, W) — float32 in [0, 1], or uint8 with ``input_dtype="uint8"`` — and
one output ``output`` (N, 1, H, W) float32, with symbolic ``batch``, ``height`` and ``width`` dims unless a static
shape is asked for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.io.atomic import atomic_path, check_creatable
from kernelnet.runtime.errors import CheckFailed, KernelnetError

DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
FP16_TOLERANCE = 2e-3
"""float16 exports: at most this share of the largest output, whatever the rounding bound says."""
VERIFY_ROUNDINGS = 2.0
"""Allowed max |onnxruntime − PyTorch|, in float error bounds of the spec
(:func:`~kernelnet.runtime.checks.float_bounds.output_error_bound` at the model's precision): two implementations, each
within one bound of the exact value."""


@dataclass
class ExportResult:
    """What an export wrote and how it verified."""

    path: Path
    size_bytes: int
    opset: int
    simplified: bool
    checks: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def quiet(*loggers: str) -> Iterator[None]:
    """Silence prints, warnings and the named loggers (the root logger by default) below ERROR; restore them after."""
    targets = [logging.getLogger(name) for name in loggers or ("",)]
    levels = [target.level for target in targets]
    for target in targets:
        target.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for target, level in zip(targets, levels):
            target.setLevel(level)


def verify_shapes(low: int, static: tuple[int, ...] | None) -> list[tuple[int, int, int, int]]:
    """Shapes that export checks: ``static`` alone, or ``low``×``low`` (the smallest the borders allow), an odd
    non-square one, a batch of 3 and a larger non-square 64×97."""
    if static is not None:
        return [tuple(static)]  # type: ignore[list-item]
    return [(1, 1, low, low), (1, 1, max(low, 5), max(low, 7) + 2), (3, 1, 31, 17), (1, 1, 64, 97)]


def _check(model: Any, stage: str) -> Any:
    """``model`` once the ONNX checker passes it (``full_check``: strict shape and type inference included)."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailed(f"ONNX check failed after {stage}: {exc}") from None
    return model


def _simplify(model: Any) -> Any:
    from onnxsim import simplify

    simplified, ok = simplify(model)
    if not ok:
        raise CheckFailed("onnxsim could not validate the simplified graph")
    return simplified


def _verify(path: Path, module: Any, shapes: list[tuple[int, ...]], input_dtype: str, precision: str,
            spec: Any) -> list[dict[str, Any]]:
    """onnxruntime vs the PyTorch reference per shape, within ``VERIFY_ROUNDINGS`` float error bounds of the
    spec's computation for inputs in [0, 1]. A rounded output stage is checked on 8-bit inputs (what it is for):
    exactly with a grid (ties are exact), within one level without one (float noise may tip a tie)."""
    import onnxruntime as ort
    import torch

    from kernelnet.runtime.checks.float_bounds import output_error_bound

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    stage = spec.output
    rounded = any(p.output.rounding is not None for p in spec.passes)  # then probed on the 8-bit levels
    allowed = VERIFY_ROUNDINGS * output_error_bound(spec, 1.0, precision)
    if precision == "fp16":  # γₙ of float16 grows to the output's size for large kernels: keep a relative cap
        allowed = min(allowed, FP16_TOLERANCE * (abs(spec.output.scale) * spec.output_bound() + abs(spec.output.offset)))
    if rounded:
        allowed = 0.0 if stage.grid is not None else max(allowed, 1.0)
    if spec.after:  # a chain: a tie tipped in one pass moves the later ones by their gain
        from kernelnet.runtime.checks.float_bounds import chain_tolerance

        allowed = VERIFY_ROUNDINGS * chain_tolerance(spec, 1.0, precision)
    rows = []
    for shape in shapes:
        if input_dtype == "uint8":
            x = rng.integers(0, 256, shape, dtype=np.uint8)
        elif rounded:
            x = (rng.integers(0, 256, shape) / 255.0).astype(np.float32)
        else:
            x = rng.random(shape, dtype=np.float32)
        got = session.run(None, {INPUT_NAME: x})[0]
        with torch.no_grad():
            want = module(torch.from_numpy(x)).numpy()
        err = float(np.abs(got.astype(np.float64) - want).max())
        ok = got.shape == want.shape and err <= allowed
        rows.append({"shape": "x".join(map(str, shape)), "max_abs_error": err, "allowed": allowed, "ok": bool(ok)})
    return rows


def export_onnx(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                opset: int = DEFAULT_OPSET, simplify: bool = False, input_dtype: str = "float32", fp16: bool = False,
                static: tuple[int, int, int, int] | None = None, verify: bool = True,
                form: str = "auto") -> ExportResult:
    """Export the run's model to ONNX at ``out`` (default ``RUN/model.onnx``) and verify it with onnxruntime.

    Raises :class:`KernelnetError` for bad input and :class:`CheckFailed` when the graph fails the checker or the
    onnxruntime output differs from PyTorch by more than float32 (or float16) rounding of the computation allows
    (``VERIFY_ROUNDINGS``); either way no file is left behind.
    """
    import onnx

    from kernelnet.export.graph_module import INPUT_DTYPES, ReferenceModule
    from kernelnet.export.metadata import build_metadata, run_spec
    from kernelnet.export.onnx_graph import FORMS, build_graph, choose_form
    from kernelnet.rundir import check_embedded_config, load_config, load_metrics, load_weights, model_from_weights
    from kernelnet.runtime.describe import weights_digest

    if input_dtype not in INPUT_DTYPES:
        raise KernelnetError(f"unknown input dtype {input_dtype!r}: use float32 or uint8")
    if not 13 <= opset <= 23:
        raise KernelnetError(f"opset {opset} is not supported: use 13..23 (default {DEFAULT_OPSET})")
    if form not in FORMS:
        raise KernelnetError(f"unknown graph form {form!r}: use one of {', '.join(FORMS)}")
    config = load_config(run_dir)
    weights = load_weights(run_dir)
    check_embedded_config(run_dir, config)
    model = model_from_weights(config, weights, run_dir)
    precision = "fp16" if fp16 else "fp32"
    spec = run_spec(config, weights, input_dtype)
    if static is not None and min(static[2:]) < spec.min_side:
        raise KernelnetError(f"{config.padding} border needs H and W >= {spec.min_side}, got static {static}")
    chosen = form if spec.after else choose_form(spec, form)  # a chain: each pass picks its own form
    if fp16 and any(p.decode or p.output.encode for p in spec.passes):
        raise KernelnetError("fp16 export of a model with curves is not supported: the curves' powers need float32")
    path = Path(out) if out is not None else Path(run_dir) / "model.onnx"
    if path.is_dir():
        raise KernelnetError(f"output {path} is a directory")
    check_creatable(path)
    meta = build_metadata(config, weights, load_metrics(run_dir), input_dtype, precision, chosen,
                          weights_digest(run_dir))
    proto = _check(build_graph(spec, form=chosen, fp16=fp16, opset=opset, static=static), "export")
    if simplify:
        proto = _check(_simplify(proto), "simplification")
        proto.producer_name = "kernelnet"
    onnx.helper.set_model_props(proto, meta)
    _check(proto, "metadata")
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
        checks = []
        if verify:
            reference = ReferenceModule(model, input_dtype, fp16, spec).eval()  # fp16: halves `model` in place
            checks = _verify(tmp, reference, verify_shapes(spec.min_side, static),
                             input_dtype, precision, spec)
            bad = [c for c in checks if not c["ok"]]
            if bad:
                raise CheckFailed(f"onnxruntime output differs from PyTorch at {bad[0]['shape']}: max abs error "
                                  f"{bad[0]['max_abs_error']:.3g} > {bad[0]['allowed']:.3g} (the {precision} "
                                  "rounding bound)")
    return ExportResult(path, path.stat().st_size, opset, simplify, checks, meta)
