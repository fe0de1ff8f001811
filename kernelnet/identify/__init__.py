"""Identify a black-box filter from pairs: kind, kernel size, border, clip, grid and rounding. Numpy only.

The search, cheapest first, each step on what the previous one fixed:

1. **Kernel and kind, from interior pixels.** Pixels whose 15×15 window lies inside the image do not depend on
   the border, so kind and size are fitted there, on a fixed-seed sample. Saturated targets (at the clip bounds:
   the integer format's range, or a float value shared by ≥ 0.5% of the pixels) are censored: they only say the
   value lies beyond the bound, so they are left out of the fit. ``raw`` is a linear least-squares fit per size
   k = 1, 3, …, 15; ``abs`` and ``magnitude`` (k ≤ 7) a lifted least squares on y² (its top eigenpairs give the
   kernels) refined by Gauss-Newton on y itself. The smallest k whose residual reaches the data's noise floor wins
   (integer targets: the rounding floor, 1/√12 level RMS; float: float32 resolution), raw before abs before
   magnitude; then raw kernels 17×17 to 31×31 from one 31×31 Gram matrix (:mod:`kernelnet.identify.wide`: a
   Gaussian of σ = 4 is 25×25); nothing at the floor → the best residual, and the verdict says "approximated".
   For integer targets a raw kernel then grows while it writes more levels exactly (a Gaussian cut at 2 σ
   already reaches the floor's RMS with a few % of its levels one off: :func:`kernelnet.identify.fit.widen`).
2. **Grid.** Integer-arithmetic black boxes (OpenCV, Pillow) compute integer sums / d: when every coefficient per
   input level and the bias are multiples of 1/d (d ≤ 256), they are snapped, and the output stage snaps values
   to that grid, so that float32 noise can never move an exact tie. A magnitude of integer targets is tried as a
   named derivative pair (Sobel, Scharr, Prewitt) × a simple scale, with a grid that keeps integer magnitudes
   integers (:mod:`kernelnet.identify.magnitude`: ffmpeg's truncated Sobel).
3. **Border**, from the ring of k//2 pixels: the candidate border whose predictions match the ring best.
4. **Rounding** (integer targets): the rule reproducing the most training levels exactly.
5. **Rank rung**, when no linear filter reaches the floor: erosion, dilation or median over a square or a cross
   (:mod:`kernelnet.identify.rank`), its border from the ring.
6. **Chain rung**, integer targets whose raw fit writes < 99.9% of the levels exactly: the kernel with its taps
   refined against the levels, or 1-D blur passes rounded to the levels (or to 16-bit quanta) in between
   (:mod:`kernelnet.identify.chain`: Pillow's ``BoxBlur``, ImageMagick's ``-blur``, ffmpeg's ``unsharp``), scored on
   whole planes; the shortest program that writes the levels wins. For |kernel| and magnitude fits of 5×5 short of
   the levels: a blur written to the levels, then an absolute derivative (:mod:`kernelnet.identify.chain_split`:
   OpenCV's blur saved as 8 bits, then Sobel and convertScaleAbs).

Whatever the user fixed (kind, size, border, clip, rounding) is not searched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelnet.identify.magnitude import magnitude_grid, named_magnitude
from kernelnet.identify.fit import MAX_RAW, WIDEN_GAIN, design, fit_quadratic, fit_raw, predict, sample_interior, widen
from kernelnet.identify.rank import RANK_BORDERS, rank_spec, search_rank
from kernelnet.identify.wide import WIDE_SIZES, fit_wide
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import BORDERS, MAX_KERNEL, ROUNDINGS, FilterSpec, OutputStage

KINDS = ("raw", "abs", "magnitude")
MAX_QUADRATIC = 7
RAW_ROWS, QUADRATIC_ROWS = 80_000, 24_000
WIDE_GAIN = 0.8
"""Short of the floor, a kernel above 15×15 replaces the best smaller fit only when it cuts the residual by 20%."""
FLOOR_MARGIN = 1.25
"""A residual within 25% of the noise floor reaches it (the floor of rounded levels is 1/√12 ≈ 0.289)."""
SATURATED_SHARE = 0.005
MAX_GRID = 256
PASS_PIXELS = 50_000_000
"""The clip search stops after this many target pixels (in a fixed spread order over the corpus)."""
CHAIN_TRIGGER = 0.999
"""Integer targets: a raw fit writing fewer levels than this exactly makes the chain rung look for rounded passes."""
RING_PIXELS = 500_000
"""Each border candidate is scored on this many ring pixels at most (a wrong border misses most of them)."""


@dataclass
class Fixed:
    """What the user fixed (``None``: identify it)."""

    combine: str | None = None
    kernel_size: int | None = None
    border: str | None = None
    clip: tuple[float, float] | None | str = "auto"
    rounding: str | None = "auto"
    linear: bool = False
    """The user named a linear model (``--model single / double``): no rank rung."""
    kinds: tuple[str, ...] | None = None
    """The combines to search when ``combine`` is not fixed (``--model single``: raw or abs)."""


@dataclass
class Identified:
    """The identified filter and how well each candidate explained the interior pixels."""

    spec: FilterSpec
    floor_rms: float
    rms: float
    reached_floor: bool
    candidates: list[dict[str, Any]] = field(default_factory=list)
    border_errors: dict[str, float] = field(default_factory=dict)


def clip_bounds(pairs: PairSet, fixed: Fixed) -> tuple[float, float] | None:
    """The clip: the integer format's range, a float bound shared by ≥ 0.5% of the pixels, or the user's."""
    if fixed.clip != "auto":
        return fixed.clip  # type: ignore[return-value]
    if pairs.encoding.int_range is not None:
        return pairs.encoding.int_range
    lo = hi = None
    lo_n = hi_n = total = 0
    for strip in pairs.iter_strips(pairs.spread(pairs.train), halo=0):
        if total >= PASS_PIXELS:
            break
        y = strip.y
        total += y.size
        mn, mx = float(y.min()), float(y.max())
        lo, lo_n = (mn, 0) if lo is None or mn < lo else (lo, lo_n)
        hi, hi_n = (mx, 0) if hi is None or mx > hi else (hi, hi_n)
        lo_n += int(np.count_nonzero(y == lo))
        hi_n += int(np.count_nonzero(y == hi))
    if lo is None or (lo_n < SATURATED_SHARE * total and hi_n < SATURATED_SHARE * total):
        return None
    return (lo if lo_n >= SATURATED_SHARE * total else -np.inf, hi if hi_n >= SATURATED_SHARE * total else np.inf)


def floor_rms(pairs: PairSet, y: np.ndarray) -> float:
    """The residual RMS of a perfect model: rounding (1/√12 level) or float32 resolution of the targets."""
    if pairs.encoding.levels is not None:
        return 1.0 / np.sqrt(12.0)
    eps = 2.0 ** -24 if pairs.encoding.dtype == "float32" else 2.0 ** -50
    return float(max(np.sqrt(np.mean(y ** 2)), 1e-30) * eps * 4)


def search_kernel(pairs: PairSet, fixed: Fixed, clip: tuple[float, float] | None
                  ) -> tuple[str, np.ndarray, float, float, list[dict[str, Any]]]:
    """(combine, weights (C, k²+1), rms, floor, candidates) over kinds and sizes, smallest k at the floor first."""
    patches, y = sample_interior(pairs, clip, RAW_ROWS)
    floor = floor_rms(pairs, y)
    candidates: list[dict[str, Any]] = []
    best: tuple[float, str, np.ndarray] | None = None
    wide_ok = fixed.combine in (None, "raw") and (fixed.kernel_size is None or fixed.kernel_size > MAX_RAW)
    for combine in [fixed.combine] if fixed.combine else fixed.kinds or KINDS:
        top = MAX_RAW if combine == "raw" else MAX_QUADRATIC
        if fixed.kernel_size is not None and (fixed.kernel_size % 2 == 0 or not 1 <= fixed.kernel_size <= top):
            if fixed.combine and not (wide_ok and fixed.kernel_size in WIDE_SIZES):
                raise KernelnetError(f"kernel size {fixed.kernel_size}: a {combine} filter is identified from odd "
                                     f"sizes 1 to {MAX_KERNEL if combine == 'raw' else top}")
            continue
        sizes = [fixed.kernel_size] if fixed.kernel_size else range(1, top + 1, 2)
        for k in sizes:
            d = design(patches if combine == "raw" else patches[:QUADRATIC_ROWS], k)
            yy = y if combine == "raw" else y[:QUADRATIC_ROWS]
            w, rms = fit_raw(d, yy) if combine == "raw" else fit_quadratic(d, yy, combine)
            w = w.reshape(1, -1) if combine == "raw" else w
            candidates.append({"combine": combine, "kernel_size": k, "rms": rms})
            if best is None or rms < best[0] * 0.98:
                best = (rms, combine, w)
            if rms <= FLOOR_MARGIN * floor:
                if combine == "raw" and pairs.encoding.levels is not None and k > 1:
                    k, w, rms = widen(pairs, clip, (patches, y), k, candidates, grow=fixed.kernel_size is None)
                return combine, w, rms, floor, candidates
    if wide_ok and (fixed.kernel_size is None or fixed.kernel_size in WIDE_SIZES):
        wide = wide_raw(pairs, clip, floor, candidates, fixed.kernel_size)
        if wide is not None and (best is None or wide[1] < best[0] * WIDE_GAIN or wide[1] <= FLOOR_MARGIN * floor):
            return "raw", wide[0], wide[1], floor, candidates
    if best is None:
        raise KernelnetError(f"kernel size {fixed.kernel_size}: sizes are odd, 1 to {MAX_KERNEL} (raw) or "
                             f"{MAX_QUADRATIC} (abs, magnitude)")
    return best[1], best[2], best[0], floor, candidates


def wide_raw(pairs: PairSet, clip: tuple[float, float] | None, floor: float, candidates: list[dict[str, Any]],
             size: int | None = None) -> tuple[np.ndarray, float] | None:
    """(weights, rms) of the raw kernel above 15×15 (:mod:`kernelnet.identify.wide`): the smallest size at the
    floor (integer targets: the smallest within :data:`WIDEN_GAIN` of the most levels written exactly among those),
    else the best residual; ``size``: that size only. None where no image has a 31×31 interior."""
    fits = fit_wide(pairs, clip, (size,) if size else WIDE_SIZES)
    for k, (_, rms, share) in fits.items():
        candidates.append({"combine": "raw", "kernel_size": k, "rms": rms, "wide": True}
                          | ({} if np.isnan(share) else {"exact_share": share}))
    if not fits:
        return None
    at_floor = [k for k, (_, rms, _) in fits.items() if rms <= FLOOR_MARGIN * floor]
    if not at_floor:
        k = min(fits, key=lambda s: fits[s][1])
    elif pairs.encoding.levels is not None:
        top = max(fits[s][2] for s in at_floor)
        k = min(s for s in at_floor if fits[s][2] >= top - WIDEN_GAIN)
    else:
        k = min(at_floor)
    return fits[k][0], fits[k][1]


def snap_grid(w: np.ndarray, in_levels: float, patches_y: tuple[np.ndarray, np.ndarray], combine: str,
              rms: float) -> tuple[np.ndarray, int | None]:
    """``w`` with kernel coefficients snapped to multiples of 1/d per input level for the smallest d ≤ 256 that
    keeps the residual (the bias is left to :func:`choose_rounding`), or unchanged."""
    if combine == "magnitude":
        return w, None
    per_level = w[:, :-1] / in_levels
    d_patches, y = patches_y
    for d in range(1, MAX_GRID + 1):
        snapped = np.round(per_level * d) / d
        if np.max(np.abs(snapped - per_level)) * d > 0.05:
            continue
        cand = w.copy()
        cand[:, :-1] = snapped * in_levels
        got = float(np.sqrt(np.mean((predict(d_patches, cand, combine) - y) ** 2)))
        if got <= rms * 1.02 + 1e-12:
            return cand, d
    return w, None


def bias_candidates(bias: float, grid: int | None) -> list[float]:
    """Exact biases near the fitted one: on the grid, shifted by the half level a rounding rule can absorb."""
    if grid is None:
        return [bias]
    near = [round((bias + shift) * grid) / grid for shift in (0.0, 0.5, -0.5)]
    return list(dict.fromkeys([*near, float(round(bias))]))


def _ring_error(pairs: PairSet, spec: FilterSpec) -> float:
    """Mean squared error of ``spec`` on the outer ring of k//2 pixels (all pixels for k = 1)."""
    r, total, count = spec.halo, 0.0, 0
    for strip in pairs.iter_strips(pairs.spread(pairs.train)):
        if count >= RING_PIXELS:
            break
        height, width = strip.height, strip.x.shape[1]
        if min(height, width) < max(spec.min_side, 2 * r + 1):
            continue
        image_rows = strip.image_rows()
        ring = np.zeros((image_rows.size, width), dtype=bool)
        ring[(image_rows < r) | (image_rows >= height - r)] = True
        ring[:, :r] = ring[:, width - r:] = True
        if r == 0:
            ring[:] = True
        if not ring.any():
            continue
        pred = apply_spec(strip.x, spec)[strip.own]
        total += float(np.sum((pred[ring] - strip.y[strip.own][ring]) ** 2))
        count += int(ring.sum())
    return total / max(count, 1)


def choose_rounding(pairs: PairSet, spec: FilterSpec, fixed: Fixed) -> tuple[str | None, FilterSpec]:
    """The rounding rule (and, on a grid, the exact bias) reproducing the most training levels exactly."""
    if pairs.encoding.levels is None:
        return None, spec
    rules = ROUNDINGS if fixed.rounding == "auto" else (fixed.rounding,)
    biases = bias_candidates(float(spec.bias[0]), spec.output.grid) if spec.combine != "magnitude" else [None]
    trials = [(rule, b) for b in biases for rule in rules]
    hits = [0] * len(trials)
    for index, strip in enumerate(pairs.iter_strips(pairs.train)):
        if index >= 8:
            break
        for t, (rule, b) in enumerate(trials):
            out = spec.output
            trial = spec.replace(output=OutputStage(out.scale, out.offset, out.clip, rule, out.bits, out.grid),
                                 bias=spec.bias if b is None else [b])
            hits[t] += int(np.count_nonzero(apply_spec(strip.x, trial)[strip.own] == strip.y[strip.own]))
    rule, b = trials[int(np.argmax(hits))]  # ties keep the order: the fitted bias, half_even first
    return rule, spec if b is None else spec.replace(bias=[b])


def identify_rank(pairs: PairSet, fixed: Fixed, clip: tuple[float, float] | None, floor: float,
                  in_levels: float | None, candidates: list[dict[str, Any]]) -> Identified | None:
    """The rank rung (:mod:`kernelnet.identify.rank`): the first erosion / dilation / median that reaches the data,
    its border from the outer ring; None when none does."""
    found = search_rank(pairs, floor, in_levels, fixed.kernel_size, candidates)
    if found is None:
        return None
    op, footprint, a, c, rms = found
    if pairs.encoding.levels is not None and clip is None and fixed.clip == "auto":
        clip = pairs.encoding.int_range
    rounding = "half_even" if fixed.rounding == "auto" else fixed.rounding
    borders = [fixed.border] if fixed.border else list(RANK_BORDERS)
    errors = {b: _ring_error(pairs, rank_spec(op, footprint, a, c, b, pairs, clip, rounding)) for b in borders}
    border = min(borders, key=lambda b: (errors[b], borders.index(b)))
    spec = rank_spec(op, footprint, a, c, border, pairs, clip, rounding)
    return Identified(spec, floor, rms, True, candidates, errors)


def identify(pairs: PairSet, fixed: Fixed | None = None, in_levels: float | None = 255.0) -> Identified:
    """Identify the filter behind ``pairs`` (see the module docstring); float output in the targets' units."""
    fixed = fixed or Fixed()
    clip = clip_bounds(pairs, fixed)
    combine, w, rms, floor, candidates = search_kernel(pairs, fixed, clip)
    k = int(round(np.sqrt(w.shape[1] - 1)))
    reached = rms <= FLOOR_MARGIN * floor
    if not reached and fixed.combine is None and not fixed.linear and fixed.border != "copy" and \
            (fixed.kernel_size is None or fixed.kernel_size <= MAX_RAW):
        ranked = identify_rank(pairs, fixed, clip, floor, in_levels, candidates)
        if ranked is not None:
            return ranked
    grid = None
    integer = pairs.encoding.levels is not None and in_levels is not None
    top = pairs.encoding.levels if clip is None or not np.isfinite(clip[1]) else clip[1]
    magnitude_step = magnitude_grid(top) if integer and combine == "magnitude" else None
    if integer and k <= MAX_RAW and (reached or magnitude_step is not None):
        patches, y = sample_interior(pairs, clip, 20_000, seed=1)
        if reached:
            w, grid = snap_grid(w, in_levels, (design(patches, k), y), combine, rms)
        named = None if magnitude_step is None else named_magnitude(patches, y, k, w, in_levels, magnitude_step,
                                                                    candidates)
        if named is not None:  # integer responses: exact kernels, and a grid that keeps integers integers
            w, grid = named, magnitude_step
    bits = pairs.encoding.bits
    if clip is not None and combine != "raw" and clip[0] <= 0 and not np.isfinite(clip[1]):
        clip = None  # |z| and √(a² + b²) are never negative: a lower bound at 0 says nothing
    finite_clip = None if clip is None else (max(clip[0], -1e30), min(clip[1], 1e30))
    stage = OutputStage(clip=finite_clip, grid=grid)
    if bits is not None and finite_clip is not None:  # the copy border's ring is in levels: search with them
        stage = OutputStage(clip=finite_clip, rounding="half_even", bits=bits, grid=grid)
    kernels, bias = w[:, :-1].reshape(-1, k, k), w[:, -1]
    borders = [fixed.border] if fixed.border else (list(BORDERS) if k > 1 else ["zeros"])
    errors: dict[str, float] = {}
    for border in borders:
        errors[border] = _ring_error(pairs, FilterSpec(kernels, bias, combine, border, output=stage))
    border = min(borders, key=lambda b: (errors[b], borders.index(b)))
    spec = FilterSpec(kernels, bias, combine, border, output=stage)
    rounding, spec = choose_rounding(pairs, spec, fixed)
    if bits is not None and rounding is not None and finite_clip is not None:
        stage = OutputStage(clip=finite_clip, rounding=rounding, bits=bits, grid=grid)
    elif rounding is not None:
        stage = OutputStage(clip=finite_clip, rounding=rounding, grid=grid)
    spec = spec.replace(output=stage)
    if pairs.encoding.levels is not None and in_levels is not None and not fixed.linear \
            and fixed.kernel_size is None and border != "copy" and fixed.combine in (None, combine) \
            and fixed.border is None and fixed.clip == "auto" and fixed.rounding == "auto":  # nothing fixed to keep
        from kernelnet.identify.programs import longer_program

        longer = longer_program(pairs, spec, fixed.combine, clip, in_levels, candidates)
        if longer is not None:  # one kernel is short of the levels; a refined one or a longer program writes them
            return Identified(longer[0], floor, rms, longer[1], candidates, errors)
    return Identified(spec, floor, rms, reached, candidates, errors)
