"""Fits that put a linear model inside the rounding intervals of integer targets (numpy, SciPy).

A target level y written by rounding ``rule`` says the exact value v lay in [y + lo, y + hi) — floor: [y, y + 1),
half rules: [y − ½, y + ½] — a much sharper statement than "v ≈ y" that least squares reads from it: taps fitted by
least squares to 8-bit levels stay ~1e-4 off, while a program computing in 16 bits needs them within ~1e-6 for its
8-bit files to come out equal. Two fits use the intervals (saturated targets, at 0 or the top level, say only
"beyond", and are left out):

* :func:`interval_kernel` — a k×k kernel (symmetric under the square's eight flips and turns when the least-squares
  one nearly is) by linear programming: the largest margin t with y + lo + t ≤ D·w ≤ y + hi − t (HiGHS);
* :func:`refine_taps` — a 1-D kernel g applied n times along each axis (bilinear in g, so no LP): Powell on the
  summed distance outside the intervals, from the least-squares taps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from kernelnet.identify.fit import design

SCIPY_MODES = {"replicate": "nearest", "symmetric": "reflect", "reflect": "mirror", "zeros": "constant"}
REFINE_EVALS = 1500
"""Powell's budget of loss evaluations for :func:`refine_taps`."""
LP_ROWS = 20_000
"""Interior pixels the LP reads (two inequalities each)."""
LP_SECONDS = 10.0
"""HiGHS's time limit; a refinement that runs out keeps the least-squares kernel."""


def bounds(rule: str) -> tuple[float, float]:
    """(lo, hi): the exact values ``rule`` rounds to level y lie in [y + lo, y + hi]."""
    return (0.0, 1.0) if rule == "floor" else (-0.5, 0.5)


def _hinge(g: np.ndarray, n: int, mode: str, rule: str, fit: list[tuple[np.ndarray, np.ndarray]], top: float
           ) -> float:
    """How far the linear chain (``g`` n times along each axis, on levels) lies outside the intervals that the
    rounding ``rule`` maps to each unsaturated target level, summed."""
    lo_off, hi_off = bounds(rule)
    total = 0.0
    for x, y in fit:
        v = x
        for axis in (1, 0):
            for _ in range(n):
                v = ndimage.correlate1d(v, g, axis=axis, mode=mode)
        inside = (y > 0) & (y < top)
        total += float(np.sum(np.maximum(y + lo_off - v, 0.0)[inside]) + np.sum(np.maximum(v - (y + hi_off), 0.0)[inside]))
    return total


def refine_taps(g: np.ndarray, n: int, border: str, rule: str, planes: list[tuple[np.ndarray, np.ndarray]],
                in_levels: float, top: float) -> np.ndarray:
    """``g`` (sum 1; symmetric when it nearly is) moved so that the linear chain falls inside the intervals its
    final rounding ``rule`` maps to the target levels (Powell on the summed hinge; a least-squares fit of 8-bit
    levels leaves taps ~1e-4 off, and a 16-bit program's levels need ~1e-6)."""
    fit = [(x * in_levels, y) for x, y in planes]
    mode = SCIPY_MODES[border]
    c = len(g) // 2
    symmetric = np.abs(g - g[::-1]).max() <= 0.01 * np.abs(g).max()

    def taps(a: np.ndarray) -> np.ndarray:
        out = np.concatenate([a[::-1], [0.0], a]) if symmetric else np.insert(a, c, 0.0)
        out[c] = 1.0 - float(out.sum())  # the taps sum to 1: a blur keeps the levels' scale
        return out

    start = g[c + 1:] if symmetric else np.delete(g, c)
    fit_result = optimize.minimize(lambda a: _hinge(taps(a), n, mode, rule, fit, top), start, method="Powell",
                                   options={"xtol": 1e-9, "ftol": 1e-12, "maxfev": REFINE_EVALS})
    best = taps(fit_result.x)
    return best if _hinge(best, n, mode, rule, fit, top) <= _hinge(g / g.sum(), n, mode, rule, fit, top) else g




def _orbits(k: int) -> np.ndarray:
    """(k, k) int: the index of each tap's orbit under the square's eight symmetries."""
    c = k // 2
    index: dict[tuple[int, int], int] = {}
    out = np.empty((k, k), dtype=np.int64)
    for i in range(k):
        for j in range(k):
            a, b = sorted((abs(i - c), abs(j - c)))
            out[i, j] = index.setdefault((a, b), len(index))
    return out


def interval_kernel(kernel: np.ndarray, patches: np.ndarray, y: np.ndarray, rule: str, in_levels: float,
                    top: float) -> np.ndarray:
    """The k×k kernel (target units per input unit, like ``kernel``) with the largest margin inside ``rule``'s
    intervals on ``patches`` (n, 15, 15) / ``y`` (n,); dihedral-symmetric when ``kernel`` nearly is. ``kernel``
    itself when the LP fails."""
    from scipy.optimize import linprog

    k = kernel.shape[-1]
    inside = (y > 0) & (y < top)
    d, y = design(patches[inside][:LP_ROWS], k)[:, :-1] * in_levels, y[inside][:LP_ROWS]
    flips = [kernel, kernel.T, kernel[::-1], kernel[:, ::-1]]
    symmetric = max(float(np.abs(f - kernel).max()) for f in flips) <= 0.01 * float(np.abs(kernel).max())
    orbits = _orbits(k).ravel() if symmetric else np.arange(k * k)
    count = int(orbits.max()) + 1
    basis = np.zeros((k * k, count))
    basis[np.arange(k * k), orbits] = 1.0
    a = d @ basis
    lo, hi = bounds(rule)
    ones = np.ones((len(y), 1))
    cost = np.zeros(count + 1)
    cost[-1] = -1.0  # maximise the margin
    result = linprog(cost, A_ub=np.block([[-a, ones], [a, ones]]), b_ub=np.concatenate([-(y + lo), y + hi]),
                     bounds=[(None, None)] * count + [(None, 0.5)], method="highs",
                     options={"time_limit": LP_SECONDS})
    if result.status != 0 or result.x is None:
        return kernel
    return (basis @ result.x[:-1]).reshape(k, k) * in_levels
