"""onnxruntime session settings and the autotune file that stores the fastest ones next to a model.

:class:`SessionConfig` is plain data (no onnxruntime import until :meth:`SessionConfig.to_session_options`), so
reading a tune file costs nothing. The tune file is ``<model>.tune.json`` (e.g. ``model.onnx.tune.json``)::

    {"version": 1, "model_sha256": "...", "session": {"graph_optimization_level": "basic", ...},
     "tile": null, "measured": {...}, "host": {...}}

It is used only while ``model_sha256`` matches the model file, so a re-export never inherits stale settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelnet.runtime.errors import KernelnetError

OPT_LEVELS = ("disabled", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")
TUNE_SUFFIX = ".tune.json"
TUNE_VERSION = 1
DEFAULT_OPT_LEVEL = "basic"
"""Measured here: the layout transformer of the higher levels makes a 1-channel conv ~4× slower."""


@dataclass(frozen=True)
class SessionConfig:
    """onnxruntime ``SessionOptions`` that matter for speed. ``0`` threads = onnxruntime's own default."""

    graph_optimization_level: str = DEFAULT_OPT_LEVEL
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_mode: str = "sequential"
    allow_spinning: bool = True

    def __post_init__(self) -> None:
        if self.graph_optimization_level not in OPT_LEVELS:
            raise KernelnetError(f"unknown graph optimization level {self.graph_optimization_level!r}: "
                                 f"use one of {', '.join(OPT_LEVELS)}")
        if self.execution_mode not in EXECUTION_MODES:
            raise KernelnetError(f"unknown execution mode {self.execution_mode!r}: use one of "
                                 f"{', '.join(EXECUTION_MODES)}")
        if self.intra_op_threads < 0 or self.inter_op_threads < 0:
            raise KernelnetError("thread counts must be >= 0 (0 = onnxruntime's default)")

    def replace(self, **changes: Any) -> SessionConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SessionConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def label(self) -> str:
        """Short text for tables, e.g. ``basic/t2/seq``."""
        threads = self.intra_op_threads or "auto"
        return (f"{self.graph_optimization_level}/t{threads}/{self.execution_mode[:3]}"
                + ("" if self.allow_spinning else "/nospin"))

    def to_session_options(self) -> Any:
        """The equivalent ``onnxruntime.SessionOptions``."""
        import onnxruntime as ort

        levels = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[self.graph_optimization_level]
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = (ort.ExecutionMode.ORT_PARALLEL if self.execution_mode == "parallel"
                                  else ort.ExecutionMode.ORT_SEQUENTIAL)
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        options.log_severity_level = 3
        return options


@dataclass(frozen=True)
class Tuned:
    """What a tune file says: session settings and tiling (``None`` = automatic)."""

    session: SessionConfig
    tile: tuple[int, int] | None = None


def tune_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the tune file of ``model_path`` lives: ``model.onnx`` → ``model.onnx.tune.json``."""
    path = Path(model_path)
    return path.with_name(path.name + TUNE_SUFFIX)


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_tuned(model_path: str | os.PathLike[str]) -> Tuned | None:
    """The tuned settings for ``model_path``, or ``None`` if there is no usable tune file (stale/corrupt: warns)."""
    path = tune_path(model_path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
        if doc.get("model_sha256") != file_sha256(model_path):
            warnings.warn(f"ignoring {path}: it was tuned for a different model file (re-run 'kernelnet tune')",
                          stacklevel=2)
            return None
        tile = doc.get("tile")
        return Tuned(SessionConfig.from_dict(doc.get("session", {})),
                     tuple(int(v) for v in tile) if tile else None)  # type: ignore[arg-type]
    except (OSError, ValueError, TypeError, AttributeError, KernelnetError) as exc:
        warnings.warn(f"ignoring unreadable tune file {path}: {exc}", stacklevel=2)
        return None


def resolve_session(model_path: str | os.PathLike[str],
                    config: SessionConfig | None = None) -> tuple[SessionConfig, Tuned | None]:
    """Session settings for ``model_path``: ``config`` if given (the tune file is then not read), else the tune
    file's, else the defaults; and the tune file used (``None``: none)."""
    if config is not None:
        return config, None
    tuned = read_tuned(model_path)
    return (tuned.session if tuned else SessionConfig()), tuned


def write_tuned(model_path: str | os.PathLike[str], tuned: Tuned, measured: dict[str, Any]) -> Path:
    """Store ``tuned`` next to the model (atomically) so that :func:`kernelnet.runtime.load` picks it up."""
    from kernelnet.runtime.io.atomic import write_json

    doc = {"version": TUNE_VERSION, "model_sha256": file_sha256(model_path), "session": tuned.session.to_dict(),
           "tile": list(tuned.tile) if tuned.tile else None, "measured": measured,
           "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    path = tune_path(model_path)
    write_json(path, doc)
    return path
