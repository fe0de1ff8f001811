"""Kernel error after the model's inherent symmetries, and image metrics. Numpy only.

The symmetries and the alignment live in :mod:`kernelnet.runtime.align` (shared with verify and the exact solver).
"""

from __future__ import annotations

import numpy as np

from kernelnet.runtime.align import align_kernels, embed_center, procrustes, target_kernels

__all__ = ["align_kernels", "embed_center", "kernel_error", "mse", "procrustes", "psnr_db", "target_kernels"]


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
