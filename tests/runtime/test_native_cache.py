"""Proven models remembered (``runtime/backends/native_cache.py``): a model proven once loads natively again without
onnxruntime and gives the same bits; another file, another stencil build or a declined model is proven anew;
an unusable cache changes nothing but speed. The rest of the suite runs with the cache off (conftest)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from kernelnet.runtime import backends, load
from kernelnet.runtime.backends import native_backend, native_cache
from tests.helpers import SOBEL, edit_weight, make_onnx

pytestmark = pytest.mark.skipif(not native_backend.available(),
                                reason="the C stencil extension is not built (no C compiler at install)")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(native_cache.CACHE_ENV, str(folder))
    return folder / "native"


@pytest.fixture
def graph_loads(monkeypatch):
    """How many times onnxruntime loaded a model (every proof does: load's and chosen_backend's)."""
    from kernelnet.runtime.backends import onnxruntime_backend

    calls = []
    real = onnxruntime_backend.OnnxRuntimeRunner.__init__

    def counted(self, path, *args, **kwargs):
        calls.append(path)
        real(self, path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeRunner, "__init__", counted)
    return calls


def test_a_proven_model_loads_again_without_onnxruntime_and_the_same_bits(tmp_path, cache, graph_loads):
    path = make_onnx(tmp_path / "sobel.onnx", SOBEL[None])
    x = np.random.default_rng(3).random((2, 33, 47), dtype=np.float32)
    first = load(path)
    assert first.runner.name == "native" and len(graph_loads) == 1
    assert len(list(cache.iterdir())) == 1
    again = load(path)
    assert again.runner.name == "native" and len(graph_loads) == 1  # no second proof
    assert np.array_equal(again(x), first(x))
    backends._DECLINED.clear()  # the in-process memory of chosen_backend: the disk cache answers alone
    assert backends.chosen_backend(path) == ("native", "") and len(graph_loads) == 1


def test_another_file_is_proven_anew_and_a_declined_one_is_not_remembered(tmp_path, cache, graph_loads):
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    load(path)
    edit_weight(path, lambda w: w + np.float32(0.25))  # same path and metadata, another graph
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path)
    assert model.runner.name == "onnxruntime" and len(graph_loads) == 2
    assert any("native backend not used" in str(w.message) for w in caught)
    assert len(list(cache.iterdir())) == 1  # only the first file's proof
    with pytest.warns(UserWarning, match="native backend not used"):
        load(path)
    assert len(graph_loads) == 3  # a declined model is asked again


def test_the_verdict_names_the_model_bytes_and_the_stencil_build(tmp_path):
    from kernelnet.runtime.backends.stencil_isa import available

    data = make_onnx(tmp_path / "m.onnx", SOBEL[None]).read_bytes()
    builds = list(available().values())
    names = {native_cache.verdict_name(data, build) for build in builds}
    assert len(names) == len(builds)
    assert native_cache.verdict_name(data + b"\0", builds[0]) != native_cache.verdict_name(data, builds[0])


def test_each_stencil_build_proves_for_itself(tmp_path, cache, graph_loads, stencil_build):
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    load(path)
    load(path)
    assert len(graph_loads) == 1 and native_cache.is_proven(path.read_bytes(), native_backend._stencil)


def test_an_unusable_cache_only_costs_the_proof(tmp_path, monkeypatch, graph_loads):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(native_cache.CACHE_ENV, str(blocker))
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    assert load(path).runner.name == "native" and load(path).runner.name == "native"
    assert len(graph_loads) == 2
    monkeypatch.setenv(native_cache.CACHE_ENV, "")  # off
    assert native_cache.cache_dir() is None
    monkeypatch.delenv(native_cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert native_cache.cache_dir() == tmp_path / "xdg" / "kernelnet" / "native"


def test_a_new_process_runs_a_proven_model_without_importing_onnxruntime(tmp_path, cache):
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    script = ("import sys; from kernelnet.runtime import load; m = load(sys.argv[1]); "
              "print(m.runner.name, 'onnxruntime' in sys.modules)")
    env = {**__import__("os").environ, native_cache.CACHE_ENV: str(cache.parent)}
    runs = [subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env,
                           check=True).stdout.split() for _ in range(2)]
    assert runs == [["native", "True"], ["native", "False"]]


def _entry(key: str, value: str) -> bytes:
    """A ModelProto metadata_props entry (field 14) as protobuf bytes, to append to a serialized model."""
    def field(number: int, payload: bytes) -> bytes:
        length, out = len(payload), bytearray([(number << 3) | 2])
        while True:
            out.append((length & 0x7F) | (0x80 if length > 0x7F else 0))
            length >>= 7
            if not length:
                return bytes(out) + payload
    return field(14, field(1, key.encode()) + field(2, value.encode()))


def test_metadata_two_readers_could_read_differently_is_never_remembered(tmp_path, cache, graph_loads):
    """A key given twice: protobuf readers (onnxruntime's) keep the last value, a naive reader the first. Such a
    file is proven on every load and never remembered, so the cache cannot hand over other kernels than the ones
    proven."""
    from kernelnet.runtime.checks.onnx_wire import read_metadata

    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    path.write_bytes(path.read_bytes() + _entry("kernelnet.padding", "zeros"))
    with pytest.raises(ValueError, match="given twice"):
        read_metadata(path.read_bytes())
    assert load(path).runner.name == "native" and load(path).runner.name == "native"
    assert len(graph_loads) == 2 and not cache.exists()


def test_an_edited_runtime_module_renames_every_verdict(tmp_path, monkeypatch):
    import os

    from kernelnet.runtime.backends.stencil_isa import available

    folder = tmp_path / "runtime"
    folder.mkdir()
    for name in ("native_cache.py", "graph_check.py"):
        (folder / name).write_text("# a module\n")
    monkeypatch.setattr(native_cache, "__file__", str(folder / "native_cache.py"))
    build = next(iter(available().values()))
    before = native_cache.verdict_name(b"model", build)
    os.utime(folder / "graph_check.py", ns=(1, 10**18))
    assert native_cache.verdict_name(b"model", build) != before
