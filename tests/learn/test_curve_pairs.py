"""Kernels in linear light from pairs: a Gaussian blur of decoded values, re-encoded and rounded (a camera pipeline
or an editor blurring in linear light), made with numpy and OpenCV for gamma and sRGB curves, kernel sizes and
sigmas varied, is identified as ``decode → kernel → encode`` and its files written with ≥ 99% of the levels equal
on photos it was not trained on; native declines it with its one-line warning, prune and quantize refuse it."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from kernelnet.learn.pairs_train import train_pairs
from kernelnet.runtime.curves import decode, encode
from kernelnet.runtime.io.pairs import read_raw
from tests.black_boxes import make_pairs
from tests.helpers import kn, needs_torch

pytestmark = needs_torch
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


def linear_light(curve, ksize, sigma):
    def box(c):
        v = decode(c / 255.0, curve).astype(np.float32)
        b = cv2.GaussianBlur(v, (ksize, ksize), sigma, borderType=cv2.BORDER_REFLECT_101)
        return np.clip(np.round(255 * encode(b, curve)), 0, 255).astype(np.uint8)
    return box


@pytest.mark.slow
@pytest.mark.parametrize("curve, ksize, sigma", [("gamma:1.7", 3, 0.7), ("srgb", 5, 1.2)])
def test_a_blur_in_linear_light_is_found_with_its_curve(tmp_path, curve, ksize, sigma):
    box = linear_light(curve, ksize, sigma)
    data, targets = make_pairs(tmp_path / "train", box, count=10, side=88)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    stages = m["identified"]["program"]
    assert [s["stage"] for s in stages][:3] == ["curve", "linear", "curve"], m["program"]
    assert stages[0]["curve"] == stages[2]["curve"]
    if curve == "srgb":
        assert stages[0]["curve"] == "srgb"
    else:  # the exponent itself, to the search's resolution
        assert abs(float(stages[0]["curve"][6:]) - float(curve[6:])) < 0.02, m["program"]
    assert m["heldout_exact_fraction"] >= 0.99, m
    assert kn("export", tmp_path / "run").exit_code == 0
    (tmp_path / "held").mkdir()
    for name in ("moon", "coins", "page"):
        Image.fromarray(np.ascontiguousarray(getattr(skdata, name)()[:160, :200])).save(tmp_path / "held" / f"{name}.png")
    res = kn("apply", tmp_path / "run", tmp_path / "held", "--out", tmp_path / "applied", "-q")
    assert res.exit_code == 0, res.output
    for src in sorted((tmp_path / "held").glob("*.png")):
        got, want = read_raw(tmp_path / "applied" / src.name), box(read_raw(src))
        assert np.mean(got == want) >= 0.99 and np.abs(got.astype(int) - want).max() <= 1, src


@pytest.mark.slow
def test_native_declines_a_curve_in_one_line_and_prune_and_quantize_refuse(tmp_path):
    from kernelnet.runtime import load

    data, targets = make_pairs(tmp_path, linear_light("gamma:2.4", 3, 0.8), count=6, side=64)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots")
    assert res.exit_code == 0 and "decode γ2.4" in res.output, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["decode"] == "gamma:2.4"
    assert kn("export", tmp_path / "run").exit_code == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(tmp_path / "run" / "model.onnx")
    assert model.runner.name == "onnxruntime"
    assert [str(w.message).count("no curve stages") for w in caught] == [1]
    for command in (["prune", tmp_path / "run", "--amount", "0.5"], ["quantize", tmp_path / "run"]):
        res = kn(*command)
        assert res.exit_code == 2 and "wraps its kernel in curves" in res.output, res.output
