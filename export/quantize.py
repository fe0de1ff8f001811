"""``kernelnet quantize``: static int8 post-training quantization of a run's fp32 ONNX model (QDQ format).

Pipeline: ``RUN/model.onnx`` (from ``kernelnet export``) → onnxruntime's quantization pre-process (symbolic shape
inference + graph cleanup) → calibration on random crops of the TRAIN split of ``--calibration`` (the training
data pipeline: :func:`kernelnet.data.load_source`, :func:`~kernelnet.data.split_images`,
:func:`~kernelnet.data.sample_crops`) with onnxruntime's MinMax / Entropy / Percentile calibrators →
``quantize_static`` in QDQ format with per-channel int8 weights → ``RUN/model.int8.onnx``. The result is then
compared with the fp32 model on whole TEST-split photos (never used for calibration) and both are timed side by
side with onnxruntime on the CPU at 1080p; the figures go to ``RUN/quantize.json`` and an error map to
``RUN/plots/int8_error.png``.

Two flavours:

* default (``model.int8.onnx``): float32 input in [0, 1]; **symmetric int8** activations (zero point 0),
  symmetric per-channel int8 weights and a float bias — the form TensorRT's ONNX parser accepts for an explicit
  int8 engine (``kernelnet export RUN --format tensorrt --precision int8``) and that onnxruntime runs too.
* ``uint8_input`` (``model.int8.u8.onnx``): raw 8-bit frames in. Activations are asymmetric uint8 (the
  onnxruntime CPU form, u8 activations × s8 weights, int32 bias); the input's quantization is pinned to
  scale 1/255, zero point 0, so the frame *is* the quantized input tensor: the graph input is uint8 and feeds the
  first ``DequantizeLinear`` directly (the input ``QuantizeLinear`` is removed). The /255 costs nothing.

Weights: each output channel's scale is chosen among max|w|/q, q ∈ [64, 127], to minimise the rounding error
(Sobel's {1, 2} become exactly {63, 126}); the input range of a ``Conv`` fed by the graph input (directly or
through its ``Pad``) is pinned to [0, 1] (1/127 symmetric, 1/255 asymmetric) instead of being calibrated; other
``Conv`` inputs (the second ``Conv`` of a separable graph) are calibrated. Only ``Conv`` is quantized (input, weights,
output); what follows it (abs, the magnitude) stays float.

Example::

    >>> from kernelnet.export.quantize import quantize_run      # doctest: +SKIP
    >>> r = quantize_run("artifacts/runs/sobel-single", method="percentile", samples=32)  # doctest: +SKIP
    >>> r.path.name, r.report["psnr_vs_fp32_db"] > 45            # doctest: +SKIP
    ('model.int8.onnx', True)
"""

from __future__ import annotations

import io
import json
import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.atomic import atomic_path, check_creatable, write_json, write_with
from kernelnet.runtime.errors import CheckFailed, KernelnetError
from kernelnet.export.onnx_export import quiet, verify_shapes
from kernelnet.runtime.inputs import to_dtype
from kernelnet.runtime.spec_codec import PREFIX, reencode

METHODS = ("minmax", "entropy", "percentile")
SOURCE_FILE = "model.onnx"
INT8_FILE, INT8_U8_FILE = "model.int8.onnx", "model.int8.u8.onnx"
REPORT_FILE, REPORT_U8_FILE = "quantize.json", "quantize.u8.json"
PLOT_FILE, PLOT_U8_FILE = "int8_error.png", "int8_u8_error.png"
DEFAULT_SAMPLES = 64
CALIBRATION_CROP = 128
CALIBRATION_BATCH = 8
LATENCY_SHAPE = (1, 1, 1080, 1920)
LATENCY_THREADS = 2
DEFAULT_LATENCY_RUNS = 10
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul"})
"""Ops whose presence means a model is already quantized."""
U8_SCALE = np.float32(1.0 / 255.0)


@dataclass
class QuantizeResult:
    """What :func:`quantize_run` wrote, and the report it wrote to ``report_path``."""

    path: Path
    report_path: Path
    plot_path: Path
    report: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- checks

def _load_source(path: Path) -> tuple[Any, bytes]:
    """The fp32 source model and its bytes, or :class:`KernelnetError` if it is unreadable, quantized, fp16 or
    uint8-input."""
    import onnx

    try:
        data = path.read_bytes()
        proto = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds
        raise KernelnetError(f"cannot read {path} as an ONNX model: {exc}") from None
    found = sorted({n.op_type for n in proto.graph.node} & QUANTIZED_OPS)
    int8_inits = [i.name for i in proto.graph.initializer
                  if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)]
    if found or int8_inits:
        what = ", ".join(found) if found else f"8-bit initializer {int8_inits[0]!r}"
        raise KernelnetError(f"{path} is already quantized ({what}): quantize the fp32 model from 'kernelnet export'")
    props = {p.key: p.value for p in proto.metadata_props}
    elem = proto.graph.input[0].type.tensor_type.elem_type if len(proto.graph.input) == 1 else None
    if elem != onnx.TensorProto.FLOAT or props.get(PREFIX + "precision", "fp32") != "fp32" \
            or any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer):
        raise KernelnetError(f"{path} is not a float32-input fp32 model: re-export it with plain "
                             "'kernelnet export RUN' (no --fp16, no --input-dtype uint8) before quantizing")
    if not any(n.op_type == "Conv" for n in proto.graph.node):
        raise KernelnetError(f"{path} has no Conv node to quantize")
    return proto, data


def _check_args(method: str, samples: int, latency_runs: int) -> None:
    if method not in METHODS:
        raise KernelnetError(f"unknown calibration method {method!r}: use {', '.join(METHODS)}")
    if samples < 1:
        raise KernelnetError(f"--samples must be >= 1, got {samples}")
    if latency_runs < 0:
        raise KernelnetError(f"--latency-runs must be >= 0, got {latency_runs}")


# ------------------------------------------------------------------------------------------ calibration

def calibration_side(images: dict[str, np.ndarray], crop: int = CALIBRATION_CROP) -> int:
    """The calibration crop side: ``crop``, or the largest square that fits in the biggest image."""
    return min(crop, max(min(im.shape) for im in images.values()))


def _reader(images: dict[str, np.ndarray], samples: int, side: int, seed: int) -> Any:
    """A CalibrationDataReader yielding ``samples`` random crops (n, 1, side, side) of ``images``, in batches of
    :data:`CALIBRATION_BATCH` made on demand (the batch dimension is dynamic)."""
    from onnxruntime.quantization import CalibrationDataReader

    from kernelnet.data import sample_crops, usable_for_crops

    usable = usable_for_crops(images, side)

    class CropReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rng = np.random.default_rng([seed, 8])
            self._left = samples

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._left <= 0:
                return None
            n = min(CALIBRATION_BATCH, self._left)
            self._left -= n
            return {"input": sample_crops(usable, n, side, self._rng)}

    return CropReader()


def _calibration_method(method: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def _calibrate(pre_path: Path, reader: Any, method: str, symmetric: bool, workdir: Path) -> tuple[Path, dict]:
    """Run onnxruntime's calibrator over the Conv tensors; write its cache (for quantize_static) and return ranges."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options: dict[str, Any] = {"symmetric": symmetric}
    if method == "entropy":
        options.update(num_bins=1024, num_quantized_bins=255)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=99.999)
    calibrator = create_calibrator(pre_path, ["Conv"], augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=_calibration_method(method), extra_options=options)
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    cache = workdir / "calibration.json"
    save_tensors_data(ranges, cache)
    out = {name: [float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max())]
           for name, v in ranges.data.items()}
    return cache, out


# --------------------------------------------------------------------------------------- quantization

def best_weight_scale(weights: np.ndarray, qmax: int = 127, qmin_search: int = 64) -> tuple[float, int]:
    """Symmetric int8 scale for one channel: max|w|/q for the q ∈ [qmin_search, qmax] with the least squared
    rounding error (ties → larger q). Returns (scale, q). Sobel (max 2) → q = 126, exact."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    peak = float(np.abs(w).max())
    if peak == 0.0:
        return 1.0 / qmax, qmax
    tol = w.size * (peak * 1e-6) ** 2  # float32 noise: a "better" q must beat the best by more than this
    best: tuple[float, int] | None = None
    best_err = np.inf
    for q in range(qmax, qmin_search - 1, -1):
        scale = float(np.float32(peak / q))
        err = float(np.sum((w - scale * np.clip(np.round(w / scale), -qmax, qmax)) ** 2))
        if err < best_err - tol:
            best, best_err = (scale, q), err
    assert best is not None
    return best


def _overrides(pre: Any) -> dict[str, list[dict[str, Any]]]:
    """TensorQuantOverrides: conv inputs known to lie in [0, 1] get that range; conv weights the best scale."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in pre.graph.initializer}
    producers = {out: n for n in pre.graph.node for out in n.output}
    graph_input = pre.graph.input[0].name
    overrides: dict[str, list[dict[str, Any]]] = {}
    for node in pre.graph.node:
        if node.op_type != "Conv":
            continue
        x = node.input[0]
        src = producers.get(x)
        if x == graph_input or (src is not None and src.op_type == "Pad" and src.input[0] == graph_input):
            overrides[x] = [{"rmin": np.float32(0.0), "rmax": np.float32(1.0)}]
        if node.input[1] in inits:
            w = inits[node.input[1]]
            chans = []
            for c in range(w.shape[0]):
                scale, _ = best_weight_scale(w[c])
                # symmetric int8 weights: scale = max(|rmin|, |rmax|) / 127
                r = np.float32(scale * 127.0)
                chans.append({"axis": 0, "rmin": -r, "rmax": r})
            overrides[node.input[1]] = chans
    return overrides


def _quantize(pre_path: Path, out_path: Path, cache: Path, method: str, uint8: bool) -> None:
    """``quantize_static`` (QDQ, per-channel) from the calibration cache; see the module docstring for types."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(pre_path), str(out_path), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=_calibration_method(method), calibration_cache_path=str(cache),
                    extra_options={"ActivationSymmetric": not uint8, "WeightSymmetric": True,
                                   "QuantizeBias": uint8,  # TensorRT rejects an int32 bias DequantizeLinear
                                   "TensorQuantOverrides": _overrides(onnx.load(str(pre_path)))})


def _fold_uint8_input(proto: Any) -> None:
    """Make the graph input uint8: ``DequantizeLinear(input, 1/255, 0)`` replaces the float input, and a
    following ``QuantizeLinear`` with the same scale/zero point (an identity on 8-bit values) is removed, so the
    frame feeds the first quantized op directly."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    name = graph.input[0].name
    deq = name + "_u8_dequantized"
    for node in graph.node:
        node.input[:] = [deq if i == name else i for i in node.input]
    graph.initializer.extend([numpy_helper.from_array(np.array(U8_SCALE, dtype=np.float32), name + "_u8_scale"),
                              numpy_helper.from_array(np.array(0, dtype=np.uint8), name + "_u8_zero_point")])
    graph.node.insert(0, helper.make_node("DequantizeLinear", [name, name + "_u8_scale", name + "_u8_zero_point"],
                                          [deq], name=name + "_u8_DequantizeLinear"))
    graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT8
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] != deq or len(node.input) < 3:
            continue
        scale, zp = inits.get(node.input[1]), inits.get(node.input[2])
        if scale is None or zp is None or zp.dtype != np.uint8 or zp.size != 1 or int(zp) != 0 \
                or scale.size != 1 or np.float32(scale) != U8_SCALE:
            continue
        for other in graph.node:
            other.input[:] = [name if i == node.output[0] else i for i in other.input]
        graph.node.remove(node)
    if not any(deq in n.input for n in graph.node if n.output[0] != deq):
        graph.node.remove(next(n for n in graph.node if n.output[0] == deq))
    _drop_unused_initializers(graph)


def _drop_unused_initializers(graph: Any) -> None:
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _finish(proto: Any, source: Any, info: dict[str, Any], uint8: bool) -> None:
    """Metadata of the fp32 model + precision/int8 details; producer and doc strings as ``kernelnet export``."""
    import onnx

    from kernelnet import __version__

    props = reencode({p.key: p.value for p in source.metadata_props}, precision="int8",
                     input_dtype="uint8" if uint8 else "float32",
                     extra={"quantization": json.dumps(info, separators=(",", ":"))})
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.producer_version = "kernelnet", __version__
    used = {n.domain for n in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used]  # pre-process lists every ORT domain
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    proto.doc_string = ""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailed(f"the quantized model fails the ONNX checker: {exc}") from None


# ------------------------------------------------------------------------------------ measurement

def _session(model: bytes, level: str = "basic", threads: int = LATENCY_THREADS) -> Any:
    """A CPU session of the serialized ``model`` at optimization ``level``, ``threads`` intra-op threads."""
    import onnxruntime as ort

    from kernelnet.runtime.session import SessionConfig

    settings = SessionConfig(graph_optimization_level=level, intra_op_threads=threads, inter_op_threads=1)
    return ort.InferenceSession(model, settings.to_session_options(), providers=["CPUExecutionProvider"])


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
    onnxruntime's BASIC level and at its default (ALL). The fp32 model gets frame/255 (not timed)."""
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


# --------------------------------------------------------------------------------------------- main

def quantize_run(run_dir: str | os.PathLike[str], *, calibration: str = "builtin", method: str = "minmax",
                 samples: int = DEFAULT_SAMPLES, uint8_input: bool = False,
                 out: str | os.PathLike[str] | None = None, seed: int = 0,
                 latency_runs: int = DEFAULT_LATENCY_RUNS) -> QuantizeResult:
    """Quantize ``RUN/model.onnx`` to int8 QDQ at ``out`` (default ``RUN/model.int8.onnx``, or
    ``RUN/model.int8.u8.onnx`` with ``uint8_input``) and write the report (``RUN/quantize.json`` /
    ``RUN/quantize.u8.json``) and error plot (``RUN/plots/int8_error.png`` / ``int8_u8_error.png``).

    The fp32 model must exist (``kernelnet export RUN`` first): quantizing needs the exact graph that was
    exported and verified, so it is not re-exported silently. ``calibration`` is ``builtin`` or an image folder;
    its TRAIN split calibrates (``samples`` random crops), its TEST split evaluates. ``latency_runs`` = 0 skips
    timing. Raises :class:`KernelnetError` (bad input: missing run/model, quantized or non-fp32 source, unusable
    calibration folder, samples < 1) before anything is written; every file is written atomically.
    """
    import onnx
    import onnxruntime as ort

    from kernelnet.data import load_source, split_images
    from kernelnet.rundir import load_config

    _check_args(method, samples, latency_runs)
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    source_path = run_dir / SOURCE_FILE
    if not source_path.is_file():
        raise KernelnetError(f"{source_path} not found: run 'kernelnet export {run_dir}' first")
    path = Path(out) if out is not None else run_dir / (INT8_U8_FILE if uint8_input else INT8_FILE)
    if path.is_dir():
        raise KernelnetError(f"output {path} is a directory")
    if path.resolve() == source_path.resolve():
        raise KernelnetError(f"output {path} would overwrite the fp32 source model")
    check_creatable(path)
    source, source_bytes = _load_source(source_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = split_images(load_source(calibration))
    notes = [str(w.message) for w in caught]
    held_out = not set(split.train) & set(split.test)
    side = calibration_side(split.train)
    reader = _reader(split.train, samples, side, seed)

    with tempfile.TemporaryDirectory(prefix="kernelnet-quantize-") as tmp:
        workdir = Path(tmp)
        pre_path, q_path = workdir / "pre.onnx", workdir / "quantized.onnx"
        try:
            with quiet():
                from onnxruntime.quantization.shape_inference import quant_pre_process

                quant_pre_process(str(source_path), str(pre_path))
                cache, ranges = _calibrate(pre_path, reader, method, not uint8_input, workdir)
                _quantize(pre_path, q_path, cache, method, uint8_input)
        except (KernelnetError, CheckFailed):
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises many kinds
            raise CheckFailed(f"onnxruntime quantization failed: {type(exc).__name__}: {exc}") from None
        proto = onnx.load(str(q_path))

    if uint8_input:
        _fold_uint8_input(proto)
    info = {"format": "QDQ", "activations": "uint8" if uint8_input else "int8-symmetric",
            "weights": "int8-symmetric-per-channel", "calibration": calibration, "method": method,
            "samples": samples, "crop": side, "seed": seed}
    _finish(proto, source, info, uint8_input)
    data = proto.SerializeToString()

    int8_eval = _session(data)
    _smoke_test(int8_eval, config.padding, config.kernel_size, uint8_input)
    metrics, first = evaluate(_session(source_bytes), int8_eval, split.test, uint8_input)
    latency = measure_latency(source_bytes, data, uint8_input, latency_runs) if latency_runs else None
    plot = _plot_error(first, metrics["psnr_vs_fp32_db_per_image"][first[0]], "int8 (u8 in)" if uint8_input else "int8")

    report_path = run_dir / (REPORT_U8_FILE if uint8_input else REPORT_FILE)
    plot_path = run_dir / "plots" / (PLOT_U8_FILE if uint8_input else PLOT_FILE)
    weight_scales = _weight_scales(proto)
    report: dict[str, Any] = {
        "model": str(path), "source": str(source_path), "uint8_input": uint8_input, **info,
        "bias": ("int32" if uint8_input else "float") if _has_bias(source) else "none",
        "weight_scales": weight_scales,
        "activation_params": _activation_params(proto),
        "calibration_images": sorted(split.train),
        "calibration_ranges": ranges,  # as calibrated; the graph input's conv input is then pinned to [0, 1]
        "evaluation_images": sorted(split.test), "evaluation_held_out": held_out,
        "evaluation_ort_level": "basic",
        "psnr_definition": "pooled over the evaluation photos (whole images), peak = fp32 output range "
                           "(as training's test_psnr_db); per image and worst image listed too",
        **metrics,
        "size_bytes": {"fp32": len(source_bytes), "int8": len(data)},
        "latency_1080p_ms": latency,
        "int8_over_fp32": latency["best"]["int8_over_fp32"] if latency else None,
        "int8_slower_on_this_cpu": bool(latency["best"]["int8_over_fp32"] > 1.0) if latency else None,
        "plot": str(plot_path), "onnxruntime": ort.__version__, "notes": notes,
    }
    with atomic_path(path) as tmp_model:
        tmp_model.write_bytes(data)
    write_with(plot_path, lambda tmp_plot: tmp_plot.write_bytes(plot))
    write_json(report_path, report)
    return QuantizeResult(path, report_path, plot_path, report)


def _has_bias(proto: Any) -> bool:
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


def _smoke_test(session: Any, padding: str, kernel_size: int, uint8: bool) -> None:
    """The int8 graph keeps the contract on odd shapes: (N, 1, H, W) float32 out, finite."""
    rng = np.random.default_rng(1)
    for shape in verify_shapes(padding, kernel_size, None):
        x = rng.integers(0, 256, shape, dtype=np.uint8) if uint8 else rng.random(shape, dtype=np.float32)
        y = session.run(None, {"input": x})[0]
        if y.shape != shape or y.dtype != np.float32 or not np.isfinite(y).all():
            raise CheckFailed(f"int8 model breaks the output contract at {'x'.join(map(str, shape))}: "
                              f"got {y.shape} {y.dtype}")
