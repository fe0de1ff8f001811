import numpy as np

from kernelnet.filters import random_kernel, resolve_filter
from kernelnet.metrics import align_kernels, kernel_error, psnr_db, target_kernels


def test_sign_flip_scores_zero_for_abs_only():
    k = resolve_filter("sobel").kernel
    assert kernel_error(-k[None], k, "single", normalize=True) == 0.0
    assert kernel_error(-k[None], k, "single", normalize=False) == 4.0


def test_rotated_or_reflected_pair_scores_zero_for_double():
    k = random_kernel(3, 4)
    pair = target_kernels(k, "double").reshape(2, -1)
    for theta in (0.3, 1.7, np.pi):
        c, s = np.cos(theta), np.sin(theta)
        for rot in (np.array([[c, -s], [s, c]]), np.array([[c, s], [s, -c]])):
            assert kernel_error((rot @ pair).reshape(2, 3, 3), k, "double", False) < 1e-12


def test_wrong_kernel_is_not_hidden_by_alignment():
    k = resolve_filter("sobel").kernel
    assert kernel_error(target_kernels(k.T * 0.5, "double"), k, "double", False) > 0.4


def test_larger_learned_kernel_compares_centered():
    k = resolve_filter("sobel").kernel
    big = np.zeros((1, 5, 5))
    big[0, 1:4, 1:4] = k
    assert kernel_error(big, k, "single", False) == 0.0
    aligned, _ = align_kernels(big, k[None], "single", False)
    assert aligned.shape == (1, 5, 5)


def test_psnr():
    t = np.linspace(0, 1, 100)
    assert psnr_db(t, t) == float("inf")
    assert abs(psnr_db(t + 0.1, t) - 20.0) < 1e-9
