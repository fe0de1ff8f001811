import numpy as np
import pytest

from kernelnet.runtime.errors import KernelnetError
from kernelnet.filters import FILTER_NAMES, load_kernel_file, parse_kernel_string, random_kernel, resolve_filter
from kernelnet.runtime.reference import apply_filter, correlate


def brute_correlate(image, kernel, mode):
    """Independent per-pixel loop (different code path from the vectorised reference)."""
    k = kernel.shape[0]
    r = k // 2
    h, w = image.shape
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for i in range(k):
                for j in range(k):
                    yy, xx = y + i - r, x + j - r
                    if mode == "zeros":
                        if not (0 <= yy < h and 0 <= xx < w):
                            continue
                    elif mode == "replicate":
                        yy, xx = min(max(yy, 0), h - 1), min(max(xx, 0), w - 1)
                    else:  # reflect without repeating the edge
                        yy = -yy if yy < 0 else (2 * (h - 1) - yy if yy >= h else yy)
                        xx = -xx if xx < 0 else (2 * (w - 1) - xx if xx >= w else xx)
                    acc += kernel[i, j] * image[yy, xx]
            out[y, x] = acc
    return out


@pytest.mark.parametrize("name", FILTER_NAMES)
def test_named_filters_resolve(name):
    f = resolve_filter(name)
    assert f.kernel.ndim == 2 and f.kernel.shape[0] % 2 == 1
    assert np.all(np.isfinite(f.kernel))


def test_sobel_is_correlation_kernel():
    k = resolve_filter("sobel").kernel
    ramp = np.tile(np.arange(7.0), (5, 1))  # intensity grows to the right
    y = correlate(ramp, k)
    assert np.allclose(y[1:-1, 1:-1], 8.0)  # positive response to a rising x gradient
    assert np.array_equal(resolve_filter("sobel-y").kernel, k.T)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
@pytest.mark.parametrize("ksize", [1, 3, 5])
def test_reference_correlate_matches_brute_force(mode, ksize, rng):
    image = rng.random((7, 9))
    kernel = rng.uniform(-2, 2, (ksize, ksize))
    assert np.allclose(correlate(image, kernel, mode), brute_correlate(image, kernel, mode), atol=1e-12)


def test_reference_matches_opencv(rng):
    cv2 = pytest.importorskip("cv2", reason="opencv (bench/dev extra) not installed")
    image = rng.random((31, 17)).astype(np.float32)
    k = resolve_filter("scharr").kernel
    ours = correlate(image, k, "reflect")
    theirs = cv2.filter2D(image.astype(np.float64), -1, k, borderType=cv2.BORDER_REFLECT_101)
    assert np.allclose(ours, theirs, atol=1e-5)


def test_double_target_is_magnitude(rng):
    image = rng.random((6, 8))
    k = resolve_filter("sobel").kernel
    expected = np.sqrt(correlate(image, k) ** 2 + correlate(image, k.T) ** 2)
    assert np.allclose(apply_filter(image, k, "double"), expected)
    assert np.allclose(apply_filter(image, k, "single", normalize=True), np.abs(correlate(image, k)))


def test_random_kernel_seeded_and_uniform():
    a, b = random_kernel(3, 7), random_kernel(3, 7)
    assert np.array_equal(a, b) and not np.array_equal(a, random_kernel(3, 8))
    assert np.all(np.abs(random_kernel(101, 0)) <= 2.0)
    assert resolve_filter("random:5").kernel.tolist() == random_kernel(3, 5).tolist()
    assert resolve_filter("random", size=5, seed=2).kernel.shape == (5, 5)


def test_custom_kernels(tmp_path):
    assert parse_kernel_string("1,0,-1;2,0,-2;1,0,-1").tolist() == [[1, 0, -1], [2, 0, -2], [1, 0, -1]]
    np.save(tmp_path / "k.npy", np.eye(5))
    (tmp_path / "k.txt").write_text("# a comment\n0 1 0\n1 -4 1\n0 1 0\n")
    assert resolve_filter(str(tmp_path / "k.npy")).size == 5
    assert resolve_filter(str(tmp_path / "k.txt")).kernel[1, 1] == -4


@pytest.mark.parametrize("bad", ["1,2;3,4", "1,2,3;4,5", "a,b;c,d", "nonexistent-filter", "1,0;0", ""])
def test_malformed_kernels_are_clear_errors(bad):
    with pytest.raises(KernelnetError):
        resolve_filter(bad)


def test_even_or_bad_kernel_files(tmp_path):
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    (tmp_path / "bad.txt").write_text("1 2 x\n")
    for name in ("even.npy", "bad.txt"):
        with pytest.raises(KernelnetError):
            load_kernel_file(tmp_path / name)
