"""Pruning a run learned from pairs: "lossless" means the held-out pair figures do not drop.

The candidate masks are the usual ones (:func:`kernelnet.compress.prune_mask.compute_mask`, torch's pruning methods);
each is scored on the run's held-out pairs through the whole filter spec — output stage included — so a pruned model
counts as lossless only when it reproduces as many of the black box's held-out levels exactly (integer targets)
or keeps its held-out PSNR within 0.1 dB (float targets). ``amount="auto"`` takes the largest such count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError

FLOAT_DROP_DB = 0.1


def _score(pairs: Any, spec: Any) -> float:
    from kernelnet.learn.pairs_train import heldout

    figures = heldout(pairs, spec)
    exact = figures["heldout_exact_fraction"]
    return float(exact) if exact is not None else float(figures["heldout_psnr_db"])


def prune_pairs_run(run: Path, out: Path, *, amount: Any, method: str, scope: str, structure: str, seed: int,
                    plots: bool) -> Any:
    """Prune the pair-trained run ``run`` into ``out`` (see the module docstring); returns a ``PruneResult``."""
    import torch

    from kernelnet.export.metadata import run_spec
    from kernelnet.compress.prune_result import PruneResult, conv_shape
    from kernelnet.compress.prune_mask import apply_mask, compute_mask, make_permanent, resolve_count
    from kernelnet.rundir import load_config, load_metrics, load_weights, model_from_weights, save_history
    from kernelnet.rundir import save_metrics, save_model
    from kernelnet.runtime.io.atomic import atomic_dir
    from kernelnet.runtime.io.pairs import load_pairs

    config, weights = load_config(run), load_weights(run)
    shape = conv_shape(run, weights)
    total = int(np.prod(shape))
    pairs = load_pairs(config.data, config.targets)
    source = model_from_weights(config, weights, run)
    base = _score(pairs, run_spec(config, weights))
    integer = pairs.encoding.levels is not None

    def masked(count: int) -> tuple[Any, Any, float]:
        mask = compute_mask(source.conv.weight, method, count, scope, structure, seed)
        w = {k: v.copy() for k, v in weights.items()}
        w["conv.weight"] = w["conv.weight"] * mask.numpy()
        return mask, w, _score(pairs, run_spec(config, w))

    def lossless(score: float) -> bool:
        return score >= base - 1e-12 if integer else score >= min(base, 200.0) - FLOAT_DROP_DB

    rows: list[dict[str, Any]] | None = None
    if amount == "auto":
        rows, count = [], 0
        for trial in range(1, total):
            try:
                resolve_count(trial, shape, method, scope)
            except KernelnetError:
                continue
            score = masked(trial)[2]
            rows.append({"count": trial, "sparsity": trial / total, "score": score, "ok": lossless(score)})
            if not lossless(score):
                break
            count = trial
        if count == 0:
            raise KernelnetError("amount auto: pruning even one weight changes the held-out pairs")
    else:
        count = resolve_count(amount, shape, method, scope)
    mask, pruned, score = masked(count)
    model = source
    apply_mask(model, torch.from_numpy(np.asarray(mask)))
    make_permanent(model)
    metrics = dict(load_metrics(run))
    from kernelnet.learn.pairs_train import heldout

    metrics.update({k: v for k, v in heldout(pairs, run_spec(config, pruned)).items() if k != "peak"})
    metrics.update({"sparsity": count / total, "pruned_count": count, "weight_count": total, "method": method,
                    "scope": scope, "amount": amount, "score_before": base, "score_after": score,
                    "lossless": lossless(score), "auto_search": rows, "source_run": str(run),
                    "pruned_positions": torch.nonzero(torch.from_numpy(np.asarray(mask))[:, 0] == 0).tolist(),
                    "kernels": (pruned["conv.weight"][:, 0]).tolist()})
    new_config = config.replace(extra={**config.extra, "pruned": {"source": str(run), "method": method,
                                                                  "scope": scope, "count": count}})
    with atomic_dir(out) as tmp:
        save_model(tmp, model, new_config)
        save_history(tmp, [])
        save_metrics(tmp, metrics)
        if plots:
            from kernelnet.plots import plot_kernels

            (tmp / "plots").mkdir(exist_ok=True)
            kern = pruned["conv.weight"][:, 0].astype(np.float64)
            plot_kernels(kern, kern, tmp / "plots" / "pruned_kernels.png",
                         title=f"pruned {count}/{total} weights", mask=mask.numpy()[:, 0])
    return PruneResult(out, model, new_config, metrics)


def refuse_pairs_options(finetune_epochs: int, max_psnr_drop: float | None) -> None:
    if finetune_epochs:
        raise KernelnetError("fine-tuning a run learned from pairs is not supported (its fit is exact)")
    if max_psnr_drop is not None:
        raise KernelnetError("a run learned from pairs prunes losslessly on its held-out pairs: no max PSNR drop")

