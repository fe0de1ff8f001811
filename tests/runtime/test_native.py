"""The native CPU backend (C stencil): exact against the numpy reference for any odd k, border and kind; the same
bits whatever the threads and tiles; NaN/Inf handling; used only when it matches the graph; safe under threads and
fork. The exported-model property tests (tests/runtime/test_properties.py) run it too, since it is load()'s default."""

from __future__ import annotations

import multiprocessing
import os
import threading
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime import load
from kernelnet.runtime.backends import native_backend
from kernelnet.runtime.backends.base import ModelInfo
from kernelnet.runtime.spec import FilterSpec, min_side
from kernelnet.runtime.model import Model
from kernelnet.runtime.backends.native_backend import NativeRunner
from kernelnet.runtime.reference import apply_kernels
from tests.helpers import edit_weight, kn
from tests.helpers import SOBEL, copy_run, exported, make_onnx

pytestmark = [pytest.mark.skipif(not native_backend.available(),
                                 reason="the C stencil extension is not built (no C compiler at install)"),
              pytest.mark.usefixtures("stencil_build")]  # every stencil build this CPU runs


def stencil(kernels: np.ndarray, bias: np.ndarray | None = None, normalize: bool = False, padding: str = "zeros",
            threads: int = 2) -> NativeRunner:
    kernels = np.asarray(kernels, dtype=np.float32)
    spec = FilterSpec.from_weights(kernels.astype(np.float64), None if bias is None else
                                   np.asarray(bias, np.float32).astype(np.float64),
                                   "double" if len(kernels) == 2 else "single", normalize, padding)
    info = ModelInfo(spec=spec)
    return NativeRunner(info, threads=threads)


@pytest.mark.parametrize("variant", ["single", "abs", "double", "reflect5"])
def test_load_picks_native_for_fp32_exports(variant):
    model = load(exported(variant))
    assert model.runner.name == "native" and model.describe()["backend"] == "native"
    x = np.random.default_rng(1).random((2, 45, 61), dtype=np.float32)
    graph = load(exported(variant), backend="onnxruntime")
    assert np.abs(model(x) - graph(x)).max() <= 1e-5 * float(np.abs(model.info.kernels).sum())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.sampled_from([1, 3, 5, 7, 9, 11]), kind=st.sampled_from(["raw", "abs", "double"]),
       padding=st.sampled_from(["zeros", "reflect", "replicate", "symmetric", "reflect_symmetric"]),
       n=st.integers(1, 3), h=st.integers(1, 40),
       w=st.integers(1, 40), threads=st.integers(1, 4), with_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_stencil_matches_numpy_reference(k, kind, padding, n, h, w, threads, with_bias, seed):
    rng = np.random.default_rng(seed)
    channels = 2 if kind == "double" else 1
    kernels = rng.uniform(-2, 2, (channels, k, k)).astype(np.float32)
    kernels[rng.random(kernels.shape) < 0.3] = 0.0  # zero taps, as in Sobel
    bias = rng.uniform(-1, 1, channels).astype(np.float32) if with_bias else None
    runner = stencil(kernels, bias, kind == "abs", padding, threads)
    x = rng.random((n, 1, h, w), dtype=np.float32)
    if min(h, w) < min_side(padding, k // 2):
        with pytest.raises(KernelnetError, match=f"{padding} border needs"):
            Model(runner)(x)  # undefined border: refused, never a wrong answer
        return
    got = Model(runner)(x).astype(np.float64)
    want = apply_kernels(x.astype(np.float64), kernels.astype(np.float64), bias, kind == "abs", padding)
    gain = float(np.abs(kernels).sum()) + (float(np.abs(bias).sum()) if bias is not None else 0.0)
    err = np.abs(got - want)
    assert (err <= 4e-6 * gain + 1e-5 * np.abs(want)).all(), f"max error {err.max():.3g}"


@pytest.mark.parametrize("k,padding", [(3, "zeros"), (5, "reflect"), (9, "replicate")])
def test_threads_and_tiles_do_not_change_a_bit(k, padding):
    rng = np.random.default_rng(k)
    kernels = rng.normal(size=(2, k, k))
    x = rng.random((2, 1, 257, 131), dtype=np.float32)
    want = Model(stencil(kernels, padding=padding, threads=1), tile=0)(x)
    for threads in (2, 3, 7):
        assert np.array_equal(Model(stencil(kernels, padding=padding, threads=threads), tile=0)(x), want)
    for tile in ((1, 0), (16, 0), (0, 5), (37, 29), (k // 2 + 1, k // 2 + 1)):
        assert np.array_equal(Model(stencil(kernels, padding=padding, threads=2), tile=tile)(x), want), tile


def test_nonfinite_inputs_are_refused_and_overflow_is_not():
    kernels = np.zeros((1, 3, 3))
    kernels[0, 0, 0] = 1.0  # one tap: the corner pixel (H-1, W-1) reaches no output through it
    model = Model(stencil(kernels))
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((20, 30), np.float32)
        x[-1, -1] = bad
        with pytest.raises(KernelnetError, match="1 NaN/Inf value"):
            model(x)
    unchecked = Model(stencil(kernels), check_finite=False)(np.full((4, 5), np.nan, np.float32))
    assert np.isnan(unchecked).all()
    double = Model(stencil(np.stack([SOBEL, SOBEL.T])))
    x = np.zeros((6, 7), np.float32)
    x[:, 3:] = 3e38
    assert np.isinf(double(x)).any()  # a finite input whose response overflows float32 is an answer, not an error


def test_metadata_that_does_not_describe_the_graph_is_not_used(tmp_path):
    run = copy_run("double", tmp_path)
    edit_weight(run / "model.onnx", lambda w: w + np.float32(0.25))  # graph changed, metadata not
    with pytest.warns(UserWarning, match="does not describe the graph"):
        model = load(run)
    assert model.runner.name == "onnxruntime"
    with pytest.raises(KernelnetError, match="native backend cannot run .*does not describe the graph"):
        load(run, backend="native")
    res = kn("verify", run, "--sizes", "9x11", "--batch", "1", "--no-tiled")
    assert res.exit_code == 1 and "skipped native" in res.stdout.replace(":", "")


def test_uint8_input_graphs_run_natively(tmp_path):
    u8 = make_onnx(tmp_path / "u8.onnx", SOBEL[None], input_dtype="uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load(u8)
    assert model.runner.name == "native" and model.input_dtype == "uint8"
    x = np.random.default_rng(5).integers(0, 256, (2, 1, 33, 47), dtype=np.uint8)
    want = apply_kernels(x / 255.0, SOBEL[None])
    bound = 2 * 12 * 2.0 ** -24 * 8  # two float32 sums of 12 terms, Σ|K| = 8, inputs in [0, 1]
    assert np.abs(model(x) - want).max() <= bound
    assert np.abs(model(x) - load(u8, backend="onnxruntime")(x)).max() <= bound
    unit = x / np.float32(255)  # float frames are quantised to the graph's uint8 input by both backends alike
    assert np.array_equal(model(unit), load(u8, backend="native")(unit))


def test_backends_the_stencil_cannot_run_fall_back_to_onnxruntime(tmp_path, monkeypatch):
    half = copy_run("single", tmp_path) / "model.onnx"
    edit_weight(half, lambda w: w, precision="fp16")  # fp16 metadata: the stencil computes float32 only
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an expected fallback is silent
        assert load(half).runner.name == "onnxruntime"
    with pytest.raises(KernelnetError, match="only fp32 models"):
        load(half, backend="native")
    np.save(tmp_path / "x.npy", np.zeros((8, 9), np.float32))
    res = kn("apply", half, tmp_path / "x.npy", "--out", tmp_path / "y.npy", "--backend", "native")
    assert res.exit_code == 2 and "only fp32 models" in res.stderr and not (tmp_path / "y.npy").exists()


def test_a_stencil_that_is_not_built_is_said_once_with_the_fix(monkeypatch):
    problem = "the C stencil extension is not built (no module), so every model runs on onnxruntime"
    monkeypatch.setattr(native_backend, "_stencil", None)
    monkeypatch.setattr(native_backend, "BUILD_PROBLEM", problem)
    with pytest.warns(UserWarning, match="not built"):
        assert load(exported("single")).runner.name == "onnxruntime"
    with pytest.raises(KernelnetError, match="extension is not built"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load(exported("single"), backend="native")
    info = kn("info", exported("single"))
    assert info.exit_code == 0 and "onnxruntime" in info.stdout and "not built" in info.stdout


def test_full_width_strips_are_written_in_place_bit_equal(monkeypatch):
    runner = stencil(np.stack([SOBEL, SOBEL.T]), threads=2)
    assert len(Model(runner).plan(12000, 12000)) == 1  # no scratch buffer: a call is never tiled for memory
    assert len(Model(runner, budget_bytes=8 * 3000).plan(97, 101, stream=True)) > 1  # streaming bounds the pages
    rng = np.random.default_rng(3)
    x = rng.random((1, 1, 97, 101), dtype=np.float32)
    x8 = (x * 255).astype(np.uint8)
    want, want8 = Model(runner, tile=0)(x), Model(runner, tile=0)(x8)

    def copying_path(batch):
        raise AssertionError("a full-width strip went through the copying path")

    monkeypatch.setattr(runner, "run_checked", copying_path)
    for tile in ((1, 0), (16, 0), (50, 0)):
        assert np.array_equal(Model(runner, tile=tile)(x), want), tile
    assert np.array_equal(Model(runner, tile=(16, 0))(x8), want8)
    out = np.full_like(x, np.nan)
    Model(runner, budget_bytes=8 * 3000).apply_to(x, out)
    assert np.array_equal(out, want)
    x[0, 0, 60, 100] = np.inf
    with pytest.raises(KernelnetError, match="1 NaN/Inf value"):
        Model(runner, tile=(16, 0))(x)


def test_concurrent_callers_get_their_own_answers():
    runner = stencil(np.stack([SOBEL, SOBEL.T]), threads=2)
    images = [np.random.default_rng(i).random((1, 1, 300, 200 + i), dtype=np.float32) for i in range(4)]
    want = [runner.run(x) for x in images]
    failures = []

    def work(i: int) -> None:
        for _ in range(30):
            if not np.array_equal(runner.run(images[i]), want[i]):
                failures.append(i)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in workers)


def _child_runs_the_pool(queue) -> None:
    runner = stencil(SOBEL[None], threads=2)
    x = np.ones((1, 1, 256, 256), np.float32)
    queue.put(float(runner.run(x)[0, 0, 128, 128]))


def test_a_forked_child_can_use_the_thread_pool():
    stencil(SOBEL[None], threads=2).run(np.ones((1, 1, 256, 256), np.float32))  # the parent's pool is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_runs_the_pool, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and queue.get(timeout=5) == 0.0


@pytest.mark.parametrize("variant", ["single", "abs", "double", "reflect5"])
def test_uint8_frames_are_read_by_the_stencil_bit_equal_to_converting_first(variant, rng):
    model = load(exported(variant))
    assert model.runner.name == "native" and model.runner.accepts_integer
    x = (rng.random((2, 1, 67, 91)) * 255).astype(np.uint8)
    want = model(np.divide(x, np.float32(255), dtype=np.float32))
    assert np.array_equal(model(x), want)
    for tile in [(9, 0), (13, 17), 5]:
        assert np.array_equal(load(exported(variant), tile=tile)(x), want), tile
    one = NativeRunner(model.runner.info, threads=1)
    assert np.array_equal(one.run(np.ascontiguousarray(x)), want)
