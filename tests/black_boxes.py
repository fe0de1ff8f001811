"""Black boxes that nobody here wrote — OpenCV, Pillow, scikit-image and SciPy filters — and the pairs they make
from crops of the photos that ship in scikit-image, saved as users have them (8/16-bit PNG, float TIFF, .npy,
gray or RGB). Shared by the pairs tests and the model-zoo test."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")


def photos(count: int = 8, side: int = 72, rgb: bool = False) -> list[np.ndarray]:
    import skimage.data as data

    names = ["astronaut", "chelsea", "coffee"] if rgb else ["camera", "coins", "moon", "page", "text", "brick"]
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        img = getattr(data, names[i % len(names)])()
        img = img[..., :3] if rgb else (img[..., :3] @ [0.299, 0.587, 0.114]).astype(np.uint8) if img.ndim == 3 else img
        y, x = rng.integers(0, img.shape[0] - side), rng.integers(0, img.shape[1] - side)
        out.append(np.ascontiguousarray(img[y:y + side, x:x + side]))
    return out


def make_pairs(root, box, suffix=".png", rgb=False, count=8, side=72):
    (root / "in" / "sub").mkdir(parents=True)
    (root / "out" / "sub").mkdir(parents=True)
    for i, img in enumerate(photos(count, side, rgb)):
        rel = f"sub/{i:02d}" if i % 2 else f"{i:02d}"  # nested folders are matched by relative path
        Image.fromarray(img).save(root / "in" / f"{rel}.png")
        out = box(img)
        if suffix == ".npy":
            np.save(root / "out" / f"{rel}.npy", out)
        else:
            Image.fromarray(out).save(root / "out" / f"{rel}{suffix}")
    return root / "in", root / "out"


SOBEL = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
pil = lambda f: lambda c: np.asarray(Image.fromarray(c).filter(f))  # noqa: E731
BOXES = {
    # name: (black box, suffix, rgb, expected identified subset, verdict)
    "opencv-abs-sobel-8bit": (lambda c: cv2.convertScaleAbs(cv2.filter2D(c, cv2.CV_16S, SOBEL)), ".png", False,
                              {"model": "single", "normalize": True, "kernel_size": 3, "padding": "reflect",
                               "clip": [0.0, 255.0]}),
    "opencv-scale-offset-k1": (lambda c: cv2.convertScaleAbs(c, alpha=0.5, beta=10), ".png", False,
                               {"model": "single", "kernel_size": 1}),
    "opencv-box5-16bit": (lambda c: cv2.blur(c.astype(np.uint16) * 257, (5, 5), borderType=cv2.BORDER_REFLECT),
                          ".png", False, {"kernel_size": 5, "padding": "symmetric", "clip": [0.0, 65535.0]}),
    "opencv-magnitude-npy": (lambda c: cv2.magnitude(cv2.Sobel(c / 255.0, cv2.CV_64F, 1, 0),
                                                     cv2.Sobel(c / 255.0, cv2.CV_64F, 0, 1)).astype(np.float32),
                             ".npy", False, {"model": "double", "kernel_size": 3, "padding": "reflect"}),
    # integer gradient magnitudes (ffmpeg's sobel computes so): truncated, and half of Scharr's, rounded
    "opencv-sobel-magnitude-truncated": (lambda c: np.clip(np.trunc(np.hypot(cv2.Sobel(c, cv2.CV_64F, 1, 0),
                                                                              cv2.Sobel(c, cv2.CV_64F, 0, 1))),
                                                           0, 255).astype(np.uint8), ".png", False,
                                         {"model": "double", "kernel_size": 3, "padding": "reflect",
                                          "rounding": "toward_zero"}),
    "opencv-half-scharr-magnitude-rounded": (lambda c: np.clip(np.round(0.5 * np.hypot(
        cv2.Scharr(c, cv2.CV_64F, 1, 0), cv2.Scharr(c, cv2.CV_64F, 0, 1))), 0, 255).astype(np.uint8), ".png", False,
        {"model": "double", "kernel_size": 3}),
    "pillow-sharpen-ties": (pil(ImageFilter.SHARPEN), ".png", False,
                            {"kernel_size": 3, "padding": "copy", "rounding": "half_up"}),
    "pillow-find-edges-clipped": (pil(ImageFilter.FIND_EDGES), ".png", False, {"padding": "copy"}),
    "pillow-emboss-rgb-offset": (pil(ImageFilter.EMBOSS), ".png", True, {"padding": "copy"}),
    "scipy-gaussian-float-tiff": (lambda c: ndimage.gaussian_filter(c / 255.0, 1.0).astype(np.float32), ".tif", False,
                                  {"kernel_size": 9, "padding": "symmetric", "clip": None, "rounding": None}),
    "opencv-erode-cross5-rank": (lambda c: cv2.erode(c, cv2.getStructuringElement(cv2.MORPH_CROSS, (5, 5))), ".png",
                                 False, {"model": "rank", "kernel_size": 5, "rank": "min", "footprint": "cross"}),
    "skimage-laplace-signed": (lambda c: __import__("skimage.filters").filters.laplace(c / 255.0).astype(np.float32),
                               ".tif", False, {"kernel_size": 3, "model": "single", "normalize": False}),
}
