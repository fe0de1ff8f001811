"""Parity of every backend against each other and against numpy ground truth, written once over Model/Runner.

Two independent numpy (float64) references are computed for every case:

* ``weights`` — the exported model's own kernels and bias (from its metadata) applied by
  :func:`~kernelnet.runtime.reference.apply_kernels`: what the graph *should* compute.
* ``truth`` — the target filter (``target_kernel``, model, normalize, padding) by
  :func:`~kernelnet.runtime.reference.apply_filter`: what the user asked for.

Checks (|got − want| ≤ atol + rtol·|want| + slack, per pixel):

* ``B ~ A`` (every backend against the first fp32 one) and ``B ~ weights``: the backend tolerance — fp32
  ``atol``/``rtol``; fp16 and int8 looser, scaled by the filter's output bound G (the largest |output| an
  input in [0, 1] can produce). These catch a graph that does not compute its own weights (e.g. a corrupted
  initializer).
* ``weights ~ truth``: the learned model vs the target, allowed ``truth_tol × G``. A trained kernel is close to,
  not equal to, the target (e.g. 5e-5 per weight → output differences ≈ 1e-4 on Sobel, G = 8), so this is the
  "is the model the filter?" check, with a tolerance that a good fit passes by a wide margin.
* ``B ~ truth``: the backend tolerance plus ``slack`` = the *kernel gap*, a rigorous bound on
  |learned(x) − target(x)| over inputs in [0, 1] computed from the kernels after the model's symmetries (sign
  for the abs model, the best orthogonal 2×2 mix for the double model; Procrustes). A backend therefore fails
  against truth only beyond what its learned kernel explains.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelnet.runtime.backends.base import ModelInfo
from kernelnet.runtime.bench import make_input
from kernelnet.runtime.checks.compare import Comparison, Tolerance, compare, summarize
from kernelnet.runtime.checks.float_bounds import chain_gain, chain_tolerance
from kernelnet.runtime.model import Model, TileArg
from kernelnet.runtime.align import align_kernels, embed_center
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import InputEncoding

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((1, 1), (1, 97), (97, 1), (13, 7), (127, 257), (224, 224),
                                              (1080, 1920), (2160, 3840))
"""1×1, 1×N, N×1, odd primes, 224², 1080p, 4K."""
TILED_CASE = (509, 383, (64, 96))
"""Odd prime size run in forced 64×96 tiles (compared with the references like any other case)."""
BATCH_LIMIT_PIXELS = 4_000_000
"""Cases larger than this run at batch 1 only (4K × 3 in float64 references would dominate the run time)."""


@dataclass(frozen=True)
class Case:
    """One input: ``batch`` × ``height`` × ``width``, run with ``tile`` (None = the model's own setting)."""

    batch: int
    height: int
    width: int
    tile: TileArg = None

    @property
    def label(self) -> str:
        text = f"{self.batch}x{self.height}x{self.width}"
        if self.tile is not None:
            tile = self.tile if isinstance(self.tile, tuple) else (self.tile, self.tile)
            text += f" tiled {tile[0]}x{tile[1]}"
        return text


def build_cases(sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, batches: tuple[int, ...] = (1, 3),
                tiled: bool = True, random: int = 0, seed: int = 0, min_side: int = 1,
                max_random_side: int = 600) -> list[Case]:
    """The case list: every size × batch (batch > 1 only up to :data:`BATCH_LIMIT_PIXELS`), the tiled case and
    ``random`` random sizes (log-uniform sides up to ``max_random_side``, random forced tiles on half of them).
    Sides below ``min_side`` (reflect needs > k // 2) are raised to it."""
    cases = []
    fit = lambda h, w: (max(h, min_side), max(w, min_side))  # noqa: E731
    for h, w in sizes:
        h, w = fit(h, w)
        for n in batches:
            if n == batches[0] or h * w <= BATCH_LIMIT_PIXELS:
                cases.append(Case(n, h, w))
    if tiled:
        h, w, tile = TILED_CASE
        cases.extend(Case(n, h, w, tile) for n in batches)
    rng = np.random.default_rng(seed)
    for _ in range(random):
        h, w = fit(*(int(v) for v in np.exp(rng.uniform(0, math.log(max_random_side), 2)).round()))
        tile = (int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))) if rng.random() < 0.5 else None
        cases.append(Case(int(rng.choice(batches)), h, w, tile))
    return cases


@dataclass(frozen=True)
class Tolerances:
    """Defaults: fp32 ``atol`` = 2e-6 × G (at least 1e-6), ``rtol`` 1e-5; tf32 1e-3 × G; fp16 2e-3 × G;
    int8 2e-2 × G; ``truth_tol`` 1e-3 (of G) for the learned-vs-target check.

    Measured here: onnxruntime fp32 vs float64 ≤ 1e-7 × G (20× inside ``atol``); the int8 QDQ models of
    ``kernelnet quantize`` ≤ 0.9e-2 × G. ``tf32`` is for fp32 TensorRT engines, which use TF32 tensor cores on
    Ampere and newer GPUs by default: inputs rounded to a 10-bit mantissa move the output by ≤ 2⁻¹¹ × G.
    """

    atol: float | None = None
    rtol: float = 1e-5
    truth_tol: float = 1e-3
    fp16_tol: float = 2e-3
    int8_tol: float = 2e-2
    tf32_tol: float = 1e-3

    def backend(self, precision: str, gain: float) -> Tolerance:
        """The tolerance of a backend of ``precision`` (fp32/tf32/fp16/int8) for outputs bounded by ``gain``."""
        if precision == "int8":
            return Tolerance(self.int8_tol * gain, self.rtol)
        if precision == "fp16":
            return Tolerance(self.fp16_tol * gain, self.rtol)
        if precision == "tf32":
            return Tolerance(self.tf32_tol * gain, self.rtol)
        return Tolerance(self.atol if self.atol is not None else max(1e-6, 2e-6 * gain), self.rtol)


def output_bound(rows: np.ndarray, bias: np.ndarray | None = None) -> float:
    """The largest |output| over inputs in [0, 1]: √Σ_c (Σ_j |row_cj| + |b_c|)² (single: Σ|k| + |b|)."""
    b = np.zeros(len(rows)) if bias is None else np.abs(np.asarray(bias, dtype=np.float64))
    return float(np.sqrt(np.sum((np.abs(rows).sum(axis=1) + b) ** 2)))


def kernel_gap(info: ModelInfo) -> float | None:
    """Upper bound of |learned(x) − target(x)| for x ∈ [0, 1]^(k×k), after sign / orthogonal alignment."""
    spec, target = info.spec, info.target
    if spec is None or target is None or len(spec.kernels) != len(target.kernels):
        return None
    learned, bias = align_kernels(spec.kernels, target.kernels, spec.model, spec.normalize, spec.bias)
    size = learned.shape[-1]
    diff = learned - embed_center(target.kernels, size)
    return output_bound(diff.reshape(len(diff), -1), bias)


def references(info: ModelInfo, x: np.ndarray) -> dict[str, np.ndarray]:
    """``weights`` (the model's own spec) and ``truth`` (the target filter), float64 (N, 1, H, W), for input
    ``x`` (float32 in [0, 1] or uint8)."""
    xf = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    refs: dict[str, np.ndarray] = {}
    if info.target is not None:
        refs["truth"] = apply_spec(xf, info.target)
    if info.spec is not None:
        spec = info.spec.replace(input=InputEncoding())  # xf is already in [0, 1]
        same = (info.target is not None and not spec.has_bias and spec.kernels.shape == info.target.kernels.shape
                and np.array_equal(spec.kernels, info.target.kernels) and spec.output.identity)
        refs["weights"] = refs["truth"] if same else apply_spec(xf, spec)
    return refs


@dataclass(frozen=True)
class Backend:
    """A model under test: ``name``, the loaded :class:`Model`, its ``precision`` class (fp32/tf32/fp16/int8)."""

    name: str
    model: Model
    precision: str = "fp32"


@dataclass
class VerifyReport:
    """Everything verify found; ``ok`` is False if any comparison failed."""

    comparisons: list[Comparison]
    summary: list[dict[str, Any]]
    backends: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    gain: float | None
    kernel_gap: float | None
    tolerances: dict[str, Any]
    seconds: float
    cases: list[str] = field(default_factory=list)
    input_dtype: str = "float32"

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.summary, "backends": self.backends, "skipped": self.skipped,
                "gain": self.gain, "kernel_gap": self.kernel_gap, "tolerances": self.tolerances,
                "seconds": self.seconds, "cases": self.cases, "input_dtype": self.input_dtype,
                "comparisons": [c.to_dict() for c in self.comparisons]}


def verify(backends: list[Backend], cases: list[Case], tolerances: Tolerances = Tolerances(), seed: int = 0,
           skipped: list[dict[str, str]] | None = None,
           progress: Callable[[Case], None] | None = None) -> VerifyReport:
    """Run every case on every backend and compare (see the module docstring). ``backends[0]`` is the anchor of
    the backend-vs-backend checks and supplies the metadata (``ModelInfo``) for the references."""
    start = time.perf_counter()
    info = backends[0].model.info
    gain_spec = info.target if info.target is not None else info.spec
    gain = gain_spec.replace(bias=None).output_bound() if gain_spec is not None else None
    if info.spec is not None and info.spec.after:
        gain = chain_gain(info.spec)
    gap = kernel_gap(info)
    tols = {b.name: tolerances.backend(b.precision, gain or 1.0) for b in backends}
    levels = any(b.model.input_dtype == "uint8" for b in backends)  # then every case is on the 8-bit levels
    if info.spec is not None and info.spec.after:  # a tie tipped in one pass moves the later ones by their gain
        tol_chain = chain_tolerance(info.spec, 1.0, levels=levels)
        tols = {name: Tolerance(max(t.atol, tol_chain), t.rtol) for name, t in tols.items()}
    elif info.spec is not None and info.spec.output.rounding is not None:
        # float32 and float64 may round a value within float noise of a tie apart: one level, no more
        tols = {name: Tolerance(max(t.atol, 1.0), t.rtol) for name, t in tols.items()}
    anchor = next((b for b in backends if b.precision == "fp32"), backends[0])
    # 8-bit inputs when any backend takes uint8: exact for every backend (float ones get x / 255)
    dtype = "uint8" if any(b.model.input_dtype == "uint8" for b in backends) else "float32"
    comparisons: list[Comparison] = []
    for index, case in enumerate(cases):
        if progress is not None:
            progress(case)
        x = make_input((case.batch, 1, case.height, case.width), dtype, seed + index)
        refs = references(info, x)
        outs = {}
        for b in backends:
            model = b.model if case.tile is None else Model(b.model.runner, tile=case.tile)
            outs[b.name] = model(x)
        label = case.label
        if "weights" in refs and "truth" in refs:
            comparisons.append(compare(refs["weights"], refs["truth"],
                                       Tolerance(tolerances.truth_tol * (gain or 1.0)), "weights ~ truth", label))
        for b in backends:
            tol = tols[b.name]
            if b is not anchor:
                comparisons.append(compare(outs[b.name], outs[anchor.name].astype(np.float64),
                                           tol.loosest(tols[anchor.name]), f"{b.name} ~ {anchor.name}", label))
            if "weights" in refs:
                comparisons.append(compare(outs[b.name], refs["weights"], tol, f"{b.name} ~ weights", label))
            if "truth" in refs:
                slack = Tolerance(tol.atol, tol.rtol, gap if gap is not None else tolerances.truth_tol * (gain or 1))
                comparisons.append(compare(outs[b.name], refs["truth"], slack, f"{b.name} ~ truth", label))
    return VerifyReport(
        comparisons=comparisons, summary=summarize(comparisons),
        backends=[{"name": b.name, "precision": b.precision, "path": str(b.model.runner.path),
                   "tolerance": tols[b.name].label(), **_jsonable(b.model.describe())} for b in backends],
        skipped=skipped or [], gain=gain, kernel_gap=gap,
        tolerances={"atol": tols[anchor.name].atol, "rtol": tolerances.rtol, "truth_tol": tolerances.truth_tol,
                    "fp16_tol": tolerances.fp16_tol, "int8_tol": tolerances.int8_tol, "tf32_tol": tolerances.tf32_tol},
        seconds=time.perf_counter() - start, cases=[c.label for c in cases], input_dtype=dtype)


def _jsonable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in doc.items() if k not in ("backend",)}
