"""Where a cluster run reads and writes: local paths, or any fsspec URL (``s3://``, ``gs://``, ``file://``, ...),
one file at a time, each output placed whole or not at all.

A local output is written to an unnamed file in its folder (Linux ``O_TMPFILE``) and linked into place, so a worker
killed at any point leaves nothing; where that is unavailable (NFS), or the output exists already (a file redone
after a crash), through a ``.kernelnet-partial-ray-`` name renamed over it. A URL output is uploaded under such a
name and moved into place (a rename where the file system has one; an object store shows the object whole or not
at all). The driver removes those names of dead runs before it starts (:func:`sweep_partials`).

    >>> pairs = list_inputs(("s3://bucket/photos/",))             # doctest: +SKIP
    >>> plan_outputs(pairs, "s3://bucket/edges", None, None)      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from kernelnet.runtime.errors import KernelnetError

PARTIAL = ".kernelnet-partial-ray-"
FORMAT_SUFFIX = {"png": ".png", "tiff": ".tif", "npy": ".npy"}


def is_url(location: str) -> bool:
    """True for ``protocol://...`` (handled by fsspec); plain paths are local."""
    return "://" in location


def file_system(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path inside it)`` for ``url``; a one-line error without fsspec or the protocol's
    package."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as exc:
        raise KernelnetError("file system URLs need fsspec: pip install 'kernelnet[ray]'") from exc
    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise KernelnetError(f"cannot open {url}: {exc}") from exc


def _suffixes() -> tuple[str, ...]:
    from kernelnet.runtime.io.images import IMAGE_SUFFIXES

    return (*IMAGE_SUFFIXES, ".npy")


def list_inputs(patterns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(source, name relative to its folder / glob root, POSIX) for every input file: local files, folders
    (recursive) and globs as ``kernelnet apply`` takes them, and the same under URLs."""
    from kernelnet.runtime.apply import expand_inputs

    found: list[tuple[str, str]] = []
    for pattern in patterns:
        if not is_url(pattern):
            found.extend((str(src), rel.as_posix()) for src, rel in expand_inputs((pattern,)))
            continue
        fs, path = file_system(pattern)
        protocol = pattern.split("://", 1)[0]
        try:
            if glob.has_magic(path):
                files = [p for p in fs.glob(path) if fs.isfile(p)]
                pairs = [(p, PurePosixPath(p).name) for p in files]
            elif fs.isdir(path):
                root = path.rstrip("/")
                pairs = [(p, p[len(root):].lstrip("/")) for p in fs.find(root)]
            elif fs.isfile(path):
                pairs = [(path, PurePosixPath(path).name)]
            else:
                raise KernelnetError(f"input {pattern} not found")
        except OSError as exc:
            raise KernelnetError(f"cannot list {pattern}: {exc}") from exc
        pairs = sorted((p, rel) for p, rel in pairs if PurePosixPath(p).suffix.lower() in _suffixes())
        if not pairs:
            raise KernelnetError(f"no images or .npy files in {pattern}")
        found.extend((f"{protocol}://{p}" if "://" not in p else p, rel) for p, rel in pairs)
    return list(dict.fromkeys(found))


def plan_outputs(inputs: list[tuple[str, str]], out: str, fmt: str | None,
                 default_format: str | None) -> list[tuple[str, str]]:
    """(source, target name relative to ``out``) per input: its relative path and stem, in ``fmt`` (default:
    ``default_format``, else .npy for .npy inputs and PNG for images), as the local ``apply`` names folder outputs.
    Two inputs that would write one target, or a target that is an input, are refused."""
    jobs, seen = [], {}
    sources = {_real(src) for src, _ in inputs}
    for source, rel in inputs:
        kind = fmt or default_format or ("npy" if source.lower().endswith(".npy") else "png")
        target = PurePosixPath(rel).with_suffix(FORMAT_SUFFIX[kind]).as_posix()
        if target in seen:
            raise KernelnetError(f"{source} and {seen[target]} would both write {join(out, target)}")
        if _real(join(out, target)) in sources:
            raise KernelnetError(f"output {join(out, target)} is an input: choose another output (nothing was written)")
        seen[target] = source
        jobs.append((source, target))
    return jobs


def join(root: str, rel: str) -> str:
    """``rel`` (POSIX) below the folder or URL ``root``."""
    return f"{root.rstrip('/')}/{rel}" if is_url(root) else str(Path(root) / rel)


def _real(location: str) -> str:
    return location if is_url(location) else os.path.realpath(location)


@contextlib.contextmanager
def local_copy(source: str, scratch: Path) -> Iterator[Path]:
    """``source`` as a local path: itself, or a URL fetched into ``scratch`` (removed afterwards)."""
    if not is_url(source):
        yield Path(source)
        return
    fs, path = file_system(source)
    fd, name = tempfile.mkstemp(suffix=PurePosixPath(path).suffix, dir=scratch)
    os.close(fd)
    try:
        fs.get_file(path, name)
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def place(target: str, write: Callable[[Path], None], scratch: Path) -> tuple[int, str]:
    """Write one output whole: ``write(path)`` fills a file that is then placed at ``target`` (a local path or a
    URL) atomically; returns (bytes, SHA-256 of them)."""
    if is_url(target):
        return _place_url(target, write, scratch)
    return _place_local(Path(target), write)


def _partial_name(target: PurePosixPath | Path) -> str:
    stem = target.stem if len(target.stem) <= 120 else hashlib.sha256(target.stem.encode()).hexdigest()[:32]
    return f"{PARTIAL}{stem}.p{os.getpid()}.part{target.suffix}"


def _digest(fd: int) -> tuple[int, str]:
    digest, size, offset = hashlib.sha256(), 0, 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def _place_local(target: Path, write: Callable[[Path], None]) -> tuple[int, str]:
    from kernelnet.runtime.io.atomic import umask
    from kernelnet.runtime.io.commit import name_unnamed, unnamed_file

    target.parent.mkdir(parents=True, exist_ok=True)
    fd = unnamed_file(target.parent)
    partial = target.with_name(_partial_name(target))
    try:
        if fd is not None:
            write(Path(f"/proc/self/fd/{fd}"))
            stats = _digest(fd)
            try:
                name_unnamed(fd, target)
                return stats
            except FileExistsError:  # redone after a crash: the same bytes, replaced in one rename
                name_unnamed(fd, partial)
        else:
            write(partial)
            os.chmod(partial, 0o666 & ~umask())
            with open(partial, "rb") as handle:
                stats = _digest(handle.fileno())
        os.replace(partial, target)
        return stats
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    finally:
        if fd is not None:
            os.close(fd)


def _place_url(target: str, write: Callable[[Path], None], scratch: Path) -> tuple[int, str]:
    fs, path = file_system(target)
    local = scratch / f"out{PurePosixPath(path).suffix}"
    partial = str(PurePosixPath(path).with_name(_partial_name(PurePosixPath(path))))
    try:
        write(local)
        with open(local, "rb") as handle:
            stats = _digest(handle.fileno())
        fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        fs.put_file(str(local), partial)
        fs.mv(partial, path)
        return stats
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(partial)
        raise
    finally:
        with contextlib.suppress(OSError):
            local.unlink()


def sweep_partials(out: str, targets: list[str]) -> int:
    """Remove the ``.kernelnet-partial-ray-`` files of earlier, dead runs from the folders that ``targets`` (names
    relative to ``out``) go to; the caller holds the run's lock, so no live writer owns one. Returns how many."""
    folders = sorted({str(PurePosixPath(t).parent) for t in targets})
    removed = 0
    if not is_url(out):
        for folder in folders:
            with contextlib.suppress(OSError), os.scandir(Path(out) / folder) as entries:
                for entry in list(entries):
                    if entry.name.startswith(PARTIAL) and entry.is_file(follow_symlinks=False):
                        os.unlink(entry.path)
                        removed += 1
        return removed
    fs, root = file_system(out)
    for folder in folders:
        with contextlib.suppress(OSError, FileNotFoundError):
            for path in fs.ls(str(PurePosixPath(root) / folder), detail=False):
                if PurePosixPath(path).name.startswith(PARTIAL):
                    fs.rm(path)
                    removed += 1
    return removed
