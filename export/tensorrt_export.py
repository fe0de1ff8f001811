"""``kernelnet export --format tensorrt``: a serialized TensorRT engine with a dynamic optimisation profile.

fp32/fp16 engines are compiled with torch-tensorrt's dynamo path
(``torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine``); int8 engines are built from the
quantized QDQ ONNX model with TensorRT's ONNX parser (explicit quantization). The engine is a plain TensorRT
plan that :mod:`kernelnet.runtime` loads without torch; a side-car ``<engine>.json`` holds the profile and the
model metadata.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelnet.runtime.io.atomic import check_creatable, write_bytes, write_json
from kernelnet.runtime.errors import KernelnetError
from kernelnet.export.shapes import check_profile

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PROFILE = ((1, 1, 1, 1), (1, 1, 1080, 1920), (1, 1, 4096, 4096))


@dataclass
class EngineResult:
    path: Path
    size_bytes: int
    precision: str
    profile: tuple[tuple[int, ...], ...]


def missing_requirements(precision: str = "fp32") -> list[str]:
    """What this machine lacks for a TensorRT build: an NVIDIA GPU (CUDA), ``tensorrt``, ``torch_tensorrt``."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the 'tensorrt' package")
    if precision != "int8" and importlib.util.find_spec("torch_tensorrt") is None:
        missing.append("the 'torch_tensorrt' package")
    import torch

    if not torch.cuda.is_available():
        missing.append("an NVIDIA GPU with CUDA")
    return missing


def _build_from_torch(model: Any, precision: str, profile: tuple[tuple[int, ...], ...]) -> bytes:
    import torch
    import torch_tensorrt

    from kernelnet.export.graph_module import ReferenceModule

    module = ReferenceModule(model).eval().cuda()
    lo, opt, hi = profile
    dims = {"x": {i: torch.export.Dim(name, min=lo[i], max=hi[i])
                  for i, name in ((0, "batch"), (2, "height"), (3, "width")) if lo[i] != hi[i]}}
    example = torch.rand(opt, device="cuda")
    exported = torch.export.export(module, (example,), dynamic_shapes=dims)
    spec = torch_tensorrt.Input(min_shape=lo, opt_shape=opt, max_shape=hi, dtype=torch.float32)
    precisions = {torch.float32} if precision == "fp32" else {torch.float16, torch.float32}
    engine = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        exported, inputs=[spec], enabled_precisions=precisions)
    return bytes(engine)


def _build_from_onnx(onnx_path: Path, precision: str, profile: tuple[tuple[int, ...], ...]) -> bytes:
    """Build with TensorRT's ONNX parser (used for QDQ int8 models: explicit quantization)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise KernelnetError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(network.get_input(0).name, *profile)
    config.add_optimization_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise KernelnetError("TensorRT failed to build the engine (see the TensorRT log above)")
    return bytes(plan)


def export_tensorrt(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
                    precision: str = "fp32", min_shape: tuple[int, ...] = DEFAULT_PROFILE[0],
                    opt_shape: tuple[int, ...] = DEFAULT_PROFILE[1], max_shape: tuple[int, ...] = DEFAULT_PROFILE[2],
                    onnx_model: str | os.PathLike[str] | None = None) -> EngineResult:
    """Build ``RUN/model.engine`` (or ``out``). int8 needs the QDQ model (``RUN/model.int8.onnx`` by default).

    On a machine without an NVIDIA GPU, ``tensorrt`` or ``torch_tensorrt`` this raises :class:`KernelnetError`
    naming what is missing, before anything is written.
    """
    from kernelnet.export.metadata import build_metadata
    from kernelnet.export.quantize import INT8_FILE
    from kernelnet.rundir import load_config, load_metrics, load_weights, model_from_weights

    run_dir = Path(run_dir)
    if precision not in PRECISIONS:
        raise KernelnetError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    check_profile(min_shape, opt_shape, max_shape)
    config = load_config(run_dir)
    weights = load_weights(run_dir)
    source = Path(onnx_model) if onnx_model else (run_dir / INT8_FILE if precision == "int8" else None)
    if source is None and (config.after or config.decode or config.encode):  # a chain, curves: the graph is all
        source = run_dir / "model.onnx"
        if not source.is_file():
            raise KernelnetError(f"{source} not found: a chain or curves build their engine from the graph; run "
                                 "'kernelnet export RUN' first")
    if source is not None and not source.is_file():
        raise KernelnetError(f"{source} not found" + (": run 'kernelnet quantize RUN' first" if precision == "int8" else ""))
    missing = missing_requirements(precision)
    if missing:
        raise KernelnetError(f"TensorRT export needs {', '.join(missing)} (install with: pip install 'kernelnet[tensorrt]' "
                             "on a machine with an NVIDIA GPU)")
    profile = (tuple(min_shape), tuple(opt_shape), tuple(max_shape))
    path = Path(out) if out is not None else run_dir / "model.engine"
    if path.is_dir():
        raise KernelnetError(f"output {path} is a directory")
    check_creatable(path)  # before the (slow) engine build
    if source:
        engine = _build_from_onnx(source, precision, profile)
    else:
        engine = _build_from_torch(model_from_weights(config, weights, run_dir), precision, profile)
    meta: dict[str, Any] = build_metadata(config, weights, load_metrics(run_dir), "float32", precision)
    write_bytes(path, engine)  # the engine first: a failed write leaves no side-car without its engine
    write_json(path.with_name(path.name + ".json"), {"profile": [list(s) for s in profile], "metadata": meta})
    return EngineResult(path, len(engine), precision, profile)
