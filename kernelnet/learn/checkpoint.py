"""Save and load nested training state (model, optimizer, scheduler, history) as one safetensors file.

Tensors go into the safetensors body, everything else into a JSON document in its metadata: nothing is ever
unpickled. Writes are atomic.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from kernelnet.runtime.io.atomic import write_with
from kernelnet.runtime.errors import KernelnetError

_TENSOR = "__tensor__"
_KEY = "__key__"


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {_KEY: [[_flatten(k, tensors, f"{prefix}.k{i}"), _flatten(v, tensors, f"{prefix}.{i}")]
                       for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    return obj


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and _TENSOR in obj:
        return tensors[obj[_TENSOR]]
    if isinstance(obj, dict) and _KEY in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj[_KEY]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically write a nested dict of tensors and JSON-able values."""
    tensors: dict[str, torch.Tensor] = {}
    doc = _flatten(state, tensors, "s")
    write_with(path, lambda tmp: save_file(tensors, str(tmp), metadata={"state": json.dumps(doc)}))


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read what :func:`save_state` wrote; a missing or corrupt file is a :class:`KernelnetError`."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
        return _unflatten(json.loads(meta["state"]), tensors)
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise KernelnetError(f"corrupt or unreadable checkpoint {path}: {exc}") from None
