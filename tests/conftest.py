"""Shared fixtures: small synthetic images and a CLI runner."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

from tests.helpers import run_cli, save_exact_run  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def exact_run(tmp_path):
    """Factory: ``exact_run(name, kernel=..., model=..., normalize=..., padding=...)`` → run directory."""
    return lambda name="run", **kw: save_exact_run(tmp_path / name, **kw)
