"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader never sees a half-written artifact: a crash (even SIGKILL) leaves the old file intact and at most a stray
``.tmp-*`` file beside it. Temporary names carry the writer's process id (``.tmp-NAME.pPID.RANDOM``), so the
next write into that folder removes the leftovers of writers that no longer run (:func:`sweep_dead`), and
:func:`remove_stale_temps` clears a folder nobody else writes to (``kernelnet train --resume`` does). A folder
replaced whole (:func:`atomic_dir`) is parked as ``.old-*`` for the instant between two renames; a kill right then
leaves it there, and :func:`remove_stale_temps` puts it back. A write that fails (unwritable folder, disk full)
raises :class:`KernelnetError` with one line, leaves the old target intact and nothing behind.
Torch-free (used by the runtime layer too).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kernelnet.runtime.errors import KernelnetError


def umask() -> int:
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


_OWNER = re.compile(r"\.p(\d+)(?=\.)")


def owner_tag() -> str:
    """The part of a temporary name that says which process writes it."""
    return f".p{os.getpid()}."


def owner_of(name: str) -> int | None:
    """The pid a temporary name carries (:func:`owner_tag`), else ``None``."""
    found = _OWNER.findall(name)  # the last tag: a user's own "x.p123.png" comes before it
    return int(found[-1]) if found else None


def alive(pid: int) -> bool:
    """True unless ``pid`` is surely gone (someone else's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid): leave its files alone
    return True


def sweep_dead(folder: str | os.PathLike[str], prefixes: tuple[str, ...] = (".tmp-", ".kernelnet-partial-")) -> int:
    """Remove the temporary files in ``folder`` whose writer process is gone (killed mid-write); returns how many.
    A dead writer's unfinished placing of many files is rolled back first
    (:func:`kernelnet.runtime.io.commit.roll_back_dead`), so that its parked files go back, not away."""
    from kernelnet.runtime.io.commit import roll_back_dead

    roll_back_dead(folder)
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        pid = owner_of(entry.name)
        if not entry.name.startswith(prefixes) or pid is None or alive(pid):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
    return removed


def _cannot_write(target: Path, exc: OSError) -> KernelnetError:
    return KernelnetError(f"cannot write {target}: {exc.strerror or exc}")


def ensure_writable_dir(path: str | os.PathLike[str], probe: bool = True) -> Path:
    """Create ``path`` (and parents) or raise :class:`KernelnetError` with one clear line.

    With ``probe`` a file is created and removed there: ``os.access`` says yes to root everywhere, and pseudo
    file systems such as ``/proc`` refuse new files whatever the permission bits say.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KernelnetError(f"cannot create output directory {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise KernelnetError(f"output directory {path} is not writable")
    if probe:
        try:
            fd, name = tempfile.mkstemp(prefix=f".tmp-probe{owner_tag()}", dir=path)
        except OSError as exc:
            raise KernelnetError(f"output directory {path} is not writable: {exc.strerror or exc}") from None
        os.close(fd)
        os.unlink(name)
    return path


def _writable_ancestor(path: Path, what: str) -> None:
    """Raise ``KernelnetError("{what}: …")`` unless the nearest existing ancestor of ``path`` (``path`` itself when it
    exists) is a folder that accepts new files (a probe file comes and goes)."""
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise KernelnetError(f"{what}: {parent} is not a folder")
    try:
        ensure_writable_dir(parent)
    except KernelnetError:
        raise KernelnetError(f"{what}: {parent} is not writable") from None


def check_creatable(path: str | os.PathLike[str]) -> None:
    """Raise :class:`KernelnetError` unless the file ``path`` could be created; creates nothing that stays."""
    _writable_ancestor(Path(path).parent, f"cannot write {path}")


def check_can_make_dir(path: str | os.PathLike[str]) -> None:
    """Raise :class:`KernelnetError` unless the folder ``path`` exists or could be made; makes nothing that
    stays."""
    _writable_ancestor(Path(path), f"cannot create output directory {path}")


def check_output_file(path: str | os.PathLike[str], reads: tuple[str | os.PathLike[str] | None, ...] = (),
                      what: str = "output") -> Path:
    """The one guard for a command's output file (``--json``, ``--plot``, ``--out``): refused, with one line,
    when it is a folder, one of the files the command ``reads`` (or the same file under another name), or lies
    inside a folder it reads (a report among the user's images would become one of them); its folder must
    accept new files. Nothing is created."""
    path = Path(path)
    if path.is_dir():
        raise KernelnetError(f"{what} {path} is a folder: name a file")
    real = Path(os.path.realpath(path))
    same = file_identity(path)
    for read in filter(None, reads):
        read = Path(read)
        other = Path(os.path.realpath(read))
        if real == other or (same is not None and same == file_identity(read)):
            raise KernelnetError(f"{what} {path} is an input of this command ({read}): choose another file")
        if read.is_dir() and other in real.parents:
            raise KernelnetError(f"{what} {path} lies inside the input folder {read}: choose a file outside it")
    check_creatable(path)
    return path


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(device, inode) of an existing file (what ``os.path.samefile`` compares), else None."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def created_or_removed(path: str | os.PathLike[str]) -> Iterator[Path]:
    """:func:`ensure_writable_dir` ``path`` and yield it; on :class:`KernelnetError` inside the block, remove it
    again if this call created it (bad input found midway leaves no half-made output folder)."""
    path = Path(path)
    created = not path.exists()
    try:
        yield ensure_writable_dir(path)
    except KernelnetError:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it to ``target``.

    On any exception the temporary file is removed and ``target`` is left as it was.
    """
    target = Path(target)
    folder = ensure_writable_dir(target.parent if str(target.parent) else ".", probe=False)
    sweep_dead(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}{owner_tag()}", dir=folder)
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; give the artifact the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
            os.replace(tmp_path, target)
        except OSError as exc:  # disk full, target is a folder, ...: one line, not a traceback
            raise _cannot_write(target, exc) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json_or_empty(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` when it is missing, unreadable, not JSON or not an object."""
    try:
        obj = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def write_with(target: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Atomically create ``target`` with ``writer(tmp_path)`` (for libraries that write to a path)."""
    with atomic_path(target) as tmp:
        writer(tmp)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target`` as a whole.

    On any exception the temporary directory is removed and ``target`` is left as it was (put back if the swap
    failed halfway).
    """
    target = Path(target)
    parent = ensure_writable_dir(target.parent, probe=False)
    try:
        sweep_dead(parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}{owner_tag()}", dir=parent))
    except OSError as exc:
        raise _cannot_write(target, exc) from None
    try:
        yield tmp
        try:
            _swap_in(tmp, target)
        except OSError as exc:
            raise _cannot_write(target, exc) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(tmp: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the folder ``tmp`` at ``target`` whole (an existing ``target`` parked meanwhile, removed after, put back
    on failure); one :class:`KernelnetError` line when it cannot."""
    try:
        _swap_in(Path(tmp), Path(target))
    except OSError as exc:
        raise _cannot_write(Path(target), exc) from None


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target``, an existing ``target`` parked in ``.old-*`` meanwhile and put back on failure."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".old-{target.name}.", dir=target.parent))
    try:
        os.replace(target, old / "d")
        os.replace(tmp, target)
    except BaseException:
        _restore_parked(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _restore_parked(old: Path, target: Path) -> None:
    """Move the tree parked in ``old/d`` back to ``target`` (unless ``target`` exists: the swap completed), then
    drop ``old``. ``old`` stays when the move fails: it holds the only copy."""
    with contextlib.suppress(OSError):
        if (old / "d").exists() and not target.exists():
            os.replace(old / "d", target)
        shutil.rmtree(old)


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the ``.tmp-*`` leftovers of writes killed midway in ``folder`` (not recursive) and put back a folder
    parked in ``.old-*`` whose replacement never arrived; returns the leftovers removed.

    Only for a folder that no other process is writing to at the moment (e.g. a run being resumed).
    """
    removed = []
    for path in Path(folder).glob(".old-*"):
        name = path.name[len(".old-"):].rpartition(".")[0]  # .old-NAME.RANDOM (mkdtemp's suffix holds no dot)
        if not name:
            continue
        _restore_parked(path, path.parent / name)
        if not path.exists():
            removed.append(path)
    for path in Path(folder).glob(".tmp-*"):
        with contextlib.suppress(OSError):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
            removed.append(path)
    return removed
