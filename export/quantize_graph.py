"""Graph surgery for ``kernelnet quantize``: fp32 ONNX → int8 QDQ ONNX.

The steps, in order: onnxruntime's quantization pre-process (symbolic shape inference + cleanup), calibration
(:mod:`kernelnet.export.quantize_calibration`), ``quantize_static`` with kernelnet's own overrides (a Conv input
fed by the graph input is pinned to [0, 1]; each weight channel gets the scale with the least rounding error),
then, for raw 8-bit input, removal of the input ``QuantizeLinear`` so the uint8 frame *is* the quantized input,
and last the metadata of the fp32 model carried over so the int8 model describes itself like an exported one.
Kept apart from measurement and reporting so that what is written into the graph can be read on its own.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.export.onnx_export import quiet
from kernelnet.export.quantize_calibration import _calibrate, _calibration_method
from kernelnet.runtime.errors import CheckFailed, KernelnetError
from kernelnet.runtime.spec_codec import reencode

U8_SCALE = np.float32(1.0 / 255.0)
"""Scale of the pinned uint8 input: frame value v stands for v/255."""


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


def _overrides(pre: Any, clip: tuple[float, float] | None = None, grid: int | None = None
               ) -> dict[str, list[dict[str, Any]]]:
    """TensorQuantOverrides: conv inputs known to lie in [0, 1] get that range; conv weights the best scale; with
    an output clip, the last convs' outputs get ±max|clip| (beyond it the clip decides; within it every value
    must be representable, whatever the calibration photos happened to reach; the pre-process may fold the
    output stage's grid multiplication into the Conv of a raw filter, so the bound is then taken × grid — never
    for a magnitude, whose grid step comes after its Sqrt)."""
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
    conv_inputs = {n.input[0] for n in pre.graph.node if n.op_type == "Conv"}
    for node in pre.graph.node:  # a separable graph's middle: v·x for x in [0, 1] lies in [Σ v⁻, Σ v⁺], exactly
        first = node.input[0] == graph_input or (producers.get(node.input[0]) is not None and
                                                 producers[node.input[0]].op_type == "Pad")
        if node.op_type == "Conv" and first and node.output[0] in conv_inputs and node.input[1] in inits:
            w = inits[node.input[1]].astype(np.float64)
            reach = np.float32(max(float(np.clip(w, 0, None).sum()), float(-np.clip(w, None, 0).sum())))
            overrides[node.output[0]] = [{"rmin": -reach, "rmax": reach}]
    if clip is not None:  # a magnitude's grid step follows its Sqrt: nothing folds it into the Convs
        folds = not any(node.op_type == "Sqrt" for node in pre.graph.node)
        bound = np.float32(max(abs(clip[0]), abs(clip[1])) * (grid if grid and folds else 1))
        for node in pre.graph.node:
            if node.op_type == "Conv" and node.output[0] not in conv_inputs:
                overrides[node.output[0]] = [{"rmin": -bound, "rmax": bound}]
    return overrides


def _quantize(pre_path: Path, out_path: Path, cache: Path, method: str, uint8: bool,
              clip: tuple[float, float] | None = None, grid: int | None = None) -> None:
    """``quantize_static`` (QDQ, per-channel) from the calibration cache; see :mod:`kernelnet.export.quantize`
    for the types."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(pre_path), str(out_path), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8 if uint8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=_calibration_method(method), calibration_cache_path=str(cache),
                    extra_options={"ActivationSymmetric": not uint8, "WeightSymmetric": True,
                                   "QuantizeBias": uint8,  # TensorRT rejects an int32 bias DequantizeLinear
                                   "TensorQuantOverrides": _overrides(onnx.load(str(pre_path)), clip, grid)})


def _build_quantized(source_path: Path, reader: Any, method: str, uint8: bool,
                     clip: tuple[float, float] | None = None, grid: int | None = None
                     ) -> tuple[Any, dict[str, list[float]]]:
    """Pre-process, calibrate and quantize ``source_path`` in a temporary folder.

    Returns the quantized ``ModelProto`` (before :func:`_fold_uint8_input` / :func:`_finish`) and the calibrated
    ranges. Any onnxruntime failure becomes :class:`CheckFailed`.
    """
    import onnx

    with tempfile.TemporaryDirectory(prefix="kernelnet-quantize-") as tmp:
        workdir = Path(tmp)
        pre_path, q_path = workdir / "pre.onnx", workdir / "quantized.onnx"
        try:
            with quiet():
                from onnxruntime.quantization.shape_inference import quant_pre_process

                quant_pre_process(str(source_path), str(pre_path))
                cache, ranges = _calibrate(pre_path, reader, method, not uint8, workdir)
                _quantize(pre_path, q_path, cache, method, uint8, clip, grid)
        except (KernelnetError, CheckFailed):
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises many kinds
            raise CheckFailed(f"onnxruntime quantization failed: {type(exc).__name__}: {exc}") from exc
        return onnx.load(str(q_path)), ranges
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
    """Remove initializers that no node reads any more (left behind by :func:`_fold_uint8_input`)."""
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
        raise CheckFailed(f"the quantized model fails the ONNX checker: {exc}") from exc
