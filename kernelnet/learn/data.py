"""Image sources and crop sampling. Torch-free: batches are numpy arrays (N, 1, crop, crop) float32.

``builtin`` is a set of real photos that ship inside scikit-image (no download); a folder is read recursively.
The train/val/test split is deterministic and *by source image* (a hash of the image's name), so no test
pixel is ever seen in training.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.images import list_images, read_gray, to_gray
from kernelnet.runtime.io.inputs import all_finite, count_nonfinite, nonfinite_error

BUILTIN_PHOTOS = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text",
)
"""Photos in ``skimage.data`` that ship with the wheel (no download needed)."""


@dataclass(frozen=True)
class Split:
    """Named grayscale images (H, W) float32 in [0, 1] for each split."""

    train: dict[str, np.ndarray]
    val: dict[str, np.ndarray]
    test: dict[str, np.ndarray]


def load_builtin() -> dict[str, np.ndarray]:
    """The built-in photos as grayscale float32 images, by name."""
    import skimage.data

    return {name: to_gray(getattr(skimage.data, name)()) for name in BUILTIN_PHOTOS}


def load_folder(folder: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every readable image below ``folder``, keyed by relative path. Unreadable files are counted in one warning;
    an image holding NaN/Inf (float TIFF) is refused with the count, as the runtime refuses such inputs."""
    root = Path(folder)
    if not root.is_dir():
        raise KernelnetError(f"data folder {root} does not exist or is not a folder")
    images: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for path in list_images(root):
        try:
            image = read_gray(path)
        except KernelnetError:
            skipped.append(path.name)
            continue
        if not all_finite(image):
            raise nonfinite_error(count_nonfinite(image), f"image {path}")
        images[str(path.relative_to(root))] = image
    if not images:  # an error only (no warning first): bad input is one line
        unreadable = f" ({len(skipped)} unreadable, e.g. {skipped[0]})" if skipped else ""
        raise KernelnetError(f"no usable image in {root}{unreadable} (looked for PNG, JPEG, BMP, TIFF, WebP, GIF, "
                             "PNM)")
    if skipped:
        warnings.warn(f"skipped {len(skipped)} unreadable image file(s) in {root} (e.g. {skipped[0]})", stacklevel=2)
    return images


def load_source(data: str) -> dict[str, np.ndarray]:
    """``builtin`` or a folder path → named images."""
    return load_builtin() if data == "builtin" else load_folder(data)


def _bucket(name: str) -> float:
    digest = hashlib.sha1(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_images(images: dict[str, np.ndarray], val_fraction: float = 0.15, test_fraction: float = 0.15) -> Split:
    """Deterministic split by source image, ordered by a hash of each name; each split gets ≥ 1 image when ≥ 3."""
    names = sorted(images, key=_bucket)
    n = len(names)
    if n < 3:
        warnings.warn(f"only {n} image(s): train, validation and test use the same images", stacklevel=2)
        return Split(dict(images), dict(images), dict(images))
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    pick = lambda part: {k: images[k] for k in part}  # noqa: E731
    return Split(pick(names[n_test + n_val:]), pick(names[n_test:n_test + n_val]), pick(names[:n_test]))


def usable_for_crops(images: dict[str, np.ndarray], crop: int) -> list[np.ndarray]:
    """Images at least ``crop`` on each side; raise if none."""
    usable = [im for im in images.values() if min(im.shape) >= crop]
    if not usable:
        raise KernelnetError(f"no image is at least {crop}x{crop}: use a smaller crop")
    return usable


def sample_crops(images: list[np.ndarray], count: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random crops (count, 1, crop, crop), image chosen uniformly, then position uniformly."""
    out = np.empty((count, 1, crop, crop), dtype=np.float32)
    which = rng.integers(0, len(images), size=count)
    for i, idx in enumerate(which):
        im = images[idx]
        y = rng.integers(0, im.shape[0] - crop + 1)
        x = rng.integers(0, im.shape[1] - crop + 1)
        out[i, 0] = im[y:y + crop, x:x + crop]
    return out


def epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    """The generator for one epoch: a pure function of (seed, epoch), so a resumed run repeats it exactly."""
    return np.random.default_rng([seed, epoch, stream])
