"""Exact integer gradient magnitudes: a magnitude black box with integer targets whose two kernels are a named
derivative pair (Sobel, Scharr, Prewitt: the kernel and its transpose) times a simple scale per input level —
ffmpeg's ``sobel`` is trunc(√(Gx² + Gy²)) of the integer responses. Numpy only.

A least-squares fit of such a box is biased by the rounding (truncation lowers every level by half a level on
average, so the fitted scale comes out 0.5% low) and never writes its levels exactly. Here each named pair is
scaled by the least-squares scale snapped to p/q per level (q ≤ 16), and kept when it writes more levels of the
interior sample exactly than the fit. Its output stage then gets a fine grid (:data:`MAGNITUDE_GRID`): with
integer responses a value is either an integer — which float32 noise may put just below, and truncation would
then lose a level — or at least 1/(2·2048) away from one (√(n² − 1) ≥ n − 1/(2n) for n ≤ 2048), so snapping to
1/8192 restores the integers and moves nothing else across one.

Shapes: ``patches`` (n, 15, 15), ``y`` (n,), weights (2, k² + 1) per unit input (the last column is the bias).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.identify_fit import design, exact_share

PAIRS = ("sobel", "scharr", "prewitt")
MAGNITUDE_GRID = 8192
DENOMINATORS = range(1, 17)


def snapped_share(pred: np.ndarray, y: np.ndarray) -> float:
    """:func:`exact_share` of ``pred`` snapped to the grid 1/:data:`MAGNITUDE_GRID` first."""
    return exact_share(np.round(pred * MAGNITUDE_GRID) / MAGNITUDE_GRID, y)


def named_magnitude(patches: np.ndarray, y: np.ndarray, k: int, w: np.ndarray, in_levels: float,
                    candidates: list[dict[str, Any]]) -> np.ndarray | None:
    """Weights of the named pair × snapped scale that writes the most levels of the sample (patches, y) exactly,
    if that beats the fitted weights ``w`` (2, k² + 1) of a k×k magnitude; else ``None``."""
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
            share = snapped_share(level_scale * in_levels * response, y)
            candidates.append({"combine": "magnitude", "kernel_size": k, "named": name,
                               "scale_per_level": level_scale, "exact_share": share})
            if best is None or share > best[0]:
                weights = np.zeros_like(w)
                weights[:, :-1] = level_scale * in_levels * pair
                best = (share, weights)
    if best is None or best[0] <= fitted:
        return None
    return best[1]
