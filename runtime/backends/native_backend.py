"""Native CPU backend: the exported filter run as a direct k×k stencil in C (``_stencil.c``), one pass over the image.

onnxruntime's x86 CPU Conv turns a one-channel k×k filter into im2col + a one-row GEMM, which is 2–3× slower than
OpenCV's ``filter2D`` (see ``benchmarks/cpu_vs_opencv.py``). For fp32 models with float32 input whose kernelnet
metadata describes the filter (kernels, bias, border, combine), this backend computes the same function directly:
raw or ``abs`` single models, and the double model's magnitude fused into the same pass.

It is used only when it reproduces the graph: on load, a probe batch runs through both onnxruntime and the stencil,
and any difference beyond float32 rounding makes :func:`try_native` decline (``backend="auto"`` then falls back
to onnxruntime; ``backend="native"`` fails). Torch-free; the extension is optional (``pip install`` builds it
where a C compiler exists).

    >>> from kernelnet.runtime import load                                     # doctest: +SKIP
    >>> load("model.onnx").runner.name                                         # doctest: +SKIP
    'native'
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.backends.base import ModelInfo, Runner
from kernelnet.runtime.backends.stencil_isa import load_stencil

_stencil, ISA, BUILD_PROBLEM = load_stencil()
"""The stencil build this process runs (its instruction set), or ``None`` and why (one line, with the fix)."""

BORDERS = {"zeros": 0, "reflect": 1, "replicate": 2, "symmetric": 3, "reflect_symmetric": 4, "copy": 0}
"""The stencil's borders; ``copy`` (Pillow: the input ring kept) is a zeros stencil whose ring the output stage
replaces."""
KINDS = {np.dtype(np.float32): 0, np.dtype(np.uint8): 1, np.dtype(np.uint16): 2}
ROUNDINGS = {None: 0, "half_even": 1, "half_up": 2, "floor": 3, "toward_zero": 4}
COMBINES = {"raw": 0, "abs": 1, "magnitude": 2, "min": 3, "max": 4, "median": 5}
MAX_MEDIAN_TAPS = 81
"""The stencil's median networks stop at 9×9 (81 taps: 702 comparators); larger medians run on onnxruntime."""
MAX_KERNEL = 31
MAX_THREADS = 1024
PARALLEL_MIN_PIXELS = 1 << 15
"""Below this many pixels per call one thread is faster than waking a second one."""
PROBE_SHAPE = (2, 1, 37, 41)
INPUT_SCALES = {"float32": 1.0, "uint8": 1.0 / 255.0}
"""Graph input dtypes the stencil reads, with the value mapping it applies (uint8: v / 255, as the graph's Div)."""


def available() -> bool:
    """True when the C stencil extension is built."""
    return _stencil is not None


def default_threads() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def unsupported(info: ModelInfo, input_dtype: str) -> str:
    """Why the native backend cannot run a model described by ``info`` (empty string: it can); a chain pass by pass."""
    if _stencil is None:
        return BUILD_PROBLEM
    spec = info.spec
    if spec is None:
        return "the model has no kernelnet kernel metadata"
    if any(p.decode or p.output.encode for p in spec.passes):
        return "the stencil has no curve stages (decode / encode)"
    if spec.after:
        for i, p in enumerate(spec.passes, 1):
            reason = unsupported(ModelInfo(p, None, info.precision), input_dtype if i == 1 else "float32")
            if reason:
                return f"pass {i}: {reason}"
        return ""
    if spec.combine not in COMBINES:
        return f"the stencil has no {spec.combine} filter (max − min over a footprint): onnxruntime runs it"
    if spec.combine == "median" and int(spec.footprint.sum()) > MAX_MEDIAN_TAPS:
        return f"the stencil's median networks stop at {MAX_MEDIAN_TAPS} taps (this one has {int(spec.footprint.sum())})"
    if info.precision != "fp32":
        return f"only fp32 models run natively (this one is {info.precision})"
    if input_dtype != spec.input.dtype or input_dtype not in INPUT_SCALES:
        return f"its graph takes {input_dtype} input where its metadata says {spec.input.dtype}"
    if spec.input.scale != INPUT_SCALES[input_dtype] or spec.input.channels != 1:
        return "the stencil runs gray filters of float32 [0, 1] or uint8 / 255 input"
    if spec.border not in BORDERS:
        return f"unknown border {spec.border!r}"
    if spec.kernel_size > MAX_KERNEL:
        return f"kernels of side {spec.kernel_size} exceed the stencil's {MAX_KERNEL}"
    return ""


class NativeRunner(Runner):
    """Runs a kernelnet filter from its ``info`` with the C stencil: (N, 1, H, W) float32 → (N, 1, H, W) float32.

    Args:
        info: the model's metadata (kernels (C, k, k), bias, border, kind); see :func:`unsupported`.
        threads: worker threads (default: the CPUs this process may use).
        path: the artifact the metadata came from (for messages and tables).
    """

    writes_rows = True
    accepts_integer = True
    """8/16-bit frames go in as they are: each row is converted to v / 255 or v / 65535 as the stencil reads it
    (bit-equal to converting the frame first, without the float32 copy)."""
    concurrent = True
    forkable = True  # plain C and numpy: nothing that a fork leaves without its threads

    def __init__(self, info: ModelInfo, threads: int | None = None, path: Path | None = None,
                 name: str = "native") -> None:
        spec = info.spec
        reason = unsupported(info, spec.input.dtype if spec is not None else "float32")
        if reason:
            raise KernelnetError(f"native backend cannot run {path or 'this model'}: {reason}")
        assert spec is not None
        self.input_dtype = spec.input.dtype
        self.info, self.path, self.name = info, path, name
        self.threads = threads if threads is not None else default_threads()
        if not 1 <= self.threads <= MAX_THREADS:
            raise KernelnetError(f"threads must be between 1 and {MAX_THREADS}, got {self.threads}")
        self.channels, self.k = len(spec.kernels), spec.kernel_size
        self.kernels = np.ascontiguousarray(spec.kernels, dtype=np.float32)
        self.bias = np.ascontiguousarray(spec.bias, dtype=np.float32)
        self.combine = COMBINES[spec.combine]
        self.border = BORDERS[spec.border]
        self.stage = stage_tuple(spec)
        self.levels_dtype = {8: np.uint8, 16: np.uint16}.get(spec.output.bits)  # type: ignore[arg-type]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) float32 → (N, 1, H, W) float32."""
        return self.run_checked(batch)[0]

    def run_checked(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """Run and report whether every output is finite, which proves the input finite: every input pixel
        meets every tap's multiplication (zero taps included), so a NaN/Inf always reaches the output."""
        src = self._checked_input(batch)
        out = np.empty(src.shape, dtype=np.float32)
        return out, self._correlate(src, out, 0, src.shape[2])

    def run_rows_into(self, batch: np.ndarray, out: np.ndarray, row0: int, row1: int) -> bool:
        src = self._checked_input(batch)
        n, _, h, w = src.shape
        if not 0 <= row0 < row1 <= h or out.shape != (n, 1, row1 - row0, w) or out.dtype != np.float32 \
                or not out.flags.c_contiguous or not out.flags.writeable:
            raise KernelnetError(f"{self.name}: rows [{row0}, {row1}) of {src.shape} cannot go into "
                                 f"{out.dtype} {out.shape}")
        return self._correlate(src, out, row0, row1)

    def run_levels(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """(N, 1, H, W) → the integer output stage's levels (N, 1, H, W) uint8 / uint16, written by the stencil,
        and whether the input is proven finite (as :meth:`run_checked`)."""
        if self.levels_dtype is None:
            raise KernelnetError(f"{self.path or 'this model'} has no integer output (its output stage has no bits)")
        src = self._checked_input(batch)
        out = np.empty(src.shape, dtype=self.levels_dtype)
        return out, self._correlate(src, out, 0, src.shape[2])

    def _checked_input(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype not in KINDS or batch.ndim != 4 or batch.shape[1] != 1:
            raise KernelnetError(f"{self.name} expects (N, 1, H, W) float32, uint8 or uint16, got {batch.dtype} "
                                 f"{batch.shape}")
        if not batch.flags.aligned:  # e.g. an .npy whose header length leaves the data off a 4-byte boundary
            return np.array(batch, order="C")
        return np.ascontiguousarray(batch)

    def _correlate(self, src: np.ndarray, out: np.ndarray, row0: int, row1: int) -> bool:
        n, _, h, w = src.shape
        threads = self.threads if n * (row1 - row0) * w >= PARALLEL_MIN_PIXELS else 1
        return bool(_stencil.correlate(src, out, n, h, w, self.kernels, self.bias, self.k, self.channels,
                                       self.combine, self.border, threads, row0, row1, KINDS[src.dtype],
                                       KINDS[out.dtype], self.stage))

    def scratch_bytes_per_pixel(self, kernel_size: int) -> int:
        return 0  # reads the image in place and writes rows straight into the caller's output

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "threads": self.threads, "kernel": f"direct {self.k}x{self.k} stencil",
                "isa": ISA}


def native_runner(info: ModelInfo, threads: int | None = None, path: Path | None = None,
                  name: str = "native") -> Runner:
    """The native runner of ``info``: a :class:`NativeRunner`, or for a chain a
    :class:`~kernelnet.runtime.backends.native_chain.NativeChainRunner`."""
    if info.spec is not None and info.spec.after:
        from kernelnet.runtime.backends.native_chain import NativeChainRunner

        return NativeChainRunner(info, threads, path, name)
    return NativeRunner(info, threads, path, name)


def stage_tuple(spec: Any) -> tuple[float, float, int, float, float, int, int, float] | None:
    """The output stage and copy border as the stencil takes them (``None``: neither)."""
    out, ring = spec.output, spec.border == "copy" and spec.halo > 0
    if out.identity and not ring:
        return None
    lo, hi = out.clip if out.clip is not None else (float("nan"), float("nan"))
    return (out.scale, out.offset, out.grid or 0, lo, hi, ROUNDINGS[out.rounding], int(ring), spec.ring_scale)


def _uniform(rng: random.Random, shape: tuple[int, ...]) -> np.ndarray:
    """float32 values uniform in [0, 1) of ``shape``, from ``rng``'s bytes."""
    count = int(np.prod(shape))
    bits = np.frombuffer(rng.randbytes(4 * count), dtype=np.uint32) >> np.uint32(8)  # 24 bits: exact in float32
    return (bits.astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


def probe_shapes(spec: Any, seed: int) -> list[tuple[int, int, int, int]]:
    """Three probe batches of sizes drawn at load time (a graph cannot be written for them in advance), the
    fixed one kept: every side at least the border's minimum."""
    rng = random.Random(seed)
    low = max(1, spec.min_side)
    shapes = [PROBE_SHAPE]
    for _ in range(2):
        shapes.append((rng.randrange(1, 4), 1, rng.randrange(low, low + 90), rng.randrange(low, low + 90)))
    return shapes


def probe_difference(native: Runner, graph: Runner, seed: int | None = None) -> float:
    """Largest difference between two runners on random probe batches — values in [−3, 4], beyond the [0, 1] of
    images, so that a graph that clips its input shows, and for an output stage values in [0, 1] too, where it
    does not clip everything — as a multiple of what float32 rounding allows two implementations of the spec
    (twice :func:`~kernelnet.runtime.checks.float_bounds.output_error_bound`): at most 1 when they agree.

    With a rounding or grid in the output stage, the two sums of the same taps in other orders may fall on either
    side of a tie: a difference of exactly one step (1, or 1/grid) counts as agreement at up to 0.1% of the
    probe's values plus the share that the float32 bound can reach (the stage itself was proven equal to the
    metadata's by :func:`~kernelnet.runtime.checks.graph_check.stencil_problem`). On real images an integer black box's
    values sit on the grid, where such ties do not arise."""
    from kernelnet.runtime.checks.float_bounds import output_error_bound

    seed = int.from_bytes(os.urandom(8), "little") if seed is None else seed
    rng = random.Random(seed)  # the standard library's: numpy.random costs 11 ms of import on every load
    spec = native.info.spec
    assert spec is not None
    levels = spec.input.dtype == "uint8"  # every byte value is a valid input: no values beyond [0, 1] to try
    allowed = 2 * output_error_bound(spec, 1.0 if levels else PROBE_INPUT_MAX)
    staged = not spec.output.identity
    step = 1.0 if staged and spec.output.rounding else (1.0 / spec.output.grid if staged and spec.output.grid else 0.0)
    worst = 0.0
    shapes = probe_shapes(spec, seed)
    for i, shape in enumerate(shapes * (2 if staged and not levels else 1)):
        if levels:
            x = np.frombuffer(rng.randbytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
        else:
            x = _uniform(rng, shape)
            x = x if i >= len(shapes) else (x * 7 - 3).astype(np.float32)
        want, got = graph.run(x), native.run(x)
        with np.errstate(invalid="ignore"):
            diff = np.abs(got.astype(np.float64) - want)
        if not np.isfinite(diff).all():
            return float("inf")
        if step:
            ties = np.abs(diff - step) <= allowed
            if np.count_nonzero(ties) <= (1e-3 + 2 * allowed / step) * diff.size:
                diff = np.where(ties, 0.0, diff)
        worst = max(worst, float(diff.max()) / allowed)
    return worst


PROBE_INPUT_MAX = 4.0
"""The probe's inputs lie in [−3, 4]."""


def try_native(graph: Runner, threads: int | None = None, name: str = "native") -> tuple[NativeRunner | None, str]:
    """A :class:`NativeRunner` for the model ``graph`` runs (an onnxruntime runner) once the graph's structure is
    proven to be the metadata's stencil (:func:`kernelnet.runtime.checks.graph_check.stencil_problem`) and random probe
    batches agree; else ``None`` and why not."""
    reason = unsupported(graph.info, graph.input_dtype)
    if reason:
        return None, reason
    from kernelnet.runtime.checks.graph_check import stencil_problem

    assert graph.info.spec is not None and graph.path is not None
    problem = stencil_problem(graph.path, graph.info.spec)
    if problem:
        return None, f"its metadata does not describe the graph: {problem}"
    native = native_runner(graph.info, threads, graph.path, name)
    if graph.info.spec.after:  # proven pass by pass; probed on images, within what ties can tip through the passes
        from kernelnet.runtime.backends.native_chain import chain_probe_difference

        diff = chain_probe_difference(native, graph)
        return (native, "") if diff <= 1.0 else (None, f"its metadata does not describe the graph (probe difference "
                                                      f"{diff:.3g}× what the chain's rounding allows)")
    diff = probe_difference(native, graph)
    if not diff <= 1.0:
        return None, (f"its metadata does not describe the graph (probe difference {diff:.3g}× what float32 "
                      "rounding allows)")
    return native, ""
