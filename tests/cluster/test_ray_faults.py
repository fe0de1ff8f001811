"""A two-process Ray cluster on loopback (``ray start`` head + one worker node): a worker process killed with
SIGKILL mid-run, and the driver interrupted and run again, still end in the local apply's bytes, with no partial or
duplicate file and only the missing files done by the second run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cluster.test_ray_apply import local_apply, tree, write_photos

pytest.importorskip("ray", reason="Ray is not installed (pip install 'kernelnet[ray]')")

from kernelnet.runtime.cluster.locations import PARTIAL  # noqa: E402
from kernelnet.runtime.cluster.manifest import MANIFEST_NAME  # noqa: E402

pytestmark = pytest.mark.slow
FILES = 1200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    """``(address, env)`` of a head and a worker node, one CPU each, on 127.0.0.1 (token auth off: loopback only)."""
    ray_cli = shutil.which("ray", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if ray_cli is None:
        pytest.skip("the ray command is not installed")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    address = f"127.0.0.1:{_free_port()}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    for args in (["--head", f"--port={address.split(':')[1]}", "--include-dashboard=false"], [f"--address={address}"]):
        started = subprocess.run([ray_cli, "start", *args, *common], env=env, capture_output=True, text=True,
                                 timeout=180)
        if started.returncode != 0:
            subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
            pytest.skip(f"ray start failed here: {(started.stderr or started.stdout).strip().splitlines()[-1:]}")
    yield address, env
    subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """``FILES`` small gray PNGs, an exact Sobel and the local apply's outputs of them."""
    import numpy as np

    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime.spec import FilterSpec

    root = tmp_path_factory.mktemp("photos")
    write_photos(root / "in", FILES, side=64, seed=5)
    model = root / "sobel.onnx"
    write_graph(model, FilterSpec.from_kind(np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]), "single"))
    return root / "in", model, local_apply(model, root / "in", root / "local", "--backend", "onnxruntime")


def _start(model: Path, inputs: Path, out: Path, address: str, env: dict[str, str]) -> subprocess.Popen[str]:
    # onnxruntime: slower per file than the native stencil, so that the run lasts long enough to be hit mid-way
    return subprocess.Popen([sys.executable, "-m", "kernelnet", "apply", str(model), str(inputs), "--out", str(out),
                             "--engine", "ray", "--address", address, "--backend", "onnxruntime"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(out: Path) -> list[dict]:
    path = out / MANIFEST_NAME
    if not path.exists():
        return []
    lines = path.read_text().splitlines()[1:]
    return [json.loads(line) for line in lines if line.endswith("}")]


def _wait_for_records(process: subprocess.Popen[str], out: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not _records(out):
        assert process.poll() is None, f"the run ended before it could be hit: {process.communicate()}"
        assert time.monotonic() < deadline, "no file was recorded in time"
        time.sleep(0.02)


def _check_final(out: Path, expected: dict[str, bytes]) -> None:
    assert tree(out) == expected
    assert not list(out.rglob(f"{PARTIAL}*")) and not list(out.rglob(".kernelnet-partial*"))
    names = [r["out"] for r in _records(out)]
    assert set(names) == set(expected)
    import hashlib

    for record in _records(out):  # a file recorded twice was written with the same bytes
        assert record["sha256"] == hashlib.sha256(expected[record["out"]]).hexdigest()


def test_a_worker_killed_with_sigkill_mid_run(two_nodes, photos, tmp_path):
    address, env = two_nodes
    inputs, model, expected = photos
    run = _start(model, inputs, tmp_path / "out", address, env)
    _wait_for_records(run, tmp_path / "out")
    workers = subprocess.run(["pgrep", "-f", "ray::FileWorker"], capture_output=True, text=True).stdout.split()
    assert workers, "no worker process found"
    os.kill(int(workers[0]), signal.SIGKILL)
    assert run.poll() is None and len(_records(tmp_path / "out")) < FILES  # it was hit mid-run
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert re.search(rf"ray: {FILES} files: {FILES} written, 0 already done, 0 failed", stdout)
    _check_final(tmp_path / "out", expected)


def test_the_driver_interrupted_then_run_again_does_only_the_rest(two_nodes, photos, tmp_path):
    address, env = two_nodes
    inputs, model, expected = photos
    run = _start(model, inputs, tmp_path / "out", address, env)
    _wait_for_records(run, tmp_path / "out")
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    done = {r["out"] for r in _records(tmp_path / "out")}
    assert f"interrupted by SIGINT; {len(done)} files written and recorded in " in stderr
    assert 0 < len(done) < FILES
    assert not list((tmp_path / "out").rglob(f"{PARTIAL}*"))  # a killed driver's workers leave no partial file

    again = _start(model, inputs, tmp_path / "out", address, env)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert f"ray: {FILES} files: {FILES - len(done)} written, {len(done)} already done, 0 failed" in stdout
    _check_final(tmp_path / "out", expected)
