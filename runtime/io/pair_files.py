"""Reading one pair file as it is stored (PNG, TIFF, .npy; 8/16-bit, float; gray or RGB), and what a file's
header says it holds, for :mod:`kernelnet.runtime.io.pairs`. Numpy + Pillow (OpenCV only for 16-bit colour PNGs,
whose low bytes Pillow drops)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError

FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
"""Target file types a model can write back (others are read, and written as PNG)."""


@dataclass(frozen=True)
class TargetEncoding:
    """How the black box's files hold their values: ``format`` (png / tiff / npy), ``dtype`` (uint8 / uint16 /
    float32 / float64, or int16 in ``.npy``), ``channels`` (1 or 3); ``bits`` is 8 or 16 for unsigned levels."""

    format: str
    dtype: str
    channels: int

    @property
    def bits(self) -> int | None:
        return {"uint8": 8, "uint16": 16}.get(self.dtype)

    @property
    def int_range(self) -> tuple[float, float] | None:
        """The range of an integer target's levels (uint8, uint16, int16), ``None`` for floats."""
        return {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-32768.0, 32767.0)}.get(self.dtype)

    @property
    def levels(self) -> float | None:
        """The span of an integer target's levels (255, 65535), ``None`` for floats."""
        return None if self.int_range is None else self.int_range[1] - self.int_range[0]

    def to_dict(self) -> dict[str, object]:
        return {"format": self.format, "dtype": self.dtype, "channels": self.channels, "bits": self.bits}


FLOAT32_MAX = float(np.finfo(np.float32).max)
FLOAT32_SMALL = float(np.finfo(np.float32).tiny) * 2.0 ** 24
"""Below this a whole file's values are float32 underflow: its fit would be all zeros."""


def _png_depth(path: Path) -> tuple[int, int] | None:
    """(bit depth, colour type) of a PNG's header, else ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def _png16_colour(path: Path) -> np.ndarray:
    """A 16-bit colour (or gray + alpha) PNG's levels (Pillow reads only their high bytes): decoded by OpenCV where
    installed."""
    try:
        import cv2
    except ImportError:
        raise KernelnetError(f"{path} is a 16-bit colour PNG, which Pillow reads as 8-bit: install OpenCV "
                             "(pip install opencv-python-headless) or save the files as 16-bit TIFF or .npy") from None
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise KernelnetError(f"cannot read image {path} as 16-bit colour")
    if _png_depth(path) == (16, 4):  # gray + alpha: the gray plane (alpha is dropped, as for every format)
        return np.ascontiguousarray(arr[..., 0])
    return np.ascontiguousarray(arr[..., 2::-1])  # BGR(A) → RGB


def read_raw(path: Path) -> np.ndarray:
    """A file's pixels as stored: (H, W) or (H, W, 3) uint8 / uint16 / float32 / float64, float values within
    float32's range."""
    if path.suffix.lower() == ".npy":
        from kernelnet.runtime.io.npyio import open_npy

        src = open_npy(path)  # the header checked against the file's size before anything is allocated
        try:
            arr = np.array(src.array)
        finally:
            src.close()
    elif _png_depth(path) in ((16, 2), (16, 4), (16, 6)):
        arr = _png16_colour(path)
    else:
        from kernelnet.runtime.io.images import open_image

        img = open_image(path)
        try:
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBA", "LA"):
                img = img.convert("RGB" if img.mode not in ("LA",) else "L")
            arr = np.asarray(img)
        except (OSError, ValueError) as exc:
            raise KernelnetError(f"cannot read image {path}: {exc}") from exc
        if img.mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        elif img.mode == "I":
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
                raise KernelnetError(f"{path}: 32-bit integer pixels beyond 16 bits are not supported")
            arr = arr.astype(np.uint16)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64) or not (
            arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise KernelnetError(f"{path}: expected an HxW or HxWx3 image of uint8, uint16, int16 or float, got "
                             f"{arr.dtype} {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise KernelnetError(f"{path} holds NaN or Inf")
        peak = float(np.abs(arr).max(initial=0.0))
        if peak > FLOAT32_MAX:
            raise KernelnetError(f"{path} holds values up to {peak:.3g}, beyond float32 (the model's arithmetic)")
        if 0.0 < peak < FLOAT32_SMALL:
            raise KernelnetError(f"{path} holds values no larger than {peak:.3g}, below float32's precision (the "
                                 "model's arithmetic): scale them up first")
    return arr


def encoding_of(path: Path, arr: np.ndarray) -> TargetEncoding:
    fmt = FORMATS.get(path.suffix.lower(), "png")
    return TargetEncoding(fmt, str(arr.dtype), 3 if arr.ndim == 3 else 1)


_PNG_TYPES = {**{(bits, 0): ("uint8", 1) for bits in (1, 2, 4, 8)}, (16, 0): ("uint16", 1), (8, 2): ("uint8", 3),
              (16, 2): ("uint16", 3), **{(bits, 3): ("uint8", 3) for bits in (1, 2, 4, 8)}, (8, 4): ("uint8", 1),
              (16, 4): ("uint16", 1),
              (8, 6): ("uint8", 3), (16, 6): ("uint16", 3)}
"""PNG (bit depth, colour type) → what :func:`read_raw` gives (palettes become RGB, alpha is dropped)."""
_MODES = {"1": ("uint8", 1), "L": ("uint8", 1), "LA": ("uint8", 1), "I;16": ("uint16", 1), "I;16L": ("uint16", 1),
          "I;16B": ("uint16", 1), "I": ("uint16", 1), "F": ("float32", 1)}
"""Pillow modes → what :func:`read_raw` gives (colour modes: uint8 RGB)."""


def probe_encoding(path: Path) -> TargetEncoding:
    """What :func:`read_raw` will give for ``path`` — format, dtype, channels — from its header alone."""
    fmt = FORMATS.get(path.suffix.lower(), "png")
    if fmt == "npy":
        from kernelnet.runtime.io.npyio import open_npy

        src = open_npy(path)
        try:
            dtype, shape = src.array.dtype, src.array.shape
        finally:
            src.close()
        return TargetEncoding(fmt, "uint8" if dtype == np.bool_ else str(dtype), 3 if len(shape) == 3 else 1)
    depth = _png_depth(path)
    if depth is not None and depth in _PNG_TYPES:  # the header's 26 bytes say it (no decoder started)
        return TargetEncoding(fmt, *_PNG_TYPES[depth])
    from kernelnet.runtime.io.images import open_image

    dtype, channels = _MODES.get(open_image(path).mode, ("uint8", 3))
    return TargetEncoding(fmt, dtype, channels)
