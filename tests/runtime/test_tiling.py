"""Tiling: a stitched result equals a whole-image run (zeros/reflect/replicate, k = 3 and 5, odd sizes, tiny tiles)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelnet.runtime import load
from kernelnet.runtime.io.npyio import create_npy, open_npy
from kernelnet.runtime.reference import apply_kernels, correlate
from kernelnet.runtime.tiling import DEFAULT_BUDGET_BYTES, auto_tile, fit_limits, plan_tiles, run_tiled, split_axis
from tests.helpers import exported, make_onnx

PADDINGS = ("zeros", "reflect", "replicate")


@pytest.mark.parametrize("length,core,halo", [(1, 1, 1), (7, 1, 2), (13, 5, 1), (100, 7, 3), (5, 9, 2)])
def test_split_axis_covers_once_with_clipped_halo(length, core, halo):
    pieces = split_axis(length, core, halo)
    covered = np.zeros(length, int)
    for out, src, crop in pieces:
        covered[out] += 1
        assert 1 <= out.stop - out.start <= core
        assert src.start == max(0, out.start - halo) and src.stop == min(length, out.stop + halo)
        assert crop.start == out.start - src.start and crop.stop - crop.start == out.stop - out.start
        assert src.stop - src.start > min(halo, length - 1)  # reflect needs more than the halo at the edges
    assert (covered == 1).all()


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("tile", [(1, 1), (2, 3), (1, 0), (0, 1), (7, 4), (64, 64)])
def test_numpy_tiles_equal_whole_image(padding, k, tile, rng):
    kernel = rng.uniform(-2, 2, (k, k))
    x = rng.random((2, 1, 17, 13))
    whole = correlate(x, kernel, padding)
    out = np.empty_like(whole)
    run_tiled(lambda t: correlate(t, kernel, padding), x, out, plan_tiles(17, 13, k // 2, tile))
    assert np.array_equal(out, whole)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), th=st.integers(0, 12), tw=st.integers(0, 12),
       k=st.sampled_from([1, 3, 5, 7]), padding=st.sampled_from(PADDINGS), seed=st.integers(0, 2**16))
def test_tiles_equal_whole_image_property(h, w, th, tw, k, padding, seed):
    if padding == "reflect" and min(h, w) <= k // 2:
        return  # the border itself is undefined there (the model refuses such inputs)
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(k, k))
    x = rng.random((1, 1, h, w))
    out = np.empty_like(x)
    run_tiled(lambda t: correlate(t, kernel, padding), x, out, plan_tiles(h, w, k // 2, (th, tw)))
    assert np.array_equal(out, correlate(x, kernel, padding))


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("k", [3, 5])
def test_onnxruntime_tiles_equal_whole_image(tmp_path, padding, k, rng):
    kernels = rng.uniform(-2, 2, (2, k, k))  # the double (magnitude) graph
    path = make_onnx(tmp_path / "m.onnx", kernels, padding=padding)
    x = rng.random((2, 1, 29, 23), dtype=np.float32)
    whole = load(path, tile=0)(x)
    assert np.abs(whole - apply_kernels(x.astype(np.float64), kernels, padding=padding)).max() < 1e-4
    for tile in [1, 2, (3, 5), (4, 0), (0, 3), 11]:
        assert np.array_equal(load(path, tile=tile)(x), whole), tile


@pytest.mark.parametrize("variant", ["single", "double", "reflect5"])
def test_real_exports_tile_exactly(variant, rng):
    x = rng.random((1, 37, 41), dtype=np.float32)
    whole = load(exported(variant), tile=0)(x)
    for tile in [1, 3, (5, 0), (6, 7)]:
        assert np.array_equal(load(exported(variant), tile=tile)(x), whole), tile


def test_auto_tile_respects_the_budget():
    assert auto_tile(1080, 1920, 3) is None
    rows, cols = auto_tile(12000, 12000, 3)
    assert cols == 0 and (rows + 2) * 12000 * 9 * 4 <= DEFAULT_BUDGET_BYTES
    rows, cols = auto_tile(4, 10**9, 5)  # a strip of any height is too big: square tiles
    assert rows == cols and (rows + 4) ** 2 * 25 * 4 <= DEFAULT_BUDGET_BYTES
    assert auto_tile(100, 100, 3, budget_bytes=4 * 9 * 2000) is not None


def test_auto_tiling_kicks_in_and_matches(rng):
    from kernelnet.runtime.model import Model

    model = load(exported("single"), backend="onnxruntime")
    small = Model(model.runner, budget_bytes=4 * 9 * 3000)  # pretend memory is tiny: 3000-pixel pieces
    x = rng.random((3, 1, 97, 101), dtype=np.float32)
    assert len(small.plan(97, 101)) > 1 and len(model.plan(97, 101)) == 1
    assert np.array_equal(small(x), model(x))


def test_fit_limits_shrinks_to_a_profile():
    assert fit_limits(None, 100, 100, 1, None) is None
    assert fit_limits(None, 100, 100, 1, (128, 128)) is None
    assert fit_limits(None, 300, 100, 1, (128, 128)) == (126, 0)
    assert fit_limits((500, 0), 600, 600, 2, (256, 256)) == (252, 252)
    with pytest.raises(ValueError, match="no room"):
        fit_limits(None, 300, 300, 3, (6, 6))


def test_memory_mapped_in_and_out(tmp_path, rng):
    x = rng.random((3, 45, 38), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    model = load(exported("double"), tile=(7, 0))
    src = open_npy(tmp_path / "x.npy")
    dst = create_npy(tmp_path / "y.npy", x.shape)
    calls = []
    model.apply_to(src.array[:, None], dst.array[:, None],
                   after_tile=lambda i: (calls.append(i), src.release(), dst.release()))
    src.close()
    dst.close()
    assert len(calls) == len(model.plan(45, 38)) == 7
    assert np.array_equal(np.load(tmp_path / "y.npy"), load(exported("double"), tile=0)(x))


def test_mapped_npy_refuses_truncated_files(tmp_path):
    from kernelnet.runtime.errors import KernelnetError

    np.save(tmp_path / "x.npy", np.zeros((100, 100), np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:5000])
    with pytest.raises(KernelnetError, match="shorter than its header"):
        open_npy(tmp_path / "x.npy")
    (tmp_path / "junk.npy").write_bytes(b"nope")
    with pytest.raises(KernelnetError, match="cannot read"):
        open_npy(tmp_path / "junk.npy")
