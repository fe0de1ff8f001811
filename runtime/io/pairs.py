"""The user's own pairs: photos (``--data IN``) and the same photos after a black-box filter (``--targets OUT``).

Pairs are matched by relative path and stem (extensions may differ), recursively. Targets keep their encoding:
8- and 16-bit PNG / TIFF are integer levels, float TIFF and ``.npy`` keep their sign and range (nothing is
clipped), gray or RGB. Inputs become float in [0, 1] (8-bit / 255, 16-bit / 65535). An RGB pair is three gray
pairs, one per channel (the channels are filtered independently). Every file's encoding is read from its header
and checked against the others before anything is decoded (:mod:`kernelnet.runtime.io.pair_files`); decoded pairs
are kept up to a budget, and passes read them in row strips. The split is by source file, so every file lies in
one split. Numpy + Pillow only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.images import IMAGE_SUFFIXES, LUMA
from kernelnet.runtime.io.pair_files import TargetEncoding, encoding_of, probe_encoding, read_raw

__all__ = ["Pair", "PairSet", "Strip", "TargetEncoding", "encoding_of", "load_pairs", "match_pairs", "planes",
           "probe_encoding", "read_raw"]

SUFFIXES = (*IMAGE_SUFFIXES, ".npy")


@dataclass(frozen=True)
class Pair:
    """One matched pair: ``name`` (relative path without suffix), the input file and the target file."""

    name: str
    source: Path
    target: Path


def _files(root: Path) -> dict[str, Path]:
    from kernelnet.runtime.io.images import walk_files

    found: dict[str, Path] = {}
    for path in walk_files(root, SUFFIXES):
        key = path.relative_to(root).with_suffix("").as_posix()
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise KernelnetError(f"{os.fsencode(path)!r}: file names must be UTF-8 (rename it)") from None
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


def _agreeing(found: dict[TargetEncoding, Path], what: str) -> TargetEncoding:
    """The one encoding a set of files shares, or one line naming two that differ."""
    if len(found) > 1:
        (a, pa), (b, pb) = list(found.items())[:2]
        raise KernelnetError(f"{what} mix encodings: {pa} is {a.dtype} x{a.channels} {a.format}, {pb} is "
                             f"{b.dtype} x{b.channels} {b.format}")
    return next(iter(found))


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


STRIP_ROWS, STRIP_HALO = 512, 16
"""Rows per strip of :meth:`PairSet.iter_strips`, and its default context (≥ the half-width of any filter)."""


@dataclass(frozen=True)
class Strip:
    """Rows of one plane: ``x`` / ``y`` (float64) hold image rows [row0, row0 + len(x)) of a plane ``height`` rows
    high; the strip owns rows ``own`` of them (the rest is context)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    own: slice
    row0: int
    height: int

    def image_rows(self) -> np.ndarray:
        """The image row of each owned row."""
        return np.arange(self.own.start, self.own.stop) + self.row0


CACHE_BYTES = 1 << 29
"""Decoded files a :class:`PairSet` keeps (512 MiB of their stored values): a corpus of small pairs is decoded once
for all the passes over it; beyond the budget, files are decoded when used."""


@dataclass
class DecodedPairs:
    """Pairs decoded so far, as stored, up to ``budget`` bytes."""

    budget: int = CACHE_BYTES
    held: int = 0
    files: dict[Pair, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def keep(self, pair: Pair, source: np.ndarray, target: np.ndarray) -> None:
        if self.held + source.nbytes + target.nbytes <= self.budget:
            self.files[pair] = (source, target)
            self.held += source.nbytes + target.nbytes


@dataclass(frozen=True)
class PairSet:
    """Matched pairs, their common target encoding, the inputs' common dtype, and the split (by source file).
    Decoded pairs are kept up to ``CACHE_BYTES``."""

    pairs: list[Pair]
    encoding: TargetEncoding
    train: list[Pair]
    test: list[Pair]
    input_dtype: str = "uint8"
    cache: DecodedPairs = field(default_factory=DecodedPairs, compare=False, repr=False)

    def raw(self, pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """(input, target) as stored (:func:`read_raw`), checked against the set's encodings; decoded once while
        the cache has room."""
        if pair in self.cache.files:
            return self.cache.files[pair]
        source, target = read_raw(pair.source), read_raw(pair.target)
        if encoding_of(pair.target, target) != self.encoding or str(source.dtype) != self.input_dtype:
            raise KernelnetError(f"{pair.target} or its input decodes to another encoding than its header said "
                                 f"({target.dtype}, input {source.dtype}): the pairs must share one")
        if source.shape[:2] != target.shape[:2]:
            raise KernelnetError(f"{pair.target} is {target.shape[1]}x{target.shape[0]} but its input "
                                 f"{pair.source} is {source.shape[1]}x{source.shape[0]}")
        self.cache.keep(pair, source, target)
        return source, target

    def spread(self, pairs: list[Pair]) -> list[Pair]:
        """``pairs`` in a fixed pseudo-random order: a pass that stops once it has seen enough pixels sees pairs
        from the whole corpus, not its first folder."""
        return sorted(pairs, key=lambda p: _bucket("spread/" + p.name))

    @property
    def input_levels(self) -> float | None:
        """255 or 65535 for 8- or 16-bit inputs (their levels are what integer black boxes compute with)."""
        return {"uint8": 255.0, "uint16": 65535.0}.get(self.input_dtype)

    def held_out(self) -> PairSet:
        """The test pairs as a set of their own (all pairs when nothing is held out)."""
        return PairSet(self.test or self.pairs, self.encoding, self.train, self.test, self.input_dtype, self.cache)

    def iter_planes(self, pairs: list[Pair]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """(name, x, y) per pair and channel, float64, one pair's planes at a time."""
        for pair in pairs:
            for x, y in planes(*self.raw(pair), self.encoding.channels):
                yield pair.name, x, y

    def iter_strips(self, pairs: list[Pair], halo: int = STRIP_HALO) -> Iterator[Strip]:
        """Each pair's planes in strips of ``STRIP_ROWS`` rows with ``halo`` rows of context above and below (as
        many as the image has), float64 one strip at a time: a 10000² pair costs its stored values plus a few
        strips, not a float64 copy of each plane and of every prediction. A filter of half-width ≤ ``halo``
        evaluated on ``x`` (its border rule at the cut edges) is exact on the strip's own rows."""
        for pair in pairs:
            source, target = self.raw(pair)
            height = source.shape[0]
            for start in range(0, height, STRIP_ROWS):
                stop = min(height, start + STRIP_ROWS)
                lo, hi = max(0, start - halo), min(height, stop + halo)
                for x, y in planes(source[lo:hi], target[lo:hi], self.encoding.channels):
                    yield Strip(pair.name, x, y, slice(start - lo, stop - lo), lo, height)


def _bucket(name: str) -> float:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def load_pairs(data: str | os.PathLike[str], targets: str | os.PathLike[str],
               test_fraction: float = 0.15) -> PairSet:
    """Match, check the targets share one encoding, and split by source file (at least one pair held out when
    there are two or more)."""
    pairs = match_pairs(data, targets)  # (an empty data folder is reported as such by match_pairs)
    encodings: dict[TargetEncoding, Path] = {}
    inputs: dict[TargetEncoding, Path] = {}
    for pair in pairs:  # headers only: every file's encoding checked before any is decoded
        encodings.setdefault(probe_encoding(pair.target), pair.target)
        found = probe_encoding(pair.source)
        inputs.setdefault(TargetEncoding("", found.dtype, found.channels), pair.source)
    encoding = _agreeing(encodings, "targets")
    source = _agreeing(inputs, "inputs")  # mixed 8/16-bit inputs: the grid and rounding would depend on file order
    test = [p for p in pairs if _bucket(p.name) < test_fraction]
    if not test and len(pairs) > 1:
        test = [min(pairs, key=lambda p: _bucket(p.name))]
    held = set(test)
    train = [p for p in pairs if p not in held]
    return PairSet(pairs, encoding, train or pairs, test, source.dtype)
