"""The one small interface every backend implements (Polygraphy-style: a loader builds a :class:`Runner`).

A runner executes the exported filter on a batch exactly as the graph defines it: ``(N, 1, H, W)`` in the
runner's ``input_dtype`` (float32 in [0, 1] or uint8) → ``(N, 1, H, W)`` float32. Layout handling, dtype
conversion, validation and tiling live above it, in :class:`kernelnet.runtime.model.Model`, so a backend module
only has to know how to run one batch. Torch-free.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.spec_codec import ModelInfo
from kernelnet.runtime.tiling import im2col_bytes_per_pixel

__all__ = ["ModelInfo", "Runner"]


class Runner(abc.ABC):
    """Runs one exported model on (N, 1, H, W) batches. Subclasses set the attributes in ``__init__``.

    Attributes:
        name: backend name shown in tables (``onnxruntime``, ``onnxruntime-int8``, ``tensorrt``, ``pytorch``).
        path: the artifact it runs.
        info: the model's :class:`ModelInfo`.
        input_dtype: dtype the graph takes (``"float32"`` or ``"uint8"``).
        min_shape / max_shape: inclusive (N, H, W) limits the backend accepts (``None``: unlimited).
    """

    name: str = "runner"
    path: Path | None = None
    info: ModelInfo = ModelInfo()
    input_dtype: str = "float32"
    min_shape: tuple[int, int, int] | None = None
    max_shape: tuple[int, int, int] | None = None
    writes_rows: bool = False
    """True when :meth:`run_rows_into` writes output rows straight into the caller's buffer (tiles need no copy)."""
    accepts_integer: bool = False
    """True when :meth:`run` takes uint8 / uint16 batches as they are (values v / 255, v / 65535) for a float32
    graph."""
    concurrent: bool = False
    """True when several threads may call :meth:`run` at once (``kernelnet apply`` then runs files in parallel)."""
    forkable: bool = False
    """True when a forked child may call :meth:`run` (no thread pool of the parent's that the child lacks):
    ``kernelnet apply`` then runs files on worker processes."""
    levels_dtype: Any = None
    """numpy dtype of :meth:`run_levels` (the integer output stage written directly), ``None`` where the runner
    has none."""

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run the graph: ``batch`` (N, 1, H, W) C-contiguous in ``input_dtype`` → (N, 1, H, W) float32.

        Raises :class:`kernelnet.runtime.errors.KernelnetError` if the backend refuses the input.
        """

    @property
    def halo(self) -> int | None:
        """Pixels an output depends on beyond its own position, as far as tiling may trust it (default: the
        metadata's k // 2; the onnxruntime runner checks it against the graph)."""
        return self.info.halo

    def run_checked(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """``run`` plus whether the input is known to hold no NaN/Inf without looking at it (default: not known,
        so the caller checks the input; a backend whose finite output proves a finite input says so for free)."""
        return self.run(batch), False

    def scratch_bytes_per_pixel(self, kernel_size: int) -> int:
        """Working memory per pixel of one call, which sizes automatic tiling (default: onnxruntime's im2col
        buffer of k² float32 per pixel)."""
        return im2col_bytes_per_pixel(kernel_size)

    def run_rows_into(self, batch: np.ndarray, out: np.ndarray, row0: int, row1: int) -> bool:
        """Write output rows ``[row0, row1)`` of ``batch`` (N, 1, H, W) C-contiguous into ``out`` (N, 1,
        row1 − row0, W) C-contiguous float32; returns what :meth:`run_checked` returns for finiteness."""
        raise NotImplementedError(f"{self.name} does not write rows in place")

    def run_levels(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """(N, 1, H, W) → the integer output stage's levels in ``levels_dtype`` (runners that set it), and what
        :meth:`run_checked` says of finiteness."""
        raise NotImplementedError(f"{self.name} does not write integer levels")

    def describe(self) -> dict[str, Any]:
        """Backend settings worth reporting (session options, providers, precision)."""
        return {"backend": self.name, "precision": self.info.precision}

    def close(self) -> None:
        """Release backend resources (sessions, device buffers). Idempotent."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, path={str(self.path)!r})"
