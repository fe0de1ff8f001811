"""Reading kernelnet metadata from exported models (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREFIX = "kernelnet."


def parse_metadata(props: dict[str, str]) -> dict[str, Any]:
    """Inverse of :func:`build_metadata` (keys without prefix, JSON decoded). Unknown keys are kept as text."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        name = key[len(PREFIX):] if key.startswith(PREFIX) else key
        if name in ("target_kernel", "kernels", "bias", "metrics"):
            try:
                out[name] = json.loads(value)
            except ValueError:
                out[name] = value
        elif name == "normalize":
            out[name] = value == "true"
        elif name == "kernel_size":
            out[name] = int(value)
        else:
            out[name] = value
    return out


def read_sidecar(engine: Path) -> tuple[dict[str, Any], list[list[int]] | None]:
    """Metadata and profile from a TensorRT engine's side-car ``<engine>.json`` (empty if it is missing or
    unreadable)."""
    side = engine.with_name(engine.name + ".json")
    try:
        doc = json.loads(side.read_text())
        return parse_metadata(doc.get("metadata", {})), doc.get("profile")
    except (OSError, ValueError, TypeError, AttributeError):
        return {}, None
