"""The gray PNG reader (``runtime/io/png_decode.py``): the levels Pillow gives, for files written by Pillow, OpenCV,
kernelnet and by hand with every row filter; and ``None`` (Pillow's turn) for every file it does not fully
understand."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from kernelnet.runtime.io import png_decode
from kernelnet.runtime.io.images import read_levels
from kernelnet.runtime.io.png_decode import read_gray_png
from kernelnet.runtime.io.png_encode import write_png

pytestmark = pytest.mark.skipif(png_decode.unfilter is None, reason="the PNG unfilter extension is not built "
                                "(no C compiler at install): Pillow reads every file")
BUDGET = 10**8


def pillow_levels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    return np.asarray(img).astype(np.uint16 if img.mode.startswith("I") else np.uint8)


def pillow_png(a: np.ndarray, **params) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG", **params)
    return buf.getvalue()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def hand_png(a: np.ndarray, filters: np.ndarray, extra: bytes = b"", interlace: int = 0,
             height: int | None = None) -> bytes:
    """A gray PNG whose row ``y`` is filtered with type ``filters[y]`` (the PNG spec's forward filters)."""
    depth = 8 * a.dtype.itemsize
    rows = np.ascontiguousarray(a, a.dtype.newbyteorder(">")).view(np.uint8).reshape(a.shape[0], -1).astype(int)
    bpp = a.dtype.itemsize
    stream = bytearray()
    for y, kind in enumerate(filters):
        x, up = rows[y], rows[y - 1] if y else np.zeros_like(rows[0])
        left = np.concatenate([np.zeros(bpp, int), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, int), up[:-bpp]])
        if kind == 4:
            p = left + up - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        else:
            pred = [np.zeros_like(x), left, up, (left + up) // 2][kind]
        stream += bytes([kind]) + bytes(((x - pred) % 256).astype(np.uint8))
    header = struct.pack(">IIBBBBB", a.shape[1], height or a.shape[0], depth, 0, 0, 0, interlace)
    return (png_decode.SIGNATURE + chunk(b"IHDR", header) + extra + chunk(b"IDAT", zlib.compress(bytes(stream)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_every_row_filter_by_hand(dtype):
    rng = np.random.default_rng(7)
    for h, w in [(1, 1), (1, 9), (7, 1), (23, 31), (40, 64)]:
        top = 256 if dtype == np.uint8 else 65536
        a = rng.integers(0, top, (h, w)).astype(dtype)
        a[h // 2:] = np.cumsum(a[h // 2:], axis=1, dtype=dtype)  # smooth rows too
        data = hand_png(a, rng.integers(0, 5, h))
        got = read_gray_png(data, BUDGET)
        assert got is not None and got.dtype == dtype and np.array_equal(got, a)
        assert np.array_equal(got, pillow_levels(data))


def test_files_written_by_pillow_opencv_and_kernelnet():
    """Pillow and kernelnet always; OpenCV where it is installed (the runtime-alone install has neither it nor
    scikit-image: the picture is Pillow's Mandelbrot set)."""
    import importlib.util

    cv2 = __import__("cv2") if importlib.util.find_spec("cv2") else None
    rng = np.random.default_rng(3)
    photo = np.asarray(Image.effect_mandelbrot((500, 500), (-2.0, -1.25, 0.75, 1.25), 100))
    for i in range(40):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        y, x = (int(v) for v in rng.integers(0, 400, 2))
        a = np.ascontiguousarray(photo[y:y + h, x:x + w])
        if i % 2:  # grain, so that the encoders pick other row filters
            a = np.clip(a + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
        wide = (a.astype(np.uint16) * 257 + rng.integers(0, 257, a.shape)).astype(np.uint16)
        files = [pillow_png(a, compress_level=i % 10), pillow_png(wide), pillow_png(a, optimize=True)]
        for image in (a, wide):
            buf = io.BytesIO()
            write_png(buf, image)
            files.append(buf.getvalue())
        if cv2 is not None:
            files += [cv2.imencode(".png", a)[1].tobytes(), cv2.imencode(".png", wide)[1].tobytes()]
        for blob in files:
            got = read_gray_png(blob, BUDGET)
            assert got is not None and np.array_equal(got, pillow_levels(blob))


def test_files_it_does_not_fully_understand_go_to_pillow():
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, (12, 17), dtype=np.uint8)
    flat = np.zeros(12, int)
    assert read_gray_png(hand_png(a, flat), BUDGET) is not None
    assert read_gray_png(hand_png(a, flat, chunk(b"tEXt", b"Comment\0made by hand")), BUDGET) is not None
    refused = {
        "rgb": pillow_png(np.dstack([a, a, a])),
        "palette": _palette(a),
        "interlaced": hand_png(a, flat, interlace=1),
        "transparency": hand_png(a, flat, chunk(b"tRNS", b"\0\7")),
        "eXIf": hand_png(a, flat, chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\0")),
        "exif as text": hand_png(a, flat, chunk(b"zTXt", b"Raw profile type exif\0\0" + zlib.compress(b"x"))),
        "xmp": hand_png(a, flat, chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<x:xmpmeta/>")),
        "idat apart": _idat_apart(a),
        "unknown chunk": hand_png(a, flat, chunk(b"abCd", b"")),
        "filter type 5": _bad_filter(a),
        "truncated": hand_png(a, flat)[:-20],
        "bad crc": _flip_crc(hand_png(a, flat)),
        "too few rows": hand_png(a[:11], flat[:11], height=12),
        "too many rows": hand_png(a, flat, height=11),
        "not png": b"GIF89a" + bytes(40),
    }
    for name, blob in refused.items():
        assert read_gray_png(blob, BUDGET) is None, name
    assert read_gray_png(hand_png(a, flat), a.size - 1) is None  # over budget: Pillow's path says so


def _idat_apart(a: np.ndarray) -> bytes:
    """Two IDAT chunks with a text chunk between them (Pillow calls that a truncated file)."""
    stream = zlib.compress(b"".join(b"\0" + bytes(row) for row in a))
    header = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)
    return (png_decode.SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", stream[:10]) + chunk(b"tEXt", b"a\0b")
            + chunk(b"IDAT", stream[10:]) + chunk(b"IEND", b""))


def _palette(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).convert("P").save(buf, "PNG")
    return buf.getvalue()


def _flip_crc(data: bytes) -> bytes:
    return data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]  # IEND's CRC is the last 4 bytes; IDAT's ends before it


def _bad_filter(a: np.ndarray) -> bytes:
    stream = b"".join(bytes([5 if y == 3 else 0]) + bytes(row) for y, row in enumerate(a))
    header = struct.pack(">IIBBBBB", a.shape[1], a.shape[0], 8, 0, 0, 0, 0)
    return (png_decode.SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(stream))
            + chunk(b"IEND", b""))


def test_read_levels_gives_the_same_levels_with_or_without_the_fast_path(tmp_path, monkeypatch):
    """Plain gray files take the fast path; a file whose EXIF turns it (orientation 6) goes to Pillow, which
    turns it; either way read_levels gives what Pillow alone gives."""
    from kernelnet.runtime.io.png_decode import gray_png_levels

    rng = np.random.default_rng(9)
    a = rng.integers(0, 65536, (33, 20)).astype(np.uint16)
    files = {"g8.png": a.astype(np.uint8), "g16.png": a}
    for name, image in files.items():
        Image.fromarray(image).save(tmp_path / name)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.fromarray(a.astype(np.uint8)).save(tmp_path / "turned.png", exif=exif.tobytes())
    assert all(gray_png_levels(tmp_path / name, BUDGET) is not None for name in files)
    assert gray_png_levels(tmp_path / "turned.png", BUDGET) is None
    fast = {name: read_levels(tmp_path / name) for name in [*files, "turned.png"]}
    assert fast["turned.png"].shape == (20, 33)
    monkeypatch.setattr(png_decode, "unfilter", None)
    for name, levels in fast.items():
        assert gray_png_levels(tmp_path / name, BUDGET) is None
        slow = read_levels(tmp_path / name)
        assert slow.dtype == levels.dtype and np.array_equal(slow, levels), name
