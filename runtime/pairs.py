"""The user's own pairs: photos (``--data IN``) and the same photos after a black-box filter (``--targets OUT``).

Pairs are matched by relative path and stem (extensions may differ), recursively. Targets keep their encoding:
8- and 16-bit PNG / TIFF are integer levels, float TIFF and ``.npy`` keep their sign and range (nothing is
clipped), gray or RGB. Inputs become float in [0, 1] (8-bit / 255, 16-bit / 65535). An RGB pair is three gray
pairs, one per channel (the channels are filtered independently). Nothing holds the corpus: a pair is read when
it is used. The split is by source file, so every file lies in one split. Numpy + Pillow only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.images import IMAGE_SUFFIXES, LUMA

SUFFIXES = (*IMAGE_SUFFIXES, ".npy")
FORMATS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
"""Target file types a model can write back (others are read, and written as PNG)."""


@dataclass(frozen=True)
class TargetEncoding:
    """How the black box's files hold their values: ``format`` (png / tiff / npy), ``dtype`` (uint8 / uint16 /
    float32 / float64, or int16 in ``.npy``), ``channels`` (1 or 3); ``bits`` is 8 or 16 for unsigned levels."""

    format: str
    dtype: str
    channels: int

    @property
    def bits(self) -> int | None:
        return {"uint8": 8, "uint16": 16}.get(self.dtype)

    @property
    def int_range(self) -> tuple[float, float] | None:
        """The range of an integer target's levels (uint8, uint16, int16), ``None`` for floats."""
        return {"uint8": (0.0, 255.0), "uint16": (0.0, 65535.0), "int16": (-32768.0, 32767.0)}.get(self.dtype)

    @property
    def levels(self) -> float | None:
        """The span of an integer target's levels (255, 65535), ``None`` for floats."""
        return None if self.int_range is None else self.int_range[1] - self.int_range[0]

    def to_dict(self) -> dict[str, object]:
        return {"format": self.format, "dtype": self.dtype, "channels": self.channels, "bits": self.bits}


@dataclass(frozen=True)
class Pair:
    """One matched pair: ``name`` (relative path without suffix), the input file and the target file."""

    name: str
    source: Path
    target: Path


def _files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            key = path.relative_to(root).with_suffix("").as_posix()
            if key in found:
                raise KernelnetError(f"{found[key]} and {path} have the same name: pairs are matched by stem")
            found[key] = path
    return found


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def match_pairs(data: str | os.PathLike[str], targets: str | os.PathLike[str]) -> list[Pair]:
    """Every input below ``data`` with its target below ``targets`` (same relative path and stem)."""
    roots = Path(data), Path(targets)
    for root, what in zip(roots, ("data", "targets")):
        if not root.is_dir():
            raise KernelnetError(f"{what} folder {root} does not exist or is not a folder")
    inputs, outputs = _files(roots[0]), _files(roots[1])
    if not inputs:
        raise KernelnetError(f"no images or .npy files in data folder {roots[0]}")
    lonely_in = sorted(set(inputs) - set(outputs))
    lonely_out = sorted(set(outputs) - set(inputs))
    if lonely_in:
        raise KernelnetError(f"{len(lonely_in)} input(s) have no target in {roots[1]} (first: {_listing(lonely_in)})")
    if lonely_out:
        raise KernelnetError(f"{len(lonely_out)} target(s) have no input in {roots[0]} (first: {_listing(lonely_out)})")
    if not inputs:
        raise KernelnetError(f"no images or .npy files in {roots[0]}")
    return [Pair(name, inputs[name], outputs[name]) for name in sorted(inputs)]


def read_raw(path: Path) -> np.ndarray:
    """A file's pixels as stored: (H, W) or (H, W, 3) uint8 / uint16 / float32 / float64."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise KernelnetError(f"cannot read {path}: {exc}") from exc
    else:
        from kernelnet.runtime.images import open_image

        img = open_image(path)
        try:
            if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBA", "LA"):
                img = img.convert("RGB" if img.mode not in ("LA",) else "L")
            arr = np.asarray(img)
        except (OSError, ValueError) as exc:
            raise KernelnetError(f"cannot read image {path}: {exc}") from exc
        if img.mode.startswith("I;16"):
            arr = arr.astype(np.uint16)
        elif img.mode == "I":
            if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
                raise KernelnetError(f"{path}: 32-bit integer pixels beyond 16 bits are not supported")
            arr = arr.astype(np.uint16)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64) or not (
            arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise KernelnetError(f"{path}: expected an HxW or HxWx3 image of uint8, uint16, int16 or float, got "
                             f"{arr.dtype} {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise KernelnetError(f"{path} holds NaN or Inf")
    return arr


def encoding_of(path: Path, arr: np.ndarray) -> TargetEncoding:
    fmt = FORMATS.get(path.suffix.lower(), "png")
    return TargetEncoding(fmt, str(arr.dtype), 3 if arr.ndim == 3 else 1)


def as_unit(arr: np.ndarray) -> np.ndarray:
    """Input pixels → float64 in [0, 1] (8-bit / 255, 16-bit / 65535, float as is)."""
    if arr.dtype == np.uint8:
        return arr / 255.0
    if arr.dtype == np.uint16:
        return arr / 65535.0
    return arr.astype(np.float64)


def planes(source: np.ndarray, target: np.ndarray, channels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input in [0, 1], target values) per filtered channel, float64 (H, W) each."""
    x, y = as_unit(source), target.astype(np.float64)
    if channels == 3:
        if x.ndim != 3:
            x = np.repeat(x[..., None], 3, axis=2)
        return [(x[..., c], y[..., c]) for c in range(3)]
    if x.ndim == 3:
        x = x @ LUMA
    return [(x, y if y.ndim == 2 else y @ LUMA)]


@dataclass(frozen=True)
class PairSet:
    """Matched pairs, their common target encoding, and the split (by source file)."""

    pairs: list[Pair]
    encoding: TargetEncoding
    train: list[Pair]
    test: list[Pair]

    def held_out(self) -> PairSet:
        """The test pairs as a set of their own (all pairs when nothing is held out)."""
        return PairSet(self.test or self.pairs, self.encoding, self.train, self.test)

    def iter_planes(self, pairs: list[Pair]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, x, y) per pair and channel, one file pair in memory at a time."""
        for pair in pairs:
            source, target = read_raw(pair.source), read_raw(pair.target)
            if source.shape[:2] != target.shape[:2]:
                raise KernelnetError(f"{pair.target} is {target.shape[1]}x{target.shape[0]} but its input "
                                     f"{pair.source} is {source.shape[1]}x{source.shape[0]}")
            for x, y in planes(source, target, self.encoding.channels):
                yield pair.name, x, y


def _bucket(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def load_pairs(data: str | os.PathLike[str], targets: str | os.PathLike[str],
               test_fraction: float = 0.15) -> PairSet:
    """Match, check the targets share one encoding, and split by source file (at least one pair held out when
    there are two or more)."""
    pairs = match_pairs(data, targets)  # (an empty data folder is reported as such by match_pairs)
    encodings = {}
    for pair in pairs:  # headers only where Pillow allows; .npy are memory-light to open
        arr = read_raw(pair.target)
        encodings.setdefault(encoding_of(pair.target, arr), pair.target)
    if len(encodings) > 1:
        (a, pa), (b, pb) = list(encodings.items())[:2]
        raise KernelnetError(f"targets mix encodings: {pa} is {a.dtype} x{a.channels} {a.format}, {pb} is "
                             f"{b.dtype} x{b.channels} {b.format}")
    encoding = next(iter(encodings))
    test = [p for p in pairs if _bucket(p.name) < test_fraction]
    if not test and len(pairs) > 1:
        test = [min(pairs, key=lambda p: _bucket(p.name))]
    train = [p for p in pairs if p not in test]
    return PairSet(pairs, encoding, train or pairs, test)
