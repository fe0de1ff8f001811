"""How far a floating-point evaluation of a :class:`~kernelnet.runtime.spec.FilterSpec` can be from its exact value.

Export's self-check, the native stencil's load probe, the structural weight check and the separable-form choice
compare two float implementations of one spec. Their tolerance is this bound of the computation, never a fraction
of one probe's output range (a nearly flat probe has almost none: a 2×2 probe of a magnitude filter failed with
2.7e-7 of float32 noise against 1e-5 × its range).

A sum of n terms evaluated in floating point, in any order, with or without fused multiply-adds, is within
γₙ · Σ|terms| of the exact sum, γₙ = n·u / (1 − n·u), u the unit roundoff: 2⁻²⁴ for float32, 2⁻¹¹ for float16
(Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1). A k×k stencil with its bias sums k² + 1 products
(a separable pair fewer); the graph's weights may differ from the float32 kernel by ``WEIGHT_ROUNDINGS`` roundings
per tap (a separable pair's two float32 factors, and a rank-1 residual allowed up to 2u·Σ|K|, see
:func:`weights_match`). For inputs |x| ≤ X, channel c's terms sum to at most S_c = Σ|K_c|·X + |b_c|, so

    |z_c − exact| ≤ γ_(k²+1+WEIGHT_ROUNDINGS) · S_c

and the magnitude √(z₀² + z₁²), 1-Lipschitz in (z₀, z₁), adds its own squares, sum and root: γ₃ · √(S₀² + S₁²).
Two implementations each within the bound differ by at most twice it.

    >>> import numpy as np
    >>> from kernelnet.runtime.spec import FilterSpec
    >>> spec = FilterSpec.from_kind(np.array([[-1., 0, 1], [-2, 0, 2], [-1, 0, 1]]))
    >>> 1e-6 < combined_error_bound(spec) < 1e-5     # γ₁₂ · Σ|K| = 12 · 2⁻²⁴ · 8
    True
"""

from __future__ import annotations

import numpy as np

from kernelnet.runtime.spec import FilterSpec

UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11}
"""Unit roundoff of each precision (half the machine epsilon)."""
WEIGHT_ROUNDINGS = 2
"""Relative roundings per tap by which a graph's weights may differ from the float32 kernel (in units of u·Σ|K|)."""
TINY = float(np.finfo(np.float32).tiny)
"""Products below this underflow to subnormals, where relative bounds end: an absolute floor per term."""


def gamma(n: int, precision: str = "fp32") -> float:
    """γₙ = n·u / (1 − n·u): the relative error bound of an n-term floating-point sum."""
    u = UNIT_ROUNDOFF[precision]
    if n * u >= 1.0:
        raise ValueError(f"no rounding bound for {n} terms in {precision}")
    return n * u / (1.0 - n * u)


def channel_sums(spec: FilterSpec, input_max: float = 1.0) -> np.ndarray:
    """S_c = Σ|K_c|·X + |b_c| for inputs |x| ≤ ``input_max``: the largest |z_c| and the sum its error scales with."""
    return np.abs(spec.kernels).reshape(len(spec.kernels), -1).sum(axis=1) * input_max + np.abs(spec.bias)


def combined_error_bound(spec: FilterSpec, input_max: float = 1.0, precision: str = "fp32") -> float:
    """Bound of |computed − exact| of the combined value (raw, abs or magnitude, before the output stage) for
    inputs |x| ≤ ``input_max``, in one implementation of ``precision``."""
    terms = spec.kernel_size ** 2 + 1 + WEIGHT_ROUNDINGS
    sums = channel_sums(spec, input_max)
    errors = gamma(terms, precision) * sums + terms * TINY
    if spec.combine == "magnitude":
        return float(np.sqrt(np.sum(errors ** 2)) + gamma(3, precision) * np.sqrt(np.sum(sums ** 2)))
    return float(errors[0])


def output_error_bound(spec: FilterSpec, input_max: float = 1.0, precision: str = "fp32") -> float:
    """Bound of |computed − exact| after the output stage's affine step ``v · scale + offset`` (clipping only
    shrinks it; a grid or rounding step is a discontinuity, which callers treat apart)."""
    out = spec.output
    combined = combined_error_bound(spec, input_max, precision)
    largest = float(np.sqrt(np.sum(channel_sums(spec, input_max) ** 2)))
    return abs(out.scale) * combined + gamma(2, precision) * (abs(out.scale) * largest + abs(out.offset))


def weights_match(got: np.ndarray, want: np.ndarray, roundings: float = 2 * WEIGHT_ROUNDINGS) -> bool:
    """True when the kernel ``got`` (e.g. a separable pair's product) is ``want`` to float32 precision:
    Σ|got − want| ≤ ``roundings``·u·Σ|want| — relative to the kernel's scale, not to each tap (an exact fit's
    −1.75e-13 where the filter has 0 is the kernel's 0)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False
    scale = float(np.abs(want).sum())
    return float(np.abs(got - want).sum()) <= roundings * UNIT_ROUNDOFF["fp32"] * scale + TINY


def chain_gain(spec: FilterSpec) -> float:
    """How much a chain's output can move per unit of its input: the product of its passes'
    |scale| · (Σ|K| + |b|) (:meth:`FilterSpec.output_bound`); one pass's own for a single pass."""
    gain = 1.0
    for p in spec.passes:
        gain *= abs(p.output.scale) * p.replace(bias=None).output_bound()
    return gain


def chain_tolerance(spec: FilterSpec, input_max: float = 1.0, precision: str = "fp32", levels: bool = True) -> float:
    """Bound of |a − b| between two float implementations of a chain's output for inputs |x| ≤ ``input_max``:
    each pass adds its own float error (twice :func:`output_error_bound`, on the values it reads) and, where it
    rounds without a grid, one step that float noise may tip at a tie; later passes scale what came before by
    their gain. A grid makes a pass exact (0 of its own) — the first one only for inputs on the 8-bit levels
    (``levels``): other inputs do not sum to its grid — but a rounding pass on a grid still tips one step where
    what it reads differs (ImageMagick's 16-bit quanta ÷ 257 then floored)."""
    tol, top = 0.0, input_max
    for i, p in enumerate(spec.passes):
        gain = abs(p.output.scale) * p.replace(bias=None).output_bound()
        exact = p.output.grid is not None and (levels or i > 0)
        own = 0.0 if exact else 2 * output_error_bound(p, top, precision)
        incoming = tol * gain
        # a rounding pass tips one step at a tie of its own float sums, or (on a grid too) where what it reads
        # already differs between the two implementations
        step = 1.0 if p.output.rounding is not None and (not exact or incoming > 0) else 0.0
        tol = incoming + own + step
        clip = p.output.clip
        top = max(abs(clip[0]), abs(clip[1])) if clip else gain * top + abs(p.output.offset) + abs(float(p.bias.max()))
    return tol
