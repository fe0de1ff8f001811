"""Image decoding and encoding with Pillow + numpy (torch-free; shared by training and the runtime).

Images become grayscale float32 in [0, 1]: 8-bit / 255, 16-bit / 65535, colour by ITU-R 601 luma
(0.299 R + 0.587 G + 0.114 B) computed in float, alpha ignored, palettes expanded.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.png_encode import write_png

MAX_PIXELS_DEFAULT = 100_000_000
"""Decoded-pixel budget per image file (a 140 KB PNG can claim 12000 × 12000): raise it with the environment
variable ``KERNELNET_MAX_PIXELS`` or ``kernelnet apply --max-pixels``."""


def max_pixels() -> int:
    text = os.environ.get("KERNELNET_MAX_PIXELS", "")
    try:
        return int(text) if text else MAX_PIXELS_DEFAULT
    except ValueError:
        raise KernelnetError(f"KERNELNET_MAX_PIXELS must be a whole number of pixels, got {text!r}") from None


_OPEN_LOCK = threading.Lock()
ORIENTATION = 0x0112
"""The EXIF orientation tag (1: upright)."""


def open_image(path: str | os.PathLike[str]) -> Any:
    """A decoded Pillow image, upright (EXIF orientation applied), within the pixel budget; one-line errors.
    Thread-safe (``kernelnet apply`` decodes files on several threads)."""
    from PIL import Image, ImageOps

    budget = max_pixels()
    try:
        with _OPEN_LOCK:  # Pillow's own bomb check is off while the header is read: ours, below, says more
            old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = old
        try:
            if img.width * img.height > budget:
                raise KernelnetError(f"image {path} is {img.width}x{img.height} = {img.width * img.height:,} pixels, "
                                     f"over the budget of {budget:,} (raise it with KERNELNET_MAX_PIXELS or "
                                     "--max-pixels)")
            img.load()
            if img.getexif().get(ORIENTATION, 1) != 1:
                return ImageOps.exif_transpose(img)  # a transposed copy
            return img.copy() if getattr(img, "fp", None) is not None else img  # loaded: the file is closed
        finally:
            if getattr(img, "fp", None) is not None:
                img.close()  # multi-frame formats keep the file open (the copy above holds the pixels)
    except KernelnetError:
        raise
    except Exception as exc:  # decoders of crafted files raise more than OSError (struct.error, EOFError, ...)
        raise KernelnetError(f"cannot read image {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                             ) from exc


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pnm")
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def to_gray(array: np.ndarray) -> np.ndarray:
    """Turn an (H, W), (H, W, 3) or (H, W, 4) integer/bool/float array into float32 [0, 1] grayscale."""
    a = np.asarray(array)
    if a.dtype == np.bool_:
        scaled = a.astype(np.float64)
    elif a.dtype == np.uint8:
        scaled = a / 255.0
    elif a.dtype == np.uint16:
        scaled = a / 65535.0
    elif np.issubdtype(a.dtype, np.integer):  # 32-bit integer pixels: 16-bit levels when they fit, else refused
        if a.min(initial=0) < 0 or a.max(initial=0) > 65535:
            raise KernelnetError(f"integer pixels from {int(a.min(initial=0))} to {int(a.max(initial=0))} do not fit "
                                 "16 bits: save the image as 8/16-bit or float")
        scaled = a / 65535.0
    else:
        scaled = np.clip(a.astype(np.float64), 0.0, 1.0)
    if scaled.ndim == 3:
        if scaled.shape[2] == 1:
            scaled = scaled[..., 0]
        elif scaled.shape[2] in (2,):  # gray + alpha
            scaled = scaled[..., 0]
        elif scaled.shape[2] in (3, 4):
            scaled = scaled[..., :3] @ LUMA
        else:
            raise KernelnetError(f"unsupported channel count {scaled.shape[2]}")
    if scaled.ndim != 2:
        raise KernelnetError(f"expected a 2-D image, got shape {a.shape}")
    return scaled.astype(np.float32)


def read_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to (H, W) float32 in [0, 1]. Raises :class:`KernelnetError` if unreadable."""
    return _gray(open_image(path), path)


def _gray(img: Any, path: str | os.PathLike[str]) -> np.ndarray:
    """A decoded Pillow image as (H, W) float32 in [0, 1]."""
    mode = img.mode
    try:
        if mode in ("P", "PA"):
            img = img.convert("RGBA")
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            img = img.convert("RGB")
        elif mode.startswith("I;16"):
            return to_gray(np.asarray(img).astype(np.uint16))
        elif mode == "I":
            return to_gray(np.asarray(img).astype(np.int64))
        return to_gray(np.asarray(img))
    except KernelnetError as exc:
        raise KernelnetError(f"cannot read image {path}: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise KernelnetError(f"cannot read image {path}: {exc}") from exc


def read_levels(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file for a gray model: an 8-bit or 16-bit gray file as its (H, W) uint8 / uint16 levels
    (models read them as v / 255, v / 65535: the values :func:`read_gray` gives), anything else as
    :func:`read_gray` does. A plain gray PNG skips Pillow (:mod:`kernelnet.runtime.io.png_decode`: the same levels,
    in about half the time)."""
    from kernelnet.runtime.io.png_decode import gray_png_levels

    levels = gray_png_levels(path, max_pixels())
    if levels is not None:
        return levels
    img = open_image(path)
    if img.mode == "L":
        return np.asarray(img)
    if img.mode in ("I;16", "I;16L", "I;16B"):
        return np.asarray(img).astype(np.uint16)
    return _gray(img, path)


def walk_files(folder: str | os.PathLike[str], suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Every regular file below ``folder`` whose suffix is one of ``suffixes``, sorted; iterative (any depth: a
    recursive walk ends in RecursionError past ~1000 levels) and not into symbolic links to folders (a loop
    ends)."""
    found, stack = [], [Path(folder)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError as exc:
            raise KernelnetError(f"cannot list {exc.filename}: {exc.strerror or exc}") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
            elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in suffixes:
                found.append(Path(entry.path))
    return sorted(found)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All files below ``folder`` (recursively) with an image suffix, sorted."""
    return walk_files(folder)


def write_image(path: str | os.PathLike[str], image: np.ndarray, bits: int = 8, scale: float | None = None,
                shift: float = 0.0, into: str | os.PathLike[str] | None = None) -> float:
    """Write (H, W) float data: ``.npy`` exact float32, ``.tif/.tiff`` float32, ``.png`` 8/16-bit.

    For PNG the values are multiplied by ``scale`` (default: 1/max, or 1 when max ≤ 1), ``shift`` is added and
    the result clipped to [0, 1] before quantisation. Returns the scale used (1.0 for exact formats). Written
    atomically, or straight into ``into`` in ``path``'s format (the caller stages and places the file, as
    ``kernelnet apply`` does).
    """
    path = Path(path)
    write_with = _writer(into)
    suffix = path.suffix.lower()
    data = np.asarray(image, dtype=np.float32)
    if suffix == ".npy":
        def save_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, data)

        write_with(path, save_npy)
        return 1.0
    from PIL import Image

    if suffix in (".tif", ".tiff"):
        write_with(path, lambda tmp: Image.fromarray(data, mode="F").save(tmp, format="TIFF"))
        return 1.0
    if suffix != ".png":
        raise KernelnetError(f"unsupported output format {suffix!r}: use .png, .tif/.tiff or .npy")
    if scale is None:
        peak = float(np.max(data)) if data.size else 0.0
        scale = 1.0 / peak if peak > 1.0 else 1.0
    if bits not in (8, 16):
        raise KernelnetError(f"PNG bit depth must be 8 or 16, got {bits}")
    levels = quantize_unit(data, scale, bits, shift)
    write_with(path, lambda tmp: write_png(tmp, levels))
    return float(scale)


def quantize_unit(data: np.ndarray, scale: float, bits: int, shift: float = 0.0) -> np.ndarray:
    """round(clip(data × scale + shift, 0, 1) × (2^bits − 1)) as uint8 / uint16, float32 arithmetic: in one pass
    by the C stencil module where it is built, else in numpy (the same levels, bit for bit)."""
    dtype = np.uint16 if bits == 16 else np.uint8
    _stencil = _one_pass(data)
    if _stencil is not None:
        out = np.empty(data.shape, dtype)
        _stencil.unit_levels(data, out, float(np.float32(scale)), float(np.float32(shift)), bits)
        return out
    top = np.float32(2**bits - 1)
    scratch = np.multiply(data, np.float32(scale), dtype=np.float32)
    if shift:
        np.add(scratch, np.float32(shift), out=scratch)
    np.clip(scratch, 0.0, 1.0, out=scratch)
    np.multiply(scratch, top, out=scratch)
    np.rint(scratch, out=scratch)
    return scratch.astype(dtype)


def _one_pass(data: np.ndarray) -> Any:
    """The C stencil module where it is built and ``data`` is a non-empty contiguous float32 array, else None."""
    if data.dtype != np.float32 or not data.flags.c_contiguous or not data.size:
        return None
    from kernelnet.runtime.backends.native_backend import _stencil

    return _stencil


def value_range(data: np.ndarray) -> tuple[float, float]:
    """(min, max) of a non-empty array, in one pass for a contiguous float32 one."""
    _stencil = _one_pass(data)
    if _stencil is not None:
        return _stencil.extrema(data)
    return float(data.min()), float(data.max())


def _writer(into: str | os.PathLike[str] | None):
    """``write_with(path, fn)``: atomic (a temporary file renamed into place), or ``fn(into)``."""
    if into is None:
        from kernelnet.runtime.io.atomic import write_with

        return write_with
    return lambda path, fn: fn(Path(into))


def read_planes(path: str | os.PathLike[str], channels: int, levels: bool = False) -> np.ndarray:
    """Decode an image file to (C, H, W) float32 in [0, 1]: C = 3 keeps R, G, B (gray files repeated), C = 1 is
    :func:`read_gray`. ``levels``: 8-bit planes and 16-bit gray stay the integers they are (see
    :func:`read_levels`)."""
    if channels == 1:
        return (read_levels(path) if levels else read_gray(path))[None]
    img = open_image(path)
    try:
        rgb = np.asarray(img.convert("RGB")) if img.mode not in ("I;16", "I;16B", "I;16L") else None
    except (OSError, ValueError) as exc:
        raise KernelnetError(f"cannot read image {path}: {exc}") from exc
    if rgb is None:
        gray = np.asarray(img).astype(np.uint16)
        return np.repeat((gray if levels else gray.astype(np.float32) / 65535.0)[None], 3, axis=0)
    planes = np.ascontiguousarray(np.moveaxis(rgb, 2, 0))
    return planes if levels else planes.astype(np.float32) / np.float32(255.0)


def write_encoded(path: str | os.PathLike[str], values: np.ndarray, dtype: str,
                  into: str | os.PathLike[str] | None = None) -> str:
    """Write (H, W) or (H, W, 3) output values as the training targets held them: integer levels as 8/16-bit
    PNG / TIFF or ``.npy`` of that dtype, floats as float32 TIFF / ``.npy``; returns a one-line description.
    Atomically, or straight into ``into`` (see :func:`write_image`)."""
    path = Path(path)
    write_with = _writer(into)
    suffix = path.suffix.lower()
    if values.dtype == dtype:
        data = values  # levels already (the native stencil writes them)
    elif dtype in ("uint8", "uint16", "int16"):
        info = np.iinfo(dtype)
        data = np.clip(np.rint(values), info.min, info.max).astype(dtype)  # levels: the graph clips and rounds
    else:
        data = np.asarray(values, dtype=np.float32 if dtype == "float32" or suffix != ".npy" else dtype)
    if suffix == ".npy":
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, data)

        write_with(path, save)
        return f"{data.dtype} .npy, as the training targets"
    from PIL import Image

    if data.dtype == np.float32 and data.ndim == 3:
        raise KernelnetError(f"{path}: float RGB images go to .npy (TIFF float is one channel)")
    fmt = "TIFF" if suffix in (".tif", ".tiff") else "PNG"
    if fmt == "PNG" and data.dtype in (np.uint8, np.uint16):
        write_with(path, lambda tmp: write_png(tmp, data))
    else:
        image = Image.fromarray(data)
        write_with(path, lambda tmp: image.save(tmp, format=fmt))
    return f"{data.dtype} {fmt}{' RGB' if data.ndim == 3 else ''}, levels as the training targets"
