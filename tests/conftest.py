"""Shared fixtures: small synthetic images and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``kernelnet ARGS`` in a subprocess (the real entry point), capturing output."""
    return subprocess.run([sys.executable, "-m", "kernelnet", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


@pytest.fixture
def cli():
    return run_cli


def save_exact_run(run_dir: Path, kernel: np.ndarray | str = "sobel", model: str = "single", normalize: bool = False,
                   padding: str = "zeros", bias: bool = False, metrics: dict | None = None) -> Path:
    """A run directory whose weights are exactly the target filter (no training), for fast downstream tests."""
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.filters import resolve_filter
    from kernelnet.models import build_model, target_weight
    from kernelnet.rundir import save_metrics, save_model

    name = kernel if isinstance(kernel, str) else "custom"
    k = resolve_filter(kernel).kernel if isinstance(kernel, str) else np.asarray(kernel, dtype=np.float64)
    config = RunConfig(filter=name if isinstance(kernel, str) else "custom",
                       target_kernel=tuple(tuple(float(v) for v in row) for row in k), model=model,
                       normalize=normalize, kernel_size=k.shape[0], bias=bias, padding=padding)
    net = build_model(model, k.shape[0], bias, normalize, padding)
    with torch.no_grad():
        net.conv.weight.copy_(target_weight(torch.from_numpy(k), model).float())
        if bias:
            net.conv.bias.zero_()
    save_model(run_dir, net, config)
    save_metrics(run_dir, metrics or {"kernel_max_abs_error": 0.0, "solver": "exact"})
    return run_dir


@pytest.fixture
def exact_run(tmp_path):
    """Factory: ``exact_run(name, kernel=..., model=..., normalize=..., padding=...)`` → run directory."""
    return lambda name="run", **kw: save_exact_run(tmp_path / name, **kw)
