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

    >>> from kernelnet.compress.prune import prune_run
    >>> r = prune_run("artifacts/runs/sobel-single", amount="auto")  # doctest: +SKIP
    >>> r.metrics["pruned_positions"], r.metrics["lossless"]  # doctest: +SKIP
    ([[0, 0, 1], [0, 1, 1], [0, 2, 1]], True)

This module is the public entry point (:func:`prune_run`, :class:`PruneResult`, and every public name of the
parts, re-exported); the mask logic is in :mod:`kernelnet.compress.prune_mask`, scoring, the auto search and fine-tuning
in :mod:`kernelnet.compress.prune_search`.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelnet.compress.prune_mask import (METHODS, SCOPES, STRUCTURES, Amount, apply_mask, compute_mask, count_step,
                                  make_permanent, parse_amount, pruned_copy, resolve_count)
from kernelnet.compress.prune_search import (DEFAULT_MAX_PSNR_DROP_DB, LOSSLESS_PSNR_DB, _TestScorer, finetune,
                                             psnr_drop, search_amount)
from kernelnet.compress.prune_result import PruneResult, conv_shape
from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.learn.data import Split

__all__ = ["METHODS", "SCOPES", "STRUCTURES", "LOSSLESS_PSNR_DB", "DEFAULT_MAX_PSNR_DROP_DB", "Amount",
           "parse_amount", "count_step", "resolve_count", "compute_mask", "apply_mask", "make_permanent",
           "pruned_copy", "psnr_drop", "search_amount", "finetune", "PruneResult", "default_out", "prune_run"]


def _aligned_mask(learned: np.ndarray, mask: np.ndarray, config: RunConfig) -> np.ndarray:
    """``mask`` of the model's own kernels ``learned`` (C, k, k) in the plotted frame, where they are aligned to
    the target (:func:`kernelnet.learn.training.kernel_summary`): a position is zero where every kernel feeding it is
    pruned.

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


@dataclass(frozen=True)
class _Options:
    """The pruning options of :func:`prune_run`, validated (``amount`` parsed, ``max_psnr_drop`` defaulted)."""

    method: str
    scope: str
    structure: str
    seed: int
    amount: Amount
    max_psnr_drop: float | None
    lossless_psnr_db: float
    finetune_epochs: int
    finetune_lr: float


@dataclass
class _Selection:
    """What is pruned: the masked copy ``model`` of the (aligned) source, and the figures from before pruning."""

    model: torch.nn.Module
    mask: torch.Tensor
    count: int
    total: int
    aligned: bool
    psnr_before: float
    psnr_pruned: float | None
    kernel_error_before: float
    search_rows: list[dict[str, Any]] | None


def default_out(run: str | os.PathLike[str]) -> Path:
    """``RUN`` + ``-pruned``."""
    return Path(str(run).rstrip("/\\") + "-pruned")


def _check_out(run: Path, out: Path) -> None:
    """``out`` may become the pruned run: not the source, not a file, not a foreign non-empty folder; creatable."""
    if out.resolve() == run.resolve():
        raise KernelnetError(f"output {out} is the source run: choose a new directory")
    if out.exists() and not out.is_dir():
        raise KernelnetError(f"output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise KernelnetError(f"output {out} is a non-empty folder that is not a run directory: refusing to replace it")
    from kernelnet.runtime.io.atomic import check_creatable

    check_creatable(out)


def _check_options(method: str, scope: str, structure: str, seed: int, amount: Amount, max_psnr_drop: float | None,
                   lossless_psnr_db: float, finetune_epochs: int, finetune_lr: float) -> _Options:
    """Validate the options (cheap, torch-free) before any work or write."""
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
            raise KernelnetError(f"max PSNR drop must be a finite number >= 0, got {max_psnr_drop}")
    elif max_psnr_drop is not None:
        raise KernelnetError("a max PSNR drop applies to amount auto only")
    if math.isnan(lossless_psnr_db):
        raise KernelnetError("the lossless PSNR must be a number of dB")
    if finetune_epochs < 0:
        raise KernelnetError(f"fine-tune epochs must be >= 0, got {finetune_epochs}")
    if not finetune_lr > 0:
        raise KernelnetError(f"the fine-tune learning rate must be > 0, got {finetune_lr}")
    return _Options(method, scope, structure, seed, amount, max_psnr_drop, lossless_psnr_db, finetune_epochs,
                    finetune_lr)


def _select(source: torch.nn.Module, config: RunConfig, split: Split, opts: _Options, count: int | None,
            align: bool) -> _Selection:
    """Score the source, align a DoubleFilter's pair (``align``), pick the count (searched when ``None``) and
    mask a copy of the source."""
    from kernelnet.learn.models import set_kernels
    from kernelnet.learn.training import kernel_summary

    scorer = _TestScorer(split.test, config)
    psnr_before = scorer.psnr(source)
    summary = kernel_summary(source, config)
    aligned = bool(align and config.model == "double")
    if aligned:
        # √(a² + b²) is unchanged by any orthogonal 2×2 mix of the two responses (bias included): the model computes
        # the same function, but a trained pair is an arbitrary rotation of (K, Kᵀ) whose zeros are smeared, while
        # the pair aligned to the target has the target's zeros (Sobel: a middle column and row) for pruning to find.
        set_kernels(source, summary["learned_kernels"], summary["learned_bias"])
    search_rows: list[dict[str, Any]] | None = None
    if count is None:
        count, search_rows = search_amount(source, scorer, psnr_before, opts.max_psnr_drop, opts.method, opts.scope,
                                           opts.structure, opts.seed, opts.lossless_psnr_db)
    mask = compute_mask(source.conv.weight, opts.method, count, opts.scope, opts.structure, opts.seed)
    model = copy.deepcopy(source)
    apply_mask(model, mask)
    psnr_pruned = scorer.psnr(model) if opts.finetune_epochs else None  # without fine-tuning: psnr_after_db
    return _Selection(model, mask, count, int(source.conv.weight.numel()), aligned, psnr_before, psnr_pruned,
                      summary["kernel_max_abs_error"], search_rows)


def _pruned_config(config: RunConfig, run: Path, opts: _Options, count: int) -> RunConfig:
    """``config`` with ``extra["pruned"]`` saying where the run came from and how it was pruned."""
    return config.replace(extra={**config.extra, "pruned": {
        "source": str(run), "method": opts.method, "scope": opts.scope, "count": count,
        **({"structure": opts.structure} if opts.method == "structured" else {}),
        **({"seed": opts.seed} if opts.method == "random" else {})}})


def _metrics(after: dict[str, Any], sel: _Selection, opts: _Options, config: RunConfig, split: Split,
             history: list[dict[str, Any]], seconds: float, finetune_kept: bool, device: torch.device,
             run: Path) -> dict[str, Any]:
    """The pruned run's ``metrics.json``: a run's usual keys (``after``) plus the pruning figures."""
    import torch

    from kernelnet.rundir import run_facts

    return {
        **after,
        **run_facts(seconds, history, config, device, split),
        "sparsity": sel.count / sel.total,
        "pruned_count": sel.count,
        "weight_count": sel.total,
        "pruned_positions": torch.nonzero(sel.mask[:, 0] == 0).tolist(),
        "method": opts.method,
        "scope": opts.scope,
        "aligned": sel.aligned,
        "structure": opts.structure if opts.method == "structured" else None,
        "seed": opts.seed if opts.method == "random" else None,
        "amount": opts.amount,
        "max_psnr_drop_db": opts.max_psnr_drop,
        "psnr_before_db": sel.psnr_before,
        "psnr_pruned_db": after["test_psnr_db"] if sel.psnr_pruned is None else sel.psnr_pruned,
        "psnr_after_db": after["test_psnr_db"],
        "psnr_drop_db": psnr_drop(sel.psnr_before, after["test_psnr_db"]),
        "kernel_error_before": sel.kernel_error_before,
        "kernel_error_after": after["kernel_max_abs_error"],
        "lossless": bool(after["test_psnr_db"] >= opts.lossless_psnr_db),
        "lossless_psnr_db": opts.lossless_psnr_db,
        "finetune_epochs": opts.finetune_epochs,
        "finetune_lr": opts.finetune_lr if opts.finetune_epochs else None,
        "finetune_kept": finetune_kept,
        "source_run": str(run),
        "auto_search": sel.search_rows,
    }


def _write_plots(tmp: Path, sel: _Selection, opts: _Options, config: RunConfig, new_config: RunConfig,
                 history: list[dict[str, Any]], metrics: dict[str, Any], after: dict[str, Any], split: Split) -> None:
    """The usual run plots plus ``plots/pruned_kernels.png`` (learned vs target kernels, pruned positions
    marked)."""
    from kernelnet.plots import plot_kernels, plot_run

    model = sel.model
    plot_run(tmp, model, new_config, history, metrics, split.test)
    plot_kernels(np.asarray(after["learned_kernels"]), np.asarray(after["target_kernels"]),
                 tmp / "plots" / "pruned_kernels.png",
                 title=f"pruned {opts.method} ({opts.scope}): {sel.count}/{sel.total} weights, "
                       f"PSNR {sel.psnr_before:.1f} -> {after['test_psnr_db']:.1f} dB",
                 mask=_aligned_mask(model.kernels.double().numpy(), sel.mask[:, 0].numpy(), config))


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

    opts = _check_options(method, scope, structure, seed, amount, max_psnr_drop, lossless_psnr_db, finetune_epochs,
                          finetune_lr)
    run = Path(run)
    out = Path(out) if out is not None else default_out(run)
    config = load_config(run)
    if config.model == "rank":
        raise KernelnetError(f"{run} is a rank filter ({config.rank}): its footprint is not a weight to prune; "
                             "pruning applies to linear kernels")
    if config.decode or config.encode:
        raise KernelnetError(f"{run} wraps its kernel in curves ({config.decode or config.encode}): pruning applies "
                             "to kernels on the images' own values")
    if config.after:
        raise KernelnetError(f"{run} is a chain of {len(config.after) + 1} passes rounded in between: a pruned tap "
                             "moves every later pass's levels; pruning applies to one-pass filters")
    weights = load_weights(run)
    shape = conv_shape(run, weights)
    count = None if opts.amount == "auto" else resolve_count(opts.amount, shape, method, scope)
    _check_out(run, out)
    if config.is_pairs:
        from kernelnet.compress.prune_pairs import prune_pairs_run, refuse_pairs_options

        refuse_pairs_options(finetune_epochs, max_psnr_drop)
        return prune_pairs_run(run, out, amount=opts.amount, method=method, scope=scope, structure=structure,
                               seed=seed, plots=plots)

    import torch

    from kernelnet.learn.data import load_source, split_images, usable_for_crops
    from kernelnet.rundir import model_from_weights, save_history, save_metrics, save_model
    from kernelnet.runtime.io.atomic import atomic_dir
    from kernelnet.learn.training import evaluate, kernel_summary, pick_device, resolve_config

    source = model_from_weights(config, weights, run)
    config = resolve_config(config)
    split = split_images(load_source(config.data))
    dev = pick_device(device or config.device) if finetune_epochs else torch.device("cpu")
    if finetune_epochs:
        usable_for_crops(split.train, config.crop)
        usable_for_crops(split.val, config.crop)

    sel = _select(source, config, split, opts, count, align)
    model = sel.model
    new_config = _pruned_config(config, run, opts, sel.count)
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
        metrics = _metrics(after, sel, opts, config, split, history, finetune_seconds, finetune_kept, dev, run)
        save_model(tmp, model, new_config)
        save_history(tmp, history)
        save_metrics(tmp, metrics)
        if plots:
            _write_plots(tmp, sel, opts, config, new_config, history, metrics, after, split)
    return PruneResult(out, model, new_config, metrics)
