"""Shared fixtures: small synthetic images and a CLI runner."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["KERNELNET_CACHE_DIR"] = ""  # every load proves its model (tests/runtime/test_native_cache.py: on)

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


def _stencil_builds() -> list[str | None]:
    from kernelnet.runtime.backends.stencil_isa import available

    return list(available()) or [None]


@pytest.fixture(params=_stencil_builds())
def stencil_build(request, monkeypatch):
    """Each build of the C stencil this CPU runs in turn (baseline, avx2, avx512 on an AVX-512 x86-64; its one
    build elsewhere), so every path is tested on every machine that has it; ``None`` where none is built."""
    from kernelnet.runtime.backends import native_backend
    from kernelnet.runtime.backends.stencil_isa import available

    if request.param is not None:
        monkeypatch.setattr(native_backend, "_stencil", available()[request.param])
        monkeypatch.setattr(native_backend, "ISA", request.param)
    return request.param
