"""PNG encoding with deflate's RLE strategy at level 1 and the "Up" row filter — OpenCV's default ``imwrite``
setting — streamed in row strips, by zlib-ng where it is installed (a dependency of the runtime), else zlib
(torch-free).

Why not Pillow's encoder (Pillow still decodes every image here): it tries all five PNG row filters on each row.
For a 256² 8-bit Sobel output it took 4.0 ms at its default level and 1.5 ms at its fastest setting; this writer
takes 0.53 ms for a file of the same size (36.4 KB vs Pillow's 36.6 KB), which is what a folder run spends most
of its time on. On photos the files come out 3–11% larger than Pillow's level 6 (smaller than OpenCV's) at an
eighth of the time. The "Up" filter works per byte against the row above, so it is the same code for 8/16-bit
gray, gray + alpha, RGB and RGBA.

    >>> import io, numpy as np
    >>> buf = io.BytesIO(); write_png(buf, np.zeros((4, 5), np.uint8)); buf.getvalue()[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kernelnet.runtime.errors import KernelnetError

try:  # zlib-ng's deflate: the same stream format, 0.33 ms instead of zlib's 0.52 ms for a 256² Sobel output
    from zlib_ng import zlib_ng as deflate_lib
except ImportError:  # no wheel for this platform: the standard library's zlib
    deflate_lib = zlib  # type: ignore[assignment]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
"""Channels → PNG colour type: gray, gray + alpha, RGB, RGBA."""
STRIP_BYTES = 1 << 20
"""Rows are filtered and compressed about this many bytes at a time: memory stays at one strip beyond the image."""


def _chunk(kind: bytes, data: bytes) -> list[bytes]:
    """A PNG chunk as pieces for ``writelines``: length, type + data, CRC of type + data."""
    return [struct.pack(">I", len(data)), kind, data,
            struct.pack(">I", deflate_lib.crc32(data, deflate_lib.crc32(kind)) & 0xFFFFFFFF)]


def write_png(target: str | os.PathLike[str] | BinaryIO, image: np.ndarray) -> None:
    """Write ``image`` — (H, W) or (H, W, C) with C in 1..4, uint8 or uint16 — as a PNG file (or into an open
    binary file). 16-bit samples are stored big-endian, as PNG requires."""
    a = np.asarray(image)
    if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in COLOUR_TYPES):
        raise KernelnetError(f"PNG takes (H, W[, 1..4]) uint8/uint16 arrays, got {a.dtype} {a.shape}")
    if a.shape[0] < 1 or a.shape[1] < 1 or max(a.shape[:2]) > 2**31 - 1:
        raise KernelnetError(f"PNG sides must be 1 to 2^31 - 1 pixels, got {a.shape[1]}x{a.shape[0]}")
    channels = a.shape[2] if a.ndim == 3 else 1
    height, width = a.shape[:2]
    rows = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder(">")).reshape(height, -1).view(np.uint8)
    header = struct.pack(">IIBBBBB", width, height, 8 * a.dtype.itemsize, COLOUR_TYPES[channels], 0, 0, 0)
    if isinstance(target, (str, os.PathLike)):
        with open(Path(target), "wb") as fh:
            _write(fh, rows, header)
    else:
        _write(target, rows, header)


def _write(fh: BinaryIO, rows: np.ndarray, header: bytes) -> None:
    """Signature, IHDR, one IDAT chunk per compressed strip, IEND."""
    pieces = [SIGNATURE, *_chunk(b"IHDR", header)]
    height, row_bytes = rows.shape
    step = max(1, STRIP_BYTES // (row_bytes + 1))
    strip = np.empty((min(step, height), row_bytes + 1), np.uint8)
    strip[:, 0] = 2  # filter type "Up": each byte minus the byte above it (the first row: minus zero)
    deflate = deflate_lib.compressobj(1, deflate_lib.DEFLATED, 15, 8, deflate_lib.Z_RLE)
    for top in range(0, height, step):
        n = min(step, height - top)
        part = strip[:n]
        if top == 0:
            part[0, 1:] = rows[0]
            np.subtract(rows[1:n], rows[:n - 1], out=part[1:, 1:])
        else:
            np.subtract(rows[top:top + n], rows[top - 1:top + n - 1], out=part[:, 1:])
        data = deflate.compress(part)
        if data:
            pieces += _chunk(b"IDAT", data)
        if len(pieces) > 64:
            fh.writelines(pieces)
            pieces = []
    fh.writelines([*pieces, *_chunk(b"IDAT", deflate.flush()), *_chunk(b"IEND", b"")])
