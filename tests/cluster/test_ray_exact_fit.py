"""``kernelnet train --data --targets --engine ray``: a linear program's exact fit from normal equations summed
over shards of the pairs by Ray tasks — the same program and kernels (≤ 1e-9) as the same sums on one box."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli

pytest.importorskip("ray", reason="Ray is not installed (pip install 'kernelnet[ray]')")
pytest.importorskip("torch", reason="training needs the [train] extra")
ndimage = pytest.importorskip("scipy.ndimage", reason="the black box is SciPy's correlate")

KERNEL = np.array([[0.02, -0.11, 0.05, 0.0, 0.03],
                   [0.07, 0.19, -0.23, 0.12, -0.04],
                   [-0.06, 0.31, 0.58, -0.17, 0.09],
                   [0.01, -0.08, 0.21, 0.14, -0.02],
                   [0.04, 0.0, -0.09, 0.06, 0.01]])


def make_pairs(root, count: int = 21):
    """8-bit gray photos-like inputs and float32 .npy targets of a 5×5 SciPy correlation (mirror border)."""
    rng = np.random.default_rng(7)
    (root / "in").mkdir()
    (root / "out").mkdir()
    for i in range(count):
        noise = rng.normal(size=(56 + i % 4, 64))
        levels = np.clip(128 + 60 * ndimage.gaussian_filter(noise, 1.2) / noise.std(), 0, 255).astype(np.uint8)
        Image.fromarray(levels).save(root / "in" / f"p{i:02d}.png")
        target = ndimage.correlate(levels / 255.0, KERNEL, mode="mirror") + 0.125
        np.save(root / "out" / f"p{i:02d}.npy", target.astype(np.float32))
    return root / "in", root / "out"


def test_train_on_ray_gives_the_program_and_kernels_of_train_on_one_box(cluster, tmp_path):
    from kernelnet.identify.shards import SHARD_PAIRS
    from kernelnet.learn.pairs_train import train_pairs

    data, targets = make_pairs(tmp_path)
    on_ray = train_pairs(data, targets, tmp_path / "ray", plots=False, engine="ray").metrics
    one_box = train_pairs(data, targets, tmp_path / "local", plots=False).metrics
    assert on_ray["exact_fit"] == {**one_box["exact_fit"], "engine": "ray"}
    train = len(on_ray["split"]["train"])
    assert one_box["exact_fit"]["shards"] == math.ceil(train / SHARD_PAIRS) > 1
    assert on_ray["program"] == one_box["program"] and on_ray["identified"] == one_box["identified"]
    assert on_ray["identified"]["kernel_size"] == 5 and on_ray["identified"]["padding"] == "reflect"
    assert np.max(np.abs(np.array(on_ray["kernels"]) - np.array(one_box["kernels"]))) <= 1e-9
    assert abs(on_ray["bias"][0] - one_box["bias"][0]) <= 1e-9
    assert on_ray["heldout_pairs"] == one_box["heldout_pairs"] == len(on_ray["split"]["test"]) > 1
    assert on_ray["heldout_psnr_db"] == pytest.approx(one_box["heldout_psnr_db"], rel=1e-9)
    # and the fit is the black box's kernel (float32 targets: to their rounding, over Σ|K| ≈ 3)
    assert np.max(np.abs(np.array(one_box["kernels"][0]) - KERNEL)) < 1e-5 and abs(one_box["bias"][0] - 0.125) < 1e-5


def test_the_cli_fits_on_a_new_local_cluster(tmp_path):
    data, targets = make_pairs(tmp_path, count=10)
    run = run_cli("train", "--data", str(data), "--targets", str(targets), "--engine", "ray", "--out",
                  str(tmp_path / "run"), "--no-plots")
    assert run.returncode == 0, run.stderr
    assert "pixels in 2 shards on ray" in run.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["exact_fit"]["engine"] == "ray" and metrics["verdict"] == "reproduced"
    wrong = run_cli("train", "--engine", "ray", "--out", str(tmp_path / "x"))
    assert wrong.returncode == 2 and "--targets" in wrong.stderr


def test_a_task_error_comes_back_as_one_line(cluster, tmp_path):
    from kernelnet.identify.shards import shard_sums
    from kernelnet.runtime.cluster.tasks import map_on_ray
    from kernelnet.runtime.errors import KernelnetError

    missing = str(tmp_path / "gone.png")
    with pytest.raises(KernelnetError) as caught:
        map_on_ray(shard_sums, [([(missing, missing)], 3, 1, None)])
    text = str(caught.value)
    assert "\n" not in text and "gone.png" in text and text.startswith("a Ray task failed: ")
