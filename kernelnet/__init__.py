"""kernelnet: learned image filters, trained, compressed, exported and verified for the edge.

Importing this package is cheap: torch and the training API are loaded on first use of ``train``,
``RunConfig`` and friends (so ``kernelnet.runtime`` stays torch-free).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "RunConfig": "kernelnet.config",
    "train": "kernelnet.learn.training",
    "TrainResult": "kernelnet.learn.training",
    "load_model": "kernelnet.rundir",
    "run_pipeline": "kernelnet.pipeline",
    "prune_run": "kernelnet.compress.prune",
    "resolve_filter": "kernelnet.filters",
    "SingleFilter": "kernelnet.learn.models",
    "DoubleFilter": "kernelnet.learn.models",
}

__all__ = ["__version__", *_LAZY]


_SUBPACKAGES = ("export", "runtime")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"kernelnet.{name}")
    raise AttributeError(f"module 'kernelnet' has no attribute {name!r}")
