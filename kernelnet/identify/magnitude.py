"""Exact integer gradient magnitudes: a magnitude black box with integer targets whose two kernels are a named
derivative pair (Sobel, Scharr, Prewitt: the kernel and its transpose) times a simple scale per input level —
ffmpeg's ``sobel`` is trunc(√(Gx² + Gy²)) of the integer responses. Numpy only.

A least-squares fit of such a box is biased by the rounding (truncation lowers every level by half a level on
average, so the fitted scale comes out 0.5% low) and never writes its levels exactly. Here each named pair is
scaled by the least-squares scale snapped to p/q per level (q ≤ 16), and kept when it writes more levels of the
interior sample exactly than the fit. Its output stage then gets a grid (:func:`magnitude_grid`): with integer
responses a magnitude below ``top`` (the largest level written) is either an integer — which float32 noise may put
just below, and truncation would then lose a level — or more than 1/(2·top + 1) away from one (n − √(n² − 1) >
1/(2n) and √(n² + 1) − n > 1/(2n + 1)). A grid of 1/g with g = 4·2^⌈log₂(top + 1)⌉ snaps what lies within
1/(2g) of an integer onto it and nothing else. The float32 bound of the computation does not promise that the
noise stays within 1/(2g) (for Sobel on 8-bit levels it allows 2·10⁻³ against 1/(2g) = 4.9·10⁻⁴); the noise
measured is below 10⁻⁴, and the held-out pairs check the result like any other.

Shapes: ``patches`` (n, 15, 15), ``y`` (n,), weights (2, k² + 1) per unit input (the last column is the bias).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.identify.fit import design, exact_share

PAIRS = ("sobel", "scharr", "prewitt")
DENOMINATORS = range(1, 17)
MAX_GRID = 16384


def magnitude_grid(top: float) -> int | None:
    """The output grid for integer magnitudes of levels up to ``top`` (see the module docstring), ``None`` above
    ``MAX_GRID / 4`` levels (16-bit magnitudes: float32 cannot hold them that finely)."""
    grid = 4 * (1 << int(np.ceil(np.log2(top + 1))))
    return grid if grid <= MAX_GRID else None


def snapped_share(pred: np.ndarray, y: np.ndarray, grid: int) -> float:
    """:func:`exact_share` of ``pred`` snapped to the grid 1/``grid`` first."""
    return exact_share(np.round(pred * grid) / grid, y)


def named_magnitude(patches: np.ndarray, y: np.ndarray, k: int, w: np.ndarray, in_levels: float, grid: int,
                    candidates: list[dict[str, Any]]) -> np.ndarray | None:
    """Weights of the named pair × snapped scale that writes the most levels of the sample (patches, y) exactly
    on the output grid 1/``grid``, if that beats the fitted weights ``w`` (2, k² + 1) of a k×k magnitude; else
    ``None``."""
    from kernelnet.filters import NAMED_KERNELS
    from kernelnet.runtime.align import embed_center

    d = design(patches, k)
    fitted = float(exact_share(np.hypot(d @ w[0], d @ w[1]), y))
    best: tuple[float, np.ndarray] | None = None
    for name in PAIRS:
        kernel = np.asarray(NAMED_KERNELS[name], dtype=np.float64)
        if kernel.shape[0] > k:
            continue
        pair = embed_center(np.stack([kernel, kernel.T]), k).reshape(2, -1)
        response = np.hypot(d[:, :-1] @ pair[0], d[:, :-1] @ pair[1])  # per unit input
        scale = float(response @ y / max(float(response @ response), 1e-30)) / in_levels  # per input level
        tried: set[float] = set()
        for q in DENOMINATORS:
            level_scale = round(scale * q) / q
            if level_scale <= 0 or abs(level_scale - scale) > 0.02 * scale or level_scale in tried:
                continue
            tried.add(level_scale)
            share = snapped_share(level_scale * in_levels * response, y, grid)
            candidates.append({"combine": "magnitude", "kernel_size": k, "named": name,
                               "scale_per_level": level_scale, "exact_share": share})
            if best is None or share > best[0]:
                weights = np.zeros_like(w)
                weights[:, :-1] = level_scale * in_levels * pair
                best = (share, weights)
    if best is None or best[0] <= fitted:
        return None
    return best[1]
