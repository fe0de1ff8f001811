"""Where kernelnet metadata lives in each artifact: ONNX ``metadata_props`` (read through onnxruntime) and a
TensorRT engine's side-car ``<engine>.json``. Decoding and validation: :mod:`kernelnet.runtime.spec_codec`."""

from __future__ import annotations

import json
from pathlib import Path

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec_codec import PREFIX, ModelInfo, decode_info

__all__ = ["PREFIX", "read_sidecar", "sidecar_info"]


def read_sidecar(engine: Path) -> tuple[dict[str, str], list[list[int]] | None]:
    """Raw metadata strings and profile from a TensorRT engine's side-car (empty if it is missing or unreadable)."""
    side = engine.with_name(engine.name + ".json")
    try:
        doc = json.loads(side.read_text())
        meta = doc.get("metadata", {})
        props = {str(k): v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
        profile = doc.get("profile")
        return props, profile if isinstance(profile, list) else None
    except (OSError, ValueError, TypeError, AttributeError, RecursionError):
        return {}, None


def sidecar_info(engine: Path) -> ModelInfo:
    """The engine's :class:`ModelInfo` from its side-car (validated; errors name the engine)."""
    props, _ = read_sidecar(engine)
    try:
        return decode_info(props)
    except KernelnetError as exc:
        raise KernelnetError(f"{engine}: {exc}") from exc
