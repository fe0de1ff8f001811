"""The curve rung of identification: a kernel applied in linear light — ``decode → k×k kernel → encode`` — for
integer targets that no kernel on the stored values writes (a blur in linear light, as camera pipelines and editors
do it). Numpy and SciPy only.

For a curve c (``gamma:<g>`` for g in [1, 3], found by a bounded scalar search, or ``srgb``) the targets decoded,
c⁻¹(y / top), are a linear filter of the decoded inputs c⁻¹(x): the kernel is a least-squares fit on interior
pixels (sizes 3…9, the smallest within 10% of the best), scored by the RMS of its re-encoded prediction in levels.
The best curve's program is then run on whole training planes for each rounding rule and the one-kernel fit's
border; it wins when it writes ``CURVE_SHARE`` of the levels and more than the one kernel did.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.identify.chain import ROUNDINGS, exact_share, screen_planes, snap, training_planes
from kernelnet.identify.fit import design, sample_interior
from kernelnet.runtime.curves import decode, encode, exponent


def exponent_of(curve: str | None) -> float:
    """g of ``gamma:<g>``; sRGB counts as 2.2 (it is far from the identity)."""
    g = exponent(curve) if curve else 1.0
    return 2.2 if g is None else g
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import FilterSpec, OutputStage

CURVE_SHARE = 0.99
"""The share of levels a curve-wrapped kernel must write (rounding in linear light leaves ~1% one level off)."""
SIZES = (3, 5, 7, 9)
GAMMAS = (1.0, 3.0)
CURVE_ROWS = 40_000
SEARCH_ROWS, SEARCH_SIZE = 12_000, 5
"""The exponent search fits 5×5 kernels on this many rows (the size hardly moves the exponent)."""
MARGIN, NO_CURVE = 0.002, 0.05
"""A curve must write 0.2% more levels than the one kernel, with an exponent at least 0.05 from 1."""
ROUND_SLACK = 1.01
"""A round exponent is kept when its fit's RMS is within 1% of the searched one's."""


def _fit(patches: np.ndarray, y: np.ndarray, k: int, curve: str, top: float) -> tuple[float, np.ndarray]:
    """(RMS in levels of the re-encoded prediction, weights (k² + 1)) of the linear-light fit."""
    d = design(decode(patches, curve), k)
    w = np.linalg.lstsq(d, decode(y / top, curve), rcond=None)[0]
    return float(np.sqrt(np.mean((top * encode(d @ w, curve) - y) ** 2))), w


def _best_size(patches: np.ndarray, y: np.ndarray, curve: str, top: float) -> tuple[float, int, np.ndarray]:
    fits = [(*_fit(patches, y, k, curve, top), k) for k in SIZES]
    least = min(f[0] for f in fits)
    rms, w, k = next(f for f in fits if f[0] <= 1.1 * least)
    return rms, k, w


def curve_spec(w: np.ndarray, k: int, curve: str, border: str, rounding: str, top: float) -> FilterSpec:
    """``decode → kernel (+ bias) → encode → × top → clip → round`` (8- or 16-bit levels)."""
    kernel, bias = w[:-1].reshape(1, k, k), w[-1:]
    snapped, q = snap(kernel.ravel())
    if q is not None:
        kernel = snapped.reshape(1, k, k)
    bits = 8 if top <= 255 else 16
    return FilterSpec(kernel, bias, "raw", border, decode=curve,
                      output=OutputStage(top, 0.0, (0.0, top), rounding, bits, None, curve))


def identify_curve(pairs: PairSet, clip: tuple[float, float] | None, border: str, single_share: float,
                   candidates: list[dict[str, Any]]) -> tuple[FilterSpec, float] | None:
    """The curve-wrapped kernel behind integer ``pairs`` and its exact share on training planes; None when it
    writes fewer than ``CURVE_SHARE`` of the levels or no more than the one kernel (``single_share``)."""
    from scipy.optimize import minimize_scalar

    if pairs.encoding.int_range is None:
        return None
    top = float(pairs.encoding.int_range[1])
    patches, y = sample_interior(pairs, clip, CURVE_ROWS, seed=4)
    inside = (y > 0) & (y < top)  # saturated levels say only "beyond"
    patches, y = patches[inside], y[inside]
    if len(y) < 4 * max(SIZES) ** 2:
        return None
    few = slice(0, SEARCH_ROWS)  # the exponent at one size on fewer rows; the size once the curve is known
    search = minimize_scalar(lambda g: _fit(patches[few], y[few], SEARCH_SIZE, f"gamma:{g:.4f}", top)[0],
                             bounds=GAMMAS, method="bounded", options={"xatol": 1e-3})
    found = f"gamma:{search.x:.4f}"
    tried = [(found, *_best_size(patches, y, found, top)), ("srgb", *_best_size(patches, y, "srgb", top))]
    for step in (0.1, 0.05):  # a round exponent (2.2, 1.8) explains as much as the search's 2.2012: take it
        g = round(search.x / step) * step
        if GAMMAS[0] <= g <= GAMMAS[1]:
            fit = _best_size(patches, y, f"gamma:{g:.4g}", top)
            if fit[0] <= ROUND_SLACK * tried[0][1]:
                tried.insert(0, (f"gamma:{g:.4g}", *fit))
                break
    curve, rms, k, w = min(tried, key=lambda t: t[1] / (ROUND_SLACK if t is tried[0] else 1.0))
    planes = training_planes(pairs)
    screen = screen_planes(planes)
    best: tuple[float, FilterSpec] | None = None
    for rule in (*ROUNDINGS, "floor"):
        spec = curve_spec(w, k, curve, border, rule, top)
        share = exact_share(spec, screen)
        if best is None or share > best[0]:
            best = (share, spec)
    assert best is not None
    share = exact_share(best[1], planes)
    candidates.append({"combine": "curve", "curve": best[1].decode, "kernel_size": k, "rms": rms,
                       "rounding": best[1].output.rounding, "exact_share": share})
    if share < CURVE_SHARE or share < single_share + MARGIN or abs(exponent_of(best[1].decode) - 1.0) < NO_CURVE:
        return None  # short of the bar, no clearly better than the one kernel, or no curve at all (γ ≈ 1)
    return best[1], share
