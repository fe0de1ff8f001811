"""Rounded chains from pairs: Pillow's BoxBlur (a horizontal box pass written to 8 bits, then a vertical one) is
identified as two rounded 1-D passes, exported as one graph, and its files written byte for byte on photos it was
not trained on, by both backends; a one-kernel black box stays one kernel; prune and quantize refuse a chain."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kernelnet.learn.pairs_train import train_pairs
from kernelnet.runtime.io.pairs import read_raw
from tests.black_boxes import make_pairs
from tests.helpers import kn, needs_torch

pytestmark = needs_torch
skdata = pytest.importorskip("skimage.data")


def box_blur(radius):
    return lambda c: np.asarray(Image.fromarray(c).filter(ImageFilter.BoxBlur(radius)))


def _held_out(root, box):
    """Photos none of the training pairs come from, and the black box's files of them."""
    (root / "in").mkdir(parents=True)
    (root / "out").mkdir()
    for name in ("moon", "page", "text", "coins"):
        img = np.ascontiguousarray(getattr(skdata, name)()[:150, :190])
        Image.fromarray(img).save(root / "in" / f"{name}.png")
        Image.fromarray(box(img)).save(root / "out" / f"{name}.png")
    return root / "in", root / "out"


def _exported_and_applied(root, box):
    """Export ``root``/run, apply it on held-out photos with each backend, and check every file equals the black
    box's own; returns the held-out (inputs, targets) folders."""
    assert kn("export", root / "run").exit_code == 0
    held_in, held_out = _held_out(root / "held", box)
    for backend in ("native", "onnxruntime"):
        res = kn("apply", root / "run", held_in, "--out", root / backend, "--backend", backend, "-q")
        assert res.exit_code == 0, res.output
        for src in sorted(held_out.glob("*.png")):
            assert np.array_equal(read_raw(root / backend / src.name), read_raw(src)), (backend, src)
    return held_in, held_out


@pytest.mark.slow
@pytest.mark.parametrize("radius", [1, 3])
def test_pillow_box_blur_is_two_rounded_passes_and_its_files_are_reproduced(tmp_path, radius):
    box = box_blur(radius)
    data, targets = make_pairs(tmp_path / "train", box, count=10, side=80)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    program = m["identified"]["program"]
    assert m["verdict"] == "reproduced", m["program"]
    assert [s["stage"] for s in program] == ["linear", "output", "linear", "output"], program
    assert [s.get("axis") for s in program[::2]] == ["horizontal", "vertical"]
    same = {"replicate", "symmetric"} if radius == 1 else {"replicate"}  # one mirrored pixel is the edge itself
    assert all(s["kernel_size"] == 2 * radius + 1 and s["border"] in same for s in program[::2])
    assert program[1]["bits"] == 8 and program[1]["grid"] == 2 * radius + 1  # rounded between the passes
    assert f"→ {2 * radius + 1}×1 vertical" in m["program"]
    held_in, held_out = _exported_and_applied(tmp_path, box)
    res = kn("verify", tmp_path / "run" / "model.onnx", "--data", held_in, "--targets", held_out, "--exact")
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_a_box_rounded_once_stays_one_kernel(tmp_path):
    """OpenCV's 8-bit blur rounds once: the ladder stops at the one kernel that already writes every level."""
    cv2 = pytest.importorskip("cv2")
    data, targets = make_pairs(tmp_path, lambda c: cv2.blur(c, (5, 5), borderType=cv2.BORDER_REPLICATE),
                               count=8, side=64)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    assert m["verdict"] == "reproduced" and len(m["identified"]["program"]) == 2, m["program"]
    assert not json.loads((tmp_path / "run" / "config.json").read_text())["after"]


@pytest.mark.slow
def test_prune_and_quantize_refuse_a_chain_and_a_linear_request_gets_no_chain(tmp_path):
    data, targets = make_pairs(tmp_path, box_blur(2), count=6, side=64)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots")
    assert res.exit_code == 0 and "1×5 horizontal linear" in res.output, res.output
    assert len(json.loads((tmp_path / "run" / "config.json").read_text())["after"]) == 1
    for command in (["prune", tmp_path / "run", "--amount", "0.5"], ["quantize", tmp_path / "run"]):
        res = kn(*command)
        assert res.exit_code == 2 and "is a chain of 2 passes" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "single", "--model", "single",
             "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert len(m["identified"]["program"]) == 2 and m["verdict"] == "approximated"


@pytest.mark.slow
def test_the_pipeline_takes_a_chain_through_without_pruning_or_int8(tmp_path):
    data, targets = make_pairs(tmp_path, box_blur(2), count=6, side=64)
    res = kn("pipeline", "--data", data, "--targets", targets, "--out", tmp_path / "pipe", "--bench-sizes", "64x64")
    assert res.exit_code == 0, res.output
    assert "nothing to prune (a chain" in res.output and "no int8 model" in res.output
    assert json.loads((tmp_path / "pipe" / "verify.json").read_text())["ok"] is True
    assert not (tmp_path / "pipe" / "pruned" / "model.int8.onnx").exists()


SPLITS = {
    # a blur written as 8 bits, then |derivative| (convertScaleAbs: its alpha after the derivative)
    "blur-sobel-x": lambda c, cv2: cv2.convertScaleAbs(cv2.Sobel(cv2.blur(c, (3, 3)), cv2.CV_16S, 1, 0)),
    "gaussian-laplacian": lambda c, cv2: cv2.convertScaleAbs(cv2.Laplacian(cv2.GaussianBlur(c, (3, 3), 0),
                                                                           cv2.CV_16S)),
    "gaussian-scharr-y-half": lambda c, cv2: cv2.convertScaleAbs(cv2.Scharr(cv2.GaussianBlur(c, (3, 3), 0),
                                                                            cv2.CV_16S, 0, 1), alpha=0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPLITS))
def test_a_blur_saved_as_8_bits_then_an_absolute_derivative_is_two_passes(tmp_path, name):
    cv2 = pytest.importorskip("cv2")
    box = functools.partial(SPLITS[name], cv2=cv2)
    data, targets = make_pairs(tmp_path / "train", box, count=10, side=72)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    program = m["identified"]["program"]
    assert m["verdict"] == "reproduced", m["program"]
    assert [s["stage"] for s in program] == ["linear", "output", "linear", "combine", "output"], m["program"]
    assert program[1]["bits"] == 8 and program[3]["combine"] == "abs"
    _exported_and_applied(tmp_path, box)
