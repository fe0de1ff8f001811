"""The rank rung of identification: erosion, dilation, median filters and morphological gradients (a footprint's
min, max, median or max − min) for black boxes no linear filter reproduces. Numpy only.

Order statistics commute with increasing affine maps (the range with positive scalings), so each candidate — op
(min, max, median, range) × footprint
(square, cross) × size 3, 5, …, 15, smallest first — is scored on interior pixels (border-free) after the one
affine map ``y ≈ a · rank + c`` that best carries the inputs' units to the targets' (a > 0; 255 for 8-bit levels
of unit inputs). The first that writes ≥ 99.9% of integer levels exactly (float targets: whose residual reaches
the floor) wins; its border is then the one that matches the outer ring best.

Shapes: ``patches`` (n, 15, 15) interior windows in input units, ``y`` (n,) targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.identify.fit import MAX_RAW, sample_interior
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import FOOTPRINTS, RANKS, FilterSpec, OutputStage, footprint_of

RANK_ROWS = 20_000
EXACT_SHARE = 0.999
"""Integer targets: the share of levels a rank candidate must write exactly (the verdict's own bar)."""
RANK_BORDERS = ("replicate", "symmetric", "reflect", "zeros", "reflect_symmetric")
"""Candidate borders, the commonest first (OpenCV's default erode / dilate / medianBlur behave as replicate)."""


def order_statistic(patches: np.ndarray, footprint: np.ndarray, op: str) -> np.ndarray:
    """``op`` over the centred ``footprint`` taps of each (15, 15) patch: (n,)."""
    m, r = MAX_RAW // 2, footprint.shape[0] // 2
    taps = patches[:, m - r:m + r + 1, m - r:m + r + 1].reshape(len(patches), -1)[:, footprint.ravel()]
    if op == "min":
        return taps.min(axis=1)
    if op == "max":
        return taps.max(axis=1)
    if op == "range":
        return taps.max(axis=1) - taps.min(axis=1)
    return np.partition(taps, taps.shape[1] // 2, axis=1)[:, taps.shape[1] // 2]


def affine(pred: np.ndarray, y: np.ndarray, levels: float | None, in_levels: float | None) -> tuple[float, float]:
    """(a, c) of y ≈ a · pred + c, snapped to the plain ratio of the target's and the input's levels (and c to 0)
    when those explain the data as well."""
    design = np.stack([pred, np.ones_like(pred)], axis=1)
    a, c = np.linalg.lstsq(design, y, rcond=None)[0]
    if levels is not None and in_levels is not None:
        plain = levels if abs(a - levels) < 0.01 * levels else a
        if np.mean(np.rint(plain * pred) == y) >= np.mean(np.rint(a * pred + c) == y):
            return float(plain), 0.0
    elif abs(a - 1.0) < 1e-6 and abs(c) < 1e-6:
        return 1.0, 0.0
    return float(a), float(c)


def search_rank(pairs: PairSet, floor: float, in_levels: float | None, size: int | None = None,
                candidates: list[dict[str, Any]] | None = None
                ) -> tuple[str, np.ndarray, float, float, float] | None:
    """(op, footprint (k, k) bool, a, c, residual RMS) of the first rank candidate that reaches the data, or
    None."""
    patches, y = sample_interior(pairs, None, RANK_ROWS, seed=2)
    levels = pairs.encoding.levels
    for k in [size] if size else range(3, MAX_RAW + 1, 2):
        for op in RANKS:
            for shape in FOOTPRINTS:
                footprint = footprint_of(shape, k)
                pred = order_statistic(patches, footprint, op)
                a, c = affine(pred, y, levels, in_levels)
                fitted = a * pred + c
                rms = float(np.sqrt(np.mean((fitted - y) ** 2)))
                share = float(np.mean(np.rint(fitted) == y)) if levels is not None else None
                if candidates is not None:
                    candidates.append({"combine": op, "footprint": shape, "kernel_size": k, "rms": rms,
                                       "exact_share": share})
                if a > 0 and (share >= EXACT_SHARE if share is not None else rms <= 1.25 * floor):
                    return op, footprint, a, c, rms
    return None


def rank_spec(op: str, footprint: np.ndarray, a: float, c: float, border: str, pairs: PairSet,
              clip: tuple[float, float] | None, rounding: str | None = "half_even") -> FilterSpec:
    """The rank filter with the targets' output stage (levels: clip to the format's range, round by ``rounding``,
    half even unless the user fixed another)."""
    bits = pairs.encoding.bits
    if pairs.encoding.levels is not None and clip is not None and rounding is not None:
        stage = OutputStage(a, c, clip, rounding, bits)
    else:
        stage = OutputStage(a, c)
    return FilterSpec(footprint[None].astype(np.float64), None, op, border, output=stage)
