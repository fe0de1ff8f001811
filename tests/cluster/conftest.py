"""A local Ray instance per test module (``cluster``), skipped, saying why, where Ray is missing or cannot start."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="module")
def cluster():
    """A local Ray instance on 2 CPUs for one module (shut down after it)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kernelnet[ray]')")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # a sandbox without shared memory or sockets
        pytest.skip(f"Ray cannot start here: {exc}")
    yield ray
    ray.shutdown()
