"""Pruning a run's kernels with ``torch.nn.utils.prune``, then writing the pruned model as a new run directory.

Methods (the pruned weights are chosen from the conv weight ``(C, 1, k, k)``; the bias is never pruned):

- ``l1``: the smallest ``|w|`` (``prune.L1Unstructured``, as ``prune.l1_unstructured``).
- ``random``: uniformly random weights, reproducible from ``seed`` (``prune.RandomUnstructured``).
- ``structured``: whole kernel columns (or rows) with the smallest L1 norm (``prune.LnStructured``, ``n=1``).
  A column is ``kernel[c, :, j]`` of *one* kernel; a row is ``kernel[c, i, :]``.

Scope (matters for a DoubleFilter only, whose one conv weight holds both kernels):

- ``global``: the candidates of both kernels are ranked together (for ``l1``/``random`` the very mask
  ``prune.global_unstructured`` gives over the conv weight; for ``structured``, all ``C·k`` single-kernel
  columns/rows ranked together), so one kernel may lose more than the other.
- ``per-kernel``: each kernel is pruned on its own by the same amount (the same torch pruning method run
  kernel by kernel).

Masks come from the torch methods' ``compute_mask`` (:func:`compute_mask`) and are held on the model with
``prune.custom_from_mask``.

Amount: a fraction in (0, 1) (of each ranked group's candidates, rounded as torch does) or an integer count of
weights in [1, weight count]. A count must split into whole pruning units: multiples of ``k`` for
``structured``, and equally over the kernels for ``per-kernel``. ``auto`` searches every count and keeps the
largest whose test PSNR drops by at most ``max_psnr_drop`` dB or stays at or above the lossless bar (60 dB vs
the true filter, see :func:`search_amount`).

The pruning is held by torch's mask (forward pre-hook) during optional fine-tuning, then made permanent with
``prune.remove``: the new run directory is an ordinary run (``model.safetensors`` with zeros in it).

Example::

    >>> from kernelnet.prune import prune_run
    >>> r = prune_run("artifacts/runs/sobel-single", amount="auto")  # doctest: +SKIP
    >>> r.metrics["pruned_positions"], r.metrics["lossless"]  # doctest: +SKIP
    ([[0, 0, 1], [0, 1, 1], [0, 2, 1]], True)
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.data import Split

METHODS = ("l1", "random", "structured")
SCOPES = ("global", "per-kernel")
STRUCTURES = ("columns", "rows")
LOSSLESS_PSNR_DB = 60.0
"""``lossless`` in metrics.json: the pruned model's test PSNR vs the true target filter is at least this (the
bar of issue 5)."""
DEFAULT_MAX_PSNR_DROP_DB = 0.5
Amount = Union[int, float, str]
"""An integer count of weights, a fraction in (0, 1), or ``"auto"``."""


def parse_amount(text: str | int | float) -> Amount:
    """``"auto"``, an integer count (``"3"``) or a fraction (``"0.33"``); checks the fraction is in (0, 1)."""
    if isinstance(text, bool):
        raise KernelnetError(f"invalid --amount {text!r}")
    if isinstance(text, (int, float)):
        value: Amount = text
    else:
        s = str(text).strip().lower()
        if s == "auto":
            return "auto"
        try:
            value = int(s)
        except ValueError:
            try:
                value = float(s)
            except ValueError:
                raise KernelnetError(
                    f"invalid --amount {text!r}: use a fraction in (0, 1), a weight count or 'auto'") from None
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise KernelnetError(f"--amount {value!r} is outside (0, 1): a fraction must be strictly between 0 and 1 "
                             "(write a weight count as an integer)")
    if isinstance(value, int) and value < 1:
        raise KernelnetError(f"--amount {value} is not a valid weight count (must be >= 1)")
    return value


def _layout(shape: tuple[int, ...], method: str, scope: str) -> tuple[int, int, int]:
    """(ranked groups, candidates per group, weights per candidate) for a conv weight (C, 1, k, k)."""
    c, k = int(shape[0]), int(shape[-1])
    groups = c if scope == "per-kernel" else 1
    unit = k if method == "structured" else 1
    return groups, c * k * k // (groups * unit), unit


def count_step(shape: tuple[int, ...], method: str, scope: str) -> int:
    """The smallest number of weights the method can prune (counts must be multiples of it)."""
    groups, _, unit = _layout(shape, method, scope)
    return groups * unit


def resolve_count(amount: int | float, shape: tuple[int, ...], method: str = "l1", scope: str = "global") -> int:
    """Weights to prune in a conv weight of ``shape`` for a count or fraction ``amount`` (validated)."""
    total = int(np.prod(shape))
    groups, units, unit = _layout(shape, method, scope)
    if isinstance(amount, float):
        amount = parse_amount(amount)  # range check
        per_group = round(amount * units)
        if per_group < 1:
            what = "columns/rows" if method == "structured" else "weights"
            raise KernelnetError(f"--amount {amount} prunes nothing ({units} {what} per group): use a larger amount")
        return groups * per_group * unit
    if not isinstance(amount, int) or amount < 1:
        raise KernelnetError(f"--amount {amount!r} is not a valid weight count (must be >= 1)")
    if amount > total:
        raise KernelnetError(f"--amount {amount} is more than the model's {total} weights")
    step = groups * unit
    if amount % step:
        why = []
        if unit > 1:
            why.append(f"structured pruning removes whole columns/rows of {unit}")
        if groups > 1:
            why.append(f"--per-kernel splits it equally over {groups} kernels")
        raise KernelnetError(f"--amount {amount} must be a multiple of {step} ({' and '.join(why)})")
    return amount


def compute_mask(weight: torch.Tensor, method: str = "l1", count: int = 1, scope: str = "global",
                 structure: str = "columns", seed: int = 0) -> torch.Tensor:
    """The 0/1 mask (same shape as ``weight`` (C, 1, k, k)) that prunes ``count`` weights.

    Uses torch's pruning methods: for ``l1``/``random`` with ``global`` scope this is exactly the mask of
    ``prune.global_unstructured`` over the weight; for a single kernel, ``structured`` columns equal
    ``prune.ln_structured(conv, "weight", n, n=1, dim=3)`` (rows: ``dim=2``).
    """
    import torch
    from torch.nn.utils import prune

    if method not in METHODS:
        raise KernelnetError(f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    groups, _, unit = _layout(tuple(weight.shape), method, scope)
    per_group = count // (groups * unit)
    c, k = weight.shape[0], weight.shape[-1]
    index = torch.arange(weight.numel()).reshape(c, k, k)
    flat = weight.detach().reshape(-1).float().cpu()
    mask = torch.ones_like(flat)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for g in range(groups):
            sel = index if groups == 1 else index[g:g + 1]
            if method == "structured":
                # one row of `slots` per candidate: a column (or row) of one kernel
                slots = (sel.transpose(1, 2) if structure == "columns" else sel).reshape(-1, k)
                pm = prune.LnStructured(per_group, n=1, dim=0)
            else:
                slots = sel.reshape(-1)
                pm = (prune.L1Unstructured if method == "l1" else prune.RandomUnstructured)(per_group)
            values = flat[slots]
            mask[slots.reshape(-1)] = pm.compute_mask(values, torch.ones_like(values)).reshape(-1)
    return mask.reshape(weight.shape).to(weight.dtype)


def _refresh_mask(model: torch.nn.Module, args: Any) -> None:
    """Model forward pre-hook: recompute ``conv.weight = weight_orig * weight_mask``.

    The models read ``conv.weight`` directly (``F.conv2d`` after their own padding) instead of calling
    ``conv(...)``, so torch's pruning hook on the conv would never run; this runs it before every forward.
    """
    from torch.nn.utils import prune

    for hook in list(model.conv._forward_pre_hooks.values()):
        if isinstance(hook, prune.BasePruningMethod):
            hook(model.conv, args)


def apply_mask(model: torch.nn.Module, mask: torch.Tensor) -> None:
    """Hold ``mask`` on ``model.conv.weight`` with ``prune.custom_from_mask`` (reparametrised, trainable)."""
    from torch.nn.utils import prune

    prune.custom_from_mask(model.conv, "weight", mask.to(model.conv.weight.device))
    model.register_forward_pre_hook(_refresh_mask)


def make_permanent(model: torch.nn.Module) -> None:
    """``prune.remove``: fold the mask into an ordinary ``conv.weight`` (zeros where pruned)."""
    from torch.nn.utils import prune

    prune.remove(model.conv, "weight")
    for key in [k for k, fn in model._forward_pre_hooks.items() if fn is _refresh_mask]:
        del model._forward_pre_hooks[key]


def pruned_copy(model: torch.nn.Module, mask: torch.Tensor) -> torch.nn.Module:
    """A copy of ``model`` with ``mask`` applied permanently."""
    out = copy.deepcopy(model)
    apply_mask(out, mask)
    make_permanent(out)
    return out


def psnr_drop(before: float, after: float) -> float:
    """``before - after`` in dB, 0 when equal (also both ``inf``)."""
    return 0.0 if after == before else before - after


class _TestScorer:
    """Test PSNR of many candidate models: the (float64) targets are computed once (same numbers as evaluate)."""

    def __init__(self, images: dict[str, np.ndarray], config: RunConfig) -> None:
        import torch

        from kernelnet.training import _targets

        self.inputs = [torch.from_numpy(im)[None, None] for im in images.values()]
        with torch.no_grad():
            target = [_targets(x.double(), config)[0, 0].numpy().ravel() for x in self.inputs]
        self.target = np.concatenate(target)

    def psnr(self, model: torch.nn.Module) -> float:
        import torch

        from kernelnet.metrics import psnr_db

        with torch.no_grad():
            pred = np.concatenate([model(x)[0, 0].numpy().ravel() for x in self.inputs])
        return psnr_db(pred, self.target)


def search_amount(model: torch.nn.Module, scorer: _TestScorer, psnr_before: float, max_drop: float,
                  method: str, scope: str, structure: str, seed: int,
                  lossless_db: float = LOSSLESS_PSNR_DB) -> tuple[int, list[dict[str, Any]]]:
    """Try every count (multiples of :func:`count_step`); return the largest acceptable one and the table.

    A count is acceptable when its test PSNR is at least ``min(psnr_before - max_drop, lossless_db)``: it drops
    by at most ``max_drop`` dB, or it stays at or above the lossless bar. (PSNR is logarithmic: a model trained to
    140 dB loses 25 dB when a 5e-5 weight is zeroed, yet still matches the filter to 1e-6.)
    """
    shape = tuple(model.conv.weight.shape)
    total, step = int(np.prod(shape)), count_step(shape, method, scope)
    floor = min(psnr_before - max_drop, lossless_db)
    rows, best = [], 0
    for count in range(step, total + 1, step):
        mask = compute_mask(model.conv.weight, method, count, scope, structure, seed)
        psnr = scorer.psnr(pruned_copy(model, mask))
        drop = psnr_drop(psnr_before, psnr)
        ok = bool(psnr >= floor)
        rows.append({"count": count, "sparsity": count / total, "psnr_db": psnr, "drop_db": drop, "ok": ok})
        if ok:
            best = count
    if not best:
        raise KernelnetError(f"--amount auto: pruning even {step} weight(s) brings the test PSNR to "
                             f"{rows[0]['psnr_db']:.3g} dB, below min(PSNR before {psnr_before:.3g} - "
                             f"--max-psnr-drop {max_drop:g}, {lossless_db:g}) dB; nothing written")
    return best, rows


def _aligned_mask(learned: np.ndarray, mask: np.ndarray, config: RunConfig) -> np.ndarray:
    """``mask`` of the model's own kernels ``learned`` (C, k, k) in the plotted frame, where they are aligned to
    the target (:func:`kernelnet.training.kernel_summary`): a position is zero where every kernel feeding it is pruned.

    Single models align by a sign at most (positions unchanged); double models by an orthogonal 2×2 mix.
    """
    if config.model != "double":
        return mask
    from kernelnet.metrics import embed_center, procrustes, target_kernels

    c, size = learned.shape[0], learned.shape[-1]
    target = embed_center(target_kernels(np.array(config.target_kernel), config.model), size)
    rot = procrustes(learned.reshape(c, -1), target.reshape(c, -1))
    feeds = np.abs(rot) > 1e-3
    kept = mask.reshape(c, -1) != 0
    return np.array([np.any(kept[feeds[i]], axis=0) for i in range(c)], dtype=float).reshape(mask.shape)


@dataclass
class PruneResult:
    """What :func:`prune_run` produced: the new run directory, the pruned model, its config and metrics."""

    run_dir: Path
    model: torch.nn.Module
    config: RunConfig
    metrics: dict[str, Any]


def finetune(model: torch.nn.Module, config: RunConfig, split: Split, device: torch.device, work_dir: Path,
             epochs: int, lr: float, progress: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """Fine-tune a masked model (Adam, the run's crops and schedule, early stopping) with the mask held.

    A warm start of :func:`kernelnet.training._gradient_fit` (its checkpoint goes to ``work_dir`` and is deleted):
    the best epoch is kept only if its validation loss beats the pruned model's on the same crops by more than
    0.1%; otherwise the pruned weights stay. Returns the history and whether the fine-tuned weights were kept.
    """
    import torch

    from kernelnet.rundir import CHECKPOINT_FILE
    from kernelnet.training import _gradient_fit

    model.to(device)
    torch.manual_seed(config.seed)
    ft_config = config.replace(solver="adam", epochs=epochs, lr=lr)
    history, best_epoch = _gradient_fit(model, ft_config, split, device, work_dir, None, progress, warm_start=True)
    (work_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    model.cpu()
    return history, best_epoch > 0


def default_out(run: str | os.PathLike[str]) -> Path:
    """``RUN`` + ``-pruned``."""
    return Path(str(run).rstrip("/\\") + "-pruned")


def _check_out(run: Path, out: Path) -> None:
    if out.resolve() == run.resolve():
        raise KernelnetError(f"--out {out} is the source run: choose a new directory")
    if out.exists() and not out.is_dir():
        raise KernelnetError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise KernelnetError(f"--out {out} is a non-empty folder that is not a run directory: refusing to replace it")
    from kernelnet.runtime.atomic import check_creatable

    check_creatable(out)


def prune_run(run: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *, amount: Amount = "auto",
              method: str = "l1", scope: str = "global", structure: str = "columns", seed: int = 0,
              max_psnr_drop: float | None = None, lossless_psnr_db: float = LOSSLESS_PSNR_DB, align: bool = True,
              finetune_epochs: int = 0, finetune_lr: float = 1e-2, device: str | None = None,
              progress: bool = False, plots: bool = True) -> PruneResult:
    """Prune the run ``run`` and write the pruned model as the run directory ``out`` (default ``RUN-pruned``).

    All input is checked before anything is written; ``out`` appears whole or not at all. ``metrics.json`` has
    a run's usual keys (for the pruned model) plus ``sparsity``, ``pruned_positions`` ([c, i, j] of each
    zeroed weight), ``method``, ``amount``, ``psnr_before_db``/``psnr_after_db`` and
    ``kernel_error_before``/``kernel_error_after`` (test photos vs the true target filter), ``lossless``
    (``psnr_after_db`` ≥ ``lossless_psnr_db``, 60 dB) and, for ``amount="auto"``, the search table
    (see :func:`search_amount` for what counts as acceptable). With ``align``, a DoubleFilter's kernel pair is
    first rotated onto the target's (the output is unchanged).
    """
    from kernelnet.rundir import load_config, load_weights

    # -- validate everything (cheap, torch-free) before any work or write
    if method not in METHODS:
        raise KernelnetError(f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    if scope not in SCOPES:
        raise KernelnetError(f"unknown pruning scope {scope!r}: use one of {', '.join(SCOPES)}")
    if structure not in STRUCTURES:
        raise KernelnetError(f"unknown structure {structure!r}: use one of {', '.join(STRUCTURES)}")
    amount = parse_amount(amount)
    if amount == "auto":
        max_psnr_drop = DEFAULT_MAX_PSNR_DROP_DB if max_psnr_drop is None else float(max_psnr_drop)
        if not (max_psnr_drop >= 0 and math.isfinite(max_psnr_drop)):
            raise KernelnetError(f"--max-psnr-drop must be a finite number >= 0, got {max_psnr_drop}")
    elif max_psnr_drop is not None:
        raise KernelnetError("--max-psnr-drop applies to --amount auto only")
    if math.isnan(lossless_psnr_db):
        raise KernelnetError("--lossless-psnr must be a number of dB")
    if finetune_epochs < 0:
        raise KernelnetError(f"--finetune-epochs must be >= 0, got {finetune_epochs}")
    if not finetune_lr > 0:
        raise KernelnetError(f"--finetune-lr must be > 0, got {finetune_lr}")
    run = Path(run)
    out = Path(out) if out is not None else default_out(run)
    config = load_config(run)
    weights = load_weights(run)
    if "conv.weight" not in weights or weights["conv.weight"].ndim != 4:
        raise KernelnetError(f"{run}/model.safetensors has no conv.weight (C, 1, k, k): not a kernelnet model")
    shape = tuple(int(s) for s in weights["conv.weight"].shape)
    count = None if amount == "auto" else resolve_count(amount, shape, method, scope)
    _check_out(run, out)

    import torch

    from kernelnet.runtime.atomic import atomic_dir
    from kernelnet.data import load_source, split_images, usable_for_crops
    from kernelnet.models import set_kernels
    from kernelnet.rundir import model_from_weights, save_history, save_metrics, save_model
    from kernelnet.training import evaluate, kernel_summary, pick_device, resolve_config

    source = model_from_weights(config, weights, run)
    config = resolve_config(config)
    split = split_images(load_source(config.data))
    dev = pick_device(device or config.device) if finetune_epochs else torch.device("cpu")
    if finetune_epochs:
        usable_for_crops(split.train, config.crop)
        usable_for_crops(split.val, config.crop)

    scorer = _TestScorer(split.test, config)
    psnr_before = scorer.psnr(source)
    summary = kernel_summary(source, config)
    kernel_error_before = summary["kernel_max_abs_error"]
    aligned = bool(align and config.model == "double")
    if aligned:
        # √(a² + b²) is unchanged by any orthogonal 2×2 mix of the two responses (bias included): the model computes
        # the same function, but a trained pair is an arbitrary rotation of (K, Kᵀ) whose zeros are smeared, while
        # the pair aligned to the target has the target's zeros (Sobel: a middle column and row) for pruning to find.
        set_kernels(source, summary["learned_kernels"], summary["learned_bias"])
    search_rows: list[dict[str, Any]] | None = None
    if count is None:
        count, search_rows = search_amount(source, scorer, psnr_before, max_psnr_drop, method, scope, structure,
                                           seed, lossless_psnr_db)
    mask = compute_mask(source.conv.weight, method, count, scope, structure, seed)
    model = copy.deepcopy(source)
    apply_mask(model, mask)
    psnr_pruned = scorer.psnr(model) if finetune_epochs else None  # without fine-tuning: psnr_after_db

    new_config = config.replace(extra={**config.extra, "pruned": {
        "source": str(run), "method": method, "scope": scope, "count": count,
        **({"structure": structure} if method == "structured" else {}),
        **({"seed": seed} if method == "random" else {})}})
    with atomic_dir(out) as tmp:
        history: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        finetune_kept = False
        if finetune_epochs:
            history, finetune_kept = finetune(model, config, split, dev, tmp, finetune_epochs, finetune_lr, progress)
        finetune_seconds = time.perf_counter() - t0
        make_permanent(model)
        model.eval()
        after = {**evaluate(model, split.test, config), **kernel_summary(model, config)}
        psnr_pruned = after["test_psnr_db"] if psnr_pruned is None else psnr_pruned
        total = int(np.prod(shape))
        positions = torch.nonzero(mask[:, 0] == 0).tolist()
        metrics: dict[str, Any] = {
            **after,
            "train_seconds": round(finetune_seconds, 3),
            "epochs_run": len(history),
            "solver": config.solver,
            "init": config.init,
            "device": str(dev),
            "best_val_loss": min((h["val_loss"] for h in history), default=None),
            "split": {"train": sorted(split.train), "val": sorted(split.val), "test": sorted(split.test)},
            "sparsity": count / total,
            "pruned_count": count,
            "weight_count": total,
            "pruned_positions": positions,
            "method": method,
            "scope": scope,
            "aligned": aligned,
            "structure": structure if method == "structured" else None,
            "seed": seed if method == "random" else None,
            "amount": amount,
            "max_psnr_drop_db": max_psnr_drop,
            "psnr_before_db": psnr_before,
            "psnr_pruned_db": psnr_pruned,
            "psnr_after_db": after["test_psnr_db"],
            "psnr_drop_db": psnr_drop(psnr_before, after["test_psnr_db"]),
            "kernel_error_before": kernel_error_before,
            "kernel_error_after": after["kernel_max_abs_error"],
            "lossless": bool(after["test_psnr_db"] >= lossless_psnr_db),
            "lossless_psnr_db": lossless_psnr_db,
            "finetune_epochs": finetune_epochs,
            "finetune_lr": finetune_lr if finetune_epochs else None,
            "finetune_kept": finetune_kept,
            "source_run": str(run),
            "auto_search": search_rows,
        }
        save_model(tmp, model, new_config)
        save_history(tmp, history)
        save_metrics(tmp, metrics)
        if plots:
            from kernelnet.plots import plot_kernels, plot_run

            plot_run(tmp, model, new_config, history, metrics, split.test)
            plot_kernels(np.asarray(after["learned_kernels"]), np.asarray(after["target_kernels"]),
                         tmp / "plots" / "pruned_kernels.png",
                         title=f"pruned {method} ({scope}): {count}/{total} weights, "
                               f"PSNR {psnr_before:.1f} -> {after['test_psnr_db']:.1f} dB",
                         mask=_aligned_mask(model.kernels.double().numpy(), mask[:, 0].numpy(), config))
    return PruneResult(out, model, new_config, metrics)
