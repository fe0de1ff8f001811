"""Kernel error after the model's inherent symmetries, and image metrics. Numpy only.

Symmetries (DESIGN.md): ``|k⋆x| = |−k⋆x|`` (abs model: sign), and √(a² + b²) is unchanged by any orthogonal
2×2 transform of the kernel pair (double model: rotation/reflection, fitted by orthogonal Procrustes).
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
    """Map learned kernels (C, k, k) onto the target (C, k', k') by the best symmetry of the model kind.

    Returns the aligned kernels (and bias, transformed alike). Raw single: unchanged. Abs: best sign.
    Double: orthogonal Procrustes on the flattened pair.
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


def kernel_error(learned: np.ndarray, target_kernel: np.ndarray, model: str, normalize: bool) -> float:
    """Max abs difference between the aligned learned kernels (C, k, k) and the target's kernel stack."""
    target = target_kernels(target_kernel, model)
    aligned, _ = align_kernels(learned, target, model, normalize)
    size = aligned.shape[-1]
    return float(np.max(np.abs(aligned - embed_center(target, size))))


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2))


def psnr_db(pred: np.ndarray, target: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB with ``peak`` = the target's value range by default; ``inf`` for an exact match."""
    err = mse(pred, target)
    if peak is None:
        peak = float(np.max(target) - np.min(target)) or 1.0
    return float("inf") if err == 0 else float(10.0 * np.log10(peak * peak / err))
