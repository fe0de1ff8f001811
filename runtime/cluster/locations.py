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


def list_inputs(patterns: tuple[str, ...], out: str | None = None) -> list[tuple[str, str, str]]:
    """(source, name relative to its folder / glob root (POSIX), stamp) for every input file: local files, folders
    (recursive) and globs as ``kernelnet apply`` takes them, and the same under URLs. Local sources are absolute
    (workers may run elsewhere); files below ``out`` are left out (a run's own outputs are not inputs); the stamp
    (size and modification time, or an object store's tag) tells a changed input on a rerun."""
    from kernelnet.runtime.apply import expand_inputs

    found: list[tuple[str, str, str]] = []
    below = _prefix(out) if out is not None else None
    for pattern in patterns:
        if not is_url(pattern):
            for src, rel in expand_inputs((pattern,)):
                real = os.path.realpath(src)
                if below is None or not real.startswith(below):
                    st = os.stat(src)
                    found.append((os.path.abspath(src), rel.as_posix(), f"{st.st_size}:{st.st_mtime_ns}"))
            continue
        fs, path = file_system(pattern)
        protocol = pattern.split("://", 1)[0]
        try:
            if glob.has_magic(path):
                infos = {p: i for p, i in fs.glob(path, detail=True).items() if i.get("type") == "file"}
                pairs = [(p, PurePosixPath(p).name, i) for p, i in infos.items()]
            elif fs.isdir(path):
                root = path.rstrip("/")
                pairs = [(p, p[len(root):].lstrip("/"), i) for p, i in fs.find(root, detail=True).items()]
            elif fs.isfile(path):
                pairs = [(path, PurePosixPath(path).name, fs.info(path))]
            else:
                raise KernelnetError(f"input {pattern} not found")
        except KernelnetError:
            raise
        except Exception as exc:  # fsspec back ends raise their own types (credentials, network)
            raise KernelnetError(f"cannot list {pattern}: {type(exc).__name__}: {exc}") from exc
        urls = sorted((p if "://" in p else f"{protocol}://{p}", rel, _stamp(i)) for p, rel, i in pairs
                      if PurePosixPath(p).suffix.lower() in _suffixes())
        urls = [u for u in urls if below is None or not u[0].startswith(below)]
        if not urls:
            raise KernelnetError(f"no images or .npy files in {pattern}")
        found.extend(urls)
    return list(dict.fromkeys(found))


def _stamp(info: dict[str, Any]) -> str:
    changed = next((info[k] for k in ("mtime", "LastModified", "last_modified", "ETag", "etag", "updated", "created")
                    if info.get(k) is not None), "")
    return f"{info.get('size')}:{changed}"


def _prefix(out: str) -> str:
    """What every path below the output starts with (a resolved local folder, or the URL)."""
    return out.rstrip("/") + "/" if is_url(out) else os.path.join(os.path.realpath(out), "")


def output_sizes(out: str) -> dict[str, int]:
    """Size of every file below the output URL, by name relative to it (one listing, not a request per file)."""
    fs, root = file_system(out)
    root = root.rstrip("/")
    try:
        return {p[len(root):].lstrip("/"): int(i.get("size") or 0) for p, i in fs.find(root, detail=True).items()}
    except FileNotFoundError:
        return {}
    except Exception as exc:
        raise KernelnetError(f"cannot list {out}: {type(exc).__name__}: {exc}") from exc


def plan_outputs(inputs: list[tuple[str, str, str]], out: str, fmt: str | None,
                 default_format: str | None) -> list[tuple[str, str, str]]:
    """(source, target name relative to ``out``, the source's stamp) per input: its relative path and stem, in
    ``fmt`` (default: ``default_format``, else .npy for .npy inputs and PNG for images), as the local ``apply``
    names folder outputs. Two inputs that would write one target, or a target that is an input, are refused."""
    from kernelnet.runtime.apply import FORMAT_SUFFIX

    jobs, seen = [], {}
    sources = {_real(src) for src, _, _ in inputs}
    for source, rel, stamp in inputs:
        kind = fmt or default_format or ("npy" if source.lower().endswith(".npy") else "png")
        target = PurePosixPath(rel).with_suffix(FORMAT_SUFFIX[kind]).as_posix()
        if target in seen:
            raise KernelnetError(f"{source} and {seen[target]} would both write {join(out, target)}")
        if _real(join(out, target)) in sources:
            raise KernelnetError(f"output {join(out, target)} is an input: choose another output (nothing was written)")
        seen[target] = source
        jobs.append((source, target, stamp))
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
    fd, name = tempfile.mkstemp(suffix=PurePosixPath(path).suffix, dir=scratch)
    os.close(fd)
    local = Path(name)
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
