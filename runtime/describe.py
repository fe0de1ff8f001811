"""What an exported model is: kind, kernels, I/O shapes, opset, metadata, size. Torch-free."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kernelnet.errors import KernelnetError
from kernelnet.runtime.metadata import parse_metadata


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """A model file, or a run directory (→ its ``model.onnx``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise KernelnetError(f"model file {path} not found")
    return path


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe an ONNX model (via onnxruntime) or a TensorRT engine (via its side-car JSON)."""
    path = resolve_model_path(path)
    info: dict[str, Any] = {"path": str(path), "size_bytes": path.stat().st_size}
    if path.suffix == ".engine":
        side = path.with_name(path.name + ".json")
        if side.is_file():
            doc = json.loads(side.read_text())
            info.update(format="tensorrt", profile=doc.get("profile"), **parse_metadata(doc.get("metadata", {})))
        else:
            info.update(format="tensorrt")
        return info
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise KernelnetError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
    meta = session.get_modelmeta()
    info.update(format="onnx", producer=meta.producer_name,
                inputs=[{"name": i.name, "type": i.type, "shape": i.shape} for i in session.get_inputs()],
                outputs=[{"name": o.name, "type": o.type, "shape": o.shape} for o in session.get_outputs()])
    try:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
        info["opset"] = max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx"))
        info["ops"] = sorted({n.op_type for n in proto.graph.node})
    except ImportError:
        pass
    info.update(parse_metadata(meta.custom_metadata_map))
    return info
