"""The callable model that :func:`kernelnet.runtime.load` returns: layouts, dtypes, checks and tiling over a Runner.

Example::

    >>> from kernelnet.runtime import load                        # doctest: +SKIP
    >>> m = load("artifacts/runs/sobel-single")                   # doctest: +SKIP
    >>> m(np.random.rand(480, 640).astype(np.float32)).shape      # doctest: +SKIP
    (480, 640)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.backends.base import ModelInfo, Runner
from kernelnet.runtime.io.inputs import all_finite, as_batch, count_nonfinite, nonfinite_error, to_dtype
from kernelnet.runtime.tiling import (DEFAULT_BUDGET_BYTES, STREAM_BUDGET_BYTES, Tile, TileShape, auto_tile, fit_limits,
                                      plan_tiles, run_tiled)

TileArg = int | tuple[int, int] | None
"""``None``: automatic (tile only above the memory budget); ``0``: never tile; ``N``: N×N cores;
``(rows, cols)``: rows×cols cores, 0 = the full axis (``(256, 0)`` = 256-row strips)."""


def normalize_tile(tile: TileArg) -> TileShape | None | str:
    """``tile`` argument → a (rows, cols) shape, ``None`` (never tile) or ``"auto"``."""
    if tile is None:
        return "auto"
    if isinstance(tile, (int, np.integer)):
        if tile < 0:
            raise KernelnetError(f"tile must be >= 0, got {tile}")
        return None if tile == 0 else (int(tile), int(tile))
    rows, cols = (int(v) for v in tile)
    if rows < 0 or cols < 0:
        raise KernelnetError(f"tile must be >= 0, got {tile}")
    return None if rows == cols == 0 else (rows, cols)


class Model:
    """``y = model(x)``: x is H×W, N×H×W or N×1×H×W, float32 in [0, 1] or uint8; y is float32 in x's layout.

    Args:
        runner: the backend that runs (N, 1, H, W) batches.
        tile: see :data:`TileArg`.
        budget_bytes: working-memory budget for automatic tiling (see :mod:`kernelnet.runtime.tiling`).
        check_finite: refuse float inputs with NaN/Inf (one extra pass over the input, unless the backend's
            finite output proves a finite input, as the native stencil's does).
    """

    def __init__(self, runner: Runner, tile: TileArg = None, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 check_finite: bool = True) -> None:
        self.runner = runner
        self.tile = normalize_tile(tile)
        self.budget_bytes = budget_bytes
        self.check_finite = check_finite

    @property
    def info(self) -> ModelInfo:
        return self.runner.info

    @property
    def input_dtype(self) -> str:
        return self.runner.input_dtype

    @property
    def kernel_size(self) -> int | None:
        return self.info.kernel_size

    @property
    def padding(self) -> str:
        return self.info.padding

    def __call__(self, image: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Filter ``image`` (see the class docstring); raises KernelnetError for inputs outside the contract.

        ``out``: a float32 C-contiguous array of the result's shape to write into (a frame buffer reused from call
        to call: the native stencil then writes its rows straight into it, and no memory is allocated); returned.
        """
        batch, restore = as_batch(image)
        if out is not None and (out.dtype != np.float32 or out.shape != image.shape or not out.flags.c_contiguous
                                or not out.flags.writeable):
            raise KernelnetError(f"out must be a writable C-contiguous float32 array of shape {image.shape}, got "
                                 f"{out.dtype} {out.shape}")
        if out is not None and np.may_share_memory(out, image):
            raise KernelnetError("out shares memory with the input: the filter reads each input pixel after "
                                 "neighbouring outputs are written, so give it a buffer of its own")
        shape, max_n = self.tile_shape(batch.shape[2], batch.shape[3]), self._max_batch(batch)
        if out is None and shape is None and batch.shape[0] <= max_n:
            return restore(self._guarded(batch, batch))  # whole image in one call: no extra copy
        target = np.empty(batch.shape, dtype=np.float32) if out is None else out.reshape(batch.shape)
        self._run_into(batch, target, self._tiles(batch.shape[2], batch.shape[3], shape), max_n)
        return restore(target) if out is None else out

    def levels(self, image: np.ndarray) -> np.ndarray:
        """The integer output (a spec with ``output.bits``) as uint8 / uint16 levels, in ``image``'s layout: written
        by the backend where it can (the native stencil), else the float32 result — whole numbers within the
        clip bounds — stored as integers."""
        spec = self.info.spec
        bits = spec.final_output.bits if spec is not None else None
        if bits is None:
            raise KernelnetError("this model has no integer output stage: use model(x) for float32 values")
        dtype = np.uint8 if bits == 8 else np.uint16
        batch, restore = as_batch(image)
        if self.runner.levels_dtype == dtype and self.tile_shape(batch.shape[2], batch.shape[3]) is None \
                and batch.shape[0] <= self._max_batch(batch):
            levels, input_finite = self.runner.run_levels(self._feed(batch))
            self._refuse_nonfinite(batch, input_finite, batch)
            return restore(levels)
        top = float(2 ** bits - 1)
        return np.clip(self(image), 0.0, top).astype(dtype)

    def plan(self, height: int, width: int, stream: bool = False) -> list[Tile]:
        """The tiles an ``height`` × ``width`` image is run in (one tile = the whole image); ``stream``: as
        :meth:`apply_to` runs it."""
        return self._tiles(height, width, self.tile_shape(height, width, stream))

    def tile_shape(self, height: int, width: int, stream: bool = False) -> TileShape | None:
        """The core shape an ``height`` × ``width`` image is tiled with, ``None`` for one piece; raises
        KernelnetError for sizes the model or backend cannot run. ``stream``: the pieces' input and output pages
        count too (:data:`~kernelnet.runtime.tiling.STREAM_BUDGET_BYTES`)."""
        halo = self.runner.halo
        spec = self.info.spec
        if spec is not None and min(height, width) < spec.min_side:
            border = max(spec.passes, key=lambda p: p.min_side).border  # the pass that sets the minimum
            need = f"> {spec.min_side - 1}" if border == "reflect" else f">= {spec.min_side}"
            raise KernelnetError(f"{border} border needs H and W {need}, got {height}x{width}")
        lo = self.runner.min_shape
        if lo is not None and (height < lo[1] or width < lo[2]):
            raise KernelnetError(f"{self.runner.name} needs images of at least {lo[1]}x{lo[2]}, got {height}x{width}")
        shape: TileShape | None
        if self.tile == "auto" and self.kernel_size and halo is not None:
            per_pixel = self.runner.scratch_bytes_per_pixel(self.kernel_size) + (8 if stream else 0)
            budget = min(self.budget_bytes, STREAM_BUDGET_BYTES) if stream else self.budget_bytes
            shape = auto_tile(height, width, 2 * halo + 1, budget, per_pixel)  # a chain: its whole reach
        elif self.tile == "auto":
            shape = None  # no (trusted) kernel size: nothing to size pieces by, run whole
        else:
            shape = self.tile  # type: ignore[assignment]
        if min(height, width) == 1:
            # A one-pixel-wide image is small whatever its length, and onnxruntime's Conv after an edge Pad sums
            # such images in a size-dependent order (last-bit differences between tiles): run it whole.
            shape = None
        hi = self.runner.max_shape
        if hi is not None and halo is not None:
            try:
                shape = fit_limits(shape, height, width, halo, (hi[1], hi[2]))
            except ValueError as exc:
                raise KernelnetError(str(exc)) from None
        if shape is not None and (shape[0] or height) >= height and (shape[1] or width) >= width:
            shape = None  # one tile covers the image
        if shape is not None and halo is None:
            raise KernelnetError(f"{self.runner.path} has no kernelnet metadata whose kernel size its graph "
                                 "confirms: cannot tile it")
        return shape

    def _tiles(self, height: int, width: int, shape: TileShape | None) -> list[Tile]:
        if shape is None:
            return plan_tiles(height, width, 0, (0, 0))
        return plan_tiles(height, width, self.runner.halo or 0, shape)

    def apply_to(self, src: np.ndarray, dst: np.ndarray, after_tile: Callable[[int], None] | None = None) -> None:
        """Filter ``src`` (N, 1, H, W) into ``dst`` (N, 1, H, W) float32 tile by tile (memory maps welcome).

        ``after_tile(i)`` is called after each stored tile (progress, releasing mapped pages).
        """
        if src.shape != dst.shape or dst.dtype != np.float32:
            raise KernelnetError(f"output must be float32 of shape {src.shape}, got {dst.dtype} {dst.shape}")
        tiles = self.plan(src.shape[2], src.shape[3], stream=True)
        self._run_into(src, dst, tiles, self._max_batch(src), after_tile)

    def _max_batch(self, batch: np.ndarray) -> int:
        return self.runner.max_shape[0] if self.runner.max_shape else batch.shape[0]

    def _run_into(self, src: np.ndarray, dst: np.ndarray, tiles: list[Tile], max_n: int,
                  after_tile: Callable[[int], None] | None = None) -> None:
        """Filter ``src`` into ``dst`` ``max_n`` images at a time, tile by tile."""
        for n0 in range(0, src.shape[0], max_n):
            part = slice(n0, n0 + max_n)
            run_tiled(lambda x: self._guarded(x, src), src[part], dst[part], tiles, after_tile,
                      lambda region, target, tile: self._write_rows(region, target, tile, src))

    def _write_rows(self, region: np.ndarray, target: np.ndarray, tile: Tile, whole: np.ndarray) -> bool:
        """Run a full-width tile straight into its ``target`` view when the backend writes rows in place."""
        rows, cols = tile.crop
        if not (self.runner.writes_rows and target.flags.c_contiguous and target.flags.writeable
                and cols.start == 0 and cols.stop == region.shape[3]):
            return False
        x = np.ascontiguousarray(self._feed(region))
        self._refuse_nonfinite(region, self.runner.run_rows_into(x, target, rows.start, rows.stop), whole)
        return True

    def _feed(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the runner takes it: 8/16-bit frames as they are where the runner converts them itself."""
        if x.dtype in (np.uint8, np.uint16) and self.runner.accepts_integer and self.runner.input_dtype == "float32":
            return np.ascontiguousarray(x)
        return to_dtype(x, self.runner.input_dtype)

    def _guarded(self, x: np.ndarray, whole: np.ndarray) -> np.ndarray:
        out, input_finite = self.runner.run_checked(self._feed(x))
        self._refuse_nonfinite(x, input_finite, whole)
        return out

    def _refuse_nonfinite(self, x: np.ndarray, known_finite: bool, whole: np.ndarray) -> None:
        """Raise (counting over ``whole``) if ``x`` holds NaN/Inf, unless the backend already proved it does not."""
        if self.check_finite and not known_finite and not all_finite(x):
            raise nonfinite_error(count_nonfinite(whole))

    def describe(self) -> dict[str, Any]:
        tile = self.tile if isinstance(self.tile, str) or self.tile is None else "x".join(map(str, self.tile))
        return {**self.runner.describe(), "tile": tile if tile is not None else "off"}

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({self.runner!r}, tile={self.tile!r})"
