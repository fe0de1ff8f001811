"""What pruning returns, and the weight shape it prunes: shared by :mod:`kernelnet.compress.prune` and
:mod:`kernelnet.compress.prune_pairs` (kept apart so that neither imports the other)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    import torch

    from kernelnet.config import RunConfig


@dataclass
class PruneResult:
    """What :func:`~kernelnet.compress.prune.prune_run` produced: the new run directory, the pruned model, its
    config and metrics."""

    run_dir: Path
    model: torch.nn.Module
    config: RunConfig
    metrics: dict[str, Any]


def conv_shape(run: Path, weights: dict[str, Any]) -> tuple[int, ...]:
    """The shape (C, 1, k, k) of the run's ``conv.weight``; :class:`KernelnetError` if it is not a kernelnet model."""
    if "conv.weight" not in weights or weights["conv.weight"].ndim != 4:
        raise KernelnetError(f"{run}/model.safetensors has no conv.weight (C, 1, k, k): not a kernelnet model")
    return tuple(int(s) for s in weights["conv.weight"].shape)
