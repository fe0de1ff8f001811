"""Input contract of the runtime: layouts, dtypes and value checks (torch-free).

Accepted: H×W, N×H×W or N×1×H×W arrays, float32 in [0, 1], uint8 (v / 255) or uint16 (v / 65535), not empty,
finite. Example::

    >>> import numpy as np
    >>> batch, restore = as_batch(np.zeros((4, 5), np.float32))
    >>> batch.shape, restore(batch).shape
    ((1, 1, 4, 5), (4, 5))
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kernelnet.runtime.errors import KernelnetError

DTYPES = (np.dtype(np.float32), np.dtype(np.uint8), np.dtype(np.uint16))
LEVELS = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
"""Integer frames: the value 1.0 of a float32 frame."""


def check_array(array: np.ndarray, what: str = "input") -> None:
    """Refuse what the models cannot take: wrong dtype, wrong rank, a channel axis ≠ 1, no pixels."""
    if not isinstance(array, np.ndarray) or isinstance(array, np.matrix):
        raise KernelnetError(f"{what} must be a numpy array, got {type(array).__name__}")
    if array.dtype not in DTYPES:
        raise KernelnetError(f"{what} has dtype {array.dtype}: expected float32 in [0, 1], uint8 or uint16 "
                             "(convert with .astype(np.float32))")
    if array.ndim not in (2, 3, 4):
        raise KernelnetError(f"{what} has shape {array.shape}: expected HxW, NxHxW or Nx1xHxW")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        raise KernelnetError(f"{what} has shape {array.shape}: an HxWx{array.shape[-1]} colour image, and this model "
                             "filters one channel; convert it to gray first (a batch of width-"
                             f"{array.shape[-1]} images goes in as Nx1xHxW)")
    if array.ndim == 4 and array.shape[1] != 1:
        raise KernelnetError(f"{what} has shape {array.shape}: one channel expected (Nx1xHxW)")
    if array.size == 0:
        raise KernelnetError(f"{what} is empty (shape {array.shape})")


def as_batch(array: np.ndarray, what: str = "input") -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """A (N, 1, H, W) view of ``array`` and a function that gives a (N, 1, H, W) result the caller's layout."""
    check_array(array, what)
    shape = array.shape
    if array.ndim == 2:
        batch = array[None, None]
    elif array.ndim == 3:
        batch = array[:, None]
    else:
        batch = array
    return batch, lambda out: out.reshape(shape)


def all_finite(array: np.ndarray) -> bool:
    """True when ``array`` holds no NaN/Inf. Fast path: one BLAS dot product (NaN and ±Inf propagate into it;
    a finite overflow just falls back to the exact element test)."""
    if array.dtype.kind != "f":
        return True
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.dot(flat, flat)
        if np.isfinite(total):
            return True
    return bool(np.isfinite(array).all())


def count_nonfinite(array: np.ndarray, chunk: int = 1 << 22) -> int:
    """Number of NaN/Inf values, scanned in chunks (works on memory maps without loading them whole)."""
    if array.dtype.kind != "f":
        return 0
    flat = array.reshape(-1) if array.flags.c_contiguous else np.ravel(array)
    return int(sum(flat.size - np.count_nonzero(np.isfinite(flat[i:i + chunk]))
                   for i in range(0, flat.size, chunk)))


def nonfinite_error(count: int, what: str = "input") -> KernelnetError:
    return KernelnetError(f"{what} contains {count} NaN/Inf value{'s' if count != 1 else ''}")


def to_dtype(batch: np.ndarray, dtype: str) -> np.ndarray:
    """Convert a batch to the graph's input dtype: uint8 / uint16 → float32 is ``x / 255`` / ``x / 65535`` (as the
    uint8 graph does); float32 → uint8 is ``round(clip(x, 0, 1) × 255)`` (exact for 8-bit sources, quantising
    otherwise)."""
    if batch.dtype == dtype:
        return np.ascontiguousarray(batch)
    if batch.dtype in LEVELS:
        unit = np.divide(batch, np.float32(LEVELS[batch.dtype]), dtype=np.float32)
        return unit if dtype == "float32" else to_dtype(unit, dtype)
    scaled = np.clip(batch, 0.0, 1.0) * np.float32(255.0)
    return np.rint(scaled, out=scaled).astype(np.uint8)
