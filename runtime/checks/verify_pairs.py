"""``kernelnet verify MODEL --data IN --targets OUT``: every backend against the black box's own files.

Each backend filters every matched input (as ``kernelnet apply`` reads it) and is compared with its target at
the target's bit depth: the share of pixels reproduced exactly (integer targets), the largest level error and the
PSNR against the noise floor — the rounding floor (MSE 1/12 level², 58.9 dB for 8 bits) for integer targets,
100 dB for float ones. :func:`reproduces` is the one verdict (``kernelnet train``'s, verify's and the pipeline's):
integer targets need 99.9% of their levels equal (``--min-exact``, ``--exact`` for all) and the floor; an fp32
backend that misses it fails (exit 1); int8 and fp16 backends cannot reach a rounding floor by construction, so
their rows are reported, not required. Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelnet.runtime.io.pairs import PairSet

FLOAT_FLOOR_DB = 100.0
MIN_EXACT = 0.999
"""Integer targets are reproduced when at least this share of their levels is written exactly."""


def floor_db(pairs: PairSet) -> float:
    levels = pairs.encoding.levels
    return FLOAT_FLOOR_DB if levels is None else 10.0 * math.log10(levels * levels * 12.0)


def reproduces(exact_fraction: float | None, psnr_db: float, floor: float, min_exact: float = MIN_EXACT) -> bool:
    """The one verdict of train, verify and pipeline: integer targets need ``min_exact`` of their levels written
    exactly and the PSNR at the rounding floor (a few edge pixels off by 78 levels fail, however rare); float
    targets need the PSNR at the floor (100 dB)."""
    if exact_fraction is None:
        return psnr_db >= floor
    return exact_fraction >= min_exact and psnr_db >= floor


@dataclass
class PairCheck:
    """One backend over the pairs."""

    backend: str
    pairs: int
    exact_fraction: float | None
    max_error: float
    psnr_db: float
    floor_db: float
    required: bool = True
    min_exact: float = MIN_EXACT

    @property
    def ok(self) -> bool:
        return reproduces(self.exact_fraction, self.psnr_db, self.floor_db, self.min_exact) or not self.required

    def why(self) -> str:
        """Why the check failed, in one clause."""
        if self.exact_fraction is not None and self.exact_fraction < self.min_exact:
            return (f"{100 * self.exact_fraction:.3f}% of levels equal, below {100 * self.min_exact:g}% "
                    f"(max error {self.max_error:g})")
        return f"PSNR {self.psnr_db:.2f} dB below the floor {self.floor_db:.2f} dB (max error {self.max_error:g})"

    def to_dict(self) -> dict[str, Any]:
        return {"check": f"{self.backend} ~ targets", "pairs": self.pairs, "exact_fraction": self.exact_fraction,
                "min_exact": self.min_exact if self.exact_fraction is not None else None,
                "max_error": self.max_error, "psnr_db": self.psnr_db, "floor_db": self.floor_db,
                "ok": self.ok if self.required else "info", **({} if self.ok else {"why": self.why()})}


@dataclass
class PairScore:
    """How predictions compare with the targets of some pairs: MSE, PSNR (peak: the integer span or the targets'
    range), exact share (integer targets; ``None`` for floats) and the largest error."""

    pairs: int
    mse: float
    psnr_db: float
    exact_fraction: float | None
    max_error: float
    peak: float


@dataclass
class ScoreSums:
    """What :class:`PairScore` is made of, as sums that add up across shards of pairs."""

    pairs: int = 0
    squared: float = 0.0
    exact: float = 0.0
    count: float = 0.0
    worst: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, other: ScoreSums) -> ScoreSums:
        return ScoreSums(self.pairs + other.pairs, self.squared + other.squared, self.exact + other.exact,
                         self.count + other.count, max(self.worst, other.worst), min(self.lo, other.lo),
                         max(self.hi, other.hi))

    def score(self, levels: float | None) -> PairScore:
        """The figures, for targets of ``levels`` (``None``: float targets)."""
        mse = self.squared / max(self.count, 1)
        peak = levels or (self.hi - self.lo) or 1.0
        psnr = math.inf if mse == 0 else 10.0 * math.log10(peak * peak / mse)
        exact = self.exact / max(self.count, 1) if levels is not None else None
        return PairScore(self.pairs, mse, psnr, exact, self.worst, peak)


def score_sums(pairs: PairSet, which: list[Any], predict: Callable[[np.ndarray], np.ndarray]) -> ScoreSums:
    """The sums of :func:`score_pairs`."""
    sums = ScoreSums(len(which))
    for strip in pairs.iter_strips(which):  # strips with context: a 10000² pair is not held as float64 planes
        y = strip.y[strip.own]
        diff = np.abs(np.asarray(predict(strip.x), dtype=np.float64)[strip.own] - y)
        sums.squared += float(np.sum(diff ** 2))
        sums.exact += float(np.count_nonzero(diff == 0))
        sums.count += y.size
        sums.worst = max(sums.worst, float(diff.max()))
        sums.lo, sums.hi = min(sums.lo, float(y.min())), max(sums.hi, float(y.max()))
    return sums


def score_pairs(pairs: PairSet, which: list[Any], predict: Callable[[np.ndarray], np.ndarray]) -> PairScore:
    """Score ``predict`` (x (H, W) float64 in [0, 1] → (H, W)) on the pairs ``which`` of ``pairs``, one strip at a
    time (``predict`` sees the strip with its context rows: a same-size filter of half-width ≤ 16)."""
    return score_sums(pairs, which, predict).score(pairs.encoding.levels)


def verify_pairs(backends: list[Any], pairs: PairSet, min_exact: float = MIN_EXACT) -> list[PairCheck]:
    """Compare every backend (``name``, ``model``) with the targets of ``pairs`` (all of them); integer targets
    need ``min_exact`` of their levels equal (:func:`reproduces`)."""
    floor = floor_db(pairs)
    rows = []
    for backend in backends:
        score = score_pairs(pairs, pairs.pairs, lambda x: backend.model(x.astype(np.float32)[None, None])[0, 0])
        required = getattr(backend, "precision", "fp32") in ("fp32", "tf32")
        rows.append(PairCheck(backend.name, score.pairs, score.exact_fraction, score.max_error, score.psnr_db, floor,
                              required, min_exact))
    return rows
