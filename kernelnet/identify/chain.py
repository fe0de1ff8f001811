"""The chain rung of identification, for integer targets that one least-squares kernel writes < 99.9% of: programs
that round between passes, and kernels that need taps closer than least squares reads them.

* **1-D passes rounded in between** (Pillow's ``BoxBlur``: a horizontal box written to 8 bits, then a vertical one;
  ImageMagick's ``-blur``: the same in 16-bit quanta, then 8 bits). From a 15×15 raw fit the rung takes the rank-1
  factors K ≈ v·hᵀ, scaled so that each 1-D kernel sums to 1, and for n = 1, 2, 3 passes per axis the 1-D kernel g
  with g∗…∗g (n times) ≈ the factor (the shortest support that explains it, and the next longer one). Each g is
  snapped to the smallest denominator q ≤ ``MAX_DENOMINATOR`` within ``SNAP`` of the fit (each pass then snaps its
  sums to the grid 1/q, so float noise never moves a tie), or kept as float taps;
* **one k×k kernel**, alone or through 16-bit quanta then 8 bits (ffmpeg's ``unsharp``, ImageMagick).

Between the passes the levels are the targets' own or 257 times finer (16-bit quanta of 8-bit levels, then a last
1×1 pass ÷257 rounded by floor or half up). Every candidate — family, n, order of the axes, rounding, depth — is
screened on a few whole training planes (the outer ring included); the best few of each family get their float
taps refined against the levels themselves (:mod:`kernelnet.identify.interval`) and are scored on more planes;
the shortest program that writes ``EXACT_SHARE`` of the levels wins. Numpy and SciPy only.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from kernelnet.identify.fit import MAX_RAW, design, fit_raw, sample_interior
from kernelnet.identify.interval import LP_ROWS, bounds, interval_kernel, refine_taps
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
DEEP = 257.0
"""16-bit quanta per 8-bit level: programs that compute in 16 bits (ImageMagick Q16) round there between passes."""
SCREEN_PIXELS = 120_000
FINALISTS = 3
"""Every candidate is screened on ``SCREEN_PIXELS``; the best ``FINALISTS`` per border of each family (1-D passes,
one k×k kernel) are refined and scored on all planes."""


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


def _with_final(passes: list[FilterSpec], scale: float, final: str | None, top: float) -> FilterSpec:
    """``passes`` chained, then (``scale`` ≠ 1) a 1×1 pass from the deeper levels to the targets' (÷ ``scale``,
    rounded by ``final``)."""
    if scale != 1.0:
        bits = 8 if top <= 255 else 16
        passes = passes + [FilterSpec(np.full((1, 1, 1), 1.0 / scale), None, "raw", passes[-1].border,
                                      output=OutputStage(clip=(0.0, top), rounding=final, bits=bits,
                                                         grid=int(scale)))]  # q / 257 exact: floor never slips
    return passes[0].replace(after=tuple(passes[1:]))


def _stage(top: float, scale: float, rounding: str, grid: int | None) -> OutputStage:
    """Levels between passes: the targets' (``scale`` 1) or ``scale`` times finer (16-bit quanta of 8-bit levels)."""
    deep = top * scale
    return OutputStage(clip=(0.0, deep), rounding=rounding, bits=8 if deep <= 255 else 16, grid=grid)


def chain_spec(g: np.ndarray, q: int | None, n: int, order: tuple[str, str], border: str, rounding: str,
               top: float, in_levels: float, scale: float = 1.0, final: str | None = None) -> FilterSpec:
    """n passes of ``g`` along ``order[0]`` then n along ``order[1]``, each clipped to [0, top · scale] and rounded
    (the targets' levels, or ``scale`` times finer and a last 1×1 pass back, rounded by ``final``); the first
    takes the inputs in [0, 1] (taps × ``in_levels`` · ``scale``), the others the levels."""
    stage = _stage(top, scale, rounding, q)
    axes = [order[0]] * n + [order[1]] * n
    passes = [FilterSpec(_line(g, axis, in_levels * scale if i == 0 else 1.0), None, "raw", border, output=stage)
              for i, axis in enumerate(axes)]
    return _with_final(passes, scale, final, top)


def kernel_spec(kernel: np.ndarray, border: str, rounding: str, top: float, scale: float, final: str) -> FilterSpec:
    """One k×k ``kernel`` (target units per input unit) into levels ``scale`` times finer, rounded, then a 1×1
    pass back to the targets' levels rounded by ``final`` (a Q16 program writing 8-bit files)."""
    head = FilterSpec(kernel[None] * scale, None, "raw", border, output=_stage(top, scale, rounding, None))
    return _with_final([head], scale, final, top)


def training_planes(pairs: PairSet) -> list[tuple[np.ndarray, np.ndarray]]:
    """Whole training planes (x in [0, 1], y in target units), spread over the corpus, ``SCORE_PIXELS`` at least."""
    planes, count = [], 0
    for _, x, y in pairs.iter_planes(pairs.spread(pairs.train)):
        planes.append((x, y))
        count += y.size
        if count >= SCORE_PIXELS:
            break
    return planes


def exact_share(spec: FilterSpec, planes: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The share of target levels ``spec`` writes exactly on ``planes``."""
    hits = total = 0
    for x, y in planes:
        hits += int(np.count_nonzero(apply_spec(x, spec) == y))
        total += y.size
    return hits / max(total, 1)


def _roots(h: np.ndarray, n: int) -> list[np.ndarray]:
    """The odd-length g whose n-fold self-convolution matches ``h`` (odd length, centred): the shortest support
    that leaves at most ``TAIL`` of ``h``'s energy unexplained (else the best one), and the next longer one (end
    taps of 2e-4 sit at the fit's noise, and a 16-bit program still counts them)."""
    found: list[tuple[float, np.ndarray]] = []
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
        found.append((float(energy - np.sum(inner ** 2) + np.sum((power - inner) ** 2)), g))
    if not found:
        return []
    first = next((i for i, (miss, _) in enumerate(found) if miss <= TAIL * energy),
                 min(range(len(found)), key=lambda i: found[i][0]))
    return [g for _, g in found[first:first + 2]]


def _candidates(h: np.ndarray, kernel: np.ndarray | None, border: str, top: float, in_levels: float,
                screen: Any, interior: Any) -> list[tuple[dict[str, Any], FilterSpec, Any]]:
    """Every chain to score: n = 1..3 passes of ``h``'s convolution root per axis (both orders, each depth and
    rounding), and the one 2-D ``kernel`` through 16-bit quanta; with each, the same chain with its float taps
    refined against the levels (:mod:`kernelnet.identify.interval`; ``None`` where the taps sit on a grid).
    ``screen()`` gives whole planes, ``interior()`` (patches, targets) of interior pixels."""
    found = []
    depths = [(1.0, None)] + ([(DEEP, "floor"), (DEEP, "half_up")] if top == 255 else [])
    for n, g in ((n, g) for n in ((1, 2, 3) if h is not None else ()) for g in _roots(h, n)):
        snapped, q = snap(g)
        for order, rule, (scale, final) in itertools.product((("horizontal", "vertical"), ("vertical", "horizontal")),
                                                             ROUNDINGS, depths):
            about = {"combine": "chain", "passes": 2 * n + (scale != 1), "kernel_size": len(g), "grid": q,
                     "order": order[0], "border": border, "rounding": rule, "depth": scale, "final": final}
            build = functools.partial(chain_spec, q=q, n=n, order=order, border=border, rounding=rule, top=top,
                                      in_levels=in_levels, scale=scale, final=final)
            refine = functools.partial(lambda b, g, n, r: b(refine_taps(g, n, border, r, screen(), in_levels, top)),
                                       build, snapped, n, final or rule)
            found.append((about, build(snapped), None if q else refine))
    solved: dict[tuple[float, float], np.ndarray] = {}

    def refined(rule: str) -> np.ndarray:
        """The kernel refined inside ``rule``'s intervals: one LP per interval shape (half rules share theirs)."""
        if bounds(rule) not in solved:
            solved[bounds(rule)] = interval_kernel(kernel, *interior(), rule, in_levels, top)
        return solved[bounds(rule)]

    one = [(1.0, rule) for rule in (*ROUNDINGS, "floor")]  # the kernel itself, refined: no chain at all
    for rule, (scale, final) in itertools.product(ROUNDINGS, one + depths[1:] if kernel is not None else ()):
        if scale == 1.0 and rule != ROUNDINGS[0]:
            continue  # one pass: its only rounding is ``final``
        rule = final if scale == 1.0 else rule
        about = {"combine": "chain" if scale != 1.0 else "raw", "passes": 1 + (scale != 1.0),
                 "kernel_size": kernel.shape[-1], "grid": None, "border": border, "rounding": rule, "depth": scale,
                 "final": final}
        refine = functools.partial(lambda r, d, f: kernel_spec(refined(f), border, r, top, d, f), rule, scale, final)
        found.append((about, kernel_spec(kernel, border, rule, top, scale, final), refine))
    return found


def _factor(pairs: PairSet, clip: tuple[float, float] | None, in_levels: float) -> np.ndarray | None:
    """The 1-D kernel (15 taps, sum 1) of a 15×15 raw fit that is one blur along both axes, else None."""
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
    return (h + v) / 2


def identify_chain(pairs: PairSet, clip: tuple[float, float] | None, in_levels: float, borders: list[str],
                   kernel: np.ndarray | None, candidates: list[dict[str, Any]]) -> tuple[FilterSpec, float] | None:
    """The shortest program (one refined kernel, or a chain) writing ``EXACT_SHARE`` of the levels of integer
    ``pairs``, and its exact share on training planes (see the module docstring); None when none does. ``kernel`` (k, k): the one-kernel fit, in target units per input unit;
    ``borders``: the ones to try, likeliest first."""
    if pairs.encoding.levels is None or pairs.encoding.int_range is None:
        return None
    top = float(pairs.encoding.int_range[1])
    h = _factor(pairs, clip, in_levels)
    interior = functools.cache(lambda: sample_interior(pairs, clip, 2 * LP_ROWS, seed=3))
    planes = training_planes(pairs)
    screen = screen_planes(planes)
    finalists: list[tuple[float, int, FilterSpec]] = []
    for border in borders:
        scored = [(exact_share(spec, screen), about, spec, refine)
                  for about, spec, refine in _candidates(h, kernel, border, top, in_levels, lambda: screen, interior)]
        scored.sort(key=lambda c: -c[0])
        passes = [c for c in scored if "order" in c[1]][:FINALISTS]  # the best of each family goes on
        for first, about, spec, refine in passes + [c for c in scored if "order" not in c[1]][:FINALISTS]:
            if refine is not None:  # float taps: refined against the levels themselves
                spec, about = refine(), {**about, "refined": True}
            share = exact_share(spec, planes)
            candidates.append({**about, "exact_share": share})
            finalists.append((share, len(spec.passes), spec))
        if any(share >= EXACT_SHARE for share, _, _ in finalists):
            break  # the likeliest border already writes the levels
    reaching = [f for f in finalists if f[0] >= EXACT_SHARE]
    if not reaching:
        return None
    share, _, spec = min(reaching, key=lambda f: (f[1], -f[0]))  # the shortest program, then the most levels
    return spec, share


def screen_planes(planes: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first ``SCREEN_PIXELS`` of ``planes`` (whole planes: their rings count)."""
    out, count = [], 0
    for x, y in planes:
        if count >= SCREEN_PIXELS:
            break
        out.append((x, y))
        count += y.size
    return out
