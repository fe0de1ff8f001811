"""The linear algebra of the exact closed-form fit (numpy only): patch rows, the lifted quadratic features, the
rank-checked normal-equation solve and the canonical representative of a factor pair. See :mod:`kernelnet.learn.exact`.
"""

from __future__ import annotations

import numpy as np

RANK_RTOL = 1e-13
"""Eigenvalues of the (Jacobi-scaled) normal matrix below ``RANK_RTOL × largest`` count as zero."""



def patch_matrix(padded: np.ndarray, width: int, k: int, pixels: np.ndarray) -> np.ndarray:
    """Patches under ``pixels`` (flat indices into the unpadded H×W image) → (k², P) float64, one row per tap.

    ``padded`` is the image padded by k//2 on every side, so ``kernel.ravel() @ patches`` is the same-size
    cross-correlation at those pixels. Features-by-pixels layout: every row is contiguous (fast products).
    """
    wp = width + 2 * (k // 2)
    base = (pixels // width) * wp + pixels % width
    offsets = (np.arange(k)[:, None] * wp + np.arange(k)[None, :]).ravel()
    return padded.ravel()[offsets[:, None] + base[None, :]]


def lift(z: np.ndarray) -> np.ndarray:
    """Products ``z_i z_j`` for i ≤ j in ``np.triu_indices`` order: (n, P) → (n(n+1)/2, P)."""
    n = len(z)
    out = np.empty((n * (n + 1) // 2, z.shape[1]))
    row = 0
    for i in range(n):
        np.multiply(z[i], z[i:], out=out[row:row + n - i])
        row += n - i
    return out


def quadratic_form(coef: np.ndarray, n: int) -> np.ndarray:
    """Symmetric M (n, n) from the lifted coefficients (the one of ``z_i z_j``, i < j, is 2 M_ij)."""
    m = np.zeros((n, n))
    m[np.triu_indices(n)] = coef
    return (m + m.T) / 2.0


def solve_normal(gram: np.ndarray, rhs: np.ndarray, rtol: float = RANK_RTOL) -> tuple[np.ndarray, int]:
    """Minimum-norm least-squares solution of ``gram · x = rhs`` with a numerical rank check.

    The symmetric PSD ``gram`` (u, u) is Jacobi-scaled, eigen-decomposed, and eigenvalues below
    ``rtol × largest`` are dropped (never a blind inverse). Returns (x (u,), rank).
    """
    d = np.sqrt(np.diag(gram))
    d[d == 0] = 1.0
    w, v = np.linalg.eigh(gram / d[:, None] / d[None, :])
    keep = w > rtol * max(float(w[-1]), 0.0) if w[-1] > 0 else np.zeros_like(w, dtype=bool)
    x = v[:, keep] @ ((v[:, keep].T @ (rhs / d)) / w[keep])
    return x / d, int(keep.sum())


# ------------------------------------------------------------------------------------------ canonical form


def _dominant_index(values: np.ndarray) -> int:
    """First index whose |value| is within 1e-6 of the largest (stable against round-off ties)."""
    mags = np.abs(values)
    return int(np.flatnonzero(mags >= (1.0 - 1e-6) * mags.max())[0])


def canonical_factors(factors: np.ndarray, eigvals: np.ndarray) -> np.ndarray:
    """A deterministic representative of factors (C, u) of M = Σ w_c w_cᵀ when no target is known.

    Abs (C = 1): the sign that makes the largest-|entry| positive. Double (C = 2): the principal axes
    (first kernel = the largest-norm one); if the two eigenvalues tie, the rotation that puts the entry
    (pixel) of largest ‖(w_1, w_2)‖ wholly into the first kernel; then each kernel signed as for abs.
    """
    out = np.array(factors, dtype=np.float64)
    if len(out) == 2 and eigvals[0] - eigvals[1] <= 1e-6 * abs(eigvals[0]):
        rows = np.hypot(out[0], out[1])
        i = _dominant_index(rows)
        c, s = out[0, i] / rows[i], out[1, i] / rows[i]
        out = np.array([[c, s], [-s, c]]) @ out
    for row in out:
        if np.any(row) and row[_dominant_index(row)] < 0:
            row *= -1.0
    return out


