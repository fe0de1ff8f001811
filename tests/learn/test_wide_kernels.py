"""Kernels wider than 15×15 from pairs: SciPy Gaussians whose support (truncate · σ) reaches 17×17 to 31×31 are
identified at their own size and border, and their files are reproduced to float32 resolution."""

from __future__ import annotations

import numpy as np
import pytest

from kernelnet.identify.wide import _columns, fit_wide
from kernelnet.learn.pairs_train import train_pairs
from kernelnet.runtime.io.pairs import load_pairs, read_raw
from tests.black_boxes import make_pairs
from tests.helpers import kn

ndimage = pytest.importorskip("scipy.ndimage")


def gaussian(sigma: float, truncate: float, mode: str):
    return lambda c: ndimage.gaussian_filter(c / 255.0, sigma, truncate=truncate, mode=mode).astype(np.float32)


def test_nested_columns_pick_the_centred_block():
    cols = _columns(17)
    assert cols.size == 17 * 17 + 1 and cols[-1] == 31 * 31
    rows, columns = np.divmod(cols[:-1], 31)
    assert rows.min() == columns.min() == 7 and rows.max() == columns.max() == 23


@pytest.mark.slow
@pytest.mark.parametrize("sigma, truncate, mode, size, border", [
    (4.0, 3.0, "reflect", 25, "symmetric"),
    (2.6, 3.5, "nearest", 19, "replicate"),
])
def test_a_wide_gaussian_is_found_at_its_size_and_reproduced(tmp_path, sigma, truncate, mode, size, border):
    data, targets = make_pairs(tmp_path, gaussian(sigma, truncate, mode), ".npy", count=10, side=96)
    m = train_pairs(data, targets, tmp_path / "run", plots=False).metrics
    assert m["verdict"] == "reproduced", m
    assert (m["identified"]["kernel_size"], m["identified"]["padding"]) == (size, border)
    assert m["heldout_psnr_db"] >= 120
    assert kn("export", tmp_path / "run").exit_code == 0
    res = kn("apply", tmp_path / "run", data, "--out", tmp_path / "applied", "-q")
    assert res.exit_code == 0, res.output
    for src in sorted(targets.rglob("*.npy")):
        want = read_raw(src).astype(np.float64)
        got = read_raw(tmp_path / "applied" / src.relative_to(targets))
        # float32 rounding of a sum of k² positive terms of a unit-sum kernel over inputs in [0, 1]: a few ulp of 1
        assert np.max(np.abs(got - want)) <= size * size * 2.0 ** -24


def test_wide_fits_of_every_size_come_from_one_gram(tmp_path):
    """A 21×21 box of random weights: the 21×21 fit is exact, the smaller nested fits are not, the larger ones
    find zeros outside."""
    rng = np.random.default_rng(3)
    kern = rng.uniform(-1, 1, (21, 21))
    data, targets = make_pairs(tmp_path, lambda c: ndimage.correlate(c / 255.0, kern, mode="constant")
                               .astype(np.float32), ".npy", count=6, side=80)
    pairs = load_pairs(data, targets)
    fits = fit_wide(pairs, None, (19, 21, 23))
    assert fits[21][1] < 1e-5 < fits[19][1]
    w23 = fits[23][0][0, :-1].reshape(23, 23)
    assert np.max(np.abs(w23[1:-1, 1:-1] - kern)) < 1e-4 and np.max(np.abs(w23[0])) < 1e-4


def test_a_user_fixed_wide_size_is_taken(tmp_path):
    data, targets = make_pairs(tmp_path, gaussian(3.0, 3.0, "constant"), ".npy", count=4, side=72)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--kernel-size", "21",
             "--no-plots", "-q")
    assert res.exit_code == 0, res.output
    assert '"kernel_size": 21' in (tmp_path / "run" / "metrics.json").read_text()
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run2", "--kernel-size", "21",
             "--model", "double", "--no-plots", "-q")
    assert res.exit_code == 2 and "sizes 1 to 7" in res.output
