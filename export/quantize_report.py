"""Measurement and report for ``kernelnet quantize``: how the int8 model compares with the fp32 one.

The int8 graph is first smoke-tested on odd shapes (the output contract), then compared with the fp32 model on
whole held-out TEST photos (PSNR, abs error), timed side by side at 1080p on the CPU, and drawn as an error map;
everything, with the quantization parameters read back from the graph, goes into ``quantize.json``. Kept apart
from the graph surgery so that what is measured and reported can change without touching what is written.
"""

from __future__ import annotations

import io
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.export.onnx_export import verify_shapes
from kernelnet.runtime.errors import CheckFailed
from kernelnet.runtime.io.inputs import to_dtype

LATENCY_SHAPE = (1, 1, 1080, 1920)
LATENCY_THREADS = 2


def _session(model: bytes, level: str = "basic", threads: int = LATENCY_THREADS) -> Any:
    """A CPU session of the serialized ``model`` at optimization ``level``, ``threads`` intra-op threads.

    The model is in memory (bytes), so this is not
    :func:`kernelnet.runtime.backends.onnxruntime_backend.create_session`,
    which loads a file.
    """
    import onnxruntime as ort

    from kernelnet.runtime.backends.session import SessionConfig

    settings = SessionConfig(graph_optimization_level=level, intra_op_threads=threads, inter_op_threads=1)
    return ort.InferenceSession(model, settings.to_session_options(), providers=["CPUExecutionProvider"])


def _smoke_test(session: Any, padding: str, kernel_size: int, uint8: bool) -> None:
    """The int8 graph keeps the contract on odd shapes: (N, 1, H, W) float32 out, finite."""
    rng = np.random.default_rng(1)
    from kernelnet.runtime.spec import min_side

    for shape in verify_shapes(min_side(padding, kernel_size // 2), None):
        x = rng.integers(0, 256, shape, dtype=np.uint8) if uint8 else rng.random(shape, dtype=np.float32)
        y = session.run(None, {"input": x})[0]
        if y.shape != shape or y.dtype != np.float32 or not np.isfinite(y).all():
            raise CheckFailed(f"int8 model breaks the output contract at {'x'.join(map(str, shape))}: "
                              f"got {y.shape} {y.dtype}")


def _frame(image: np.ndarray, uint8: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int8-model input, fp32-model input) for one (H, W) photo: the 8-bit frame and frame/255, or x and x."""
    x = np.ascontiguousarray(image, dtype=np.float32)[None, None]
    if not uint8:
        return x, x
    frame = to_dtype(x, "uint8")
    return frame, to_dtype(frame, "float32")


def evaluate(fp32: Any, int8: Any, images: dict[str, np.ndarray], uint8: bool) -> tuple[dict[str, Any], tuple]:
    """PSNR (pooled over ``images``, peak = the fp32 output range, as training's ``test_psnr_db``), per-image
    PSNR, max/mean abs error. Also returns (name, fp32 output, int8 output) of the first image for the plot."""
    from kernelnet.metrics import psnr_db

    ref, got, per_image, first = [], [], {}, None
    for name, image in images.items():
        x_q, x_f = _frame(image, uint8)
        a = fp32.run(None, {"input": x_f})[0]
        b = int8.run(None, {"input": x_q})[0]
        if b.shape != a.shape or b.dtype != np.float32:
            raise CheckFailed(f"int8 model output {b.shape} {b.dtype} differs from fp32 {a.shape} float32")
        per_image[name] = psnr_db(b, a)
        ref.append(a.ravel())
        got.append(b.ravel())
        first = first or (name, a[0, 0], b[0, 0])
    a, b = np.concatenate(ref).astype(np.float64), np.concatenate(got).astype(np.float64)
    err = np.abs(a - b)
    return {"psnr_vs_fp32_db": psnr_db(b, a), "psnr_vs_fp32_db_min": min(per_image.values()),
            "psnr_vs_fp32_db_per_image": per_image, "max_abs_error": float(err.max()),
            "mean_abs_error": float(err.mean()), "fp32_output_range": [float(a.min()), float(a.max())],
            "pixels": int(a.size)}, first


def measure_latency(fp32_bytes: bytes, int8_bytes: bytes, uint8: bool, runs: int,
                    shape: tuple[int, ...] = LATENCY_SHAPE) -> dict[str, Any]:
    """Median ms per run of fp32 vs int8 at ``shape``, 2 threads, same session options, timed alternately, at
    onnxruntime's BASIC level and at its default (ALL). The fp32 model gets frame/255 (not timed).

    The two models alternate call by call for a fixed ``runs`` (so both see the same machine state), which is
    why this does not use :func:`kernelnet.runtime.bench.time_calls` (one function, adaptive repeat count).
    """
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    x_f = to_dtype(frame, "float32")
    x_q = frame if uint8 else x_f
    out: dict[str, Any] = {"shape": "x".join(map(str, shape)), "threads": LATENCY_THREADS, "runs": runs,
                           "statistic": "median", "provider": "CPUExecutionProvider",
                           "inputs": "int8: uint8 frame, fp32: frame/255 float32 (converted outside the timing)"
                           if uint8 else "float32 frame for both"}
    for level in ("basic", "all"):
        sessions = {"fp32": (_session(fp32_bytes, level), x_f), "int8": (_session(int8_bytes, level), x_q)}
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(1):  # warm-up
            for sess, x in sessions.values():
                sess.run(None, {"input": x})
        for _ in range(runs):
            for key, (sess, x) in sessions.items():
                start = time.perf_counter()
                sess.run(None, {"input": x})
                times[key].append((time.perf_counter() - start) * 1e3)
        fp32_ms, int8_ms = statistics.median(times["fp32"]), statistics.median(times["int8"])
        out[level] = {"fp32_ms": round(fp32_ms, 3), "int8_ms": round(int8_ms, 3),
                      "int8_over_fp32": round(int8_ms / fp32_ms, 3)}
    best_fp32 = min(out[lv]["fp32_ms"] for lv in ("basic", "all"))
    best_int8 = min(out[lv]["int8_ms"] for lv in ("basic", "all"))
    out["best"] = {"fp32_ms": best_fp32, "int8_ms": best_int8, "int8_over_fp32": round(best_int8 / best_fp32, 3)}
    return out


def _shrink(image: np.ndarray, reduce: Any, max_side: int = 600) -> np.ndarray:
    """Reduce (H, W) by an integer factor with ``reduce`` over blocks so that it is at most ``max_side`` wide."""
    f = -(-max(image.shape) // max_side)
    if f <= 1:
        return image
    h, w = image.shape[0] // f * f, image.shape[1] // f * f
    return reduce(image[:h, :w].reshape(h // f, f, w // f, f), axis=(1, 3))


def _plot_error(first: tuple[str, np.ndarray, np.ndarray], psnr: float, label: str) -> bytes:
    """|int8 − fp32| on one held-out photo next to the fp32 output, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    name, a, b = first
    err = _shrink(np.abs(b.astype(np.float64) - a), np.max)  # block max: no error pixel disappears
    a = _shrink(a, np.mean)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    im0 = axes[0].imshow(a, cmap="gray")
    axes[0].set_title(f"fp32 output ({name})")
    fig.colorbar(im0, ax=axes[0], fraction=0.046)
    im1 = axes[1].imshow(err, cmap="magma", vmin=0.0, vmax=max(float(err.max()), 1e-12))
    axes[1].set_title(f"|{label} − fp32|: max {err.max():.3g}, PSNR {psnr:.1f} dB")
    fig.colorbar(im1, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _has_bias(proto: Any) -> bool:
    """Whether any Conv of ``proto`` has a bias input."""
    return any(n.op_type == "Conv" and len(n.input) > 2 and n.input[2] for n in proto.graph.node)


def _weight_scales(proto: Any) -> dict[str, list[float]]:
    """Per-channel scales of every weight DequantizeLinear (initializer input with an ``axis``)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and node.input[1] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.size > 1 or any(a.name == "axis" for a in node.attribute):
                out[node.input[0]] = [float(s) for s in scale.ravel()]
    return out


def _activation_params(proto: Any) -> dict[str, dict[str, Any]]:
    """Scale / zero point / type of every quantized activation, keyed by the float tensor it stands for."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    producers = {out: n for n in proto.graph.node for out in n.output}
    out = {}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] in inits:
            continue
        src = producers.get(node.input[0])
        name = src.input[0] if src is not None and src.op_type == "QuantizeLinear" else node.input[0]
        zp = inits[node.input[2]]
        out[name] = {"scale": float(inits[node.input[1]]), "zero_point": int(zp), "type": str(zp.dtype)}
    return out


def _build_report(*, path: Path, source_path: Path, uint8: bool, info: dict[str, Any], source: Any, proto: Any,
                  ranges: dict[str, list[float]], train: list[str], test: list[str], held_out: bool,
                  metrics: dict[str, Any], sizes: tuple[int, int], latency: dict[str, Any] | None, plot_path: Path,
                  notes: list[str]) -> dict[str, Any]:
    """The ``quantize.json`` document (key order is the file's). ``sizes``: (fp32, int8) model bytes."""
    import onnxruntime as ort

    return {
        "model": str(path), "source": str(source_path), "uint8_input": uint8, **info,
        "bias": ("int32" if uint8 else "float") if _has_bias(source) else "none",
        "weight_scales": _weight_scales(proto),
        "activation_params": _activation_params(proto),
        "calibration_images": train,
        "calibration_ranges": ranges,  # as calibrated; the graph input's conv input is then pinned to [0, 1]
        "evaluation_images": test, "evaluation_held_out": held_out,
        "evaluation_ort_level": "basic",
        "psnr_definition": "pooled over the evaluation photos (whole images), peak = fp32 output range "
                           "(as training's test_psnr_db); per image and worst image listed too",
        **metrics,
        "size_bytes": {"fp32": sizes[0], "int8": sizes[1]},
        "latency_1080p_ms": latency,
        "int8_over_fp32": latency["best"]["int8_over_fp32"] if latency else None,
        "int8_slower_on_this_cpu": bool(latency["best"]["int8_over_fp32"] > 1.0) if latency else None,
        "plot": str(plot_path), "onnxruntime": ort.__version__, "notes": notes,
    }
