"""Ground-truth filters in numpy (float64), independent of torch and onnxruntime.

Shape contract: ``image`` is (..., H, W); the result has the same shape. Example::

    >>> import numpy as np
    >>> y = correlate(np.ones((4, 5)), np.ones((3, 3)))
    >>> y.shape, float(y[0, 0]), float(y[1, 1])
    ((4, 5), 4.0, 9.0)
"""

from __future__ import annotations

import numpy as np

PADDINGS = ("zeros", "reflect", "replicate")
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def pad_image(image: np.ndarray, r: int, padding: str = "zeros") -> np.ndarray:
    """Pad the last two axes by ``r`` on every side with the kernelnet border ``padding``."""
    if padding not in _NUMPY_MODE:
        raise ValueError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
    width = [(0, 0)] * (image.ndim - 2) + [(r, r), (r, r)]
    return np.pad(image, width, mode=_NUMPY_MODE[padding])


def correlate(image: np.ndarray, kernel: np.ndarray, padding: str = "zeros", bias: float = 0.0) -> np.ndarray:
    """Same-size cross-correlation of ``image`` (..., H, W) with ``kernel`` (k, k), accumulated in float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    k = kernel.shape[0]
    r = k // 2
    h, w = image.shape[-2:]
    padded = pad_image(np.asarray(image, dtype=np.float64), r, padding)
    out = np.full(image.shape, float(bias), dtype=np.float64)
    for i in range(k):
        for j in range(k):
            if kernel[i, j] != 0.0:
                out += kernel[i, j] * padded[..., i:i + h, j:j + w]
    return out


def apply_filter(image: np.ndarray, kernel: np.ndarray, model: str = "single", normalize: bool = False,
                 padding: str = "zeros") -> np.ndarray:
    """The kernelnet target: ``single`` → k⋆x (``abs`` if ``normalize``); ``double`` → √((k⋆x)² + (kᵀ⋆x)²)."""
    a = correlate(image, kernel, padding)
    if model == "double":
        return np.hypot(a, correlate(image, np.asarray(kernel).T, padding))
    if model != "single":
        raise ValueError(f"unknown model {model!r}; expected 'single' or 'double'")
    return np.abs(a) if normalize else a


def apply_kernels(image: np.ndarray, kernels: np.ndarray, biases: np.ndarray | None = None,
                  normalize: bool = False, padding: str = "zeros") -> np.ndarray:
    """Evaluate a learned model from its weights: ``kernels`` (C, k, k) with C = 1 (single) or 2 (double)."""
    kernels = np.asarray(kernels, dtype=np.float64)
    biases = np.zeros(len(kernels)) if biases is None else np.asarray(biases, dtype=np.float64)
    outs = [correlate(image, kern, padding, float(b)) for kern, b in zip(kernels, biases)]
    if len(outs) == 2:
        return np.hypot(outs[0], outs[1])
    return np.abs(outs[0]) if normalize else outs[0]
