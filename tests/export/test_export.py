import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from kernelnet.runtime.errors import CheckFailed, KernelnetError
from kernelnet.export.onnx_export import export_onnx
from kernelnet.export.shapes import parse_shape
from kernelnet.export.tensorrt_export import export_tensorrt, missing_requirements
from kernelnet.filters import resolve_filter
from kernelnet.runtime.reference import apply_filter

BAR_SIZES = [(1, 1), (1, 2), (2, 1), (1, 97), (97, 1), (3, 3), (5, 7), (31, 17), (127, 255), (480, 640),
             (1080, 1920)]
VARIANTS = [("single", False), ("single", True), ("double", False)]


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def sobel_exports(tmp_path_factory):
    from tests.helpers import save_exact_run

    root = tmp_path_factory.mktemp("exports")
    paths = {}
    for model, normalize in VARIANTS:
        run = save_exact_run(root / f"{model}{normalize}", "sobel", model, normalize)
        paths[(model, normalize)] = export_onnx(run).path
    return paths


@pytest.mark.parametrize("model,normalize", VARIANTS)
def test_sobel_exports_checked_dynamic_and_small(sobel_exports, model, normalize):
    path = sobel_exports[(model, normalize)]
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, "height", "width"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["kernelnet.model"] == model and props["kernelnet.padding"] == "zeros"
    assert json.loads(props["kernelnet.target_kernel"]) == resolve_filter("sobel").kernel.tolist()
    if model == "single" and not normalize:
        assert path.stat().st_size < 1024


@pytest.mark.parametrize("model,normalize", VARIANTS)
def test_sobel_exports_equal_true_filter_on_all_sizes(sobel_exports, model, normalize, rng):
    k = resolve_filter("sobel").kernel
    for h, w in BAR_SIZES:
        for batch in (1, 3) if h * w < 500_000 else (1,):
            x = rng.random((batch, 1, h, w), dtype=np.float32)
            got = run_onnx(sobel_exports[(model, normalize)], x)
            want = apply_filter(x[:, 0].astype(np.float64), k, model, normalize)
            assert got.shape == x.shape
            assert np.abs(got[:, 0] - want).max() <= 1e-4, (h, w, batch)
    x = rng.random((3, 1, 1080, 1920), dtype=np.float32)  # batch 3 at full HD once, on the plain model only
    if model == "single" and not normalize:
        assert np.abs(run_onnx(sobel_exports[(model, normalize)], x)[:, 0] - apply_filter(x[:, 0], k)).max() <= 1e-4


@pytest.mark.parametrize("padding", ["reflect", "replicate"])
@pytest.mark.parametrize("kernel", ["sobel", "gaussian5", "random:3"])
def test_borders_and_5x5_export_exactly(exact_run, padding, kernel, rng):
    k = resolve_filter(kernel, size=5).kernel
    run = exact_run(f"{padding}{kernel}", kernel=k, model="double" if kernel == "random:3" else "single",
                    padding=padding)
    path = export_onnx(run).path
    model = "double" if kernel == "random:3" else "single"
    for h, w in [(3, 3), (5, 7), (31, 17), (64, 97)]:
        x = rng.random((2, 1, h, w), dtype=np.float32)
        want = apply_filter(x[:, 0].astype(np.float64), k, model, False, padding)
        assert np.abs(run_onnx(path, x)[:, 0] - want).max() <= 1e-4, (h, w)


def test_uint8_input_bakes_scaling(exact_run, rng):
    run = exact_run()
    path = export_onnx(run, run / "u8.onnx", input_dtype="uint8").path
    x = rng.integers(0, 256, (1, 1, 9, 13), dtype=np.uint8)
    want = apply_filter(x[:, 0] / 255.0, resolve_filter("sobel").kernel)
    assert np.abs(run_onnx(path, x)[:, 0] - want).max() <= 1e-5


def test_fp16_and_static_variants(exact_run, rng):
    run = exact_run(model="double")
    fp16 = export_onnx(run, run / "h.onnx", fp16=True)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in onnx.load(str(fp16.path)).graph.initializer)
    static = export_onnx(run, run / "s.onnx", static=(1, 1, 32, 48))
    dims = onnx.load(str(static.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 1, 32, 48]
    x = rng.random((1, 1, 32, 48), dtype=np.float32)
    want = apply_filter(x[:, 0], resolve_filter("sobel").kernel, "double")
    assert np.abs(run_onnx(fp16.path, x)[:, 0] - want).max() < 2e-2
    assert np.abs(run_onnx(static.path, x)[:, 0] - want).max() < 1e-4


def test_export_refuses_mismatch_and_leaves_nothing(exact_run, monkeypatch):
    import kernelnet.export.onnx_export as ox

    run = exact_run()
    monkeypatch.setattr(ox, "VERIFY_ROUNDINGS", -1.0)  # every comparison now fails
    with pytest.raises(CheckFailed):
        export_onnx(run)
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "metrics.json", "model.safetensors"]


def test_shape_parsing():
    assert parse_shape("1080x1920") == (1, 1, 1080, 1920)
    assert parse_shape("3x4x5") == (3, 1, 4, 5)
    for bad in ("0x5", "5", "axb", "1x2x3x4", "-1x4"):
        with pytest.raises(KernelnetError):
            parse_shape(bad)


@pytest.mark.skipif(not missing_requirements(), reason="this machine has a GPU and TensorRT: error path n/a")
def test_tensorrt_error_path_names_what_is_missing(exact_run, cli):
    run = exact_run()
    res = cli("export", str(run), "--format", "tensorrt")
    assert res.returncode == 2
    line, = res.stderr.strip().splitlines()
    assert "TensorRT export needs" in line and "Traceback" not in res.stderr
    assert not (run / "model.engine").exists() and not (run / "model.engine.json").exists()


@pytest.mark.gpu
@pytest.mark.skipif(bool(missing_requirements()), reason="needs an NVIDIA GPU, tensorrt and torch_tensorrt")
def test_tensorrt_engine_builds_and_runs(exact_run, rng):
    from kernelnet.runtime import load

    run = exact_run()
    result = export_tensorrt(run, min_shape=(1, 1, 1, 1), opt_shape=(1, 1, 256, 256), max_shape=(2, 1, 512, 512))
    model = load(result.path)
    x = rng.random((2, 97, 131), dtype=np.float32)
    assert np.abs(model(x) - apply_filter(x, resolve_filter("sobel").kernel)).max() <= 1e-4


@pytest.mark.parametrize("args,needle", [
    (["/nonexistent/run"], "does not exist"),
    (["{run}", "--format", "jpeg"], "jpeg"),
    (["{run}", "--static", "0x5"], ">= 1"),
    (["{run}", "--format", "tensorrt", "--min-shape", "9x9", "--max-shape", "4x4"], "min <= opt <= max"),
    (["{run}", "--opset", "7"], "opset"),
    (["{run}", "--out", "/proc/forbidden/model.onnx"], "cannot write"),
])
def test_export_cli_bad_input(exact_run, cli, args, needle):
    run = exact_run()
    res = cli("export", *[a.format(run=run) for a in args])
    assert res.returncode == 2, res.stderr
    line, = res.stderr.strip().splitlines()
    assert needle in line
    assert not (run / "model.onnx").exists()


def test_info_describes_model(exact_run, cli):
    run = exact_run(model="double")
    export_onnx(run)
    res = cli("info", str(run), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["model"] == "double" and info["opset"] == 18 and info["inputs"][0]["shape"][2] == "height"
    assert info["size_bytes"] == (run / "model.onnx").stat().st_size


def test_graph_forms(exact_run, rng):
    sobel = exact_run("sobel")
    rand = exact_run("rand", kernel=resolve_filter("random:1").kernel)
    double = exact_run("double", model="double")
    forms = {}
    for name, run in (("sobel", sobel), ("rand", rand), ("double", double)):
        result = export_onnx(run)
        forms[name] = (result.metadata["kernelnet.graph_form"],
                       sorted(n.op_type for n in onnx.load(str(result.path)).graph.node))
    assert forms["sobel"] == ("separable", ["Conv", "Conv"])  # rank 1: k×1 then 1×k
    assert forms["rand"] == ("conv", ["Conv"])
    assert forms["double"] == ("split", ["Add", "Conv", "Conv", "Mul", "Mul", "Sqrt"])  # no Slice, no Clip
    conv = export_onnx(sobel, sobel / "conv.onnx", form="conv")
    x = rng.random((2, 1, 37, 23), dtype=np.float32)
    assert np.abs(run_onnx(conv.path, x) - run_onnx(sobel / "model.onnx", x)).max() <= 1e-6


def test_separable_form_refused_for_full_rank_kernel(exact_run):
    run = exact_run(kernel=resolve_filter("random:1").kernel)
    with pytest.raises(KernelnetError, match="rank-1"):
        export_onnx(run, form="separable")  # the rank-1 approximation is not the model: export says so
    assert not (run / "model.onnx").exists()
