"""Kernels compared after the model's symmetries (numpy only), shared by the metrics, the exact solver and verify.

``|k⋆x| = |−k⋆x|``: the abs model is defined up to sign. √(a² + b²) is unchanged by any orthogonal 2×2 mix of
the kernel pair: the magnitude model is aligned by orthogonal Procrustes (reflections allowed). The raw model
has no symmetry.

    >>> import numpy as np
    >>> k = np.arange(9.0).reshape(1, 3, 3)
    >>> float(np.abs(align_kernels(-k, k, "single", True)[0] - k).max())
    0.0
"""

from __future__ import annotations

import numpy as np


def embed_center(kernel: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad a (..., k, k) kernel to (..., size, size), centred."""
    k = kernel.shape[-1]
    if k == size:
        return np.asarray(kernel, dtype=np.float64)
    r = (size - k) // 2
    out = np.zeros(kernel.shape[:-2] + (size, size))
    out[..., r:r + k, r:r + k] = kernel
    return out


def target_kernels(kernel: np.ndarray, model: str) -> np.ndarray:
    """The target's kernel stack (C, k, k): (K,) for single, (K, Kᵀ) for double."""
    kernel = np.asarray(kernel, dtype=np.float64)
    return np.stack([kernel, kernel.T]) if model == "double" else kernel[None]


def procrustes(learned: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orthogonal R (C×C) minimising ‖R·learned − target‖_F for (C, n) matrices (reflections allowed)."""
    u, _, vt = np.linalg.svd(target @ learned.T)
    return u @ vt


def align_kernels(learned: np.ndarray, target: np.ndarray, model: str, normalize: bool,
                  bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Map learned kernels (C, k, k) onto the target stack (C, k', k') by the model's best symmetry.

    Returns the aligned kernels on the larger of the two sides (and the bias, transformed alike).
    """
    learned = np.asarray(learned, dtype=np.float64)
    size = max(learned.shape[-1], target.shape[-1])
    learned, target = embed_center(learned, size), embed_center(target, size)
    c = learned.shape[0]
    if model == "double":
        rot = procrustes(learned.reshape(c, -1), target.reshape(c, -1))
    elif normalize:
        rot = np.array([[1.0 if np.sum(learned * target) >= 0 else -1.0]])
    else:
        rot = np.eye(c)
    aligned = (rot @ learned.reshape(c, -1)).reshape(learned.shape)
    return aligned, None if bias is None else rot @ np.asarray(bias, dtype=np.float64)
