"""kernelnet.export: turn a run directory into deployable artifacts.

``onnx(run)`` → dynamic-shape ONNX; ``quantize_int8(run)`` → int8 QDQ ONNX; ``tensorrt(run)`` → a serialized
TensorRT engine. Heavy imports happen inside the functions.
"""

from __future__ import annotations

from typing import Any


def onnx(run_dir: Any, out: Any = None, **options: Any) -> Any:
    """Export ``run_dir`` to ONNX (see :func:`kernelnet.export.onnx_export.export_onnx`)."""
    from kernelnet.export.onnx_export import export_onnx

    return export_onnx(run_dir, out, **options)


def tensorrt(run_dir: Any, out: Any = None, **options: Any) -> Any:
    """Build a TensorRT engine (see :func:`kernelnet.export.tensorrt_export.export_tensorrt`)."""
    from kernelnet.export.tensorrt_export import export_tensorrt

    return export_tensorrt(run_dir, out, **options)


def quantize_int8(run_dir: Any, **options: Any) -> Any:
    """int8 QDQ quantization of ``RUN/model.onnx`` (see :func:`kernelnet.export.quantize.quantize_run`)."""
    from kernelnet.export.quantize import quantize_run

    return quantize_run(run_dir, **options)
