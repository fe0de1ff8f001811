"""Target filters: named kernels, custom kernels from a string or file. Torch-free (numpy only).

Kernels are cross-correlation kernels (as ``torch.nn.functional.conv2d`` and ``cv2.filter2D``), float64,
square with an odd side. Example::

    >>> resolve_filter("sobel").kernel.tolist()
    [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError


def _binomial(n: int) -> np.ndarray:
    row = np.array([1.0])
    for _ in range(n - 1):
        row = np.convolve(row, [1.0, 1.0])
    return row


def _gaussian(size: int) -> np.ndarray:
    row = _binomial(size)
    k = np.outer(row, row)
    return k / k.sum()


_SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])

NAMED_KERNELS: dict[str, np.ndarray] = {
    "sobel": _SOBEL,
    "sobel-x": _SOBEL,
    "sobel-y": _SOBEL.T.copy(),
    "scharr": np.array([[-3.0, 0.0, 3.0], [-10.0, 0.0, 10.0], [-3.0, 0.0, 3.0]]),
    "prewitt": np.array([[-1.0, 0.0, 1.0]] * 3),
    "laplacian": np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    "gaussian": _gaussian(3),
    "gaussian3": _gaussian(3),
    "gaussian5": _gaussian(5),
    "box": np.full((3, 3), 1.0 / 9.0),
    "box5": np.full((5, 5), 1.0 / 25.0),
    "sharpen": np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]),
    "emboss": np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]),
}
"""Named kernels; ``random`` (uniform(-2, 2), seeded) is made on demand by :func:`random_kernel`."""

FILTER_NAMES = (*NAMED_KERNELS, "random")


@dataclass(frozen=True)
class Filter:
    """A resolved target filter: its name (or spec) and its kernel (k×k float64)."""

    name: str
    kernel: np.ndarray

    @property
    def size(self) -> int:
        return int(self.kernel.shape[0])


def random_kernel(size: int = 3, seed: int = 0) -> np.ndarray:
    """The seed's random target: uniform(-2, 2) entries, reproducible from ``seed``. Shape (size, size)."""
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(size, size))


def check_kernel(kernel: np.ndarray, what: str = "kernel") -> np.ndarray:
    """Validate a kernel (2-D, square, odd side, finite) and return it as float64."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise KernelnetError(f"{what} must be square, got shape {tuple(kernel.shape)}")
    if kernel.shape[0] % 2 == 0 or kernel.shape[0] < 1:
        raise KernelnetError(f"{what} must have an odd side (1, 3, 5, ...), got {kernel.shape[0]}")
    if not np.all(np.isfinite(kernel)):
        raise KernelnetError(f"{what} has non-finite values")
    return kernel


def parse_kernel_string(text: str) -> np.ndarray:
    """Parse ``"1,0,-1;2,0,-2;1,0,-1"`` (rows split by ``;``, values by ``,`` or spaces)."""
    rows = [r for r in text.strip().split(";") if r.strip()]
    try:
        values = [[float(v) for v in row.replace(",", " ").split()] for row in rows]
    except ValueError:
        raise KernelnetError(f"malformed kernel string {text!r}: expected numbers like '1,0,-1;2,0,-2;1,0,-1'") from None
    if not values or len({len(r) for r in values}) != 1:
        raise KernelnetError(f"malformed kernel string {text!r}: rows must have equal lengths")
    return check_kernel(np.array(values), f"kernel {text!r}")


def load_kernel_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a kernel from a ``.npy`` (allow_pickle off) or whitespace/comma separated ``.txt`` file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            kernel = np.load(path, allow_pickle=False)
        else:
            text = path.read_text()
            kernel = np.array([[float(v) for v in line.replace(",", " ").split()]
                               for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")])
    except (OSError, ValueError) as exc:
        raise KernelnetError(f"cannot read kernel file {path}: {exc}") from None
    return check_kernel(kernel, f"kernel file {path}")


def resolve_filter(spec: str, size: int | None = None, seed: int = 0) -> Filter:
    """Turn a filter spec into a :class:`Filter`.

    ``spec`` is a name from :data:`FILTER_NAMES`, ``random`` or ``random:SEED`` (side ``size``, default 3),
    a kernel string ``"a,b,c;d,e,f;g,h,i"`` or the path of a ``.npy``/``.txt`` kernel file.
    """
    key = spec.strip().lower()
    if key in NAMED_KERNELS:
        return Filter(key, NAMED_KERNELS[key].copy())
    if key == "random" or key.startswith("random:"):
        side = 3 if size is None else size
        if side < 1 or side % 2 == 0:
            raise KernelnetError(f"kernel size must be odd and >= 1, got {side}")
        if ":" in key:
            try:
                seed = int(key.split(":", 1)[1])
            except ValueError:
                raise KernelnetError(f"malformed filter {spec!r}: expected random:SEED") from None
        return Filter(f"random:{seed}", random_kernel(side, seed))
    if ";" in spec or "," in spec and not os.path.exists(spec):
        return Filter("custom", parse_kernel_string(spec))
    if os.path.exists(spec):
        return Filter(Path(spec).name, load_kernel_file(spec))
    if spec.strip().lstrip("-").replace(".", "", 1).isdigit():
        return Filter("custom", parse_kernel_string(spec))
    raise KernelnetError(
        f"unknown filter {spec!r}: use one of {', '.join(FILTER_NAMES)}, a kernel string like "
        "'1,0,-1;2,0,-2;1,0,-1' or a .npy/.txt kernel file")
