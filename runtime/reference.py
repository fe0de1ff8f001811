"""Ground truth in numpy (float64): a :class:`~kernelnet.runtime.spec.FilterSpec` evaluated literally.

Independent of torch and onnxruntime. Shape contract: ``image`` is (..., H, W) (values as the spec's input
encoding takes them); the result has the same shape, float64. Example::

    >>> import numpy as np
    >>> y = correlate(np.ones((4, 5)), np.ones((3, 3)))
    >>> y.shape, float(y[0, 0]), float(y[1, 1])
    ((4, 5), 4.0, 9.0)
"""

from __future__ import annotations

import numpy as np

from kernelnet.runtime.spec import BORDERS, FilterSpec, OutputStage

PADDINGS = BORDERS
_NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "symmetric": "symmetric", "replicate": "edge",
               "reflect_symmetric": "reflect", "copy": "constant"}
"""``copy`` computes the interior only (the ring is replaced by the input afterwards): any padding will do."""


def pad_image(image: np.ndarray, r: int, padding: str = "zeros") -> np.ndarray:
    """Pad the last two axes by ``r`` on every side with the kernelnet border ``padding``."""
    if padding not in _NUMPY_MODE:
        raise ValueError(f"unknown padding {padding!r}; expected one of {PADDINGS}")
    if padding == "reflect_symmetric":  # reflect before each axis, symmetric after it
        image = np.pad(image, [(0, 0)] * (image.ndim - 2) + [(r, 0), (r, 0)], mode="reflect")
        return np.pad(image, [(0, 0)] * (image.ndim - 2) + [(0, r), (0, r)], mode="symmetric")
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


def output_stage(y: np.ndarray, stage: OutputStage) -> np.ndarray:
    """``encode(y) · scale + offset``, snapped to the grid, clipped, rounded (float64 in, float64 out)."""
    if stage.identity:
        return y
    if stage.encode is not None:
        from kernelnet.runtime.curves import encode

        y = encode(y, stage.encode)
    y = y * stage.scale + stage.offset
    if stage.grid is not None:
        y = np.round(y * stage.grid) / stage.grid
    if stage.clip is not None:
        y = np.clip(y, *stage.clip)
    if stage.rounding == "half_even":
        y = np.round(y)
    elif stage.rounding == "half_up":
        y = np.floor(y + 0.5)
    elif stage.rounding == "floor":
        y = np.floor(y)
    elif stage.rounding == "toward_zero":
        y = np.trunc(y)
    return y


def rank_filter(image: np.ndarray, footprint: np.ndarray, op: str, padding: str = "replicate") -> np.ndarray:
    """Same-size order statistic (``min`` / ``max`` / ``median`` / ``range`` = max − min) of ``image`` (..., H, W) over the (k, k) bool
    ``footprint``, float64, a few output rows at a time (the window view is never copied whole)."""
    k = footprint.shape[0]
    h, w = image.shape[-2:]
    padded = pad_image(np.asarray(image, dtype=np.float64), k // 2, padding)
    taps = np.flatnonzero(np.asarray(footprint, dtype=bool).ravel())
    out = np.empty(image.shape, dtype=np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(-2, -1))
    step = max(1, (1 << 22) // max(1, w * taps.size * int(np.prod(image.shape[:-2], dtype=np.int64))))
    for r0 in range(0, h, step):
        block = windows[..., r0:r0 + step, :w, :, :].reshape(*image.shape[:-2], -1, w, k * k)[..., taps]
        if op == "min":
            value = block.min(axis=-1)
        elif op == "max":
            value = block.max(axis=-1)
        elif op == "range":
            value = block.max(axis=-1) - block.min(axis=-1)
        else:
            value = np.partition(block, taps.size // 2, axis=-1)[..., taps.size // 2]
        out[..., r0:r0 + step, :] = value
    return out


def apply_spec(image: np.ndarray, spec: FilterSpec) -> np.ndarray:
    """Evaluate ``spec`` on ``image`` (..., H, W) — raw pixels in the spec's input encoding — in float64; a chain's
    later passes (``spec.after``) each on the previous pass's output."""
    if spec.after:
        y = apply_spec(image, spec.passes[0])
        for later in spec.after:
            y = apply_spec(y, later)
        return y
    x = np.asarray(image, dtype=np.float64) * spec.input.scale
    if spec.decode is not None:
        from kernelnet.runtime.curves import decode

        x = decode(x, spec.decode)
    if spec.is_rank:
        return output_stage(rank_filter(x, spec.footprint, spec.combine, spec.border), spec.output)
    outs = [correlate(x, kern, spec.border, float(b)) for kern, b in zip(spec.kernels, spec.bias)]
    if spec.combine == "magnitude":
        y = np.hypot(outs[0], outs[1])
    else:
        y = np.abs(outs[0]) if spec.combine == "abs" else outs[0]
    y = output_stage(y, spec.output)
    if spec.border == "copy" and spec.halo:
        y = copy_ring(y, x, spec)
    return y


def copy_ring(y: np.ndarray, x: np.ndarray, spec: FilterSpec) -> np.ndarray:
    """``y`` with its outer k//2 ring replaced by the input ``x`` (in [0, 1]) in output units (Pillow's border)."""
    r, out = spec.halo, np.array(y, dtype=np.float64)
    ring = x * spec.ring_scale
    if spec.output.rounding is not None:
        ring = output_stage(ring, OutputStage(rounding=spec.output.rounding))
    mask = np.zeros(y.shape[-2:], dtype=bool)
    mask[:r], mask[-r:], mask[:, :r], mask[:, -r:] = True, True, True, True
    out[..., mask] = ring[..., mask]
    return out


def apply_filter(image: np.ndarray, kernel: np.ndarray, model: str = "single", normalize: bool = False,
                 padding: str = "zeros") -> np.ndarray:
    """A named model kind's target: ``single`` → k⋆x (``abs`` if ``normalize``); ``double`` → √((k⋆x)² + (kᵀ⋆x)²)."""
    return apply_spec(image, FilterSpec.from_kind(kernel, model, normalize, padding))


def apply_kernels(image: np.ndarray, kernels: np.ndarray, biases: np.ndarray | None = None,
                  normalize: bool = False, padding: str = "zeros") -> np.ndarray:
    """A learned model from its weights: ``kernels`` (C, k, k), C = 1 (single) or 2 (double)."""
    model = "double" if np.ndim(kernels) == 3 and len(kernels) == 2 else "single"
    return apply_spec(image, FilterSpec.from_weights(kernels, biases, model, normalize, padding))
