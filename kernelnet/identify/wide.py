"""Raw kernels wider than the search's 15×15 window (17×17 up to 31×31): a Gaussian of σ = 4 cut at 3 σ is 25×25.
Numpy only.

One pass accumulates the normal equations of the widest window, 31×31 plus the bias, over interior pixels whose
31×31 window lies inside the image (strip by strip: the design matrix is never held whole). The windows are
nested and centred, so every smaller size's normal equations are a sub-block of that Gram matrix: one pass gives
the fit of every size 17, 19, …, 31. A second, smaller pass measures each fit's residual on pixels directly (the
normal-equation form of the residual cancels catastrophically near float32 resolution).

Shapes: weights (1, k² + 1) (the last column is the bias), as :mod:`kernelnet.identify.fit` returns them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from kernelnet.identify.fit import MAX_RAW, exact_share
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import MAX_KERNEL

WIDE_SIZES = tuple(range(MAX_RAW + 2, MAX_KERNEL + 1, 2))
GRAM_ROWS = 60_000
"""Interior pixels the 962 × 962 normal equations are accumulated over (≈ 6·10¹⁰ flops: a few seconds)."""
CHECK_ROWS = 20_000
"""Interior pixels each size's residual is measured on."""


def _wide_rows(pairs: PairSet, clip: tuple[float, float] | None, rows: int, check: bool = False
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(windows (n, 31, 31), targets (n,)) of uncensored interior pixels, up to ``rows``, a few image rows at a
    time: every ``step``-th interior row of every training plane, the step (at least 2) spreading
    :data:`GRAM_ROWS` over all of them; the fit reads rows 0, step, 2·step…, the residual pass (``check``) the rows
    half a step further, so the two never share a row."""
    m = MAX_KERNEL // 2
    per_plane = -(-GRAM_ROWS // max(1, len(pairs.train) * pairs.encoding.channels))
    taken = 0
    for strip in pairs.iter_strips(pairs.spread(pairs.train)):
        if taken >= rows:
            return
        x, y, height, width = strip.x, strip.y, strip.height, strip.x.shape[1]
        if min(height, width) <= 2 * m:
            continue
        step = max(2, (height - 2 * m) * (width - 2 * m) // per_plane)
        image_rows = strip.image_rows()
        inner = np.flatnonzero((image_rows >= m) & (image_rows < height - m)
                               & ((image_rows - m) % step == (step // 2 if check else 0))) + strip.own.start
        windows = np.lib.stride_tricks.sliding_window_view(x, (MAX_KERNEL, MAX_KERNEL))
        for start in range(0, inner.size, 8):
            chunk = inner[start:start + 8]
            targets = y[chunk, m:width - m].ravel()
            keep = np.ones(targets.shape, dtype=bool) if clip is None else (targets > clip[0]) & (targets < clip[1])
            d = windows[chunk - m, :width - 2 * m].reshape(-1, MAX_KERNEL, MAX_KERNEL)[keep]
            taken += len(d)
            yield d, targets[keep]
            if taken >= rows:
                return


def _columns(k: int) -> np.ndarray:
    """Indices of the centred k×k block (row-major) and the bias in the 31×31 + 1 design."""
    m, r = MAX_KERNEL // 2, k // 2
    grid = np.arange(MAX_KERNEL * MAX_KERNEL).reshape(MAX_KERNEL, MAX_KERNEL)
    return np.append(grid[m - r:m + r + 1, m - r:m + r + 1].ravel(), MAX_KERNEL * MAX_KERNEL)


def _with_bias(windows: np.ndarray) -> np.ndarray:
    flat = windows.reshape(len(windows), -1).astype(np.float64)
    return np.concatenate([flat, np.ones((len(flat), 1))], axis=1)


def fit_wide(pairs: PairSet, clip: tuple[float, float] | None, sizes: tuple[int, ...] = WIDE_SIZES
             ) -> dict[int, tuple[np.ndarray, float, float]]:
    """{k: (weights (1, k² + 1), residual RMS, share of levels written exactly (integer targets; else nan))} for
    each wide size, fitted on :data:`GRAM_ROWS` interior pixels and measured on :data:`CHECK_ROWS` others. Empty
    when no training image is wider and taller than 31 pixels."""
    n = MAX_KERNEL * MAX_KERNEL + 1
    gram, rhs, seen = np.zeros((n, n)), np.zeros(n), 0
    for windows, targets in _wide_rows(pairs, clip, GRAM_ROWS):
        d = _with_bias(windows)
        gram += d.T @ d
        rhs += d.T @ targets
        seen += len(d)
    if seen == 0:
        return {}
    weights = {}
    for k in sizes:
        cols = _columns(k)
        weights[k] = np.linalg.lstsq(gram[np.ix_(cols, cols)], rhs[cols], rcond=None)[0]
    sq = dict.fromkeys(sizes, 0.0)
    preds: dict[int, list[np.ndarray]] = {k: [] for k in sizes}
    ys, count = [], 0
    for windows, targets in _wide_rows(pairs, clip, CHECK_ROWS, check=True):
        d = _with_bias(windows)
        for k in sizes:
            pred = d[:, _columns(k)] @ weights[k]
            sq[k] += float(np.sum((pred - targets) ** 2))
            preds[k].append(pred)
        ys.append(targets)
        count += len(targets)
    integer = pairs.encoding.levels is not None
    y = np.concatenate(ys) if ys else np.zeros(0)
    out = {}
    for k in sizes:
        share = exact_share(np.concatenate(preds[k]), y) if integer and count else float("nan")
        out[k] = (weights[k].reshape(1, -1), float(np.sqrt(sq[k] / max(count, 1))), share)
    return out
