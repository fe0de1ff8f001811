"""One file of ``kernelnet apply``: decode, filter, encode into the job's staging name (torch-free).

8- and 16-bit gray frames (and 8-bit RGB planes) reach the model as the integers they are stored as — the native
stencil converts each row as it reads it, bit-equal to converting the frame first — and a model with an integer
output stage has its levels written by the stencil. Files are written straight to where the job's result waits —
an unnamed file or the job's staging name (placing them all at once is
:func:`kernelnet.runtime.apply.staged_outputs`' work).

    >>> line = run_job(load("model.onnx"), Job(Path("in.png"), Path("out.png")), None, None)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    from kernelnet.runtime.apply import Job
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.io.npyio import MappedNpy

OUT_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}


def png_mapping(y: np.ndarray, scale: str) -> tuple[float, float, str]:
    """``(factor, shift, text)``: the PNG value in [0, 1] is clip(shift + y × factor), and ``text`` says so.
    ``auto``: y / max for non-negative outputs (× 1 if max ≤ 1), 0.5 + y / (2 max|y|) for signed ones (zero =
    mid-grey); a number: clip(y × number)."""
    if scale != "auto":
        try:
            factor = float(scale)
        except ValueError:
            raise KernelnetError(f"invalid PNG scale {scale!r}: use auto or a number") from None
        if not (np.isfinite(factor) and 0 < factor <= 1e30):
            raise KernelnetError(f"invalid PNG scale {scale!r}: use a number above 0 (at most 1e30)")
        return factor, 0.0, f"clip(y x {factor:g}, 0, 1)"
    from kernelnet.runtime.io.images import value_range

    lo, hi = value_range(y) if y.size else (0.0, 0.0)
    if lo >= 0:
        factor = 1.0 / hi if hi > 1 else 1.0
        return factor, 0.0, f"clip(y x {factor:.6g}, 0, 1)"
    factor = 0.5 / max(abs(lo), abs(hi))
    return factor, 0.5, f"clip(0.5 + y x {factor:.6g}, 0, 1)"


def _release_pages(*maps: MappedNpy) -> Callable[[int], None]:
    """After each tile: hand the mapped pages back so that RSS stays at a few tiles."""
    def release(_index: int) -> None:
        for mapped in maps:
            mapped.release()

    return release


def run_encoded(model: Model, job: Job, encoding: dict[str, Any], into: Path) -> str:
    """A pair-trained model's output written as its training targets were (levels, bit depth, channels)."""
    from kernelnet.runtime.io.images import read_planes, write_encoded

    rgb = encoding["channels"] == 3
    if job.source.suffix.lower() == ".npy":
        batch = _npy_planes(job.source, rgb)
    else:
        batch = np.ascontiguousarray(read_planes(job.source, encoding["channels"], levels=True)[:, None])
    if len(batch) > 1 and not rgb and OUT_SUFFIXES[job.target.suffix.lower()] != "npy":
        raise KernelnetError(f"{job.source} holds {len(batch)} images: write .npy for batches (PNG/TIFF take one)")
    spec = model.info.spec
    bits = spec.final_output.bits if spec is not None else None
    if bits is not None and encoding["dtype"] == ("uint8" if bits == 8 else "uint16"):
        y = model.levels(batch)[:, 0]  # the stencil writes the levels (others: the graph's, stored as integers)
    else:
        y = model(batch)[:, 0]
    return write_encoded(job.target, np.moveaxis(y, 0, -1) if rgb else y if len(y) > 1 else y[0], encoding["dtype"],
                         into=into)


def _npy_planes(path: Path, rgb: bool) -> np.ndarray:
    """A ``.npy`` input of a pair-trained model as its (N, 1, H, W) planes, with the checks every model's inputs
    get: an HxWx3 image for an RGB model (its three planes), else HxW or NxHxW (a batch)."""
    from kernelnet.runtime.io.inputs import as_batch, check_array
    from kernelnet.runtime.io.npyio import open_npy

    src = open_npy(path)
    try:
        arr = src.array
        if rgb:
            if arr.ndim != 3 or arr.shape[-1] != 3:
                raise KernelnetError(f"{path} has shape {arr.shape}: this model filters RGB images (HxWx3)")
            check_array(arr[..., 0], str(path))  # dtype, size
            return np.ascontiguousarray(np.moveaxis(arr, -1, 0)[:, None])  # read whole: the file is closed below
        batch, _ = as_batch(arr, str(path))
        return np.array(batch, order="C")
    finally:
        src.close()


def run_job(model: Model, job: Job, bits: int | None, scale: str | None,
            encoding: dict[str, Any] | None = None, into: Path | None = None) -> str:
    """Filter ``job.source`` into ``into`` (default ``job.staged``) in the format of ``job.target``; returns the
    one-line description of what was written. A pair-trained model (``encoding``) writes its targets' encoding
    unless a PNG bit depth or scale is asked for."""
    from kernelnet.runtime.io.images import read_levels, write_image
    from kernelnet.runtime.io.inputs import as_batch
    from kernelnet.runtime.io.npyio import create_npy, open_npy

    kind = OUT_SUFFIXES[job.target.suffix.lower()]
    into = into if into is not None else job.staged
    if encoding is not None and bits is None and scale is None:
        return run_encoded(model, job, encoding, into)
    bits, scale = bits or 8, scale or "auto"
    if job.source.suffix.lower() == ".npy":
        src = open_npy(job.source)
        try:
            batch, _ = as_batch(src.array, str(job.source))  # checked here so that errors name the file
            if kind == "npy":  # stream tile by tile between two memory maps: never resident whole
                dst = create_npy(into, src.array.shape, np.float32)
                try:
                    model.apply_to(batch, as_batch(dst.array)[0], after_tile=_release_pages(src, dst))
                finally:
                    dst.close()
                return "float32 .npy (exact)"
            y = model(src.array)
        finally:
            src.close()
    else:
        y = model(read_levels(job.source))
    if kind == "npy":
        write_image(job.target, y, into=into)
        return "float32 .npy (exact)"
    if y.ndim != 2:
        raise KernelnetError(f"{job.source} holds {y.shape[0]} images: write .npy for batches (PNG/TIFF take one)")
    if kind == "tiff":
        write_image(job.target, y, into=into)
        return "float32 TIFF (exact)"
    factor, shift, text = png_mapping(y, scale)
    write_image(job.target, y, bits=bits, scale=factor, shift=shift, into=into)
    return f"{bits}-bit PNG, pixel = round({text} x {2**bits - 1})"
