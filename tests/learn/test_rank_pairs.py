"""Rank black boxes from pairs: erosions, dilations, medians and morphological gradients made by OpenCV, SciPy and
Pillow (footprints, sizes and borders varied) are identified as rank filters, exported, and their files written
byte for byte; prune and quantize refuse a rank run in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kernelnet.learn.pairs_train import train_pairs
from kernelnet.runtime.io.pairs import read_raw
from tests.black_boxes import make_pairs
from tests.helpers import kn, needs_torch

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")
pytestmark = needs_torch

CROSS5 = cv2.getStructuringElement(cv2.MORPH_CROSS, (5, 5))
BOXES = {
    # name: (black box, (rank, size, footprint), border, or None where several give the same values: a min or max
    # over a square or cross reads every mirrored or repeated sample inside its window too, so only zeros differs)
    "opencv-erode-3": (lambda c: cv2.erode(c, np.ones((3, 3), np.uint8)), ("min", 3, "square"), None),
    "opencv-dilate-cross-5": (lambda c: cv2.dilate(c, CROSS5), ("max", 5, "cross"), None),
    "opencv-median-5": (lambda c: cv2.medianBlur(c, 5), ("median", 5, "square"), "replicate"),
    "scipy-median-zeros-7": (lambda c: ndimage.median_filter(c, 7, mode="constant"), ("median", 7, "square"), "zeros"),
    "scipy-dilate-zeros-5": (lambda c: ndimage.grey_dilation(c, size=(5, 5), mode="constant", cval=0),
                             ("max", 5, "square"), None),
    "scipy-median-mirror-3": (lambda c: ndimage.median_filter(c, 3, mode="mirror"), ("median", 3, "square"),
                              "reflect"),
    "pillow-min-3": (lambda c: np.asarray(Image.fromarray(c).filter(ImageFilter.MinFilter(3))), ("min", 3, "square"),
                     None),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BOXES))
def test_a_rank_black_box_is_identified_and_its_files_reproduced(tmp_path, name):
    box, (rank, size, footprint), border = BOXES[name]
    data, targets = make_pairs(tmp_path, box, count=8, side=64)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    ident = m["identified"]
    assert m["verdict"] == "reproduced", m
    assert (ident["model"], ident["rank"], ident["kernel_size"], ident["footprint"]) == ("rank", rank, size, footprint)
    assert border is None or ident["padding"] == border
    assert kn("export", tmp_path / "run").exit_code == 0
    res = kn("apply", tmp_path / "run", data, "--out", tmp_path / "applied", "-q")
    assert res.exit_code == 0, res.output
    for src in sorted(targets.rglob("*.png")):
        assert np.array_equal(read_raw(tmp_path / "applied" / src.relative_to(targets)), read_raw(src)), src
    res = kn("verify", tmp_path / "run" / "model.onnx", "--data", data, "--targets", targets, "--exact",
             "--sizes", "9x11")
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_prune_and_quantize_refuse_a_rank_run_and_train_prints_it(tmp_path):
    data, targets = make_pairs(tmp_path, lambda c: cv2.erode(c, CROSS5), count=5, side=48)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots")
    assert res.exit_code == 0 and "rank min over a cross (erosion)" in res.output, res.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["rank"] == "min"
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    for command in (["prune", tmp_path / "run", "--amount", "0.5"], ["quantize", tmp_path / "run"]):
        res = kn(*command)
        assert res.exit_code == 2 and "is a rank filter (min)" in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    assert not (tmp_path / "run-pruned").exists()


@pytest.mark.slow
def test_a_linear_model_the_user_asked_for_is_not_replaced_by_a_rank_filter(tmp_path):
    data, targets = make_pairs(tmp_path, lambda c: cv2.erode(c, np.ones((3, 3), np.uint8)), count=5, side=48)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--model", "single",
             "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["identified"]["model"] == "single" and m["verdict"] == "approximated"


@pytest.mark.slow
def test_a_morphological_gradient_is_found_and_its_files_reproduced(tmp_path):
    """dilate − erode over a 5×5 cross (OpenCV's MORPH_GRADIENT): the rank rung's range, every level equal."""
    data, targets = make_pairs(tmp_path, lambda c: cv2.morphologyEx(c, cv2.MORPH_GRADIENT, CROSS5), count=8, side=64)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    ident = m["identified"]
    assert m["verdict"] == "reproduced" and m["heldout_exact_fraction"] == 1.0, m
    assert (ident["rank"], ident["kernel_size"], ident["footprint"]) == ("range", 5, "cross")
    assert kn("export", tmp_path / "run").exit_code == 0
    res = kn("apply", tmp_path / "run", data, "--out", tmp_path / "applied", "-q")
    assert res.exit_code == 0, res.output
    for src in sorted(targets.rglob("*.png")):
        assert np.array_equal(read_raw(tmp_path / "applied" / src.relative_to(targets)), read_raw(src)), src
