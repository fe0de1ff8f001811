"""Scoring, the ``--amount auto`` search and fine-tuning for ``kernelnet prune``.

Everything here needs a model and test photos, not just a weight: :class:`_TestScorer` gives the test PSNR of
many candidate models cheaply (the float64 targets are computed once), :func:`search_amount` tries every count
and keeps the largest acceptable one, and :func:`finetune` warm-starts training with the mask held. Kept apart
from the mask logic (:mod:`kernelnet.compress.prune_mask`) and the run-directory writing
(:mod:`kernelnet.compress.prune`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelnet.compress.prune_mask import compute_mask, count_step, pruned_copy
from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.learn.data import Split

LOSSLESS_PSNR_DB = 60.0
"""``lossless`` in metrics.json: the pruned model's test PSNR vs the true target filter is at least this (the
bar of issue 5)."""
DEFAULT_MAX_PSNR_DROP_DB = 0.5


def psnr_drop(before: float, after: float) -> float:
    """``before - after`` in dB, 0 when equal (also both ``inf``)."""
    return 0.0 if after == before else before - after


class _TestScorer:
    """Test PSNR of many candidate models: the (float64) targets are computed once (same numbers as evaluate)."""

    def __init__(self, images: dict[str, np.ndarray], config: RunConfig) -> None:
        import torch

        from kernelnet.learn.training import _targets

        self.inputs = [torch.from_numpy(im)[None, None] for im in images.values()]
        with torch.no_grad():
            target = [_targets(x.double(), config)[0, 0].numpy().ravel() for x in self.inputs]
        self.target = np.concatenate(target)

    def psnr(self, model: torch.nn.Module) -> float:
        """Pooled test PSNR (dB) of ``model``'s output vs the target filter's."""
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
        raise KernelnetError(f"amount auto: pruning even {step} weight(s) brings the test PSNR to "
                             f"{rows[0]['psnr_db']:.3g} dB, below min(PSNR before {psnr_before:.3g} - "
                             f"--max-psnr-drop {max_drop:g}, {lossless_db:g}) dB; nothing written")
    return best, rows


def finetune(model: torch.nn.Module, config: RunConfig, split: Split, device: torch.device, work_dir: Path,
             epochs: int, lr: float, progress: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """Fine-tune a masked model (Adam, the run's crops and schedule, early stopping) with the mask held.

    A warm start of :func:`kernelnet.learn.training._gradient_fit` (its checkpoint goes to ``work_dir`` and is deleted):
    the best epoch is kept only if its validation loss beats the pruned model's on the same crops by more than
    0.1%; otherwise the pruned weights stay. Returns the history and whether the fine-tuned weights were kept.
    """
    import torch

    from kernelnet.rundir import CHECKPOINT_FILE
    from kernelnet.learn.training import _gradient_fit

    model.to(device)
    torch.manual_seed(config.seed)
    ft_config = config.replace(solver="adam", epochs=epochs, lr=lr)
    history, best_epoch = _gradient_fit(model, ft_config, split, device, work_dir, None, progress, warm_start=True)
    (work_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    model.cpu()
    return history, best_epoch > 0
