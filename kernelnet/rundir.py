"""The run directory contract (docs/architecture.md): model.safetensors, config.json, metrics.json, history.csv, plots/."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.atomic import write_json, write_text, write_with
from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.safetensors"


def default_run_dir(config: RunConfig, root: str | os.PathLike[str] = "artifacts/runs") -> Path:
    return Path(root) / config.run_name


def save_model(run_dir: str | os.PathLike[str], model: Any, config: RunConfig) -> None:
    """Write the weights (safetensors, config embedded in the metadata) and config.json, each atomically."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"config": json.dumps(config.to_dict())}
    write_with(run_dir / MODEL_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    config.save(run_dir / CONFIG_FILE)


def load_config(run_dir: str | os.PathLike[str]) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise KernelnetError(f"run directory {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise KernelnetError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return RunConfig.load(run_dir / CONFIG_FILE)


def load_weights(run_dir: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The run's tensors as numpy arrays (``conv.weight`` (C, 1, k, k), ``conv.bias`` (C,)), torch-free."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(run_dir) / MODEL_FILE
    if not path.is_file():
        raise KernelnetError(f"{Path(run_dir)} has no {MODEL_FILE} (training not finished?)")
    try:
        return load_file(str(path))
    except (OSError, SafetensorError, ValueError) as exc:
        raise KernelnetError(f"corrupt model file {path}: {exc}") from None


def model_from_weights(config: RunConfig, weights: dict[str, np.ndarray],
                       run_dir: str | os.PathLike[str]) -> Any:
    """The torch model (eval mode, CPU) of an already-read config and :func:`load_weights` tensors of ``run_dir``."""
    import torch

    from kernelnet.models import build_model

    model = build_model(config.model, config.kernel_size, "conv.bias" in weights, config.normalize, config.padding)
    try:
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items()})
    except RuntimeError as exc:
        raise KernelnetError(f"{MODEL_FILE} in {run_dir} does not match {CONFIG_FILE}: {exc}") from None
    return model.eval()


def load_model(run_dir: str | os.PathLike[str]) -> tuple[RunConfig, Any]:
    """Rebuild the run's torch model (eval mode, CPU) from config.json + model.safetensors."""
    config = load_config(run_dir)
    return config, model_from_weights(config, load_weights(run_dir), run_dir)


def load_metrics(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(run_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_metrics(run_dir: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    write_json(Path(run_dir) / METRICS_FILE, _jsonable(metrics))


def save_history(run_dir: str | os.PathLike[str], history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    if history:
        writer = csv.DictWriter(buf, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    write_text(Path(run_dir) / HISTORY_FILE, buf.getvalue())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def run_facts(seconds: float, history: list[dict[str, Any]], config: RunConfig, device: Any,
              split: Any) -> dict[str, Any]:
    """The metrics.json entries every run writes about how it ran (time, epochs, solver, device, split)."""
    return {
        "train_seconds": round(seconds, 3),
        "epochs_run": len(history),
        "solver": config.solver,
        "init": config.init,
        "device": str(device),
        "best_val_loss": min((h["val_loss"] for h in history), default=None),
        "split": {"train": sorted(split.train), "val": sorted(split.val), "test": sorted(split.test)},
    }
