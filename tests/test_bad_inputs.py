"""The bad-input battery (issue 8, hardening): every command, every kind of bad input.

Each case runs the real entry point in a subprocess and must give exit code 2, exactly one line on stderr (starting
``error:`` and naming the problem), no traceback, and nothing written: its output path stays absent and the shared
fixture folder is byte-for-byte as before (no new, changed or removed file, no stray ``.tmp-*`` left by an atomic
write). The images that look odd but are valid (16-bit, RGBA, palette, ...) must *work*, for ``apply`` and as
training data. Last, a ``SIGKILL`` during training followed by ``--resume`` must end with exactly the model of an
uninterrupted run.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli
from tests.helpers import SOBEL, copy_run, make_onnx

TRAIN = ["--crop", "32", "--batch-size", "8", "--steps-per-epoch", "5", "--epochs", "1", "--no-plots", "-q"]
"""Training settings small enough that a case which wrongly got through would still end quickly."""

PROC = Path("/proc/kernelnet-battery")
"""Unwritable for everyone, root included (chmod-based read-only folders do not stop root)."""


def _photo(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    base = rng.random((size // 4, size // 4))
    return (np.kron(base, np.ones((4, 4))) * 255).astype(np.uint8)  # blocky: real edges to learn from


@pytest.fixture(scope="module")
def w(tmp_path_factory) -> SimpleNamespace:
    """The battery's world: one good exported run and every kind of bad file, made once per module."""
    root = tmp_path_factory.mktemp("battery")
    rng = np.random.default_rng(8)
    w = SimpleNamespace(root=root)
    w.run = copy_run("single", root)  # exact Sobel weights, model.onnx exported
    w.reflect_onnx = make_onnx(root / "reflect.onnx", SOBEL[None], padding="reflect")

    w.photos = root / "photos"  # good training / calibration data
    w.photos.mkdir()
    for i in range(4):
        Image.fromarray(_photo(rng)).save(w.photos / f"p{i}.png")
    good_png = (w.photos / "p0.png").read_bytes()

    # -- images that are not what they claim
    w.cut_png, w.text_jpg, w.notes = root / "cut.png", root / "text.jpg", root / "notes.txt"
    w.cut_png.write_bytes(good_png[: len(good_png) // 2])  # a PNG cut in half
    w.text_jpg.write_text("this is not a JPEG\n")
    w.notes.write_text("not an image at all\n")
    w.empty, w.corrupt_folder, w.nan_folder = root / "empty", root / "corrupt_images", root / "nan_images"
    for folder in (w.empty, w.corrupt_folder, w.nan_folder):
        folder.mkdir()
    (w.corrupt_folder / "a.png").write_bytes(good_png[:100])
    shutil.copy(w.text_jpg, w.corrupt_folder / "b.jpg")
    bad = rng.random((48, 48)).astype(np.float32)
    bad[[1, 5, 9], [2, 6, 7]] = np.nan
    Image.fromarray(bad, mode="F").save(w.nan_folder / "a.tif")  # a float TIFF with NaN pixels
    Image.fromarray(_photo(rng)).save(w.nan_folder / "b.png")

    # -- arrays
    arrays = {
        "zero": np.zeros((0, 0), np.float32), "zero_rows": np.zeros((3, 0, 8), np.float32),
        "one_by_one": np.full((1, 1), 0.5, np.float32),
        "nan_inf": np.array([[np.nan, 0.1, np.inf], [0.2, -np.inf, 0.3]], np.float32),
        "two_channels": np.zeros((2, 2, 8, 8), np.float32), "int16": np.zeros((8, 8), np.int16),
    }
    for name, array in arrays.items():
        np.save(root / f"{name}.npy", array)
    np.save(root / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(root / "even_kernel.npy", np.ones((2, 2)))
    (root / "words_kernel.txt").write_text("one two three\n")

    # -- broken models and runs
    onnx_bytes = (w.run / "model.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(onnx_bytes[: len(onnx_bytes) // 2])
    (root / "empty.onnx").write_bytes(b"")
    (root / "text.onnx").write_text("ir_version: 8\n")

    def broken_run(name: str, file: str, content: bytes | str) -> Path:
        run = Path(shutil.copytree(w.run, root / name))
        (run / file).write_bytes(content if isinstance(content, bytes) else content.encode())
        return run

    broken_run("garbage_weights", "model.safetensors", b"\x00garbage, not safetensors")
    broken_run("garbage_config", "config.json", "{not json")
    broken_run("list_config", "config.json", "[1, 2, 3]")
    broken_run("unknown_model", "config.json", '{"model": "triple"}')
    broken_run("mismatch", "config.json", (w.run / "config.json").read_text().replace('"kernel_size": 3',
                                                                                      '"kernel_size": 5'))
    broken_run("truncated_onnx_run", "model.onnx", onnx_bytes[:200])
    from safetensors.numpy import save_file

    (root / ".garbage_ckpt.kernelnet-partial").mkdir()  # interrupted runs' partial folders (train --resume)
    (root / ".garbage_ckpt.kernelnet-partial" / "checkpoint.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    (root / ".foreign_ckpt.kernelnet-partial").mkdir()
    save_file({"w": np.zeros(3, np.float32)}, str(root / ".foreign_ckpt.kernelnet-partial" / "checkpoint.safetensors"))
    w.a_file = root / "a_file"
    w.a_file.write_text("a regular file: nothing can be created below it\n")
    return w


def _at(w: SimpleNamespace, name: str) -> Path:
    return w.root / name


Args = Callable[[SimpleNamespace, Path], list]

# (id, args(w, out), needle): `out` is a fresh path that must still be absent afterwards.
CASES: list[tuple[str, Args, str]] = [
    # ---- apply: inputs
    ("apply-png-cut-in-half", lambda w, o: ["apply", w.run, w.cut_png, "--out", o / "y.png"], "truncated"),
    ("apply-jpg-that-is-text", lambda w, o: ["apply", w.run, w.text_jpg, "--out", o / "y.png"],
     "cannot identify image file"),
    ("apply-not-an-image", lambda w, o: ["apply", w.run, w.notes, "--out", o / "y.png"], "cannot read image"),
    ("apply-one-bad-among-good", lambda w, o: ["apply", w.run, w.photos, w.cut_png, "--out", o], "cut.png"),
    ("apply-empty-folder", lambda w, o: ["apply", w.run, w.empty, "--out", o], "no images or .npy files in folder"),
    ("apply-npy-0x0", lambda w, o: ["apply", w.run, _at(w, "zero.npy"), "--out", o / "y.npy"], "is empty"),
    ("apply-npy-3x0x8", lambda w, o: ["apply", w.run, _at(w, "zero_rows.npy"), "--out", o / "y.npy"], "is empty"),
    ("apply-npy-nan-inf", lambda w, o: ["apply", w.run, _at(w, "nan_inf.npy"), "--out", o / "y.npy"],
     "input contains 3 NaN/Inf values"),
    ("apply-float-tiff-with-nan", lambda w, o: ["apply", w.run, w.nan_folder / "a.tif", "--out", o / "y.png"],
     "input contains 3 NaN/Inf values"),
    ("apply-npy-two-channels", lambda w, o: ["apply", w.run, _at(w, "two_channels.npy"), "--out", o / "y.npy"],
     "one channel expected"),
    ("apply-npy-int16", lambda w, o: ["apply", w.run, _at(w, "int16.npy"), "--out", o / "y.npy"], "dtype int16"),
    ("apply-npy-pickled-objects", lambda w, o: ["apply", w.run, _at(w, "pickled.npy"), "--out", o / "y.npy"],
     "object arrays"),
    ("apply-1x1-on-reflect-model", lambda w, o: ["apply", w.reflect_onnx, _at(w, "one_by_one.npy"),
                                                 "--out", o / "y.npy"], "reflect border needs H and W > 1"),
    # ---- apply: model and outputs
    ("apply-truncated-onnx", lambda w, o: ["apply", _at(w, "truncated.onnx"), w.photos / "p0.png",
                                           "--out", o / "y.png"], "cannot load ONNX model"),
    ("apply-out-under-a-file", lambda w, o: ["apply", w.run, w.photos / "p0.png", "--out", w.a_file / "y.png"],
     "cannot create output directory"),
    ("apply-out-in-proc", lambda w, o: ["apply", w.run, w.photos / "p0.png", "--out", PROC.parent / "y.png"],
     "not writable"),
    ("apply-out-bmp", lambda w, o: ["apply", w.run, w.photos / "p0.png", "--out", o.with_suffix(".bmp")],
     "cannot write .bmp images"),
    ("apply-bits-12", lambda w, o: ["apply", w.run, w.photos / "p0.png", "--out", o / "y.png", "--bits", "12"],
     "Invalid value for '--bits'"),
    ("apply-unknown-option", lambda w, o: ["apply", w.run, w.photos / "p0.png", "--out", o / "y.png", "--fast"],
     "No such option '--fast'"),
    # ---- info
    ("info-truncated-onnx", lambda w, o: ["info", _at(w, "truncated.onnx")], "cannot load ONNX model"),
    ("info-empty-onnx", lambda w, o: ["info", _at(w, "empty.onnx")], "cannot load ONNX model"),
    ("info-text-onnx", lambda w, o: ["info", _at(w, "text.onnx")], "cannot load ONNX model"),
    ("info-missing-file", lambda w, o: ["info", o / "model.onnx"], "not found"),
    # ---- export: corrupt checkpoints and outputs
    ("export-garbage-safetensors", lambda w, o: ["export", _at(w, "garbage_weights"), "--out", o / "m.onnx"],
     "corrupt model file"),
    ("export-garbage-config", lambda w, o: ["export", _at(w, "garbage_config"), "--out", o / "m.onnx"],
     "cannot read run config"),
    ("export-config-not-an-object", lambda w, o: ["export", _at(w, "list_config"), "--out", o / "m.onnx"],
     "expected a JSON object"),
    ("export-config-unknown-model", lambda w, o: ["export", _at(w, "unknown_model"), "--out", o / "m.onnx"],
     "unknown model 'triple'"),
    ("export-weights-do-not-match-config", lambda w, o: ["export", _at(w, "mismatch"), "--out", o / "m.onnx"],
     "another config than"),
    ("export-not-a-run", lambda w, o: ["export", w.photos, "--out", o / "m.onnx"], "is not a run directory"),
    ("export-out-under-a-file", lambda w, o: ["export", w.run, "--out", w.a_file / "m.onnx"], "is not a folder"),
    ("export-out-in-proc", lambda w, o: ["export", w.run, "--out", PROC / "m.onnx"], "/proc is not writable"),
    ("export-opset-3", lambda w, o: ["export", w.run, "--out", o / "m.onnx", "--opset", "3"], "opset 3 is not supported"),
    ("export-format-jpeg", lambda w, o: ["export", w.run, "--format", "jpeg"], "Invalid value for '--format'"),
    # ---- train: data, kernels, checkpoints, outputs, options
    ("train-empty-folder", lambda w, o: ["train", *TRAIN, "--data", w.empty, "--out", o], "no usable image"),
    ("train-only-corrupt-images", lambda w, o: ["train", *TRAIN, "--data", w.corrupt_folder, "--out", o],
     "2 unreadable"),
    ("train-image-with-nan", lambda w, o: ["train", *TRAIN, "--data", w.nan_folder, "--out", o],
     "contains 3 NaN/Inf values"),
    ("train-image-with-nan-exact", lambda w, o: ["train", *TRAIN, "--solver", "exact", "--data", w.nan_folder,
                                                 "--out", o], "contains 3 NaN/Inf values"),
    ("train-data-is-a-file", lambda w, o: ["train", *TRAIN, "--data", w.photos / "p0.png", "--out", o],
     "is not a folder"),
    ("train-crop-larger-than-images", lambda w, o: ["train", *TRAIN, "--data", w.photos, "--crop", "500",
                                                    "--out", o], "no image is at least 500x500"),
    ("train-ragged-kernel", lambda w, o: ["train", *TRAIN, "--filter", "1,2,3;4,5", "--out", o],
     "rows must have equal lengths"),
    ("train-nan-kernel", lambda w, o: ["train", *TRAIN, "--filter", "nan,0,0;0,1,0;0,0,0", "--out", o],
     "non-finite"),
    ("train-even-kernel-file", lambda w, o: ["train", *TRAIN, "--filter", _at(w, "even_kernel.npy"), "--out", o],
     "odd side"),
    ("train-kernel-file-of-words", lambda w, o: ["train", *TRAIN, "--filter", _at(w, "words_kernel.txt"),
                                                 "--out", o], "cannot read kernel file"),
    ("train-resume-garbage-checkpoint", lambda w, o: ["train", *TRAIN, "--out", _at(w, "garbage_ckpt"), "--resume"],
     "corrupt or unreadable checkpoint"),
    ("train-resume-foreign-checkpoint", lambda w, o: ["train", *TRAIN, "--out", _at(w, "foreign_ckpt"), "--resume"],
     "checkpoint"),
    ("train-resume-nothing", lambda w, o: ["train", *TRAIN, "--out", o, "--resume"], "nothing to resume"),
    ("train-out-under-a-file", lambda w, o: ["train", *TRAIN, "--data", w.photos, "--out", w.a_file / "run"],
     "cannot create output directory"),
    ("train-out-in-proc", lambda w, o: ["train", *TRAIN, "--data", w.photos, "--out", PROC],
     "cannot create output directory"),
    ("train-unknown-option", lambda w, o: ["train", *TRAIN, "--epoch", "3", "--out", o], "No such option '--epoch'"),
    ("train-batch-size-not-a-number", lambda w, o: ["train", "--batch-size", "lots", "--out", o],
     "Invalid value for '--batch-size'"),
    # ---- prune
    ("prune-config-not-an-object", lambda w, o: ["prune", _at(w, "list_config"), "--out", o],
     "expected a JSON object"),
    ("prune-garbage-safetensors", lambda w, o: ["prune", _at(w, "garbage_weights"), "--out", o], "corrupt model"),
    ("prune-out-in-proc", lambda w, o: ["prune", w.run, "--amount", "3", "--out", PROC], "/proc is not writable"),
    ("prune-amount-negative", lambda w, o: ["prune", w.run, "--amount", "-1", "--out", o], "amount -1"),
    # ---- quantize
    ("quantize-truncated-model", lambda w, o: ["quantize", _at(w, "truncated_onnx_run"), "--out", o / "q.onnx",
                                               "--latency-runs", "0"], "as an ONNX model"),
    ("quantize-calibration-corrupt-images", lambda w, o: ["quantize", w.run, "--calibration", w.corrupt_folder,
                                                          "--out", o / "q.onnx", "--latency-runs", "0"],
     "no usable image"),
    ("quantize-calibration-with-nan", lambda w, o: ["quantize", w.run, "--calibration", w.nan_folder,
                                                    "--out", o / "q.onnx", "--latency-runs", "0"], "NaN/Inf"),
    ("quantize-out-in-proc", lambda w, o: ["quantize", w.run, "--out", PROC / "q.onnx", "--latency-runs", "0"],
     "/proc is not writable"),
    # ---- verify / bench / tune
    ("verify-empty-onnx", lambda w, o: ["verify", _at(w, "empty.onnx")], "cannot load ONNX model"),
    ("verify-run-garbage-safetensors", lambda w, o: ["verify", w.run, "--run", _at(w, "garbage_weights"),
                                                     "--sizes", "8x8"], "corrupt model file"),
    ("verify-json-in-proc", lambda w, o: ["verify", w.run, "--sizes", "8x8", "--json", PROC.parent / "v.json"],
     "not writable"),
    ("bench-plot-in-proc", lambda w, o: ["bench", w.run, "--sizes", "8x8", "--plot", PROC.parent / "b.png"],
     "not writable"),
    ("bench-json-under-a-file", lambda w, o: ["bench", w.run, "--sizes", "8x8", "--json", w.a_file / "b.json"],
     "is not a folder"),
    ("bench-sizes-0x8", lambda w, o: ["bench", w.run, "--sizes", "0x8"], "invalid size"),
    ("tune-truncated-onnx", lambda w, o: ["tune", _at(w, "truncated.onnx")], "cannot load ONNX model"),
    ("tune-tiles-garbage", lambda w, o: ["tune", w.run, "--tiles", "3xx"], "invalid --tile"),
    # ---- pipeline and the group itself
    ("pipeline-ragged-kernel", lambda w, o: ["pipeline", "--filter", "1,2;3", "--out", o], "equal lengths"),
    ("pipeline-out-under-a-file", lambda w, o: ["pipeline", "--out", w.a_file / "p"],
     "cannot create output directory"),
    ("pipeline-empty-data-folder", lambda w, o: ["pipeline", "--data", w.empty, "--out", o], "no usable image"),
    ("pipeline-bench-sizes-0x8", lambda w, o: ["pipeline", "--bench-sizes", "0x8", "--out", o], "invalid size"),
    ("unknown-command", lambda w, o: ["frobnicate"], "No such command 'frobnicate'"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``root`` with its size and mtime (a write of any kind changes one or the other)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case_id,args,needle", [
    pytest.param(*case, id=case[0]) for case in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(w, case_id, args, needle):
    out = w.root / "out" / case_id
    before = snapshot(w.root)
    res = run_cli(*[str(a) for a in args(w, out)], timeout=120)
    assert "Traceback" not in res.stderr + res.stdout, res.stderr
    assert res.returncode == 2, f"exit {res.returncode}\n{res.stdout}\n{res.stderr}"
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert not out.exists() and not out.with_suffix(".bmp").exists(), sorted(out.parent.rglob("*"))
    after = snapshot(w.root)
    stray = [p for p in after if ".tmp-" in p or ".kernelnet-partial-" in p]
    assert not stray, stray
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, changed


def test_battery_covers_every_command():
    commands = {case_id.split("-")[0] for case_id, _, _ in CASES}
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)
    assert commands >= {"apply", "info", "export", "train", "prune", "quantize", "verify", "bench", "tune", "pipeline"}


# --------------------------------------------------------------------------- odd but valid images must work

def _odd_images(folder: Path, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """16-bit, RGBA, palette (with transparency), gray+alpha, bilevel, CMYK JPEG and 1×1 images, each with the
    grayscale float image the data pipeline must decode it to (16-bit / 65535, ITU-R 601 luma; see docs/architecture.md)."""
    folder.mkdir()
    g16 = (rng.random((40, 44)) * 65535).astype(np.uint16)
    rgba = np.dstack([_photo(rng, 40), _photo(rng, 40), _photo(rng, 40), _photo(rng, 40)])
    luma = lambda rgb: (rgb[..., :3] @ np.array([0.299, 0.587, 0.114]) / 255).astype(np.float32)  # noqa: E731
    Image.fromarray(g16).save(folder / "gray16.png")
    Image.fromarray(rgba).save(folder / "rgba.png")
    pal = Image.fromarray(rgba[..., :3]).convert("P")
    pal.info["transparency"] = 0
    pal.save(folder / "palette.png")
    Image.fromarray(rgba[..., 0]).convert("LA").save(folder / "gray_alpha.png")
    Image.fromarray(rgba[..., 1] > 127).save(folder / "bilevel.png")
    Image.fromarray(rgba[..., :3]).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(np.full((1, 1), 200, np.uint8)).save(folder / "one_pixel.png")
    return {"gray16": (g16 / 65535).astype(np.float32), "rgba": luma(rgba),
            "palette": luma(np.asarray(pal.convert("RGB")).astype(np.float64)),
            "gray_alpha": (rgba[..., 0] / 255).astype(np.float32),
            "bilevel": (rgba[..., 1] > 127).astype(np.float32), "cmyk": None,
            "one_pixel": np.full((1, 1), 200 / 255, np.float32)}


def test_16bit_rgba_palette_images_work_for_apply_and_training(tmp_path, rng):
    from kernelnet.runtime.reference import apply_filter

    expected = _odd_images(tmp_path / "odd", rng)
    run = copy_run("single", tmp_path)
    res = run_cli("apply", str(run), str(tmp_path / "odd"), "--out", str(tmp_path / "out"), "--format", "npy")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and f"wrote {len(expected)} files" in res.stdout
    for name, gray in expected.items():
        y = np.load(tmp_path / "out" / f"{name}.npy")
        if gray is None:  # lossy CMYK JPEG: decoded and filtered, values not pinned
            assert y.shape == (40, 40) and np.isfinite(y).all()
            continue
        assert y.shape == gray.shape and y.dtype == np.float32
        assert np.abs(y - apply_filter(gray.astype(np.float64), SOBEL)).max() < 1e-4, name

    # the same folder (plus photos big enough to crop) as training data
    for i in range(3):
        Image.fromarray(_photo(rng)).save(tmp_path / "odd" / f"photo{i}.png")
    res = run_cli("train", *TRAIN, "--crop", "24", "--data", str(tmp_path / "odd"), "--out", str(tmp_path / "run2"))
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # every file was read: no "skipped unreadable" warning
    import json

    metrics = json.loads((tmp_path / "run2" / "metrics.json").read_text())
    splits = metrics["split"]
    assert len(splits["train"]) + len(splits["val"]) + len(splits["test"]) == len(expected) + 3


# ------------------------------------------------------------------------- SIGKILL during training, --resume

KILL_TRAIN = ["--crop", "32", "--batch-size", "8", "--steps-per-epoch", "20", "--epochs", "12", "--patience", "50",
              "--no-plots", "-q"]


def _epochs_done(checkpoint: Path) -> int:
    from kernelnet.learn.checkpoint import load_state

    try:
        return int(load_state(checkpoint)["epoch"])
    except Exception:  # noqa: BLE001 - not there yet
        return 0


def test_sigkill_during_training_then_resume_matches_uninterrupted_run(tmp_path, rng):
    from safetensors.numpy import load_file

    data = tmp_path / "photos"
    data.mkdir()
    for i in range(4):
        Image.fromarray(_photo(rng, 96)).save(data / f"p{i}.png")
    args = ["train", *KILL_TRAIN, "--data", str(data)]

    killed = tmp_path / "killed"
    partial = tmp_path / ".killed.kernelnet-partial"  # where the run is built until it is complete
    proc = subprocess.Popen([sys.executable, "-m", "kernelnet", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _epochs_done(partial / "checkpoint.safetensors") < 2:
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # nothing half-written: no run at --out, and beside it the checkpoint (complete, loadable) and at most a stray
    # temp file of a killed write
    assert not killed.exists()
    left = sorted(p.name for p in partial.iterdir())
    assert [n for n in left if not n.startswith(".tmp-")] == ["checkpoint.safetensors"], left
    from kernelnet.learn.checkpoint import load_state

    saved = load_state(partial / "checkpoint.safetensors")["history"]
    assert 2 <= len(saved) < 12, len(saved)

    # a kill that lands inside an atomic write leaves its temp file; --resume clears it
    (partial / ".tmp-checkpoint.safetensors.k1ll3d").write_bytes(b"half a checkpoint")
    res = run_cli("train", "--out", str(killed), "--resume", "--no-plots", "-q")
    assert res.returncode == 0, res.stderr
    full = tmp_path / "full"
    res = run_cli(*args, "--out", str(full))
    assert res.returncode == 0, res.stderr

    resumed, uninterrupted = load_file(str(killed / "model.safetensors")), load_file(str(full / "model.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        assert np.array_equal(resumed[name], uninterrupted[name]), name  # bitwise
    history = [list(csv.DictReader((d / "history.csv").open())) for d in (killed, full)]
    assert [(r["epoch"], r["val_loss"]) for r in history[0]] == [(r["epoch"], r["val_loss"]) for r in history[1]]
    # it really resumed (a restart from scratch would give the same weights): the epochs before the kill are the
    # checkpoint's, timings included
    assert [float(r["seconds"]) for r in history[0][:len(saved)]] == [h["seconds"] for h in saved]
    assert sorted(p.name for p in killed.iterdir()) == sorted(p.name for p in full.iterdir())  # no stray temp
    assert not partial.exists()


# --------------------------------------------------------------------------- atomic folder swap

def test_atomic_dir_puts_the_old_folder_back_when_the_swap_fails(tmp_path, monkeypatch):
    from kernelnet.runtime.io.atomic import atomic_dir
    from kernelnet.runtime.errors import KernelnetError

    target = tmp_path / "run"
    target.mkdir()
    (target / "a.txt").write_text("old")
    real_replace = os.replace

    def replace(src, dst):  # the old folder moves aside, then the new one cannot move in
        if Path(src).name.startswith(".tmp-"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KernelnetError, match="No space left on device"), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_remove_stale_temps_puts_back_a_folder_parked_by_a_killed_swap(tmp_path):
    from kernelnet.runtime.io.atomic import remove_stale_temps

    parked, stale = tmp_path / ".old-run.k1ll3d", tmp_path / ".old-done.k1ll3d"
    (parked / "d").mkdir(parents=True)
    (parked / "d" / "a.txt").write_text("old")
    (stale / "d").mkdir(parents=True)  # killed after the new folder moved in: the parked copy is just stale
    (tmp_path / "done").mkdir()
    (tmp_path / ".tmp-x.k1ll3d").write_bytes(b"half")
    assert len(remove_stale_temps(tmp_path)) == 3
    assert (tmp_path / "run" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done", "run"]
