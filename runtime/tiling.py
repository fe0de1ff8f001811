"""Tiles and row strips with a halo, so that a stitched result equals a whole-image run bit for bit.

A k×k filter's output at a pixel depends on the inputs within ``halo = k // 2``. Each tile therefore feeds the
model its output region (the *core*) grown by ``halo`` on every side, clipped to the image, and keeps only the
core of the result. Where the grown region reaches the true image edge the model's own border (zeros / reflect /
replicate) applies exactly as in a whole-image run; elsewhere the halo comes from the neighbours and the pixels
the model padded are cropped away. Every input region is at least ``halo + 1`` wide (core ≥ 1 plus the halo on
the inner side), which the reflect border needs. Example::

    >>> import numpy as np
    >>> x = np.arange(35, dtype=np.float32).reshape(1, 1, 5, 7)
    >>> y = np.empty_like(x)
    >>> run_tiled(lambda t: t * 2, x, y, plan_tiles(5, 7, halo=1, tile=(2, 3)))
    >>> bool((y == 2 * x).all())
    True

Sizes: an onnxruntime conv with one input channel builds an im2col buffer of k² × H × W float32 per image
(≈ 5.2 GB for a 12000² image with k = 3), so :func:`auto_tile` splits any image whose buffer would exceed
``budget_bytes`` into full-width row strips (contiguous in memory), or into square tiles if even a thin strip is
too large.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DEFAULT_BUDGET_BYTES = 512 * 2**20
"""Largest backend working set (``Runner.scratch_bytes_per_pixel`` × pixels) run in one call before tiling kicks
in. For onnxruntime's im2col (k² × 4 bytes per pixel) 512 MiB keeps a 4K frame with k = 3 (298 MB) whole — tiling
it measured ~25 % slower (an extra output copy); the native stencil needs no scratch and is never tiled for it."""
STREAM_BUDGET_BYTES = 128 * 2**20
"""Largest working set of one piece when streaming between memory maps (``Model.apply_to``): the backend's
scratch plus the piece's input and output pages (8 bytes per pixel), which are handed back after each piece."""
MIN_STRIP_ROWS = 16
"""Thinner strips than this waste time on halos; use square tiles instead."""

TileShape = tuple[int, int]
"""(rows, cols) of a tile's core; 0 means the full extent of that axis (``(256, 0)`` = 256-row strips)."""


@dataclass(frozen=True)
class Tile:
    """One piece of the image: ``out`` (its core, in image coordinates), ``src`` (core + halo, clipped, in image
    coordinates) and ``crop`` (the core within the model's output for ``src``)."""

    out: tuple[slice, slice]
    src: tuple[slice, slice]
    crop: tuple[slice, slice]


def split_axis(length: int, core: int, halo: int) -> list[tuple[slice, slice, slice]]:
    """Split ``range(length)`` into near-equal cores of at most ``core``: (out, src, crop) slices per piece."""
    if length < 1 or core < 1:
        raise ValueError(f"length and core must be >= 1, got {length}, {core}")
    count = math.ceil(length / core)
    bounds = [i * length // count for i in range(count + 1)]
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        s0, s1 = max(0, a - halo), min(length, b + halo)
        pieces.append((slice(a, b), slice(s0, s1), slice(a - s0, b - s0)))
    return pieces


def plan_tiles(height: int, width: int, halo: int, tile: TileShape) -> list[Tile]:
    """Tiles covering an ``height`` × ``width`` image with cores of at most ``tile`` (0 = whole axis), row-major."""
    rows = split_axis(height, tile[0] or height, halo)
    cols = split_axis(width, tile[1] or width, halo)
    return [Tile((ro, co), (rs, cs), (rc, cc)) for ro, rs, rc in rows for co, cs, cc in cols]


def im2col_bytes_per_pixel(kernel_size: int) -> int:
    """onnxruntime's im2col buffer for a one-channel k×k Conv: k² float32 per pixel."""
    return 4 * kernel_size * kernel_size


def auto_tile(height: int, width: int, kernel_size: int, budget_bytes: int = DEFAULT_BUDGET_BYTES,
              bytes_per_pixel: int | None = None) -> TileShape | None:
    """The tile shape that keeps one piece's working memory (``bytes_per_pixel``, default
    :func:`im2col_bytes_per_pixel`; 0 = none) within ``budget_bytes``, or ``None`` if the whole image fits. Prefers
    full-width row strips (contiguous, sequential I/O)."""
    halo = kernel_size // 2
    if bytes_per_pixel is None:
        bytes_per_pixel = im2col_bytes_per_pixel(kernel_size)
    if bytes_per_pixel <= 0:
        return None  # nothing to bound
    max_pixels = max(1, budget_bytes // bytes_per_pixel)
    if height * width <= max_pixels:
        return None
    rows = max_pixels // width - 2 * halo
    if rows >= MIN_STRIP_ROWS:
        return (rows, 0)
    side = max(1, math.isqrt(max_pixels) - 2 * halo)
    return (side, side)


def fit_limits(tile: TileShape | None, height: int, width: int, halo: int,
               max_hw: tuple[int, int] | None) -> TileShape | None:
    """Shrink ``tile`` so every input region fits a backend's maximum (H, W) (e.g. a TensorRT profile)."""
    if max_hw is None:
        return tile
    rows, cols = tile if tile is not None else (0, 0)
    rows, cols = rows or height, cols or width
    limit_h, limit_w = max_hw
    if height > limit_h:
        rows = min(rows, limit_h - 2 * halo)
    if width > limit_w:
        cols = min(cols, limit_w - 2 * halo)
    if rows < 1 or cols < 1:
        raise ValueError(f"the backend's maximum {limit_h}x{limit_w} leaves no room for a halo of {halo}")
    if tile is None and rows >= height and cols >= width:
        return None
    return (rows if rows < height else 0, cols if cols < width else 0)


def run_tiled(fn: Callable[[np.ndarray], np.ndarray], src: np.ndarray, dst: np.ndarray, tiles: list[Tile],
              after_tile: Callable[[int], None] | None = None,
              write: Callable[[np.ndarray, np.ndarray, Tile], bool] | None = None) -> None:
    """``dst[..., t.out] = fn(src[..., t.src])[..., t.crop]`` for every tile.

    ``src`` and ``dst`` are (N, 1, H, W) arrays (memory maps welcome); ``fn`` maps (N, 1, h, w) → (N, 1, h, w).
    ``after_tile(i)`` runs after tile ``i`` is stored (progress, releasing mapped pages). ``write(region, target,
    tile)``, when given, may store the tile itself (straight into the ``target`` view of ``dst``, no copy) and
    return True; False falls back to ``fn``.
    """
    for i, tile in enumerate(tiles):
        region, target = src[(Ellipsis, *tile.src)], dst[(Ellipsis, *tile.out)]
        if write is None or not write(region, target, tile):
            target[...] = fn(region)[(Ellipsis, *tile.crop)]
        if after_tile is not None:
            after_tile(i)
