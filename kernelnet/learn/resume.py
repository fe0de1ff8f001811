"""Resuming a training run from its checkpoint (``kernelnet train --resume``): every field the checkpoint holds
is type-checked against the run it resumes before torch sees it, so a tampered or foreign checkpoint is one
:class:`KernelnetError` line, never a traceback from deep inside ``load_state_dict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError


def check_resume_state(state: dict[str, Any], model: torch.nn.Module, config: RunConfig, path: Path) -> None:
    """Type-check every field of a checkpoint against the run it resumes: one KernelnetError line naming what does
    not fit (a tampered or foreign checkpoint), never a traceback from deep inside torch."""
    def bad(what: str) -> KernelnetError:
        return KernelnetError(f"{path} cannot resume this run: {what}")

    want = model.state_dict()
    got = state.get("model")
    if not isinstance(got, dict) or set(got) != set(want) or any(
            not isinstance(got[k], torch.Tensor) or got[k].shape != want[k].shape or got[k].dtype != want[k].dtype
            or not torch.isfinite(got[k]).all() for k in want):
        raise bad("its model weights are not this model's (names, shapes, dtypes) or not finite")
    for key in ("optimizer", "scheduler"):
        if not isinstance(state.get(key), dict):
            raise bad(f"its {key} state is not a dict")
    for key in ("epoch", "bad_epochs"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= config.epochs:
            raise bad(f"{key} {value!r} is not a whole number between 0 and {config.epochs}")
    history = state.get("history")
    if not isinstance(history, list) or len(history) > config.epochs or not all(
            isinstance(h, dict) and all(isinstance(h.get(k), (int, float)) and not isinstance(h.get(k), bool)
                                        for k in ("epoch", "val_loss", "seconds")) for h in history):
        raise bad("its history is not a list of epochs with numbers")
    best = state.get("best")
    if not isinstance(best, dict) or not isinstance(best.get("val_loss"), (int, float)) or \
            not isinstance(best.get("state"), dict) or set(best["state"]) != set(want):
        raise bad("its best-so-far record is not a validation loss and this model's weights")


def apply_resume(model: torch.nn.Module, optimizer: Any, scheduler: Any, state: dict[str, Any]) -> None:
    """Load a checked checkpoint's states; what torch still refuses becomes one line."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise KernelnetError(f"the checkpoint's optimizer or scheduler state does not fit this run: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
