"""The run directory contract (docs/architecture.md): model.safetensors, config.json, metrics.json, history.csv, plots/."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.io.atomic import write_json, write_text, write_with
from kernelnet.config import RunConfig
from kernelnet.runtime.errors import CheckFailed, KernelnetError

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.safetensors"


def default_run_dir(config: RunConfig, root: str | os.PathLike[str] = "artifacts/runs") -> Path:
    return Path(root) / config.run_name


def partial_dir(run_dir: str | os.PathLike[str]) -> Path:
    """Where a run is built before it replaces ``run_dir`` whole (a hidden folder beside it; kept after an
    interrupt when it holds a checkpoint, which ``train --resume`` continues)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.kernelnet-partial"


def check_run_dir(run_dir: str | os.PathLike[str], inputs: tuple[str | os.PathLike[str], ...] = (),
                  marker: str = CONFIG_FILE) -> Path:
    """``run_dir`` as a place to write a run, or one KernelnetError line: it may not be, hold or lie inside an input
    folder (a run's plots would land among the user's images), may not be an existing folder that is not a
    kernelnet run (one with files and no ``marker``, config.json for a run), and its parent must accept new
    folders — all checked before any work."""
    from kernelnet.runtime.io.atomic import check_can_make_dir

    run_dir = Path(run_dir)
    real = Path(os.path.realpath(run_dir))
    for folder in inputs:
        other = Path(os.path.realpath(folder))
        if real == other or other in real.parents or real in other.parents:
            raise KernelnetError(f"the run directory {run_dir} overlaps the input folder {folder}: choose an --out "
                                 "outside the data and the targets")
    if run_dir.exists() or run_dir.is_symlink():
        if not run_dir.is_dir() or run_dir.is_symlink():
            raise KernelnetError(f"the run directory {run_dir} exists and is not a folder")
        if not (run_dir / marker).is_file() and any(run_dir.iterdir()):
            raise KernelnetError(f"{run_dir} exists and is not a kernelnet {'run' if marker == CONFIG_FILE else 'output'}"
                                 f" (no {marker}): choose another --out, or empty it")
    check_can_make_dir(run_dir.parent)
    return run_dir


@contextlib.contextmanager
def run_transaction(run_dir: str | os.PathLike[str], resume: bool = False) -> Iterator[Path]:
    """Yield the folder to write a run into (:func:`partial_dir`); once the block succeeds it replaces
    ``run_dir`` whole, an earlier run there parked until then — so a failure, a full disk or an interrupt leaves
    the earlier run as it was. A partial run that holds a checkpoint is kept whatever ends the block (``resume``
    starts from it) and the error or interrupt line says where; one without is removed. A new run (not ``resume``)
    discards an earlier interrupted one, with a warning when it had a checkpoint."""
    import warnings

    from kernelnet.runtime.io.atomic import replace_dir

    run_dir = Path(run_dir)
    staging = partial_dir(run_dir)
    if not resume and staging.exists():
        if (staging / CHECKPOINT_FILE).is_file():
            warnings.warn(f"discarded the interrupted run in {staging} (kernelnet train --resume would have "
                          "continued it)", stacklevel=3)
        shutil.rmtree(staging)
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KernelnetError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from None
    try:
        yield staging
        replace_dir(staging, run_dir)
    except BaseException as exc:
        if not (staging / CHECKPOINT_FILE).is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise
        kept = f"the partial run waits in {staging} (kernelnet train --resume continues it)"
        if isinstance(exc, KernelnetError):
            raise KernelnetError(f"{exc}; {kept}") from exc
        exc.kernelnet_note = f"{run_dir} was not touched; {kept}"  # type: ignore[attr-defined]
        raise


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


def check_embedded_config(run_dir: str | os.PathLike[str], config: RunConfig) -> None:
    """Refuse a model.safetensors whose embedded config (written with it) is not the run's config.json (the
    weights were swapped in from another run, or config.json was edited)."""
    from safetensors import safe_open

    path = Path(run_dir) / MODEL_FILE
    try:
        with safe_open(str(path), framework="numpy") as fh:
            embedded = (fh.metadata() or {}).get("config")
    except Exception:  # noqa: BLE001 - unreadable: load_weights says so
        return
    if embedded is None:
        return
    try:
        same = RunConfig.from_dict(json.loads(embedded)) == config
    except (TypeError, ValueError, KernelnetError):
        same = False
    if not same:
        raise KernelnetError(f"{path} was saved with another config than {Path(run_dir) / CONFIG_FILE} (weights "
                             "from another run, or an edited config): train the run again")


def model_from_weights(config: RunConfig, weights: dict[str, np.ndarray],
                       run_dir: str | os.PathLike[str]) -> Any:
    """The torch model (eval mode, CPU) of an already-read config and :func:`load_weights` tensors of ``run_dir``."""
    import torch

    from kernelnet.learn.models import build_model

    model = build_model(config.model, config.kernel_size, "conv.bias" in weights, config.normalize, config.padding,
                        config.rank)
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


def _trash(folder: Path) -> None:
    """Remove ``folder``: renamed to a name of this process first, so that a removal cut short leaves nothing the
    next run mistakes for an output (the sweep of dead writers' files removes it)."""
    from kernelnet.runtime.io.atomic import owner_tag

    trash = folder.parent / f".kernelnet-partial-trash-{folder.name}{owner_tag()}d"
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder
    shutil.rmtree(trash, ignore_errors=True)


def recover_parked(out: str | os.PathLike[str], finished: Callable[[Path], bool]) -> None:
    """After a build of ``out`` was killed: put the earlier output it parked back, unless ``out`` is finished
    (killed while the parked one was being removed: it goes)."""
    out = Path(out)
    parked = out.parent / f".{out.name}.kernelnet-old"
    if not parked.is_dir():
        return
    if out.is_dir() and finished(out):
        _trash(parked)
        return
    if out.exists():
        _trash(out)
    os.replace(parked, out)


@contextlib.contextmanager
def built_in_place(out: str | os.PathLike[str], finished: Callable[[Path], bool]) -> Iterator[Path]:
    """Yield ``out`` to build an output folder in place — for outputs that record their own paths (the pipeline's
    reports) — with an earlier one parked beside it until the new one is complete: on bad input or an interrupt
    the new folder is removed and the earlier one put back; a failed check keeps the new one (the user reads
    why). A build killed earlier is mended first (:func:`recover_parked`)."""
    out = Path(out)
    parked = out.parent / f".{out.name}.kernelnet-old"
    recover_parked(out, finished)
    try:
        if out.exists():
            os.replace(out, parked)
        out.mkdir(parents=True)
    except OSError as exc:
        raise KernelnetError(f"cannot create output directory {out}: {exc.strerror or exc}") from None
    try:
        yield out
    except CheckFailed:
        if parked.exists():
            _trash(parked)
        raise
    except BaseException as exc:
        _trash(out)
        if parked.is_dir():
            os.replace(parked, out)
        if hasattr(exc, "kernelnet_note"):  # a stage's partial run went with the folder
            exc.kernelnet_note = f"nothing half-written was left{'; the earlier output is back' if out.exists() else ''}"
        raise
    if parked.exists():
        _trash(parked)
