"""``kernelnet quantize``: static int8 post-training quantization of a run's fp32 ONNX model (QDQ format).

Pipeline: ``RUN/model.onnx`` (from ``kernelnet export``) → onnxruntime's quantization pre-process (symbolic shape
inference + graph cleanup) → calibration on random crops of the TRAIN split of ``--calibration`` (the training
data pipeline: :func:`kernelnet.learn.data.load_source`, :func:`~kernelnet.learn.data.split_images`,
:func:`~kernelnet.learn.data.sample_crops`) with onnxruntime's MinMax / Entropy / Percentile calibrators →
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
through its ``Pad``) is pinned to [0, 1] (1/127 symmetric, 1/255 asymmetric) instead of being calibrated; the
second ``Conv`` of a separable graph takes the exact reach of the first for inputs in [0, 1] (calibration photos
may not reach it); with an output clip, the last ``Conv`` outputs get ±max|clip|. Only ``Conv`` is quantized
(input, weights, output); what follows it (abs, the magnitude, the output stage) stays float.

Example::

    >>> from kernelnet.export.quantize import quantize_run      # doctest: +SKIP
    >>> r = quantize_run("artifacts/runs/sobel-single", method="percentile", samples=32)  # doctest: +SKIP
    >>> r.path.name, r.report["psnr_vs_fp32_db"] > 45            # doctest: +SKIP
    ('model.int8.onnx', True)

This module is the public entry point (:func:`quantize_run`, :class:`QuantizeResult`, the file names); the work
is in :mod:`~kernelnet.export.quantize_calibration` (crops → calibrator), :mod:`~kernelnet.export.quantize_graph`
(pre-process, overrides, ``quantize_static``, uint8 input, metadata) and :mod:`~kernelnet.export.quantize_report`
(comparison with fp32, timing, plot, ``quantize.json``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelnet.export.quantize_calibration import CALIBRATION_BATCH, CALIBRATION_CROP, _reader, calibration_side
from kernelnet.export.quantize_graph import U8_SCALE, _build_quantized, _finish, _fold_uint8_input, best_weight_scale
from kernelnet.export.quantize_report import (LATENCY_SHAPE, LATENCY_THREADS, _build_report, _plot_error, _session,
                                              _smoke_test, evaluate, measure_latency)
from kernelnet.runtime.io.atomic import atomic_path, check_creatable, write_json, write_with
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec_codec import PREFIX

__all__ = ["METHODS", "SOURCE_FILE", "INT8_FILE", "INT8_U8_FILE", "REPORT_FILE", "REPORT_U8_FILE", "PLOT_FILE",
           "PLOT_U8_FILE", "DEFAULT_SAMPLES", "CALIBRATION_CROP", "CALIBRATION_BATCH", "LATENCY_SHAPE",
           "LATENCY_THREADS", "DEFAULT_LATENCY_RUNS", "QUANTIZED_OPS", "U8_SCALE", "QuantizeResult", "quantize_run",
           "best_weight_scale", "calibration_side", "evaluate", "measure_latency"]

METHODS = ("minmax", "entropy", "percentile")
SOURCE_FILE = "model.onnx"
INT8_FILE, INT8_U8_FILE = "model.int8.onnx", "model.int8.u8.onnx"
REPORT_FILE, REPORT_U8_FILE = "quantize.json", "quantize.u8.json"
PLOT_FILE, PLOT_U8_FILE = "int8_error.png", "int8_u8_error.png"
DEFAULT_SAMPLES = 64
DEFAULT_LATENCY_RUNS = 10
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                           "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul"})
"""Ops whose presence means a model is already quantized."""


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
        raise KernelnetError(f"cannot read {path} as an ONNX model: {exc}") from exc
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
    """Reject a bad ``method``, ``samples`` < 1 or ``latency_runs`` < 0 before anything is read."""
    if method not in METHODS:
        raise KernelnetError(f"unknown calibration method {method!r}: use {', '.join(METHODS)}")
    if samples < 1:
        raise KernelnetError(f"calibration samples must be >= 1, got {samples}")
    if latency_runs < 0:
        raise KernelnetError(f"latency runs must be >= 0, got {latency_runs}")


def _paths(run_dir: Path, out: str | os.PathLike[str] | None, uint8: bool) -> tuple[Path, Path]:
    """(fp32 source, int8 output) paths, checked: the source exists, the output is creatable and not the source."""
    source_path = run_dir / SOURCE_FILE
    if not source_path.is_file():
        raise KernelnetError(f"{source_path} not found: run 'kernelnet export {run_dir}' first")
    path = Path(out) if out is not None else run_dir / (INT8_U8_FILE if uint8 else INT8_FILE)
    if path.is_dir():
        raise KernelnetError(f"output {path} is a directory")
    if path.resolve() == source_path.resolve():
        raise KernelnetError(f"output {path} would overwrite the fp32 source model")
    check_creatable(path)
    return source_path, path


def _load_split(calibration: str) -> tuple[Any, list[str]]:
    """The train/val/test split of ``calibration`` and the warnings loading it raised (kept for the report)."""
    from kernelnet.learn.data import load_source, split_images

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = split_images(load_source(calibration))
    return split, [str(w.message) for w in caught]


# --------------------------------------------------------------------------------------------- main

def quantize_run(run_dir: str | os.PathLike[str], *, calibration: str = "builtin", method: str = "minmax",
                 samples: int = DEFAULT_SAMPLES, uint8_input: bool = False,
                 out: str | os.PathLike[str] | None = None, seed: int = 0,
                 latency_runs: int = DEFAULT_LATENCY_RUNS) -> QuantizeResult:
    """Quantize ``RUN/model.onnx`` to int8 QDQ at ``out`` (default ``RUN/model.int8.onnx``, or
    ``RUN/model.int8.u8.onnx`` with ``uint8_input``) and write the report (``RUN/quantize.json`` /
    ``RUN/quantize.u8.json``) and error plot (``RUN/plots/int8_error.png`` / ``int8_u8_error.png``).

    The fp32 model must exist (``kernelnet export RUN`` first): quantizing needs the exact graph that was
    exported and verified, so it is not re-exported silently. ``calibration`` is ``builtin`` (for a pair-trained
    run: the run's own input photos) or an image folder;
    its TRAIN split calibrates (``samples`` random crops), its TEST split evaluates. ``latency_runs`` = 0 skips
    timing. Raises :class:`KernelnetError` (bad input: missing run/model, quantized or non-fp32 source, unusable
    calibration folder, samples < 1) before anything is written; every file is written atomically.
    """
    from kernelnet.rundir import load_config

    _check_args(method, samples, latency_runs)
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if config.model == "rank":
        raise KernelnetError(f"{run_dir} is a rank filter ({config.rank}): it only picks input values, so it has no "
                             "weights for int8 to shrink; quantization applies to linear kernels")
    if config.decode or config.encode:
        raise KernelnetError(f"{run_dir} wraps its kernel in curves ({config.decode or config.encode}): int8 applies "
                             "to kernels on the images' own values")
    if config.after:
        raise KernelnetError(f"{run_dir} is a chain of {len(config.after) + 1} passes rounded in between: its taps "
                             "are exact fractions that int8 cannot hold; quantization applies to one-pass filters")
    source_path, path = _paths(run_dir, out, uint8_input)
    source, source_bytes = _load_source(source_path)
    if calibration == "builtin" and config.is_pairs:
        calibration = config.data  # a pair-trained model calibrates on the photos it was identified from
    split, notes = _load_split(calibration)
    held_out = not set(split.train) & set(split.test)
    side = calibration_side(split.train)
    reader = _reader(split.train, samples, side, seed)

    stage = config.output_stage
    proto, ranges = _build_quantized(source_path, reader, method, uint8_input, stage.clip, stage.grid)
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
    report = _build_report(path=path, source_path=source_path, uint8=uint8_input, info=info, source=source,
                           proto=proto, ranges=ranges, train=sorted(split.train), test=sorted(split.test),
                           held_out=held_out, metrics=metrics, sizes=(len(source_bytes), len(data)),
                           latency=latency, plot_path=plot_path, notes=notes)
    with atomic_path(path) as tmp_model:
        tmp_model.write_bytes(data)
    write_with(plot_path, lambda tmp_plot: tmp_plot.write_bytes(plot))
    write_json(report_path, report)
    return QuantizeResult(path, report_path, plot_path, report)
