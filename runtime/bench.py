"""Latency and throughput of contenders (backends, OpenCV, PyTorch eager), written once over plain callables.

A contender is a name and a function of one (N, 1, H, W) batch in the model's input dtype. Each is warmed up,
then timed until both ``min_reps`` calls and ``min_seconds`` have passed; the table reports p50/p90/p99 latency,
megapixels/s at the median and the largest difference of the contender's output from the first contender's (so
a side-by-side comparison is also an apples-to-apples one). Torch-free; OpenCV is optional.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.backends.base import ModelInfo
from kernelnet.runtime.model import Model
from kernelnet.runtime.backends.session import SessionConfig

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((256, 256), (1080, 1920), (2160, 3840))


@dataclass(frozen=True)
class Contender:
    """``fn`` maps an (N, 1, H, W) batch to the filtered batch (any array-like of the same size)."""

    name: str
    fn: Callable[[np.ndarray], Any]
    settings: str = ""


@dataclass(frozen=True)
class Timing:
    """One contender at one size: latency percentiles (ms), throughput (megapixels/s at p50), repetitions."""

    contender: str
    size: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mpix_per_s: float
    reps: int
    max_abs_diff: float
    settings: str = ""
    vs_opencv: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_calls(fn: Callable[[np.ndarray], Any], x: np.ndarray, warmup: int = 3, min_reps: int = 10,
               min_seconds: float = 1.0, max_reps: int = 1000) -> np.ndarray:
    """Seconds per call of ``fn(x)`` after ``warmup`` calls: at least ``min_reps`` and ``min_seconds``."""
    for _ in range(warmup):
        fn(x)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return np.asarray(times)


def make_input(shape: tuple[int, int, int, int], dtype: str = "float32", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.random(shape, dtype=np.float32)


def run_bench(contenders: list[Contender], sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES, batch: int = 1,
              dtype: str = "float32", warmup: int = 3, min_reps: int = 10, min_seconds: float = 1.0,
              progress: Callable[[str, str], None] | None = None) -> list[Timing]:
    """Time every contender at every size; ratios ``vs_opencv`` (OpenCV p50 / p50, > 1 = faster) when present."""
    timings: list[Timing] = []
    for h, w in sizes:
        x = make_input((batch, 1, h, w), dtype)
        first: np.ndarray | None = None
        row: list[Timing] = []
        for c in contenders:
            if progress is not None:
                progress(c.name, f"{h}x{w}")
            out = np.asarray(c.fn(x), dtype=np.float32).reshape(x.shape)
            first = out if first is None else first
            diff = float(np.max(np.abs(out - first))) if out.size else 0.0
            t = time_calls(c.fn, x, warmup, min_reps, min_seconds)
            p50, p90, p99 = (float(v) * 1e3 for v in np.percentile(t, [50, 90, 99]))
            row.append(Timing(c.name, f"{h}x{w}", batch, p50, p90, p99, batch * h * w / 1e6 / (p50 / 1e3), len(t),
                              diff, c.settings))
        cv = next((t for t in row if t.contender == "opencv"), None)
        timings.extend(Timing(**{**t.to_dict(), "vs_opencv": cv.p50_ms / t.p50_ms if cv else None}) for t in row)
    return timings


def model_contender(name: str, model: Model) -> Contender:
    """A loaded :class:`Model` (the public path: checks, conversion, tiling included)."""
    settings = model.describe()
    session = getattr(model.runner, "config", None)  # onnxruntime runners: their SessionConfig
    text = session.label() if isinstance(session, SessionConfig) else settings.get("precision", "")
    return Contender(name, model, f"{text} tile={settings.get('tile')}")


def opencv_contender(info: ModelInfo, threads: int | None = None) -> Contender | None:
    """``cv2.filter2D`` with the model's own kernels and border (two filters + ``cv2.magnitude`` for the double
    model, ``abs`` for normalize), or ``None`` when OpenCV is not installed or the kernels are unknown."""
    try:
        import cv2
    except ImportError:
        return None
    spec = info.spec
    if spec is None or spec.after or spec.decode or spec.border in ("copy", "reflect_symmetric") or \
            not spec.output.identity:
        return None  # OpenCV has no ring-copying or half-mirrored border and no output stage to compare with
    if threads is not None:
        cv2.setNumThreads(threads)
    border = {"zeros": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "symmetric": cv2.BORDER_REFLECT,
              "replicate": cv2.BORDER_REPLICATE}[spec.border]
    if spec.is_rank:
        return _opencv_rank(cv2, spec, border, threads)
    kernels = [np.ascontiguousarray(k, dtype=np.float32) for k in info.kernels]
    bias = [float(b) for b in info.bias] if info.bias is not None else [0.0] * len(kernels)
    double = len(kernels) == 2

    def one(img: np.ndarray) -> np.ndarray:
        scale = 1.0 / 255.0 if img.dtype == np.uint8 else 1.0
        a = cv2.filter2D(img, cv2.CV_32F, kernels[0] * scale, delta=bias[0], borderType=border)
        if double:
            return cv2.magnitude(a, cv2.filter2D(img, cv2.CV_32F, kernels[1] * scale, delta=bias[1],
                                                 borderType=border))
        return np.abs(a, out=a) if info.normalize else a

    def fn(x: np.ndarray) -> np.ndarray:
        if len(x) == 1:
            return one(x[0, 0])
        return np.stack([one(img[0]) for img in x])

    return Contender("opencv", fn, f"filter2D t{threads if threads is not None else cv2.getNumThreads()}")


def _opencv_rank(cv2: Any, spec: Any, border: int, threads: int | None) -> Contender | None:
    """``cv2.erode`` / ``cv2.dilate`` with the footprint and border, or ``cv2.medianBlur`` (a square, replicated
    border; float32 up to 5×5), or ``None`` where OpenCV has no such filter."""
    element = spec.footprint.astype(np.uint8)
    k = spec.kernel_size
    if spec.combine == "median" and (not spec.footprint.all() or spec.border != "replicate" or k > 5):
        return None

    def one(img: np.ndarray) -> np.ndarray:
        img = img.astype(np.float32) / 255 if img.dtype == np.uint8 else img
        if spec.combine == "median":
            return cv2.medianBlur(img, k)
        if spec.combine == "range":
            return cv2.morphologyEx(img, cv2.MORPH_GRADIENT, element, borderType=border, borderValue=0)
        return (cv2.erode if spec.combine == "min" else cv2.dilate)(img, element, borderType=border, borderValue=0)

    name = {"min": "erode", "max": "dilate", "median": "medianBlur", "range": "morphologyEx"}[spec.combine]
    return Contender("opencv", lambda x: one(x[0, 0]) if len(x) == 1 else np.stack([one(i[0]) for i in x]),
                     f"{name} t{threads if threads is not None else cv2.getNumThreads()}")


def opencv_missing(info: ModelInfo) -> str:
    """Why :func:`opencv_contender` gives no contender for a model described by ``info``."""
    import importlib.util

    if importlib.util.find_spec("cv2") is None:
        return "not installed (pip install 'kernelnet[bench]')"
    spec = info.spec
    if spec is None:
        return "the model has no kernelnet metadata (its kernels are unknown)"
    if spec.after:
        return f"the model is a chain of {len(spec.passes)} passes; OpenCV's filter2D is one"
    if spec.is_rank and spec.border == "reflect_symmetric":
        return "OpenCV has no reflect_symmetric border to compare this rank filter with"
    if spec.is_rank and not spec.output.identity:
        return "erode / dilate / medianBlur have no output stage (scale, clip, rounding) to compare this model with"
    if spec.is_rank:
        return "medianBlur takes square footprints up to 5x5 with a replicated border only"
    return ("filter2D has no output stage (clip, grid, rounding), copy border or reflect_symmetric border to "
            "compare this model with")


def open_contenders(model: str | Path, threads: int, tile: Any = None,
                    opencv: bool = True) -> tuple[list[Contender], list[str], list[Model]]:
    """Every runnable artifact of ``model`` loaded through :func:`kernelnet.runtime.load` with ``threads``
    (plus OpenCV with the same kernels and threads): the contenders, what was skipped and why, the models."""
    from kernelnet.runtime import load
    from kernelnet.runtime.backends import discover
    from kernelnet.runtime.errors import KernelnetError

    contenders, skipped, nets = [], [], []
    for artifact in discover(model):
        if artifact.missing:
            skipped.append(f"{artifact.name}: {artifact.missing}")
            continue
        nets.append(load(artifact.path, backend=artifact.backend, threads=threads, tile=tile))
        contenders.append(model_contender(artifact.name, nets[-1]))
    if not nets:
        raise KernelnetError(f"nothing runnable found for {model}: {'; '.join(skipped)}")
    if opencv:
        cv = opencv_contender(nets[0].info, threads)
        contenders.append(cv) if cv else skipped.append(f"opencv: {opencv_missing(nets[0].info)}")
    return contenders, skipped, nets


def bench_document(model: str | Path, threads: int, batch: int, timings: list[Timing],
                   skipped: list[str]) -> dict[str, Any]:
    """The JSON document ``kernelnet bench --json`` writes (read by the pipeline report)."""
    return {"model": str(model), "threads": threads, "batch": batch, "timings": [t.to_dict() for t in timings],
            "skipped": skipped}


def plot_timings(timings: list[Timing], path: str | Path) -> bool:
    """Grouped bar chart of megapixels/s per size and contender; ``False`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from kernelnet.runtime.io.atomic import write_with

    sizes = list(dict.fromkeys(t.size for t in timings))
    names = list(dict.fromkeys(t.contender for t in timings))
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(sizes) * max(1, len(names)) / 3, 4))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [next((t.mpix_per_s for t in timings if t.size == s and t.contender == name), 0.0) for s in sizes]
        ax.bar(np.arange(len(sizes)) + i * width, values, width, label=name)
    ax.set_xticks(np.arange(len(sizes)) + width * (len(names) - 1) / 2, sizes)
    ax.set_ylabel("megapixels / s (p50)")
    ax.set_title("kernelnet bench")
    ax.legend()
    fig.tight_layout()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
    return True
