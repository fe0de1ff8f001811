"""The split rung: a blur written to the output's levels, then a derivative and its absolute value (OpenCV's 3×3
``blur`` saved as 8-bit, then ``Sobel`` and ``convertScaleAbs``). One |kernel| cannot reproduce it — the rounding
between the two passes is not linear — but its fit is the two kernels' composition K = D ∗ B (the second pass's
taps D convolved with the first's B), which is linear in B for a known D.

So for each named 3×3 derivative D (Sobel, Scharr, Prewitt, either axis; a Laplacian) the rung solves B (3×3) from
the one-kernel fit by least squares, keeps the two D that explain it best, snaps B to the smallest grid 1/q that
holds its taps, and scores every chain ``B → levels (rounded) → |D| → output stage`` over borders and roundings by
the levels it writes on whole training planes; the best wins when it writes ``EXACT_SHARE`` of them. Numpy only.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from kernelnet.filters import NAMED_KERNELS
from kernelnet.identify.chain import (EXACT_SHARE, FINALISTS, ROUNDINGS, exact_share, screen_planes, snap,
                                      training_planes)
from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import FilterSpec, OutputStage

DERIVATIVES = {name: NAMED_KERNELS[base] if not name.endswith("ᵀ") else NAMED_KERNELS[base].T
               for base in ("sobel", "scharr", "prewitt", "laplacian")
               for name in (base, base + "ᵀ") if not (base == "laplacian" and name.endswith("ᵀ"))}
"""Second passes tried: named 3×3 derivatives, both axes."""
EXPLAINED = 0.05
"""A derivative is kept when B explains the fit within this share of its norm."""


def composition_matrix(d: np.ndarray, size: int) -> np.ndarray:
    """(size + k − 1)², size² matrix M with vec(D ∗ B) = M · vec(B) for a (k, k) ``d`` and a (size, size) B
    (cross-correlation passes compose by full convolution of their taps)."""
    k, out = d.shape[0], size + d.shape[0] - 1
    m = np.zeros((out * out, size * size))
    for i, j in itertools.product(range(size), range(size)):
        full = np.zeros((out, out))
        full[i:i + k, j:j + k] = d
        m[:, i * size + j] = full.ravel()
    return m


def first_passes(kernel: np.ndarray, in_levels: float) -> list[tuple[float, str, np.ndarray]]:
    """(relative residual, derivative name, B) for each derivative that explains the 5×5 ``kernel`` (target units
    per input unit), best first; B in levels per level with a positive sum (|·| forgives the sign)."""
    if kernel.shape[-1] != 5:
        return []
    target = kernel.ravel() / in_levels
    found = []
    for name, d in DERIVATIVES.items():
        m = composition_matrix(d, 3)
        b, *_ = np.linalg.lstsq(m, target, rcond=None)
        miss = float(np.linalg.norm(m @ b - target) / max(np.linalg.norm(target), 1e-30))
        if miss <= EXPLAINED:
            found.append((miss, name, (b if b.sum() >= 0 else -b).reshape(3, 3)))
    return sorted(found, key=lambda f: f[0])[:2]


def split_spec(b: np.ndarray, q: int | None, d: np.ndarray, borders: tuple[str, str], rules: tuple[str, str],
               top: float, in_levels: float, gain: float = 1.0) -> FilterSpec:
    """``b`` (inputs in [0, 1] → levels, rounded by rules[0], on grid 1/q), then |``d``| · ``gain`` (levels → the
    targets', clipped to [0, top], rounded by rules[1]; a gain p/r with r ≤ 64 keeps its grid 1/r)."""
    bits = 8 if top <= 255 else 16
    _, r = snap(np.array([gain]))
    second = FilterSpec(d[None], None, "abs", borders[1],
                        output=OutputStage(gain, 0.0, (0.0, top), rules[1], bits, r if r and r <= 64 else None))
    first = FilterSpec(b[None] * in_levels, None, "raw", borders[0],
                       output=OutputStage(clip=(0.0, 255.0), rounding=rules[0], bits=8, grid=q))
    return first.replace(after=(second,))


def identify_split(pairs: PairSet, kernel: np.ndarray, border: str, in_levels: float,
                   candidates: list[dict[str, Any]]) -> tuple[FilterSpec, float] | None:
    """The best blur → levels → |derivative| chain behind integer ``pairs`` whose one-kernel fit is ``kernel``
    (5, 5), and its exact share on training planes; None when none writes ``EXACT_SHARE`` of the levels."""
    if pairs.encoding.int_range is None:
        return None
    top = float(pairs.encoding.int_range[1])
    firsts = first_passes(kernel, in_levels)
    if not firsts:
        return None
    planes = training_planes(pairs)
    screen = screen_planes(planes)
    borders = [(b, b) for b in dict.fromkeys([border, "reflect", "replicate"])]  # programs pad both passes alike
    scored = []
    for (miss, name, b), pair, rules in itertools.product(firsts, borders, itertools.product(ROUNDINGS, repeat=2)):
        gain = float(b.sum())  # a blur keeps the levels: the derivative's own scale (convertScaleAbs's alpha) is after
        snapped, q = snap(b.ravel() / gain)
        gain = float(snap(np.array([gain]))[0][0]) if snap(np.array([gain]))[1] else gain
        spec = split_spec(snapped.reshape(3, 3), q, DERIVATIVES[name], pair, rules, top, in_levels, gain)
        about = {"combine": "split", "derivative": name, "grid": q, "borders": list(pair), "roundings": list(rules)}
        scored.append((exact_share(spec, screen), about, spec))
    scored.sort(key=lambda c: -c[0])
    best = None
    for _, about, spec in scored[:FINALISTS]:
        share = exact_share(spec, planes)
        candidates.append({**about, "exact_share": share})
        if best is None or share > best[1]:
            best = (spec, share)
    return best if best is not None and best[1] >= EXACT_SHARE else None
