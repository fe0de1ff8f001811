"""Least-squares fits behind :mod:`kernelnet.identify`: the interior sample, the design matrix of a k×k window,
the raw linear fit, the lifted + Gauss-Newton fit of ``abs`` and ``magnitude``, and the widening of an integer
target's kernel by the share of levels it writes exactly. Numpy only.

Shapes: ``patches`` (n, 15, 15) windows around sampled interior pixels, ``y`` (n,) their targets, a design
matrix (n, k² + 1) (the last column is the bias), weights (C, k² + 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from kernelnet.runtime.io.pairs import PairSet, Strip

MAX_RAW = 15
WIDEN_GAIN = 5e-4
"""A larger kernel must write this much more of the levels exactly to be chosen (integer targets)."""


def interior_rows(pairs: PairSet) -> Iterator[tuple[Strip, np.ndarray]]:
    """(strip, its rows whose 15×15 windows lie inside the image: indices into the strip) over the training
    pairs in a spread order, skipping planes too small for any interior."""
    m = MAX_RAW // 2
    for strip in pairs.iter_strips(pairs.spread(pairs.train)):
        if min(strip.height, strip.x.shape[1]) <= 2 * m:
            continue
        image_rows = strip.image_rows()
        inner = np.flatnonzero((image_rows >= m) & (image_rows < strip.height - m)) + strip.own.start
        if inner.size:
            yield strip, inner


def sample_interior(pairs: PairSet, clip: tuple[float, float] | None, rows: int, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    """(patches (n, 15, 15), targets (n,)) at uncensored interior pixels, a fixed-seed sample over the planes."""
    planes = len(pairs.train) * pairs.encoding.channels
    per_plane = max(256, rows // max(1, planes))
    rng = np.random.default_rng(seed)
    m = MAX_RAW // 2
    xs, ys, taken = [], [], 0
    for strip, inner in interior_rows(pairs):
        if taken >= rows:  # enough: a corpus of many small pairs is sampled, not read whole
            break
        x, y, height, width = strip.x, strip.y, strip.height, strip.x.shape[1]
        targets = y[inner, m:width - m]
        keep = np.ones(targets.shape, dtype=bool)
        if clip is not None:
            keep &= (targets > clip[0]) & (targets < clip[1])
        idx = np.flatnonzero(keep)
        share = -(-per_plane * inner.size // (height - 2 * m))  # this strip's part of the plane's sample
        idx = rng.choice(idx, min(share, idx.size), replace=False) if idx.size else idx
        r, c = np.unravel_index(idx, keep.shape)
        windows = np.lib.stride_tricks.sliding_window_view(x, (MAX_RAW, MAX_RAW))
        xs.append(windows[inner[r] - m, c])
        ys.append(targets.ravel()[idx])
        taken += len(idx)
    if not xs or not sum(len(v) for v in ys):
        from kernelnet.runtime.errors import KernelnetError

        raise KernelnetError(f"no usable pixels: pairs must be larger than {2 * m + 1}x{2 * m + 1} and not all "
                             "saturated")
    patches = np.concatenate(xs)
    if np.ptp(patches) == 0:
        from kernelnet.runtime.errors import KernelnetError

        raise KernelnetError("every input pixel holds the same value: no filter can be identified from constant "
                             "images")
    return patches, np.concatenate(ys)


def design(patches: np.ndarray, k: int) -> np.ndarray:
    m, r = MAX_RAW // 2, k // 2
    core = patches[:, m - r:m + r + 1, m - r:m + r + 1].reshape(len(patches), -1)
    return np.concatenate([core, np.ones((len(core), 1))], axis=1)


def fit_raw(d: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    w = np.linalg.lstsq(d, y, rcond=None)[0]
    return w, float(np.sqrt(np.mean((d @ w - y) ** 2)))


def lifted_factors(d: np.ndarray, y: np.ndarray, c: int) -> np.ndarray:
    """(c, n) factors of the PSD quadratic form M fitted to y² ≈ dᵀ M d."""
    n = d.shape[1]
    iu = np.triu_indices(n)
    scale = np.where(iu[0] == iu[1], 1.0, 2.0)
    gram, rhs = np.zeros((len(iu[0]),) * 2), np.zeros(len(iu[0]))
    for start in range(0, len(d), 4096):
        rows = d[start:start + 4096]
        feats = rows[:, iu[0]] * rows[:, iu[1]] * scale
        gram += feats.T @ feats
        rhs += feats.T @ (y[start:start + 4096] ** 2)
    coef = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    m = np.zeros((n, n))
    m[iu] = coef
    m = (m + m.T) / 2
    vals, vecs = np.linalg.eigh(m)
    order = np.argsort(vals)[::-1][:c]
    return (vecs[:, order] * np.sqrt(np.clip(vals[order], 0, None))).T


def predict(d: np.ndarray, w: np.ndarray, combine: str) -> np.ndarray:
    if combine == "magnitude":
        return np.hypot(d @ w[0], d @ w[1])
    z = d @ w[0]
    return np.abs(z) if combine == "abs" else z


def fit_quadratic(d: np.ndarray, y: np.ndarray, combine: str, steps: int = 8) -> tuple[np.ndarray, float]:
    """Lifted start, then Gauss-Newton on y ≈ |d·w| (abs) or √((d·a)² + (d·b)²) (magnitude)."""
    c, n = 2 if combine == "magnitude" else 1, d.shape[1]
    rows = max(4000, 6 * n * (n + 1) // 2)  # the lifted problem has n(n+1)/2 unknowns; Gauss-Newton uses all rows
    w = lifted_factors(d[:rows], y[:rows], c)
    for _ in range(steps):
        if combine == "abs":
            sign = np.sign(d @ w[0])
            sign[sign == 0] = 1
            w = np.linalg.lstsq(d * sign[:, None], y, rcond=None)[0][None]
        else:
            a, b = d @ w[0], d @ w[1]
            f = np.maximum(np.hypot(a, b), 1e-12)
            jac = np.concatenate([d * (a / f)[:, None], d * (b / f)[:, None]], axis=1)
            step = np.linalg.lstsq(jac, y - f, rcond=None)[0]
            w = w + step.reshape(2, -1)
    return w, float(np.sqrt(np.mean((predict(d, w, combine) - y) ** 2)))


def exact_share(pred: np.ndarray, y: np.ndarray) -> float:
    """The share of levels ``y`` that rounding ``pred`` gives exactly, for the best rounding rule."""
    return max(float(np.mean(rule(pred) == y)) for rule in (np.rint, np.floor, np.trunc))


def widen(pairs: PairSet, clip: tuple[float, float] | None, sample: tuple[np.ndarray, np.ndarray], k: int,
          candidates: list[dict[str, Any]], grow: bool = True) -> tuple[int, np.ndarray, float]:
    """For integer targets, the raw kernel size that writes the most levels right, and its weights fitted on
    :data:`REFIT_ROWS` pixels (:func:`refit_raw`) and their RMS on ``sample`` (patches, y): a Gaussian's tails reach
    3–4 σ, and a kernel cut at 2 σ already sits at the rounding floor's RMS with a few % of its levels one off.
    Sizes from ``k`` up are fitted while the exact share grows by more than :data:`WIDEN_GAIN` (two sizes without
    that end the search); the smallest within :data:`WIDEN_GAIN` of the best wins. ``grow=False`` (a size the user
    fixed): ``k`` refitted only."""
    patches, y = sample
    fits: dict[int, tuple[np.ndarray, float, float]] = {}
    best, flat = k, 0
    for size in range(k, MAX_RAW + 1 if grow else k + 1, 2):
        if fits and (fits[best][2] >= 1.0 - 1e-5 or flat >= 2):
            break
        w = refit_raw(pairs, clip, size)
        pred = design(patches, size) @ w.ravel()
        fits[size] = (w, float(np.sqrt(np.mean((pred - y) ** 2))), exact_share(pred, y))
        candidates.append({"combine": "raw", "kernel_size": size, "rms": fits[size][1], "exact_share": fits[size][2],
                           "refit": True})
        if size == k or fits[size][2] > fits[best][2] + WIDEN_GAIN:
            best, flat = size, 0
        else:
            flat += 1
    top = max(share for _, _, share in fits.values())
    chosen = min(size for size, (_, _, share) in fits.items() if share >= top - WIDEN_GAIN)
    return chosen, fits[chosen][0], fits[chosen][1]


REFIT_ROWS = 600_000
"""Interior pixels a raw kernel of integer targets is fitted on again (7.5× the search's sample)."""


def refit_raw(pairs: PairSet, clip: tuple[float, float] | None, k: int, rows: int = REFIT_ROWS) -> np.ndarray:
    """Weights (1, k² + 1) of the raw k×k fit on up to ``rows`` uncensored interior pixels, by normal equations
    accumulated strip by strip (the search's sample leaves the coefficients noisy enough that a few levels per
    thousand round the other way; the design matrix of a million rows is never held whole)."""
    m, r = MAX_RAW // 2, k // 2
    n = k * k + 1
    gram, rhs, taken = np.zeros((n, n)), np.zeros(n), 0
    for strip, inner in interior_rows(pairs):
        if taken >= rows:
            break
        x, y, width = strip.x, strip.y, strip.x.shape[1]
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k))
        for start in range(0, inner.size, 32):  # 32 rows at a time: a few MB of design matrix
            chunk = inner[start:start + 32]
            targets = y[chunk, m:width - m].ravel()
            keep = np.ones(targets.shape, dtype=bool) if clip is None else (targets > clip[0]) & (targets < clip[1])
            d = windows[chunk - r, m - r:width - m - r].reshape(-1, k * k)[keep]
            d = np.concatenate([d, np.ones((len(d), 1))], axis=1)
            gram += d.T @ d
            rhs += d.T @ targets[keep]
            taken += len(d)
    return np.linalg.lstsq(gram, rhs, rcond=None)[0].reshape(1, -1)
