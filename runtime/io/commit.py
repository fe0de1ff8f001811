"""Many result files replaced as one (``kernelnet apply``): staged unnamed, placed together, rolled back whole.

Each result is written to an *unnamed* file in its target's folder (Linux ``O_TMPFILE``): until it is linked into
place it has no name, so a kill at any point of the work — SIGKILL included — leaves nothing behind (the kernel
frees such a file with its last descriptor). Where the OS or the file system has no unnamed files, or the results
would need more descriptors than the process may hold, a staging name that carries the writer's pid is used
instead, and the next write into the folder removes those of dead writers
(:func:`~kernelnet.runtime.io.atomic.sweep_dead`).

Results whose folders do not exist yet wait in the nearest existing ancestor, and the folders are made when the
results are placed, so a killed run leaves no empty folder either.

Placing (:func:`place_all`): a journal per folder — ``.kernelnet-partial-commit.pPID.json``, the names created and
the ones replaced with where each old file is parked — is written first; then each existing target is parked and
each result linked (or renamed) into place; the parked files and the journals are removed once every result is
placed, and everything is put back on an error. A writer killed inside that last step (milliseconds for hundreds of
files) leaves its journal: the next write into the folder rolls it back (:func:`roll_back_dead`: parked files back,
created ones removed) before anything else, so the folder again holds exactly its old files (a folder that
placing had made stays, empty). Torch-free.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kernelnet.runtime.io.atomic import alive, owner_of, owner_tag, umask, write_json

JOURNAL_PREFIX = ".kernelnet-partial-commit"
DESCRIPTOR_RESERVE = 256
"""Descriptors left for everything else when results are held open as unnamed files."""


def unnamed_file(folder: str | os.PathLike[str]) -> int | None:
    """A read-write descriptor of a new unnamed file in ``folder`` (``O_TMPFILE``), or ``None`` where the OS or
    the file system has none."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None:
        return None
    try:  # owner-only while written (writers reopen it through /proc, which checks the mode); the usual
        # permissions are given just before it is named (name_unnamed)
        return os.open(folder, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def name_unnamed(fd: int, target: Path) -> None:
    """Give the unnamed file ``fd`` the name ``target`` (atomically; fails if ``target`` exists): ``linkat`` of
    its ``/proc/self/fd`` entry with AT_SYMLINK_FOLLOW, which needs no privilege (a plain ``link`` of that path
    fails with EXDEV)."""
    os.fchmod(fd, 0o666 & ~umask())
    proc = os.open("/proc/self/fd", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def descriptors_for(count: int) -> bool:
    """True when ``count`` results can be held open at once (the soft descriptor limit raised to the hard one)."""
    try:
        import resource
    except ImportError:
        return False
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft == resource.RLIM_INFINITY or count + DESCRIPTOR_RESERVE <= soft


@dataclass
class Staged:
    """One result waiting to be placed at ``target``: in the unnamed file ``fd``, or at ``named`` (``fd`` None)."""

    target: Path
    named: Path
    fd: int | None = None

    @property
    def path(self) -> Path:
        """Where a writer writes the result (this process's view of the unnamed file, or the staging name)."""
        return Path(f"/proc/self/fd/{self.fd}") if self.fd is not None else self.named

    def discard(self) -> None:
        """Drop the result: close the unnamed file (it vanishes) or remove the staging name."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        else:
            with contextlib.suppress(OSError):
                self.named.unlink()


def nearest_folder(path: Path) -> Path:
    """``path`` if it is an existing folder, else its nearest existing ancestor."""
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def stage(target: Path, named: Path, unnamed: bool = True) -> Staged:
    """Where ``target``'s result is written first: with ``unnamed``, an unnamed file in the target's folder (or,
    where that folder is still to be made, in its nearest existing ancestor: the same file system, so the file
    can be named into the new folder), else the staging name ``named``."""
    return Staged(target, named, unnamed_file(nearest_folder(target.parent)) if unnamed else None)


def unnamed_files_work(folders: Iterable[Path]) -> bool:
    """True when an unnamed file can be made, and named, where each folder's results go."""
    for folder in {nearest_folder(f) for f in folders}:
        fd = unnamed_file(folder)
        if fd is None:
            return False
        os.close(fd)
    return True


def _identity(item: Staged) -> list[int]:
    """(device, inode) of a result before it is placed: what the rollback checks a name still holds."""
    st = os.fstat(item.fd) if item.fd is not None else os.stat(item.named)
    return [st.st_dev, st.st_ino]


def _journals(staged: list[Staged], parked: dict[Path, Path], written: list[Path]) -> None:
    """Write each folder's journal — the names created and the names replaced (with their parked names), each with
    the identity of the file that goes there — appending each path to ``written`` as soon as it exists."""
    folders: dict[Path, dict[str, list]] = {}
    for item in staged:
        doc = folders.setdefault(item.target.parent, {"created": [], "replaced": []})
        if item.target in parked:
            doc["replaced"].append([item.target.name, parked[item.target].name, *_identity(item)])
        else:
            doc["created"].append([item.target.name, *_identity(item)])
    for folder, doc in folders.items():
        path = folder / f"{JOURNAL_PREFIX}{owner_tag()}json"
        written.append(path)
        write_json(path, doc)


def place_all(staged: list[Staged], parking: dict[Path, Path]) -> None:
    """Put every result at its target at once: missing folders made, existing targets parked at
    ``parking[target]`` meanwhile, then removed; on an error (raised after) every target and folder is as it was.
    The results are consumed either way."""
    parked = {item.target: parking[item.target] for item in staged if item.target.exists()}
    journals: list[Path] = []
    moved: list[Path] = []
    placed: list[Staged] = []
    made: list[Path] = []
    try:
        for folder in sorted({item.target.parent for item in staged}):
            missing = [p for p in (folder, *folder.parents) if not p.exists()]
            folder.mkdir(parents=True, exist_ok=True)
            made.extend(reversed(missing))
        _journals(staged, parked, journals)
        for item in staged:
            if item.target in parked:
                os.replace(item.target, parked[item.target])
                moved.append(item.target)
            if item.fd is not None:
                name_unnamed(item.fd, item.target)
            else:
                os.replace(item.named, item.target)
            placed.append(item)
    except BaseException:
        for item in placed:
            with contextlib.suppress(OSError):
                item.target.unlink()
        for target in moved:
            with contextlib.suppress(OSError):
                os.replace(parked[target], target)
        for path in journals:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in sorted(made, key=lambda f: len(f.parts), reverse=True):  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    finally:
        for item in staged:  # descriptors closed (a placed file keeps its name); unplaced results dropped
            item.discard()
    for path in journals + [parked[t] for t in moved]:  # the journals first: removing them is the commit
        with contextlib.suppress(OSError):
            path.unlink()


def roll_back_dead(folder: str | os.PathLike[str]) -> int:
    """Undo the placing step of writers that died inside it (their journals in ``folder``): parked files back,
    created ones removed. Returns how many journals were rolled back."""
    done = 0
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(JOURNAL_PREFIX) and e.name.endswith("json")]
    except OSError:
        return 0
    for entry in entries:
        pid = owner_of(entry.name)
        if pid is None or alive(pid):
            continue
        try:
            doc = json.loads(Path(entry.path).read_text())
            replaced = [(str(a), str(b), (int(d), int(i))) for a, b, d, i in doc.get("replaced", [])]
            created = [(str(a), (int(d), int(i))) for a, d, i in doc.get("created", [])]
        except (OSError, ValueError, TypeError, AttributeError):
            continue  # not a journal of ours: the sweep of dead writers' files removes it
        _undo(Path(folder), replaced, created)
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
        done += 1
    return done


def _undo(folder: Path, replaced: Iterable[tuple[str, str, tuple[int, int]]],
          created: Iterable[tuple[str, tuple[int, int]]]) -> None:
    """Put parked files back and remove created ones — only where the name still holds the dead writer's file."""
    from kernelnet.runtime.io.atomic import file_identity

    for name, parked, identity in replaced:
        if "/" in name or "/" in parked or not (folder / parked).exists():
            continue
        if file_identity(folder / name) in (identity, None):  # its new file, or none yet: the old one goes back
            with contextlib.suppress(OSError):
                os.replace(folder / parked, folder / name)
    for name, identity in created:
        if "/" not in name and file_identity(folder / name) == identity:
            with contextlib.suppress(OSError):
                (folder / name).unlink()
