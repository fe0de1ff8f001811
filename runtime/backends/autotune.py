"""Session autotuning: try onnxruntime settings, keep the fastest that still gives the same answer, store it.

Candidates are the product of graph optimization levels, intra-op thread counts, execution modes, spinning and
tile shapes. Each is timed with :mod:`kernelnet.runtime.bench` at the tuning sizes (score: the sum of median
milliseconds per megapixel over the sizes), and its output is compared with the default session's — a
candidate that changes the result by more than ``atol`` is rejected. The winner is written to
``<model>.tune.json`` (:mod:`kernelnet.runtime.backends.session`), which :func:`kernelnet.runtime.load` then uses.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.bench import make_input, time_calls
from kernelnet.runtime.describe import resolve_model_path
from kernelnet.runtime.model import Model, TileArg
from kernelnet.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner
from kernelnet.runtime.backends.session import EXECUTION_MODES, OPT_LEVELS, SessionConfig, Tuned, write_tuned

DEFAULT_TUNE_SIZES: tuple[tuple[int, int], ...] = ((1080, 1920),)


def thread_choices(max_threads: int | None = None) -> tuple[int, ...]:
    """1, 2, 4, … up to ``max_threads`` (default: the CPU count), always including ``max_threads``."""
    top = max(1, max_threads or os.cpu_count() or 1)
    return tuple(sorted({*(2**i for i in range(top.bit_length()) if 2**i <= top), top}))


@dataclass(frozen=True)
class Candidate:
    session: SessionConfig
    tile: TileArg = None

    def label(self) -> str:
        tile = "auto" if self.tile is None else (
            "x".join(map(str, self.tile)) if isinstance(self.tile, tuple) else str(self.tile))
        return f"{self.session.label()} tile={tile}"


def candidates(levels: tuple[str, ...] = OPT_LEVELS, threads: tuple[int, ...] | None = None,
               modes: tuple[str, ...] = EXECUTION_MODES, spinning: tuple[bool, ...] = (True,),
               tiles: tuple[TileArg, ...] = (None,)) -> list[Candidate]:
    """Every combination of the given settings."""
    return [Candidate(SessionConfig(level, t, 0, mode, spin), tile)
            for level, t, mode, spin, tile in itertools.product(levels, threads or thread_choices(), modes,
                                                                  spinning, tiles)]


@dataclass
class TuneResult:
    """The winner, every candidate's timings, and where the choice was stored (``None``: not saved)."""

    best: Candidate
    rows: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None


def autotune(model_path: str | Path, cands: list[Candidate] | None = None,
             sizes: tuple[tuple[int, int], ...] = DEFAULT_TUNE_SIZES, warmup: int = 2, min_reps: int = 5,
             min_seconds: float = 0.3, atol: float = 1e-5, save: bool = True,
             progress: Callable[[str], None] | None = None) -> TuneResult:
    """Time ``cands`` (default: :func:`candidates`) on ``model_path`` and store the fastest next to it."""
    path = resolve_model_path(model_path)
    if path.suffix != ".onnx":
        raise KernelnetError(f"autotuning applies to onnxruntime sessions: {path.name} is not an .onnx file")
    cands = cands or candidates()
    baseline = Model(OnnxRuntimeRunner(path, SessionConfig()))
    inputs = [make_input((1, 1, h, w), baseline.input_dtype) for h, w in sizes]
    expected = [baseline(x) for x in inputs]
    scale = max(1.0, max(float(np.abs(e).max()) for e in expected))
    rows: list[dict[str, Any]] = []
    best: tuple[float, Candidate] | None = None
    for cand in cands:
        if progress is not None:
            progress(cand.label())
        model = Model(OnnxRuntimeRunner(path, cand.session), tile=cand.tile)
        row: dict[str, Any] = {"candidate": cand.label()}
        score, ok = 0.0, True
        for (h, w), x, want in zip(sizes, inputs, expected):
            err = float(np.abs(model(x) - want).max())
            ok = ok and err <= atol * scale
            p50 = float(np.median(time_calls(model, x, warmup, min_reps, min_seconds))) * 1e3
            row[f"{h}x{w}_ms"] = p50
            score += p50 / (h * w / 1e6)
        row.update(ms_per_mpix=score / len(sizes), ok=ok)
        rows.append(row)
        model.close()
        if ok and (best is None or score < best[0]):
            best = (score, cand)
    if best is None:
        raise KernelnetError("no candidate reproduced the default session's output")
    winner = best[1]
    for row in rows:
        row["best"] = row["candidate"] == winner.label()
    saved = None
    if save:
        tile = winner.tile if winner.tile is None or isinstance(winner.tile, tuple) else (winner.tile, winner.tile)
        saved = write_tuned(path, Tuned(winner.session, tile), {"sizes": ["x".join(map(str, s)) for s in sizes],
                                                               "candidates": rows})
    return TuneResult(winner, rows, saved)
