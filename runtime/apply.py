"""Applying a model to files: inputs expanded (files, folders, globs), outputs planned under their inputs'
relative paths, every result staged and renamed into place only when all succeeded (torch-free).

    >>> jobs = plan_jobs(expand_inputs(("photos/",)), Path("edges/"), None)          # doctest: +SKIP
    >>> with staged_outputs(jobs) as staging:                                       # doctest: +SKIP
    ...     run_all(load("model.onnx"), jobs, bits=8, scale="auto", staging=staging)
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any


from kernelnet.runtime.apply_jobs import OUT_SUFFIXES
from kernelnet.runtime.io.atomic import file_identity, owner_tag
from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    from kernelnet.runtime.io.commit import Staged
    from kernelnet.runtime.model import Model

FORMAT_SUFFIX = {"png": ".png", "tiff": ".tif", "npy": ".npy"}
PARTIAL_PREFIX = ".kernelnet-partial-"


@dataclass(frozen=True)
class Job:
    """One input file and where its result goes."""

    source: Path
    target: Path
    owner: str = field(default_factory=owner_tag)
    """The planning process's tag in the temporary names (worker processes write them on its behalf)."""

    @property
    def staged(self) -> Path:
        """Where the result is written first where unnamed files are unavailable (renamed to ``target`` once every
        job has succeeded)."""
        return self.target.with_name(f"{PARTIAL_PREFIX}{_short(self.target.stem)}{self.owner}part{self.target.suffix}")

    @property
    def parked(self) -> Path:
        """Where an existing ``target`` waits while the new results are placed (put back on failure)."""
        return self.target.with_name(f"{PARTIAL_PREFIX}{_short(self.target.stem)}{self.owner}old{self.target.suffix}")


def _short(stem: str) -> str:
    """``stem``, or for a long one (a 240-character file name is legal) its start and a digest, so that the
    temporary names stay within the 255 bytes a file name may have."""
    if len(stem.encode("utf-8", "surrogateescape")) <= 160:
        return stem
    import hashlib

    return stem[:40] + "~" + hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def expand_inputs(patterns: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, name relative to its folder/glob root) for every input: files, folders (recursive) and globs."""
    from kernelnet.runtime.io.images import IMAGE_SUFFIXES, walk_files

    found: list[tuple[Path, Path]] = []
    suffixes = (*IMAGE_SUFFIXES, ".npy")
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = walk_files(path, suffixes)
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
        elif path.exists():
            raise KernelnetError(f"input {pattern} is not a regular file or a folder")
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
    from kernelnet.runtime.io.images import IMAGE_SUFFIXES

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


def check_targets(jobs: list[Job]) -> None:
    """Refuse, before anything is read or written, a target that is one of the inputs (or the same file under
    another name) and a target that exists as something other than a file."""
    sources = {os.path.realpath(job.source) for job in jobs}
    identities = {file_identity(job.source) for job in jobs} - {None}  # hard links and bind mounts too
    for job in jobs:
        real = os.path.realpath(job.target)
        if real in sources or file_identity(job.target) in identities:
            raise KernelnetError(f"output {job.target} is an input: choose another output (nothing was written)")
        if job.target.exists() and not job.target.is_file():
            raise KernelnetError(f"output {job.target} exists and is not a file")
        if job.target.is_symlink():
            raise KernelnetError(f"output {job.target} is a symbolic link: refusing to write through it")


@dataclass
class Staging:
    """Where :func:`run_all` leaves each job's result for :func:`staged_outputs` to place: unnamed files
    (``unnamed``; their folders are made when they are placed) or the jobs' staging names."""

    unnamed: bool
    results: dict[Job, Staged] = field(default_factory=dict)


@contextlib.contextmanager
def staged_outputs(jobs: list[Job]) -> Iterator[Staging]:
    """All or nothing: yield the :class:`Staging` that :func:`run_all` fills with each job's result — an unnamed
    file where the OS and the file system have them and the process may hold that many open, else its staging name
    (output folders are then made first) — and once every result is in, place them all
    (:func:`~kernelnet.runtime.io.commit.place_all`: the files they replace parked until the last one is placed).
    On any error the results, the parked files' absence and the folders this made are undone. Leftovers of a
    killed run in these folders are removed or rolled back first (:func:`~kernelnet.runtime.io.atomic.sweep_dead`)."""
    from kernelnet.runtime.io.atomic import check_can_make_dir, ensure_writable_dir, sweep_dead
    from kernelnet.runtime.io.commit import Staged, descriptors_for, place_all, unnamed_files_work

    check_targets(jobs)
    folders = sorted({job.target.parent for job in jobs})
    for folder in folders:
        if folder.is_dir():
            ensure_writable_dir(folder)
            sweep_dead(folder)
        else:
            check_can_make_dir(folder)
    staging = Staging(descriptors_for(len(jobs)) and unnamed_files_work(folders))
    created: list[Path] = []
    if not staging.unnamed:  # staging names need their folders now
        for folder in folders:
            created.extend(p for p in (folder, *folder.parents) if not p.exists())
            ensure_writable_dir(folder)
    try:
        yield staging
        place_all([staging.results.get(job) or Staged(job.target, job.staged) for job in jobs],
                  {job.target: job.parked for job in jobs})
    except BaseException as exc:
        for job in jobs:
            (staging.results.get(job) or Staged(job.target, job.staged)).discard()
        for folder in sorted(created, key=lambda f: len(f.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise KernelnetError(f"cannot write the outputs: {exc.strerror or exc} (nothing was replaced)") from exc
        raise


def run_all(model: Model, jobs: list[Job], bits: int | None, scale: str | None, workers: int | None = None,
            staging: Staging | None = None) -> list[tuple[Job, str]]:
    """Run every job (progress bar for several files on a terminal); results in input order; errors name the file
    they came from.

    Several files run at once on ``workers`` cores (default: the model's threads, or the CPUs) — forked processes
    for the native stencil, threads for backends that take concurrent calls, else one file after the other (see
    :mod:`kernelnet.runtime.apply_workers`); each file's filter then runs on one thread."""
    from kernelnet.runtime import apply_workers
    from kernelnet.runtime.apply_jobs import run_job
    from kernelnet.runtime.io.commit import Staged, stage

    encoding = target_encoding(model)
    workers = min(workers or _default_workers(model), len(jobs))
    unnamed = staging is not None and staging.unnamed

    def one(job: Job) -> apply_workers.Result:
        item = stage(job.target, job.staged, unnamed)
        try:
            return run_job(model, job, bits, scale, encoding, into=item.path), item.fd
        except KernelnetError as exc:
            item.discard()
            text = str(exc)
            raise KernelnetError(text if str(job.source) in text else f"{job.source}: {text}") from None
        except BaseException:
            item.discard()
            raise

    with _progress(len(jobs)) as step:
        if workers > 1 and model.runner.forkable and apply_workers.fork_available():
            results = apply_workers.run_forked(one, jobs, workers, step, before=lambda: _one_thread(model))
        elif workers > 1 and model.runner.concurrent:
            results = apply_workers.run_threaded(one, jobs, workers, step)
        else:
            results = []
            try:
                for job in jobs:
                    results.append(one(job))
                    step()
            except BaseException:
                apply_workers.close_results(results)
                raise
    if staging is not None:
        staging.results.update((job, Staged(job.target, job.staged, fd)) for job, (_, fd) in zip(jobs, results))
    else:
        apply_workers.close_results(results)
    return [(job, line) for job, (line, _) in zip(jobs, results)]


def _default_workers(model: Model) -> int:
    from kernelnet.runtime.backends.native_backend import default_threads

    threads = getattr(model.runner, "threads", None)
    return int(threads) if threads else default_threads()


def _one_thread(model: Model) -> None:
    """In a worker process: the stencil runs each file on the worker's own thread (the cores run files)."""
    if hasattr(model.runner, "threads"):
        model.runner.threads = 1


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[], Any]]:
    """A step function for a tqdm bar over ``total`` files, shown on a terminal only (tqdm is imported then)."""
    import sys

    if total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="apply", unit="file", leave=False) as bar:
        yield bar.update
