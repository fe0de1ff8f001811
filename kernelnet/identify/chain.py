"""The chain rung of identification: separable filters computed as 1-D passes, each rounded to the output's
levels before the next (Pillow's ``BoxBlur`` and ``GaussianBlur``: horizontal box passes, then vertical ones, each
written to 8 bits). One kernel cannot reproduce such a box: the rounding between the passes is not linear.

From a 15×15 raw fit the rung takes the rank-1 factors K ≈ v·hᵀ, scaled so that each 1-D kernel sums to 1, and
for n = 1, 2, 3 passes per axis the 1-D kernel g with g∗…∗g (n times) ≈ the factor (the shortest support that
explains it). Each g is snapped to the smallest denominator q ≤ ``MAX_DENOMINATOR`` within ``SNAP`` of the fit (the pass
then snaps its sums to the grid 1/q, so float noise never moves a tie) or kept as fitted. Every candidate — n,
order of the axes, border, rounding — is run on whole training planes (the outer ring included) and scored by
the share of levels it writes exactly; the best wins when it reaches ``EXACT_SHARE``. Numpy and SciPy only.
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from typing import Any

import numpy as np

from kernelnet.identify.fit import MAX_RAW, design, fit_raw, sample_interior
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import FilterSpec, OutputStage

EXACT_SHARE = 0.999
"""The share of levels a chain must write exactly (the verdict's own bar)."""
SEPARABLE = 0.08
"""A fit is a chain candidate when its second singular value is below this share of its first."""
MAX_DENOMINATOR = 1024
SNAP = 0.02
"""Largest |g·q − round(g·q)| of a snapped tap, in units of 1/q."""
SCORE_PIXELS = 600_000
"""Candidates are scored on whole training planes, this many pixels at least."""
TAIL = 1e-4
"""Share of the 1-D factor's energy a pass's support may leave unexplained (the fit's noise is far below it)."""
FIT_ROWS = 40_000
"""Interior pixels of the 15×15 raw fit the passes are read from."""
CHAIN_BORDERS = ("replicate", "symmetric", "reflect", "zeros")
ROUNDINGS = ("half_up", "half_even")


def _trim(g: np.ndarray, share: float = 0.004) -> np.ndarray:
    """``g`` without end taps below ``share`` of its largest (symmetrically, so the centre stays the centre)."""
    small = np.abs(g) < share * np.abs(g).max()
    cut = 0
    while cut < len(g) // 2 and small[cut] and small[-1 - cut]:
        cut += 1
    return g[cut:len(g) - cut]


def convolution_root(h: np.ndarray, n: int) -> np.ndarray | None:
    """The 1-D kernel g (odd length) whose n-fold self-convolution is ``h`` in least squares; None when ``h``'s
    length is no such power's."""
    if n == 1:
        return h
    if (len(h) - 1) % (2 * n):
        return None
    m = (len(h) - 1) // n + 1
    from scipy.optimize import least_squares

    def power(g: np.ndarray) -> np.ndarray:
        out = g
        for _ in range(n - 1):
            out = np.convolve(out, g)
        return out

    fit = least_squares(lambda g: power(g) - h, np.full(m, float(np.sum(h)) ** (1.0 / n) / m), method="lm")
    return fit.x


def snap(g: np.ndarray) -> tuple[np.ndarray, int | None]:
    """``g`` on the smallest grid 1/q that holds every tap within ``SNAP``/q, with its q; else ``g`` and None."""
    for q in range(1, MAX_DENOMINATOR + 1):
        scaled = g * q
        if np.abs(scaled - np.round(scaled)).max() <= SNAP and np.round(scaled).any():
            return np.round(scaled) / q, q
    return g, None


def _line(g: np.ndarray, axis: str, gain: float) -> np.ndarray:
    """``g`` · gain on the middle row (horizontal) or column (vertical) of a k×k kernel."""
    k = len(g)
    kernel = np.zeros((k, k))
    if axis == "horizontal":
        kernel[k // 2] = g * gain
    else:
        kernel[:, k // 2] = g * gain
    return kernel[None]


def chain_spec(g: np.ndarray, q: int | None, n: int, order: tuple[str, str], border: str, rounding: str,
               top: float, in_levels: float) -> FilterSpec:
    """n passes of ``g`` along ``order[0]`` then n along ``order[1]``, each clipped to [0, top] and rounded (8- or
    16-bit levels); the first takes the inputs in [0, 1] (taps × ``in_levels``), the others the levels."""
    bits = 8 if top <= 255 else 16
    stage = OutputStage(clip=(0.0, top), rounding=rounding, bits=bits, grid=q)
    axes = [order[0]] * n + [order[1]] * n
    passes = [FilterSpec(_line(g, axis, in_levels if i == 0 else 1.0), None, "raw", border, output=stage)
              for i, axis in enumerate(axes)]
    return passes[0].replace(after=tuple(passes[1:]))


def _planes(pairs: PairSet) -> list[tuple[np.ndarray, np.ndarray]]:
    planes, count = [], 0
    for _, x, y in pairs.iter_planes(pairs.spread(pairs.train)):
        planes.append((x, y))
        count += y.size
        if count >= SCORE_PIXELS:
            break
    return planes


def exact_share(spec: FilterSpec, planes: list[tuple[np.ndarray, np.ndarray]]) -> float:
    hits = total = 0
    for x, y in planes:
        hits += int(np.count_nonzero(apply_spec(x, spec) == y))
        total += y.size
    return hits / max(total, 1)


def _root(h: np.ndarray, n: int) -> np.ndarray | None:
    """The odd-length g whose n-fold self-convolution matches ``h`` (odd length, centred): the shortest support
    that leaves at most ``TAIL`` of ``h``'s energy unexplained (else the best one)."""
    best: tuple[float, np.ndarray] | None = None
    c, energy = len(h) // 2, float(np.sum(h ** 2))
    for m in range(3 if n > 1 else 1, len(h) + 1, 2):
        span = n * (m - 1) // 2
        if span > c:
            break
        g = convolution_root(h[c - span:c + span + 1], n)
        if g is None or not np.isfinite(g).all():
            continue
        power = g
        for _ in range(n - 1):
            power = np.convolve(power, g)
        inner = h[c - span:c + span + 1]
        miss = float(energy - np.sum(inner ** 2) + np.sum((power - inner) ** 2))
        if miss <= TAIL * energy:
            return g
        if best is None or miss < best[0]:
            best = (miss, g)
    return None if best is None else best[1]


def identify_chain(pairs: PairSet, clip: tuple[float, float] | None, in_levels: float, border: str | None,
                   candidates: list[dict[str, Any]]) -> tuple[FilterSpec, float] | None:
    """The best chain of rounded 1-D passes behind integer ``pairs`` and its exact share on training planes; None
    when their 15×15 raw fit is not one blur along both axes or no chain reaches ``EXACT_SHARE``."""
    if pairs.encoding.levels is None or pairs.encoding.int_range is None:
        return None
    patches, y = sample_interior(pairs, clip, FIT_ROWS, seed=2)
    if len(y) < 4 * MAX_RAW ** 2:
        return None
    w = fit_raw(design(patches, MAX_RAW), y)[0]
    u, s, vt = np.linalg.svd(w[:-1].reshape(MAX_RAW, MAX_RAW))
    if s[0] == 0 or s[1] > SEPARABLE * s[0]:
        return None
    v, h = u[:, 0] * np.sqrt(s[0]), vt[0] * np.sqrt(s[0])
    if abs(h.sum()) < 0.5 * np.abs(h).sum() or abs(v.sum()) < 0.5 * np.abs(v).sum():
        return None  # not a blur: derivative passes are not rounded in between by the programs seen so far
    if abs(float(h.sum() * v.sum()) - in_levels) > 0.02 * in_levels:
        return None  # the passes keep the levels' scale (a blur of 8-bit levels into 8-bit levels)
    h, v = h / h.sum(), v / v.sum()
    if not np.allclose(h, v, atol=0.02):
        return None  # the same 1-D kernel along both axes: what box and Gaussian passes are
    top = float(pairs.encoding.int_range[1])
    planes = _planes(pairs)
    best: tuple[float, FilterSpec] | None = None
    for n in (1, 2, 3):
        g = _root((h + v) / 2, n)
        if g is None:
            continue
        snapped, q = snap(g)
        for order, b, rule in itertools.product((("horizontal", "vertical"), ("vertical", "horizontal")),
                                                [border] if border else CHAIN_BORDERS, ROUNDINGS):
            spec = chain_spec(snapped, q, n, order, b, rule, top, in_levels)
            share = exact_share(spec, planes)
            candidates.append({"combine": "chain", "passes": 2 * n, "kernel_size": len(g), "grid": q,
                               "order": order[0], "border": b, "rounding": rule, "exact_share": share})
            if best is None or share > best[0]:
                best = (share, spec)
    if best is None or best[0] < EXACT_SHARE:
        return None
    return best[1], best[0]
