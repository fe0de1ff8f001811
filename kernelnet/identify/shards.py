"""The exact fit of a one-kernel linear program of float targets over every training pixel, from normal equations
summed shard by shard: in this process (``kernelnet train``), or as Ray tasks on a cluster (``--engine ray``) for
pairs that one machine should not read alone. Numpy only.

Each shard (``SHARD_PAIRS`` training pairs, by name) gives the Gram matrix ``DᵀD`` (k² + 1 square, the last
column the bias), ``Dᵀy`` and its pixel count over the pixels whose k×k window lies inside the image and whose
target is not clipped; the driver adds them in shard order and solves once. A shard's sums do not depend on where
they are computed, so the kernels are the same on one box and on a cluster (to float64 rounding: bit-equal here).

The held-out figures are sums too (:class:`~kernelnet.runtime.checks.verify_pairs.ScoreSums`):
:func:`score_over_shards` scores the held-out pairs shard by shard, so the driver reads only the bounded samples
identification takes.

    >>> spec, facts = fit_over_shards(pairs, spec, engine="ray")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.checks.verify_pairs import PairScore, ScoreSums, score_sums
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.pairs import Pair, PairSet, planes
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import FilterSpec

SHARD_PAIRS = 8
MAX_SHARD_K = 15
"""Kernels up to this side are fitted on every pixel (226 unknowns); wider ones keep the sampled fit."""
ROWS_PER_STEP = 32
"""Image rows per design-matrix block (a few MB for a 15×15 window on a 1080p plane)."""


def applies(spec: FilterSpec, pairs: PairSet) -> str | None:
    """Why the shard fit does not apply to ``spec`` (``None``: it does): one raw linear kernel of at most
    ``MAX_SHARD_K``² taps fitted to float targets. Integer targets are not least-squares problems: their kernels
    come from the levels they write (a grid, or taps refined against the rounding intervals)."""
    if spec.is_rank or spec.after or spec.decode is not None or spec.combine != "raw" or spec.kernels.shape[0] != 1:
        return "the program is not one linear kernel"
    if pairs.encoding.levels is not None:
        return "integer targets: the kernel is fitted to the levels it writes"
    if spec.kernel_size > MAX_SHARD_K:
        return f"a kernel wider than {MAX_SHARD_K}x{MAX_SHARD_K} is fitted on a sample"
    return None


def shard_sums(pairs: list[tuple[str, str]], k: int, channels: int, clip: tuple[float, float] | None,
               read: Any = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(DᵀD, Dᵀy, n) of one shard: the (source, target) files decoded as the pair loader does (inputs in [0, 1],
    targets in their units), every in-image k×k window of an unclipped target pixel. ``read(source, target)``
    gives the stored arrays (default: decode the files; on one box the pair set's decoded cache)."""
    from kernelnet.runtime.io.pair_files import read_raw

    if read is None:
        def read(source_path: str, target_path: str) -> tuple[np.ndarray, np.ndarray]:
            return read_raw(Path(source_path)), read_raw(Path(target_path))

    size = k * k + 1
    gram, rhs, count = np.zeros((size, size)), np.zeros(size), 0
    r = k // 2
    for source_path, target_path in pairs:
        source, target = read(source_path, target_path)
        if source.shape[:2] != target.shape[:2]:
            raise KernelnetError(f"{target_path} and its input {source_path} differ in size")
        for x, y in planes(source, target, channels):
            height, width = x.shape
            if height < k or width < k:
                continue
            windows = np.lib.stride_tricks.sliding_window_view(x, (k, k))
            for top in range(r, height - r, ROWS_PER_STEP):
                rows = np.arange(top, min(top + ROWS_PER_STEP, height - r))
                targets = y[rows, r:width - r].ravel()
                keep = np.ones(targets.shape, bool) if clip is None else (targets > clip[0]) & (targets < clip[1])
                d = windows[rows - r].reshape(-1, k * k)[keep]
                d = np.concatenate([d, np.ones((len(d), 1))], axis=1)
                gram += d.T @ d
                rhs += d.T @ targets[keep]
                count += len(d)
    return gram, rhs, count


def shards_of(pairs: PairSet) -> list[list[tuple[str, str]]]:
    """The training pairs, by name, in shards of ``SHARD_PAIRS``: the same shards wherever they are summed."""
    train = sorted(pairs.train, key=lambda p: p.name)
    files = [(str(p.source), str(p.target)) for p in train]
    return [files[i:i + SHARD_PAIRS] for i in range(0, len(files), SHARD_PAIRS)]


def _map(fn: Any, args: list[tuple[Any, ...]], engine: str, address: str | None, workers: int | None) -> list[Any]:
    if engine == "ray":
        from kernelnet.runtime.cluster.tasks import map_on_ray

        return map_on_ray(fn, args, address, workers)
    return [fn(*a) for a in args]


def shard_score(shard: list[Pair], pairs: PairSet, spec: FilterSpec) -> ScoreSums:
    """The held-out sums of ``spec`` (float64 reference) on one shard of ``pairs``' pairs."""
    alone = PairSet(shard, pairs.encoding, shard, [], pairs.input_dtype)  # no decoded cache travels with it
    return score_sums(alone, shard, lambda x: apply_spec(x, spec))


def score_over_shards(pairs: PairSet, spec: FilterSpec, engine: str = "local", address: str | None = None,
                      workers: int | None = None) -> PairScore:
    """:func:`~kernelnet.runtime.checks.verify_pairs.score_pairs` of ``spec`` on the held-out pairs (all pairs
    when none is held out), shard by shard."""
    which = sorted(pairs.test or pairs.train, key=lambda p: p.name)
    bare = PairSet([], pairs.encoding, [], [], pairs.input_dtype)
    args = [(which[i:i + SHARD_PAIRS], bare, spec) for i in range(0, len(which), SHARD_PAIRS)]
    total = ScoreSums()
    for part in _map(shard_score, args, engine, address, workers):  # in shard order
        total = total.add(part)
    return total.score(pairs.encoding.levels)


def fit_over_shards(pairs: PairSet, spec: FilterSpec, engine: str = "local", address: str | None = None,
                    workers: int | None = None) -> tuple[FilterSpec, dict[str, Any]]:
    """``spec`` with its kernel and bias fitted on every training pixel (normal equations summed over shards, in
    this process for ``local``, as Ray tasks for ``ray``), and the facts of the fit (engine, shards, pixels)."""
    k = spec.kernel_size
    clip = spec.output.clip
    args = [(shard, k, pairs.encoding.channels, clip) for shard in shards_of(pairs)]
    if engine == "ray":
        results = _map(shard_sums, args, engine, address, workers)
    else:  # the same sums from the pairs this process has decoded already (no second decode of each file)
        by_files = {(str(p.source), str(p.target)): p for p in pairs.train}
        results = [shard_sums(*a, read=lambda s, t: pairs.raw(by_files[(s, t)])) for a in args]
    gram, rhs = np.zeros((k * k + 1,) * 2), np.zeros(k * k + 1)
    count = 0
    for g, b, n in results:  # in shard order: the same sum on every engine
        gram += g
        rhs += b
        count += n
    if count <= k * k:
        raise KernelnetError(f"too few usable pixels for a {k}x{k} fit over the shards ({count})")
    w = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    fitted = spec.replace(kernels=w[:-1].reshape(1, k, k), bias=w[-1:].copy())
    return fitted, {"engine": engine, "shards": len(args), "pixels": count}
