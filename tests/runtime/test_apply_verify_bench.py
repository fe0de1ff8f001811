"""`kernelnet apply`, `verify`, `bench` and `tune`: outputs, parity checks, timings and every bad-input path."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kernelnet.runtime import load
from kernelnet.runtime.backends.base import ModelInfo
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.reference import apply_filter
from kernelnet.runtime.checks.verify import kernel_gap
from tests.helpers import needs_torch, SOBEL, copy_run, edit_weight, exported, files_under, kn, make_onnx

HAS_CV2 = importlib.util.find_spec("cv2") is not None


# ----------------------------------------------------------------------------------------------- apply

def test_apply_png_scaling_is_stated_and_exact_formats_are_exact(tmp_path, rng):
    run = exported("single")
    img = (rng.random((37, 53)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    y = load(run)(img)
    res = kn("apply", run, tmp_path / "in.png", "--out", tmp_path / "o16.png", "--bits", "16")
    assert res.exit_code == 0, res.output
    peak = float(np.abs(y).max())
    assert "16-bit PNG, pixel = round(clip(0.5 + y x " in res.stdout and "x 65535)" in res.stdout
    png = np.asarray(Image.open(tmp_path / "o16.png")).astype(np.float64)
    assert np.abs(png - np.round((0.5 + y * (0.5 / peak)) * 65535)).max() <= 1
    assert kn("apply", run, tmp_path / "in.png", "--out", tmp_path / "o8.png", "--scale", "0.25").exit_code == 0
    png8 = np.asarray(Image.open(tmp_path / "o8.png")).astype(np.float64)
    assert np.abs(png8 - np.round(np.clip(y * 0.25, 0, 1) * 255)).max() <= 1
    for name in ("o.tif", "o.npy"):
        assert kn("apply", run, tmp_path / "in.png", "--out", tmp_path / name).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.tif")), y)
    assert np.array_equal(np.load(tmp_path / "o.npy"), y)


def test_apply_folders_globs_and_batches(tmp_path, rng):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.fromarray((rng.random((20, 30)) * 255).astype(np.uint8)).save(src / "a.png")
    Image.fromarray((rng.random((9, 11, 3)) * 255).astype(np.uint8)).save(src / "sub" / "b.jpg")
    batch = rng.random((3, 1, 17, 13), dtype=np.float32)
    np.save(src / "c.npy", batch)
    np.save(src / "d.npy", (rng.random((12, 14)) * 255).astype(np.uint8))
    run = exported("double")
    res = kn("apply", run, src, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert files_under(tmp_path / "out") == ["a.png", "c.npy", "d.npy", "sub/b.png"]
    assert "wrote 4 files" in res.stdout
    want = apply_filter(batch.astype(np.float64), SOBEL, "double")
    got = np.load(tmp_path / "out" / "c.npy")
    assert got.shape == batch.shape and np.abs(got - want).max() < 1e-5
    d = np.load(src / "d.npy")
    assert np.abs(np.load(tmp_path / "out" / "d.npy") - apply_filter(d / 255.0, SOBEL, "double")).max() < 1e-5
    res = kn("apply", run, str(src / "**" / "*.jpg"), "--out", tmp_path / "g", "--format", "tiff", "--tile", "4")
    assert res.exit_code == 0 and files_under(tmp_path / "g") == ["b.tif"]


_PEAK_RSS = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss_mib(*args: object) -> float:
    """Peak RSS of ``kernelnet ARGS`` in its own process (spawned from a tiny wrapper so that this process's RSS
    does not leak into the child's high-water mark)."""
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, sys.executable, "-m", "kernelnet", *map(str, args)],
                         capture_output=True, text=True, timeout=120).stdout.split()
    assert out[0] == "0"
    return int(out[1]) / 1024


def test_apply_streams_npy_without_holding_the_image(tmp_path, rng):
    """A smaller stand-in for the 12000² bar (benchmarks/apply_memory.py): mapped in/out, tile by tile."""
    run = exported("double")
    x = rng.random((4000, 4000), dtype=np.float32)  # 61 MiB in, 61 MiB out
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "tiny.npy", x[:8, :8])
    base = peak_rss_mib("apply", run, tmp_path / "tiny.npy", "--out", tmp_path / "t.npy", "-q")
    peak = peak_rss_mib("apply", run, tmp_path / "x.npy", "--out", tmp_path / "y.npy", "-q", "--tile", "128x0")
    assert peak - base < x.nbytes / 2**20, (base, peak)  # less than one copy of the image on top of the baseline
    y = np.load(tmp_path / "y.npy", mmap_mode="r")
    rows = slice(0, 300)
    want = apply_filter(x[:301].astype(np.float64), SOBEL, "double")[:300]
    assert np.abs(y[rows] - want).max() < 1e-5
    assert np.array_equal(y[1000:1300], load(run, tile=0)(x[999:1301])[1:-1])


@pytest.mark.parametrize("case,needle", [
    ("corrupt-model", "cannot load ONNX model"),
    ("unsupported-model", "cannot load ONNX model"),
    ("unreadable-image", "cannot read image"),
    ("empty-npy", "is empty"),
    ("nan-npy", "3 NaN/Inf values"),
    ("float64-npy", "dtype float64"),
    ("rank1-npy", "expected HxW"),
    ("truncated-npy", "cannot read"),
    ("unwritable-out", "cannot create output directory"),
    ("file-out-for-many", "the output must be a folder"),
    ("missing-input", "not found"),
    ("bad-tile", "invalid --tile"),
])
def test_apply_bad_input_exits_2_and_writes_nothing(tmp_path, case, needle):
    run = exported("single")
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    model, inputs, out = str(run), [str(good)], tmp_path / "out"
    bad = tmp_path / "bad.npy"
    if case == "corrupt-model":
        (tmp_path / "m.onnx").write_bytes(b"\x08\x07garbage")
        model = str(tmp_path / "m.onnx")
    elif case == "unsupported-model":
        (tmp_path / "m.txt").write_text("hello")
        model = str(tmp_path / "m.txt")
    elif case == "unreadable-image":
        (tmp_path / "bad.png").write_bytes(b"not a png")
        inputs.append(str(tmp_path / "bad.png"))
    elif case.endswith("-npy"):
        arrays = {"empty-npy": np.zeros((0, 4), np.float32), "float64-npy": np.zeros((4, 4)),
                  "rank1-npy": np.zeros(4, np.float32), "truncated-npy": np.zeros((64, 64), np.float32),
                  "nan-npy": np.array([[np.nan, 0, np.inf], [0, -np.inf, 0]], np.float32)}
        np.save(bad, arrays[case])
        if case == "truncated-npy":
            bad.write_bytes(bad.read_bytes()[:1000])
        inputs.append(str(bad))
    elif case == "unwritable-out":
        out = Path("/proc/forbidden/out")
    elif case == "file-out-for-many":
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "other.png")
        inputs.append(str(tmp_path / "other.png"))
        out = tmp_path / "out" / "x.png"
    elif case == "missing-input":
        inputs.append(str(tmp_path / "nope.png"))
    extra = ["--tile", "3x"] if case == "bad-tile" else []
    res = kn("apply", model, *inputs, "--out", out, *extra)
    assert res.exit_code == 2, res.output
    line, = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and needle in line, line
    if case == "nan-npy":  # the failing file is named once
        assert line == f"error: {bad}: input contains 3 NaN/Inf values"
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or "partial" in p.name]


# ---------------------------------------------------------------------------------------------- verify

SMALL = ["--sizes", "1x1,1x31,31x1,13x7,64x48"]


@pytest.mark.parametrize("variant", ["single", "abs", "double", "reflect5"])
def test_verify_passes_on_sobel_exports(tmp_path, variant):
    res = kn("verify", exported(variant), *SMALL, "--random", "2", "--json", tmp_path / "v.json")
    assert res.exit_code == 0, res.output
    assert "verify: all checks passed" in res.stdout and "onnxruntime ~ truth" in res.stdout
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["ok"] and doc["kernel_gap"] == 0.0
    smallest = "1x3x3" if variant == "reflect5" else "1x1x1"  # reflect with k = 5 needs sides > 2
    assert {smallest, "3x64x48", "1x509x383 tiled 64x96"} <= set(doc["cases"])
    assert len(doc["cases"]) == 5 * 2 + 2 + 2
    assert {c["check"] for c in doc["comparisons"]} == {"weights ~ truth", "onnxruntime ~ weights",
                                                         "onnxruntime ~ truth", "native ~ onnxruntime",
                                                         "native ~ weights", "native ~ truth"}


@needs_torch
def test_verify_compares_pytorch_and_int8_siblings(tmp_path):
    run = copy_run("single", tmp_path)
    shutil.copy(run / "model.onnx", run / "model.int8.onnx")
    edit_weight(run / "model.int8.onnx", lambda w: np.round(w * 63) / 63 + 0.01, precision="int8")
    res = kn("verify", run / "model.onnx", "--run", run, *SMALL, "--batch", "2", "--json", tmp_path / "v.json")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "v.json").read_text())
    checks = {row["check"]: row for row in doc["summary"]}
    assert {"pytorch ~ onnxruntime", "onnxruntime-int8 ~ onnxruntime", "onnxruntime-int8 ~ truth"} <= set(checks)
    assert checks["pytorch ~ onnxruntime"]["max_abs_error"] < 1e-5
    assert 0.01 < checks["onnxruntime-int8 ~ weights"]["max_abs_error"] < 0.16  # within the int8 tolerance
    edit_weight(run / "model.int8.onnx", lambda w: w + 0.1, precision="int8")  # now beyond it
    assert kn("verify", run, *SMALL).exit_code == 1


def test_verify_fails_on_a_corrupted_kernel(tmp_path):
    run = copy_run("double", tmp_path)

    def corrupt(w: np.ndarray) -> np.ndarray:
        w[0, 0, 0, 0] += 0.25
        return w

    edit_weight(run / "model.onnx", corrupt)
    res = kn("verify", run, *SMALL, "--json", tmp_path / "v.json")
    assert res.exit_code == 1, res.output
    line, = res.stderr.strip().splitlines()
    assert line.startswith("check failed: onnxruntime ~ weights")
    doc = json.loads((tmp_path / "v.json").read_text())
    failed = {row["check"] for row in doc["summary"] if not row["ok"]}
    assert failed == {"onnxruntime ~ weights", "onnxruntime ~ truth"}


def test_verify_fails_when_the_learned_kernel_is_not_the_target(tmp_path):
    path = make_onnx(tmp_path / "m.onnx", SOBEL[None] + 0.05, target=SOBEL)  # consistent graph, wrong filter
    res = kn("verify", path, *SMALL)
    assert res.exit_code == 1 and "weights ~ truth" in res.stderr
    assert kn("verify", path, *SMALL, "--truth-tol", "0.1").exit_code == 0  # 9 × 0.05 ≤ 0.1 × 8


def test_kernel_gap_respects_model_symmetries(rng):
    k = rng.uniform(-2, 2, (3, 3))
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pair = np.einsum("ij,jkl->ikl", rot, np.stack([k, k.T]))  # same magnitude, different kernels
    def info(kernels, model="single", normalize=False):
        return ModelInfo(spec=FilterSpec.from_weights(kernels, None, model, normalize),
                         target=FilterSpec.from_kind(k, model, normalize))

    assert kernel_gap(info(pair, "double")) < 1e-12
    assert kernel_gap(info(-k[None], normalize=True)) == 0
    assert kernel_gap(info(-k[None])) == pytest.approx(2 * np.abs(k).sum())
    assert kernel_gap(info((k + 1e-3)[None])) == pytest.approx(9e-3)
    k5 = np.pad(k, 1)  # a 5×5 learned kernel around a 3×3 target
    assert kernel_gap(info(k5[None])) == 0


@pytest.mark.parametrize("args,needle", [
    (["{bad}"], "cannot load ONNX model"),
    (["{run}", "--sizes", "0x4"], "invalid size"),
    (["{run}", "--sizes", "abc"], "invalid size"),
    (["{run}", "--batch", "0"], "invalid --batch"),
    (["{run}", "--json", "/proc/forbidden/v.json"], "is not writable"),
    pytest.param(["{run}", "--run", "/nonexistent/run"], "does not exist", marks=needs_torch),
])
def test_verify_bad_input_exits_2(tmp_path, args, needle):
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    res = kn("verify", *[a.format(run=exported("single"), bad=tmp_path / "bad.onnx") for a in args])
    assert res.exit_code == 2, res.output
    line, = res.stderr.strip().splitlines()
    assert needle in line


# ----------------------------------------------------------------------------------------- bench / tune

@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="the chart needs matplotlib")
def test_bench_json_and_chart(tmp_path):
    res = kn("bench", exported("double"), "--sizes", "32x32,40x24", "--warmup", "1", "--reps", "3", "--min-time", "0",
             "--json", tmp_path / "b.json", "--plot", tmp_path / "b.png")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "b.json").read_text())
    names = {t["contender"] for t in doc["timings"]}
    assert "onnxruntime" in names and ("opencv" in names) == HAS_CV2
    assert ("pytorch" in names) == (importlib.util.find_spec("torch") is not None)
    for t in doc["timings"]:
        assert t["size"] in ("32x32", "40x24") and t["reps"] >= 3 and t["mpix_per_s"] > 0
        assert t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"]
        assert t["max_abs_diff"] < 1e-4  # every contender computes the same filter
        assert (t["vs_opencv"] is not None) == HAS_CV2
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "p50_ms" in res.stdout and "vs_opencv" in res.stdout


def test_tune_then_bench_uses_the_stored_choice(tmp_path):
    run = copy_run("single", tmp_path)
    res = kn("tune", run, "--sizes", "48x40", "--levels", "basic,all", "--threads", "1", "--modes", "sequential",
             "--tiles", "auto,16x0", "--min-time", "0")
    assert res.exit_code == 0, res.output
    assert "best:" in res.stdout and (run / "model.onnx.tune.json").is_file()
    tuned = json.loads((run / "model.onnx.tune.json").read_text())
    assert len(tuned["measured"]["candidates"]) == 4
    with load(run, backend="onnxruntime") as model:
        assert model.runner.config.to_dict() == tuned["session"]
        assert model.tile == (tuple(tuned["tile"]) if tuned["tile"] else "auto")
    res = kn("bench", run, "--sizes", "32x32", "--no-torch", "--no-opencv", "--reps", "2", "--min-time", "0",
             "--autotune", "--threads", "1")
    assert res.exit_code == 0, res.output
    assert "best:" in res.stdout and "onnxruntime" in res.stdout


@pytest.mark.parametrize("command,args,needle", [
    ("bench", ["{bad}"], "cannot load ONNX model"),
    ("bench", ["{run}", "--sizes", "12"], "invalid size"),
    ("bench", ["{run}", "--json", "/proc/forbidden/b.json"], "is not writable"),
    ("tune", ["{run}", "--levels", "turbo"], "invalid --levels"),
    ("tune", ["{bad}"], "cannot load ONNX model"),
])
def test_bench_and_tune_bad_input_exit_2(tmp_path, command, args, needle):
    (tmp_path / "bad.onnx").write_bytes(b"junk")
    res = kn(command, *[a.format(run=exported("single"), bad=tmp_path / "bad.onnx") for a in args])
    assert res.exit_code == 2, res.output
    line, = res.stderr.strip().splitlines()
    assert needle in line
