"""What an exported model is: kind, kernels, I/O shapes, opset, metadata, size. Torch-free."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.metadata import read_sidecar
from kernelnet.runtime.spec_codec import decode_info


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """A model file, or a run directory (→ its ``model.onnx``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise KernelnetError(f"model file {path} not found")
    return path


WEIGHTS_FILE = "model.safetensors"
"""A run directory's trained weights (kernelnet.rundir.MODEL_FILE)."""


def weights_digest(run_dir: str | os.PathLike[str]) -> str | None:
    """SHA-256 of a run's model.safetensors (``None`` where there is none)."""
    path = Path(run_dir) / WEIGHTS_FILE
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def check_fresh(path: Path, fields: dict[str, Any]) -> None:
    """Refuse a model exported from other weights than the run directory it sits in holds now (the run was
    trained again after the export): one line that says how to mend it."""
    recorded = fields.get("weights_sha256")
    if not isinstance(recorded, str):
        return
    current = weights_digest(path.parent)
    if current is not None and current != recorded:
        raise KernelnetError(f"{path} was exported from other weights than {path.parent / WEIGHTS_FILE} holds now "
                             f"(the run was trained again): export it again (kernelnet export {path.parent})")


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe an ONNX model (via onnxruntime) or a TensorRT engine (via its side-car JSON, if readable)."""
    path = resolve_model_path(path)
    info: dict[str, Any] = {"path": str(path), "size_bytes": path.stat().st_size}
    if path.suffix == ".engine":
        props, profile = read_sidecar(path)
        info["format"] = "tensorrt"
        if props or profile is not None:
            info.update(profile=profile, **_fields(props, path))
        info["backend"] = "tensorrt"
        return info
    from kernelnet.runtime.backends.onnxruntime_backend import create_session

    session = create_session(path)
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
    info.update(_fields(dict(meta.custom_metadata_map), path))
    spec = decode_info(dict(meta.custom_metadata_map)).spec
    if spec is not None:
        from kernelnet.runtime.program import program_line

        info["program"] = program_line(spec)
    from kernelnet.runtime.backends import chosen_backend

    info["backend"], declined = chosen_backend(path)
    if declined:
        info["native_declined"] = declined
    return info


def _fields(props: dict[str, str], path: Path) -> dict[str, Any]:
    try:
        return decode_info(props).fields
    except KernelnetError as exc:
        raise KernelnetError(f"{path}: {exc}") from exc
