import warnings

import numpy as np
import pytest
from PIL import Image

from kernelnet.learn.data import (BUILTIN_PHOTOS, epoch_rng, load_builtin, load_folder, sample_crops, split_images,
                            usable_for_crops)
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.images import read_gray, to_gray, write_image

LUMA = np.array([0.299, 0.587, 0.114])


def make_rgb(rng, h=20, w=30):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext,lossless", [(".png", True), (".bmp", True), (".tif", True), (".webp", True),
                                          (".jpg", False)])
def test_rgb_formats_to_luma(tmp_path, rng, ext, lossless):
    rgb = make_rgb(rng)
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.fromarray(rgb).save(tmp_path / f"x{ext}", **kwargs)
    gray = read_gray(tmp_path / f"x{ext}")
    assert gray.dtype == np.float32 and gray.shape == (20, 30)
    expected = rgb / 255.0 @ LUMA
    assert np.abs(gray - expected).max() < (1e-6 if lossless else 0.25)


def test_gray_8_and_16_bit(tmp_path, rng):
    g8 = rng.integers(0, 256, (9, 11), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(g16).save(tmp_path / "g16.tif")
    assert np.allclose(read_gray(tmp_path / "g8.png"), g8 / 255.0, atol=1e-7)
    assert np.allclose(read_gray(tmp_path / "g16.png"), g16 / 65535.0, atol=1e-7)
    assert np.allclose(read_gray(tmp_path / "g16.tif"), g16 / 65535.0, atol=1e-7)


def test_rgba_palette_and_bilevel(tmp_path, rng):
    rgba = np.dstack([make_rgb(rng), np.full((20, 30), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert np.allclose(read_gray(tmp_path / "a.png"), rgba[..., :3] / 255.0 @ LUMA, atol=1e-6)  # alpha ignored
    pal = Image.fromarray(make_rgb(rng)).convert("P", palette=Image.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    expected = np.asarray(pal.convert("RGB")) / 255.0 @ LUMA
    assert np.allclose(read_gray(tmp_path / "p.png"), expected, atol=1e-6)
    Image.fromarray(rng.random((5, 6)) > 0.5).save(tmp_path / "b.png")
    assert set(np.unique(read_gray(tmp_path / "b.png"))) <= {0.0, 1.0}


def test_float_and_bool_arrays():
    assert to_gray(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    assert to_gray(np.array([[2.0, -1.0]])).tolist() == [[1.0, 0.0]]


def test_folder_recursive_skips_unreadable(tmp_path, rng):
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(make_rgb(rng)).save(tmp_path / "a" / "one.png")
    Image.fromarray(make_rgb(rng)).save(tmp_path / "a" / "b" / "two.jpg")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        images = load_folder(tmp_path)
    assert sorted(images) == ["a/b/two.jpg", "a/one.png"]


def test_empty_or_missing_folder_is_clear_error(tmp_path):
    with pytest.raises(KernelnetError, match="no usable image"):
        load_folder(tmp_path)
    with pytest.raises(KernelnetError, match="does not exist"):
        load_folder(tmp_path / "missing")


def test_builtin_photos_ship_offline():
    images = load_builtin()
    assert set(images) == set(BUILTIN_PHOTOS)
    for im in images.values():
        assert im.dtype == np.float32 and im.ndim == 2 and 0.0 <= im.min() and im.max() <= 1.0


def test_split_is_by_source_and_deterministic():
    images = {f"img{i}": np.zeros((4, 4), np.float32) for i in range(20)}
    a, b = split_images(images), split_images(dict(reversed(list(images.items()))))
    assert (sorted(a.train), sorted(a.val), sorted(a.test)) == (sorted(b.train), sorted(b.val), sorted(b.test))
    assert not (set(a.train) & set(a.test)) and not (set(a.train) & set(a.val)) and not (set(a.val) & set(a.test))
    assert len(a.train) + len(a.val) + len(a.test) == 20 and len(a.test) >= 1 and len(a.val) >= 1
    with warnings.catch_warnings(record=True):
        tiny = split_images({"x": np.zeros((4, 4))})
    assert list(tiny.train) == list(tiny.test) == ["x"]


def test_crops_reproducible_and_in_bounds(rng):
    images = usable_for_crops({"a": rng.random((70, 90)).astype(np.float32), "tiny": np.zeros((8, 8))}, 64)
    assert len(images) == 1
    c1 = sample_crops(images, 5, 64, epoch_rng(0, 3))
    c2 = sample_crops(images, 5, 64, epoch_rng(0, 3))
    assert c1.shape == (5, 1, 64, 64) and np.array_equal(c1, c2)
    assert not np.array_equal(c1, sample_crops(images, 5, 64, epoch_rng(0, 4)))
    with pytest.raises(KernelnetError, match="smaller crop"):
        usable_for_crops({"tiny": np.zeros((8, 8))}, 64)


def test_write_image_formats(tmp_path, rng):
    data = rng.random((5, 7)).astype(np.float32) * 3
    write_image(tmp_path / "o.npy", data)
    assert np.array_equal(np.load(tmp_path / "o.npy"), data)
    write_image(tmp_path / "o.tif", data)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.tif")), data)
    scale = write_image(tmp_path / "o.png", data, bits=16)
    back = np.asarray(Image.open(tmp_path / "o.png")).astype(np.float64) / 65535 / scale
    assert np.abs(back - data).max() < 1e-4 * data.max()
