"""Applying a model to files: inputs expanded (files, folders, globs), outputs planned under their inputs'
relative paths, every result staged and renamed into place only when all succeeded (torch-free).

    >>> jobs = plan_jobs(expand_inputs(("photos/",)), Path("edges/"), None)          # doctest: +SKIP
    >>> with staged_outputs(jobs):                                                  # doctest: +SKIP
    ...     run_all(load("model.onnx"), jobs, bits=8, scale="auto")
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.npyio import MappedNpy

OUT_SUFFIXES = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".npy": "npy"}
FORMAT_SUFFIX = {"png": ".png", "tiff": ".tif", "npy": ".npy"}
PARTIAL_PREFIX = ".kernelnet-partial-"


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    target: Path

    @property
    def staged(self) -> Path:
        """Where the result is written first; renamed to ``target`` once every job has succeeded."""
        from kernelnet.runtime.atomic import owner_tag

        return self.target.with_name(f"{PARTIAL_PREFIX}{self.target.stem}{owner_tag()}part{self.target.suffix}")

    @property
    def parked(self) -> Path:
        """Where an existing ``target`` waits while the new results are renamed in (put back on failure)."""
        from kernelnet.runtime.atomic import owner_tag

        return self.target.with_name(f"{PARTIAL_PREFIX}{self.target.stem}{owner_tag()}old{self.target.suffix}")


def expand_inputs(patterns: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, name relative to its folder/glob root) for every input: files, folders (recursive) and globs."""
    from kernelnet.runtime.images import IMAGE_SUFFIXES

    found: list[tuple[Path, Path]] = []
    suffixes = (*IMAGE_SUFFIXES, ".npy")
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                raise KernelnetError(f"no images or .npy files in folder {path}")
            found.extend((f, f.relative_to(path)) for f in files)
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif glob.has_magic(pattern):
            files = sorted(p for p in _glob(pattern) if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                raise KernelnetError(f"no images or .npy files match {pattern!r}")
            found.extend((f, Path(f.name)) for f in files)
        else:
            raise KernelnetError(f"input {pattern} not found")
    return list(dict.fromkeys(found))


def target_encoding(model: Model) -> dict[str, Any] | None:
    """How the targets of a pair-trained model were stored (``format``, ``dtype``, ``channels``), else ``None``."""
    doc = model.info.fields.get("target_encoding")
    ok = isinstance(doc, dict) and doc.get("format") in ("png", "tiff", "npy") and doc.get("dtype") in (
        "uint8", "uint16", "int16", "float32", "float64") and doc.get("channels") in (1, 3)
    return doc if ok else None


def _glob(pattern: str) -> list[Path]:
    """``pattern`` expanded with pathlib, whose ``**`` does not descend into symbolic links (a link loop ends)."""
    parts = Path(pattern).parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:first]) if first else Path(".")
    rest = "/".join(parts[first:])
    return sorted(root.glob(rest)) if rest else []


def plan_jobs(inputs: list[tuple[Path, Path]], out: Path, fmt: str | None,
              default_format: str | None = None) -> list[Job]:
    """Map inputs to outputs: one input and a file-like output → that file; otherwise the output is a folder, and
    each result keeps its input's relative path and stem, in ``fmt`` (default: ``default_format``, else .npy for
    .npy inputs and PNG for images)."""
    from kernelnet.runtime.images import IMAGE_SUFFIXES

    if out.suffix.lower() in IMAGE_SUFFIXES and out.suffix.lower() not in OUT_SUFFIXES and not out.is_dir():
        raise KernelnetError(f"cannot write {out.suffix} images: the output must be .png, .tif/.tiff, .npy or a folder")
    single_file = len(inputs) == 1 and out.suffix.lower() in OUT_SUFFIXES and not out.is_dir()
    if single_file:
        if fmt is not None and OUT_SUFFIXES[out.suffix.lower()] != fmt:
            raise KernelnetError(f"format {fmt} contradicts the output file {out.name}")
        return [Job(inputs[0][0], out)]
    if out.suffix.lower() in OUT_SUFFIXES and not out.is_dir():
        raise KernelnetError(f"with {len(inputs)} inputs the output must be a folder, not {out}")
    if out.exists() and not out.is_dir():
        raise KernelnetError(f"output {out} exists and is not a folder")
    jobs, seen = [], {}
    for source, rel in inputs:
        kind = fmt or default_format or ("npy" if source.suffix.lower() == ".npy" else "png")
        target = out / rel.with_suffix(FORMAT_SUFFIX[kind])
        if target in seen:
            raise KernelnetError(f"{source} and {seen[target]} would both write {target}")
        seen[target] = source
        jobs.append(Job(source, target))
    return jobs


def png_mapping(y: np.ndarray, scale: str) -> tuple[np.ndarray, str]:
    """Values in [0, 1] for PNG and the stated mapping. ``auto``: y / max for non-negative outputs (× 1 if
    max ≤ 1), 0.5 + y / (2 max|y|) for signed ones (zero = mid-grey); a number: clip(y × number)."""
    lo, hi = (float(y.min()), float(y.max())) if y.size else (0.0, 0.0)
    if scale != "auto":
        try:
            factor = float(scale)
        except ValueError:
            raise KernelnetError(f"invalid PNG scale {scale!r}: use auto or a number") from None
        if not (np.isfinite(factor) and 0 < factor <= 1e30):
            raise KernelnetError(f"invalid PNG scale {scale!r}: use a number above 0 (at most 1e30)")
        return y * np.float32(factor), f"clip(y x {factor:g}, 0, 1)"
    if lo >= 0:
        factor = 1.0 / hi if hi > 1 else 1.0
        return y * np.float32(factor), f"clip(y x {factor:.6g}, 0, 1)"
    factor = 0.5 / max(abs(lo), abs(hi))
    return np.float32(0.5) + y * np.float32(factor), f"clip(0.5 + y x {factor:.6g}, 0, 1)"


def _release_pages(*maps: MappedNpy) -> Callable[[int], None]:
    """After each tile: hand the mapped pages back so that RSS stays at a few tiles."""
    def release(_index: int) -> None:
        for mapped in maps:
            mapped.release()

    return release


def run_encoded(model: Model, job: Job, encoding: dict[str, Any]) -> str:
    """A pair-trained model's output written as its training targets were (levels, bit depth, channels)."""
    from kernelnet.runtime.images import read_planes, write_encoded

    if job.source.suffix.lower() == ".npy":
        src = np.load(job.source, allow_pickle=False)
        planes = np.moveaxis(src, -1, 0) if src.ndim == 3 and src.shape[-1] == encoding["channels"] == 3 else src
        planes = planes.astype(np.float32) / 255.0 if planes.dtype == np.uint8 else planes
    else:
        planes = read_planes(job.source, encoding["channels"])
    if planes.ndim == 2:
        planes = planes[None]
    y = model(np.ascontiguousarray(planes[:, None], dtype=np.float32))[:, 0]
    return write_encoded(job.staged, np.moveaxis(y, 0, -1) if len(y) == 3 else y[0], encoding["dtype"])


def run_job(model: Model, job: Job, bits: int | None, scale: str | None,
            encoding: dict[str, Any] | None = None) -> str:
    """Filter ``job.source`` into ``job.staged``; returns the one-line description of what was written. A
    pair-trained model (``encoding``) writes its targets' encoding unless a PNG bit depth or scale is asked for."""
    from kernelnet.runtime.images import read_gray, write_image
    from kernelnet.runtime.inputs import as_batch
    from kernelnet.runtime.npyio import create_npy, open_npy

    kind = OUT_SUFFIXES[job.target.suffix.lower()]
    if encoding is not None and bits is None and scale is None:
        return run_encoded(model, job, encoding)
    bits, scale = bits or 8, scale or "auto"
    if job.source.suffix.lower() == ".npy":
        src = open_npy(job.source)
        try:
            batch, _ = as_batch(src.array, str(job.source))  # checked here so that errors name the file
            if kind == "npy":  # stream tile by tile between two memory maps: never resident whole
                dst = create_npy(job.staged, src.array.shape, np.float32)
                try:
                    model.apply_to(batch, as_batch(dst.array)[0], after_tile=_release_pages(src, dst))
                finally:
                    dst.close()
                return "float32 .npy (exact)"
            y = model(src.array)
        finally:
            src.close()
    else:
        y = model(read_gray(job.source))
    if kind == "npy":
        write_image(job.staged, y)
        return "float32 .npy (exact)"
    if y.ndim != 2:
        raise KernelnetError(f"{job.source} holds {y.shape[0]} images: write .npy for batches (PNG/TIFF take one)")
    if kind == "tiff":
        write_image(job.staged, y)
        return "float32 TIFF (exact)"
    mapped, text = png_mapping(y, scale)
    write_image(job.staged, mapped, bits=bits, scale=1.0)
    return f"{bits}-bit PNG, pixel = round({text} x {2**bits - 1})"


def check_targets(jobs: list[Job]) -> None:
    """Refuse, before anything is read or written, a target that is one of the inputs (or the same file under
    another name) and a target that exists as something other than a file."""
    sources = {os.path.realpath(job.source) for job in jobs}
    for job in jobs:
        real = os.path.realpath(job.target)
        if real in sources or (job.target.exists() and any(
                os.path.samefile(job.target, other.source) for other in jobs if other.source.exists())):
            raise KernelnetError(f"output {job.target} is an input: choose another output (nothing was written)")
        if job.target.exists() and not job.target.is_file():
            raise KernelnetError(f"output {job.target} exists and is not a file")
        if job.target.is_symlink():
            raise KernelnetError(f"output {job.target} is a symbolic link: refusing to write through it")


@contextlib.contextmanager
def staged_outputs(jobs: list[Job]) -> Iterator[None]:
    """All or nothing: create the output folders, and once every result is staged rename them into place, the
    files they replace parked beside them until the last rename succeeded (then removed; on failure put back).
    On any error the staged results, the parked files' absence and the folders this created are undone. Leftovers
    of a killed run in these folders are removed first (:func:`~kernelnet.runtime.atomic.sweep_dead`)."""
    from kernelnet.runtime.atomic import ensure_writable_dir, sweep_dead

    check_targets(jobs)
    created: list[Path] = []
    for folder in sorted({job.target.parent for job in jobs}):
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        ensure_writable_dir(folder)
        created.extend(missing)
        sweep_dead(folder)
    parked: list[Job] = []
    placed: list[Job] = []
    try:
        yield
        for job in jobs:
            if job.target.exists():
                os.replace(job.target, job.parked)
                parked.append(job)
            os.replace(job.staged, job.target)
            placed.append(job)
    except BaseException as exc:
        for job in jobs:
            with contextlib.suppress(OSError):
                job.staged.unlink()
        for job in placed:
            with contextlib.suppress(OSError):
                job.target.unlink()
        for job in parked:
            with contextlib.suppress(OSError):
                os.replace(job.parked, job.target)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise KernelnetError(f"cannot write the outputs: {exc.strerror or exc} (nothing was replaced)") from exc
        raise
    for job in parked:
        with contextlib.suppress(OSError):
            job.parked.unlink()


def run_all(model: Model, jobs: list[Job], bits: int | None, scale: str | None) -> list[tuple[Job, str]]:
    """Run every job (progress bar for several files); errors name the file they came from."""
    from tqdm import tqdm

    lines = []
    encoding = target_encoding(model)
    for job in tqdm(jobs, desc="apply", unit="file", disable=None if len(jobs) > 1 else True, leave=False):
        try:
            lines.append((job, run_job(model, job, bits, scale, encoding)))
        except KernelnetError as exc:
            text = str(exc)
            raise KernelnetError(text if str(job.source) in text else f"{job.source}: {text}") from None
    return lines


