"""A chain of passes on the C stencil: one :class:`~kernelnet.runtime.backends.native_backend.NativeRunner` per pass,
each on the previous pass's float32 output (N, 1, H, W), the last writing float32 or the integer levels.

The graph is proven pass by pass (:func:`kernelnet.runtime.checks.graph_check.stencil_problem`): each pass's part
of the graph is that pass's stencil, so running the passes in order is the graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.backends.base import Runner
from kernelnet.runtime.spec_codec import ModelInfo


class NativeChainRunner(Runner):
    """Runs ``info.spec``'s passes in order with the native stencil (see the module docstring)."""

    accepts_integer = True
    concurrent = True
    forkable = True

    def __init__(self, info: ModelInfo, threads: int | None = None, path: Path | None = None,
                 name: str = "native") -> None:
        from kernelnet.runtime.backends.native_backend import NativeRunner

        assert info.spec is not None and info.spec.after
        self.info, self.path, self.name = info, path, name
        self.passes = [NativeRunner(ModelInfo(p, None, info.precision), threads, path, name)
                       for p in info.spec.passes]
        self.threads = self.passes[0].threads
        self.input_dtype = info.spec.input.dtype
        self.levels_dtype = self.passes[-1].levels_dtype

    def _through(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """Every pass but the last, and whether the input is proven finite (by the first pass, which reads it)."""
        y, finite = self.passes[0].run_checked(batch)
        for later in self.passes[1:-1]:
            y = later.run(y)
        return y, finite

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_checked(batch)[0]

    def run_checked(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        y, finite = self._through(batch)
        return self.passes[-1].run(y), finite

    def run_levels(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        y, finite = self._through(batch)
        return self.passes[-1].run_levels(y)[0], finite

    def scratch_bytes_per_pixel(self, kernel_size: int) -> int:
        return 4 * len(self.passes)  # one float32 image between passes

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads": self.threads, "isa": self.passes[0].describe().get("isa"),
                "kernel": " then ".join(f"{p.k}x{p.k}" for p in self.passes) + " stencil chain"}


def chain_probe_difference(native: Runner, graph: Runner, seed: int | None = None) -> float:
    """Largest difference between the two runners on probe images (8-bit levels, as the inputs of an integer
    program are), as a multiple of :func:`~kernelnet.runtime.checks.float_bounds.chain_tolerance` — at most 1 when
    they agree; with no tolerance at all (every pass on a grid), any difference is infinite."""
    import os
    import random

    from kernelnet.runtime.backends.native_backend import probe_shapes
    from kernelnet.runtime.checks.float_bounds import chain_tolerance

    spec = native.info.spec
    assert spec is not None
    seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
    rng = random.Random(seed)
    allowed = chain_tolerance(spec, 1.0)
    worst = 0.0
    for shape in probe_shapes(spec, seed):
        x = np.frombuffer(rng.randbytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
        if spec.input.dtype != "uint8":
            x = x.astype(np.float32) / np.float32(255.0)
        with np.errstate(invalid="ignore"):
            diff = float(np.abs(native.run(x).astype(np.float64) - graph.run(x)).max())
        if not np.isfinite(diff):
            return float("inf")
        worst = max(worst, diff / allowed if allowed else (0.0 if diff == 0 else float("inf")))
    return worst
