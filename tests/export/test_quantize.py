"""int8 quantization (``kernelnet quantize``): the PSNR bar, calibration methods, the uint8-input model, the QDQ
form (per-channel, TensorRT-compatible), metadata, the report, and the error paths."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from kernelnet.learn.data import load_source, split_images
from kernelnet.runtime.errors import KernelnetError
from kernelnet.export.onnx_export import export_onnx
from kernelnet.export.quantize import best_weight_scale, quantize_run
from kernelnet.filters import resolve_filter
from kernelnet.metrics import psnr_db
from kernelnet.runtime.reference import apply_filter

KINDS = {"single": ("single", False), "abs": ("single", True), "double": ("double", False)}
SOBEL = resolve_filter("sobel").kernel


def session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def sobel_runs(tmp_path_factory):
    from tests.helpers import save_exact_run

    root = tmp_path_factory.mktemp("quantize")
    runs = {}
    for kind, (model, normalize) in KINDS.items():
        runs[kind] = save_exact_run(root / kind, "sobel", model, normalize)
        export_onnx(runs[kind], form="conv")  # one k×k Conv: the QDQ structure checked below
    return runs


@pytest.fixture(scope="module")
def quantized(sobel_runs):
    return {kind: quantize_run(run, samples=8, latency_runs=0) for kind, run in sobel_runs.items()}


@pytest.fixture(scope="module")
def photos():
    """The built-in photos' split: train calibrates, test evaluates."""
    return split_images(load_source("builtin"))


def test_int8_of_separable_graph_meets_bar(tmp_path):
    from tests.helpers import save_exact_run

    run = save_exact_run(tmp_path / "sep", "sobel")
    assert export_onnx(run).metadata["kernelnet.graph_form"] == "separable"
    report = quantize_run(run, samples=8, latency_runs=0).report
    assert report["psnr_vs_fp32_db"] >= 45.0


@pytest.mark.parametrize("kind", list(KINDS))
def test_int8_sobel_psnr_bar_on_held_out_photos(quantized, photos, kind):
    rep = quantized[kind].report
    assert rep["psnr_vs_fp32_db"] >= 45.0, rep["psnr_vs_fp32_db_per_image"]
    assert rep["evaluation_held_out"] and not set(rep["evaluation_images"]) & set(rep["calibration_images"])
    assert rep["calibration_images"] == sorted(photos.train)
    assert rep["max_abs_error"] < 0.1
    # independently: the int8 model against the numpy Sobel reference, pooled over the test photos
    model, normalize = KINDS[kind]
    sess = session(quantized[kind].path)
    got, want = [], []
    for image in photos.test.values():
        got.append(sess.run(None, {"input": image[None, None]})[0][0, 0].ravel())
        want.append(apply_filter(image.astype(np.float64), SOBEL, model, normalize).ravel())
    assert psnr_db(np.concatenate(got), np.concatenate(want)) >= 45.0


@pytest.mark.parametrize("kind", list(KINDS))
def test_qdq_per_channel_and_tensorrt_compatible(quantized, sobel_runs, kind):
    proto = onnx.load(str(quantized[kind].path))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "QLinearConv" not in ops
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    weight_dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert len(weight_dq) == (2 if kind == "double" else 1)  # the double model exports as two 1-output Convs
    for node in weight_dq:
        q, scale = inits[node.input[0]], inits[node.input[1]]
        assert q.dtype == np.int8 and scale.shape == (q.shape[0],)  # per-channel weight scales
        assert {a.name: a.i for a in node.attribute}.get("axis", 1) == 0
    q = np.concatenate([inits[n.input[0]] for n in weight_dq])
    scale = np.concatenate([inits[n.input[1]] for n in weight_dq])
    want = np.stack([SOBEL, SOBEL.T])[:, None] if kind == "double" else SOBEL[None, None]
    assert np.array_equal(q, (want * 63).astype(np.int8))
    assert np.allclose(q * scale[:, None, None, None], want, atol=1e-6)  # Sobel is exact in int8
    # TensorRT: symmetric int8 activations (zero point 0), no int32 bias, float input and output
    for n in proto.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zp = inits[n.input[2]]
            assert zp.dtype == np.int8 and not zp.any()
    assert not any(v.dtype == np.int32 for v in inits.values())
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, "height", "width"]
    # metadata: the fp32 model's kernelnet.* keys kept, precision int8, quantization details added
    fp32 = {p.key: p.value for p in onnx.load(str(sobel_runs[kind] / "model.onnx")).metadata_props}
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["kernelnet.precision"] == "int8" and props["kernelnet.input_dtype"] == "float32"
    assert {k: v for k, v in props.items() if k in fp32 and k != "kernelnet.precision"} == \
        {k: v for k, v in fp32.items() if k != "kernelnet.precision"}
    info = json.loads(props["kernelnet.quantization"])
    assert info["format"] == "QDQ" and info["method"] == "minmax" and info["samples"] == 8


def test_report_plot_and_batch_shapes(quantized, sobel_runs, rng):
    result = quantized["double"]
    run = sobel_runs["double"]
    rep = json.loads((run / "quantize.json").read_text())
    for key in ("psnr_vs_fp32_db", "psnr_vs_fp32_db_per_image", "max_abs_error", "size_bytes", "latency_1080p_ms",
                "int8_slower_on_this_cpu", "calibration", "method", "samples", "weight_scales", "activation_params"):
        assert key in rep
    assert rep["size_bytes"] == {"fp32": (run / "model.onnx").stat().st_size, "int8": result.path.stat().st_size}
    assert (run / "plots" / "int8_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sess = session(result.path)
    for shape in [(1, 1, 1, 1), (3, 1, 31, 17)]:
        y = sess.run(None, {"input": rng.random(shape, dtype=np.float32)})[0]
        assert y.shape == shape and y.dtype == np.float32


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_each_calibration_method(sobel_runs, tmp_path, method):
    run = shutil.copytree(sobel_runs["abs"], tmp_path / "abs")
    result = quantize_run(run, method=method, samples=6, latency_runs=0)
    rep = result.report
    assert rep["method"] == method and rep["psnr_vs_fp32_db"] >= 45.0
    lo, hi = rep["calibration_ranges"][[k for k in rep["calibration_ranges"] if k != "input"][0]]
    assert lo < 0 < hi <= 4.0 + 1e-6  # |Sobel| ≤ 4 on [0, 1] images


def test_uint8_input_model_on_raw_frames(quantized, sobel_runs, tmp_path, photos):
    run = shutil.copytree(sobel_runs["single"], tmp_path / "single")
    float_input = [run / "model.int8.onnx", run / "quantize.json"]  # written by the `quantized` fixture
    assert all(p.is_file() for p in float_input)
    untouched = {p: p.read_bytes() for p in float_input}
    result = quantize_run(run, uint8_input=True, samples=8, latency_runs=0)
    assert result.path == run / "model.int8.u8.onnx" and result.report_path == run / "quantize.u8.json"
    assert (run / "plots" / "int8_u8_error.png").is_file()
    assert all(p.read_bytes() == data for p, data in untouched.items())  # the float-input int8 files stay
    proto = onnx.load(str(result.path))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    consumers = [n for n in proto.graph.node if "input" in n.input]
    assert [n.op_type for n in consumers] == ["DequantizeLinear"]  # no QuantizeLinear on the input: folded
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    assert inits[consumers[0].input[1]] == np.float32(1 / 255) and inits[consumers[0].input[2]].dtype == np.uint8
    assert int(inits[consumers[0].input[2]]) == 0
    assert {p.key: p.value for p in proto.metadata_props}["kernelnet.input_dtype"] == "uint8"
    out = result.report["activation_params"]["output_QuantizeLinear_Input"]
    lo, hi = -out["zero_point"] * out["scale"], (255 - out["zero_point"]) * out["scale"]  # calibrated range
    frames = np.stack([np.rint(im[:256, :256] * 255).astype(np.uint8) for im in photos.test.values()])[:, None]
    want = np.clip(apply_filter(frames[:, 0] / 255.0, SOBEL), lo, hi)  # beyond the range int8 saturates
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        got = session(result.path, level).run(None, {"input": frames})[0]
        assert got.shape == frames.shape and got.dtype == np.float32
        # input and weights are exact; only the output's rounding remains (one step when onnxruntime fuses)
        assert np.abs(got[:, 0] - want).max() <= out["scale"] + 1e-5, level
    assert result.report["psnr_vs_fp32_db"] >= 45.0


def test_cli_summary_reports_latency_side_by_side(sobel_runs, tmp_path, cli):
    run = shutil.copytree(sobel_runs["single"], tmp_path / "single")
    res = cli("quantize", str(run), "--samples", "4", "--latency-runs", "1", "--calibration-method", "percentile")
    assert res.returncode == 0, res.stderr
    rep = json.loads((run / "quantize.json").read_text())
    lat = rep["latency_1080p_ms"]
    assert lat["shape"] == "1x1x1080x1920" and lat["threads"] == 2
    for level in ("basic", "all"):
        assert lat[level]["fp32_ms"] > 0 and lat[level]["int8_ms"] > 0
    assert rep["int8_slower_on_this_cpu"] == (rep["int8_over_fp32"] > 1.0)
    assert "psnr_vs_fp32_db" in res.stdout and "int8/fp32" in res.stdout
    assert ("SLOWER" in res.stdout) == rep["int8_slower_on_this_cpu"]


def test_best_weight_scale_makes_small_integer_kernels_exact():
    for kernel in (SOBEL, resolve_filter("gaussian5", size=5).kernel * 256):
        scale, q = best_weight_scale(kernel)
        assert q >= 64 and np.allclose(np.round(kernel / scale) * scale, kernel, rtol=0, atol=1e-6 * abs(kernel).max())


def _quantized_source(run, tmp_path):
    bad = shutil.copytree(run, tmp_path / "quantized-source")
    shutil.copy(bad / "model.int8.onnx", bad / "model.onnx")
    return bad


@pytest.mark.parametrize("case", ["no-model", "quantized-source", "empty-calibration", "samples"])
def test_cli_error_paths_exit_2_one_line_nothing_written(quantized, sobel_runs, exact_run, tmp_path, cli, case):
    run = sobel_runs["single"]
    args = []
    if case == "no-model":
        run = exact_run("no-model")  # a run that was never exported
    elif case == "quantized-source":
        run = _quantized_source(run, tmp_path)
    elif case == "empty-calibration":
        run = shutil.copytree(run, tmp_path / "copy")
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "notes.txt").write_text("not an image")
        args = ["--calibration", str(tmp_path / "empty")]
    else:
        run = shutil.copytree(run, tmp_path / "copy")
        args = ["--samples", "0"]
    before = listing(run)
    res = cli("quantize", str(run), *args, "--latency-runs", "0")
    assert res.returncode == 2, res.stdout + res.stderr
    assert res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr and listing(run) == before
    expected = {"no-model": "kernelnet export", "quantized-source": "already quantized",
                "empty-calibration": "no usable image", "samples": "samples must be >= 1"}[case]
    assert expected in res.stderr


def test_api_rejects_bad_arguments_before_writing(sobel_runs, tmp_path):
    run = shutil.copytree(sobel_runs["single"], tmp_path / "copy")
    before = listing(run)
    with pytest.raises(KernelnetError, match="calibration method"):
        quantize_run(run, method="kl")
    with pytest.raises(KernelnetError, match="does not exist"):
        quantize_run(tmp_path / "missing")
    with pytest.raises(KernelnetError, match="overwrite"):
        quantize_run(run, out=run / "model.onnx")
    assert listing(run) == before


def _needs_tensorrt() -> list[str]:
    from kernelnet.export.tensorrt_export import missing_requirements

    return missing_requirements("int8")


@pytest.mark.skipif(bool(_needs_tensorrt()), reason="needs an NVIDIA GPU and tensorrt")
def test_tensorrt_builds_int8_engine_from_qdq_model(quantized, sobel_runs, tmp_path):
    from kernelnet.export.tensorrt_export import export_tensorrt

    run = shutil.copytree(sobel_runs["double"], tmp_path / "double")
    engine = export_tensorrt(run, precision="int8", min_shape=(1, 1, 1, 1), opt_shape=(1, 1, 256, 256),
                             max_shape=(2, 1, 512, 512))
    assert engine.precision == "int8" and engine.size_bytes > 0 and engine.path.is_file()
