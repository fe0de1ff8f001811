"""kernelnet.runtime: torch-free imports, load() on every layout/dtype, input checks, backends, tune files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime import load
from kernelnet.runtime.backends.base import ModelInfo, Runner
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.spec_codec import decode_info
from kernelnet.runtime.reference import apply_filter, apply_kernels
from kernelnet.runtime.backends.session import SessionConfig, read_tuned, tune_path
from tests.helpers import needs_torch, EXPORT_VARIANTS, SOBEL, copy_run, exported, make_onnx

def _no_torch_script(body: str) -> str:
    return (f"import sys\n{body}\nbad = [m for m in ('torch', 'kernelnet.export', 'kernelnet.learn.models', "
            "'kernelnet.learn.training') if m in sys.modules]\nassert not bad, bad\nprint('clean')\n")


def test_runtime_package_never_imports_torch(tmp_path):
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    body = f"""
import numpy as np
import kernelnet.runtime
from kernelnet.runtime import load
from kernelnet.runtime import backends, bench, describe, metadata, model, reference, tiling
from kernelnet.runtime.backends import (autotune, base, native_backend, onnxruntime_backend, session,
                                        tensorrt_backend)
from kernelnet.runtime.checks import compare, verify
from kernelnet.runtime.io import inputs, npyio
m = load({str(path)!r}, tile=(5, 0))
assert m.runner.name == ("native" if native_backend.available() else "onnxruntime")
y = m(np.random.rand(2, 31, 17).astype(np.float32))
report = verify.verify([verify.Backend("onnxruntime", m)], verify.build_cases(((5, 7),), (1,)))
assert report.ok
bench.run_bench([bench.model_contender("ort", m)], ((16, 16),), min_reps=2, min_seconds=0.0, warmup=0)
tensorrt_backend.missing_requirements()
"""
    res = subprocess.run([sys.executable, "-c", _no_torch_script(body)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "clean" in res.stdout, res.stderr


def test_cli_help_imports_no_torch():
    body = """
from kernelnet.cli import main
for args in (['--help'], ['apply', '--help'], ['verify', '--help'], ['bench', '--help'], ['tune', '--help']):
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code == 0, (args, exc.code)
"""
    res = subprocess.run([sys.executable, "-c", _no_torch_script(body)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "clean" in res.stdout, res.stderr


@pytest.mark.parametrize("variant", ["single", "abs", "double"])
def test_load_run_dir_all_layouts_and_dtypes(variant, rng):
    run = exported(variant)
    model = load(run)  # a run directory → model.onnx
    assert model.kernel_size == 3 and model.padding == "zeros" and model.input_dtype == "float32"
    kw = EXPORT_VARIANTS[variant]
    x = rng.random((3, 23, 19), dtype=np.float32)
    want = apply_filter(x.astype(np.float64), SOBEL, kw.get("model", "single"), kw.get("normalize", False))
    for given, expect in [(x[0], want[0]), (x, want), (x[:, None], want[:, None])]:
        y = model(given)
        assert y.dtype == np.float32 and y.shape == given.shape
        assert np.abs(y - expect).max() < 1e-5
    u8 = (x * 255).round().astype(np.uint8)
    want_u8 = apply_filter(u8 / 255.0, SOBEL, kw.get("model", "single"), kw.get("normalize", False))
    assert np.abs(model(u8) - want_u8).max() < 1e-5
    assert np.abs(model(np.asfortranarray(x[0])) - want[0]).max() < 1e-5  # non-contiguous input


def test_uint8_model_takes_uint8_and_float(tmp_path, rng):
    model = load(make_onnx(tmp_path / "u8.onnx", SOBEL[None], input_dtype="uint8"))
    assert model.input_dtype == "uint8"
    u8 = rng.integers(0, 256, (2, 1, 17, 29), dtype=np.uint8)
    want = apply_filter(u8 / 255.0, SOBEL)
    assert np.abs(model(u8) - want).max() < 1e-5
    assert np.abs(model((u8 / 255.0).astype(np.float32)) - want).max() < 1e-5  # exact for 8-bit sources


@pytest.mark.parametrize("bad,needle", [
    (np.zeros((0, 5), np.float32), "empty"),
    (np.zeros((2, 0, 5), np.float32), "empty"),
    (np.zeros((4, 4), np.float64), "dtype float64"),
    (np.zeros((4, 4), np.int32), "dtype int32"),
    (np.zeros(5, np.float32), "shape (5,)"),
    (np.zeros((1, 1, 1, 4, 4), np.float32), "shape"),
    (np.zeros((2, 3, 4, 4), np.float32), "one channel"),
    ([[0.0, 1.0]], "numpy array"),
])
def test_load_refuses_bad_arrays(bad, needle):
    model = load(exported("single"))
    with pytest.raises(KernelnetError, match=re.escape(needle)):
        model(bad)


def test_nonfinite_input_is_refused_with_count():
    model = load(exported("single"))
    x = np.zeros((2, 40, 40), np.float32)
    x[0, 3, 4], x[1, 7, 7], x[1, 8, 8] = np.nan, np.inf, -np.inf
    with pytest.raises(KernelnetError, match="3 NaN/Inf values"):
        model(x)
    with pytest.raises(KernelnetError, match="3 NaN/Inf values"):  # tiled: the count covers the whole input
        load(exported("single"), tile=8)(x)
    assert np.isnan(load(exported("single"), check_finite=False)(x)).any()


def test_reflect_border_needs_more_than_halo(tmp_path):
    model = load(make_onnx(tmp_path / "r.onnx", np.ones((1, 5, 5)) / 25, padding="reflect"))
    with pytest.raises(KernelnetError, match="reflect border needs H and W > 2"):
        model(np.zeros((2, 9), np.float32))
    assert model(np.zeros((3, 3), np.float32)).shape == (3, 3)


def test_bad_model_files(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(KernelnetError, match="cannot load ONNX model"):
        load(tmp_path / "junk.onnx")
    with pytest.raises(KernelnetError, match="not found"):
        load(tmp_path / "missing.onnx")
    with pytest.raises(KernelnetError, match="not found"):
        load(tmp_path)  # a folder without model.onnx
    with pytest.raises(KernelnetError, match="unknown backend"):
        load(exported("single"), backend="magic")
    with pytest.raises(KernelnetError, match="use a .engine file"):
        load(exported("single"), backend="tensorrt")


def test_onnxruntime_gpu_providers_error_clearly():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(KernelnetError, match="no CUDAExecutionProvider"):
        load(exported("single"), backend="onnxruntime-cuda")


def test_tensorrt_engine_without_tensorrt_names_what_is_missing(tmp_path):
    from kernelnet.runtime.backends.tensorrt_backend import missing_requirements

    if not missing_requirements():
        pytest.skip("TensorRT and a GPU are present")
    (tmp_path / "model.engine").write_bytes(b"plan")
    with pytest.raises(KernelnetError, match="running a TensorRT engine needs .*tensorrt"):
        load(tmp_path / "model.engine")


def test_describe_engine_tolerates_a_bad_side_car(tmp_path):
    from kernelnet.runtime.describe import describe

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    assert describe(engine) == {"path": str(engine), "size_bytes": 4, "format": "tensorrt", "backend": "tensorrt"}
    side = tmp_path / "model.engine.json"
    side.write_text(json.dumps({"profile": [[1, 1, 1, 1]] * 3, "metadata": {"kernelnet.kernel_size": "3"}}))
    described = describe(engine)
    assert described["profile"] == [[1, 1, 1, 1]] * 3 and described["kernel_size"] == 3
    for bad in ("{broken", "[1, 2]", '{"metadata": {"kernelnet.kernels": [1]}}'):  # read as missing, like the runner
        side.write_text(bad)
        assert describe(engine) == {"path": str(engine), "size_bytes": 4, "format": "tensorrt", "backend": "tensorrt"}


class _LimitedRunner(Runner):
    """A fake backend with a TensorRT-like profile: at most 2 images of 16×24, computed in numpy."""

    def __init__(self, kernels: np.ndarray, padding: str) -> None:
        self.info = ModelInfo(spec=FilterSpec.from_weights(kernels, None, "single", padding=padding))
        self.min_shape, self.max_shape, self.name, self.calls = (1, 1, 1), (2, 16, 24), "limited", []

    def run(self, batch: np.ndarray) -> np.ndarray:
        assert batch.shape[0] <= 2 and batch.shape[2] <= 16 and batch.shape[3] <= 24, batch.shape
        self.calls.append(batch.shape)
        return apply_kernels(batch, self.info.kernels, padding=self.info.padding).astype(np.float32)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "replicate"])
def test_profile_limits_split_batches_and_tiles(padding, rng):
    from kernelnet.runtime.model import Model

    kernels = rng.uniform(-2, 2, (1, 5, 5))
    runner = _LimitedRunner(kernels, padding)
    x = rng.random((5, 1, 41, 53), dtype=np.float32)
    y = Model(runner)(x)
    assert np.abs(y - apply_kernels(x.astype(np.float64), kernels, padding=padding)).max() < 1e-5
    assert len(runner.calls) > 3


@pytest.mark.gpu
@needs_torch
def test_tensorrt_runner_on_gpu(exact_run, rng):
    from kernelnet.export.tensorrt_export import export_tensorrt, missing_requirements
    from kernelnet.runtime.backends.tensorrt_backend import missing_requirements as runtime_missing

    missing = list(dict.fromkeys(missing_requirements() + runtime_missing()))
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    run = exact_run(model="double")
    engine = export_tensorrt(run, min_shape=(1, 1, 1, 1), opt_shape=(1, 1, 128, 128), max_shape=(2, 1, 256, 256))
    model = load(engine.path)
    assert model.runner.max_shape == (2, 256, 256)
    x = rng.random((3, 300, 411), dtype=np.float32)  # beyond the profile: batches and tiles
    want = apply_filter(x.astype(np.float64), SOBEL, "double")
    assert np.abs(model(x) - want).max() < 1e-4


def test_session_config_validation_and_options():
    with pytest.raises(KernelnetError, match="graph optimization level"):
        SessionConfig(graph_optimization_level="max")
    with pytest.raises(KernelnetError, match="execution mode"):
        SessionConfig(execution_mode="async")
    config = SessionConfig("all", 2, 1, "parallel", False)
    assert SessionConfig.from_dict(config.to_dict()) == config and config.label() == "all/t2/par/nospin"
    options = config.to_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert load(exported("single"), backend="onnxruntime", threads=1).runner.config.intra_op_threads == 1
    assert load(exported("single"), threads=1).runner.threads == 1  # native: the same thread setting
    chosen = load(exported("single"), backend="onnxruntime", session=SessionConfig("all", 1), tile=(9, 0))
    assert chosen.runner.config == SessionConfig("all", 1) and chosen.tile == (9, 0)
    with pytest.raises(KernelnetError, match="threads"):
        load(exported("single"), threads=0)


def test_autotune_file_is_used_by_load_and_ignored_when_stale(tmp_path):
    from kernelnet.runtime.backends.autotune import autotune, candidates

    run = copy_run("single", tmp_path)
    cands = candidates(("basic", "all"), (1,), ("sequential",), tiles=((8, 0),))
    result = autotune(run, cands, sizes=((24, 32),), warmup=0, min_reps=2, min_seconds=0.0)
    assert result.path == tune_path(run / "model.onnx") and len(result.rows) == 2
    doc = json.loads(result.path.read_text())
    assert doc["session"]["intra_op_threads"] == 1 and doc["tile"] == [8, 0]
    model = load(run, backend="onnxruntime")
    assert model.runner.config == result.best.session and model.tile == (8, 0)
    assert load(run).tile == (8, 0) and load(run).runner.threads == 1  # the native stencil takes both
    assert load(run, tile=0).tile is None
    assert load(run, backend="onnxruntime", threads=2).runner.config.intra_op_threads == 2
    proto = onnx.load(str(run / "model.onnx"))  # re-exported model: the tune file no longer applies
    proto.producer_version = "changed"
    onnx.save(proto, str(run / "model.onnx"))
    with pytest.warns(UserWarning, match="different model"):
        assert read_tuned(run / "model.onnx") is None
    result.path.write_text("{broken")
    with pytest.warns(UserWarning, match="unreadable tune file"):
        model = load(run, backend="onnxruntime")
    assert model.runner.config == SessionConfig() and model.tile == "auto"


def test_model_info_from_metadata_and_describe():
    model = load(exported("double"))
    info = model.info
    assert info.model == "double" and info.kernels.shape == (2, 3, 3) and info.halo == 1
    assert np.array_equal(info.target_kernel, SOBEL)
    described = model.describe()
    assert described["backend"] == "native" and described["kernel"] == "direct 3x3 stencil"
    described = load(exported("double"), backend="onnxruntime").describe()
    assert described["session"]["graph_optimization_level"] == "basic" and described["tile"] == "auto"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_info({}).kernel_size is None
