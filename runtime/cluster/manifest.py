"""A cluster run's manifest: which outputs are finished, so that the same command after a crash or Ctrl-C does only
what is missing.

JSON lines, append-only: a header naming the run (the model's SHA-256 and the output options), then one line per
finished output ``{"out": name relative to the output root, "bytes": n, "sha256": hex}``, each batch flushed and
fsynced before it counts. A line torn by a kill is dropped when the manifest is read back. The manifest is locked
(``flock``) while a run holds it: a second run into the same output is refused in one line.

    >>> with RunManifest.open(Path("edges/.kernelnet-manifest.jsonl"), header) as manifest:   # doctest: +SKIP
    ...     pending = [t for t in targets if t not in manifest.done]
    ...     manifest.record([{"out": "a.png", "bytes": 812, "sha256": "..."}])
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from kernelnet.runtime.errors import KernelnetError

MANIFEST_NAME = ".kernelnet-manifest.jsonl"
VERSION = 1


@dataclass
class RunManifest:
    """An open, locked manifest: ``done`` maps each finished output name to its record."""

    path: Path
    handle: IO[str]
    done: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: bool = False
    appended: int = 0
    """Output records this run has written (counted as they are written: an interrupt between two steps of
    :meth:`record` still counts a line that is in the file)."""
    """This run wrote the header (decided under the lock: a run that lost the race to another is not it)."""

    @classmethod
    def open(cls, path: Path, header: dict[str, Any]) -> RunManifest:
        """Open (or start) the manifest at ``path`` for a run described by ``header``; refuses a manifest of another
        model or other options, one that is not a manifest, and one another live run holds."""
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+", encoding="utf-8")
        except OSError as exc:
            raise KernelnetError(f"cannot open the run manifest {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise KernelnetError(f"another run is writing this output (its manifest {path} is locked)") from exc
        try:
            manifest = cls(path, handle)
            manifest._read(header)
        except BaseException:
            handle.close()
            raise
        return manifest

    def _read(self, header: dict[str, Any]) -> None:
        self.handle.seek(0)
        lines = self.handle.read().split("\n")
        wanted = {"kernelnet_manifest": VERSION, **header}
        if lines == [""]:
            self._append([wanted])
            self.created, self.appended = True, 0  # the header is not an output
            return
        try:
            first = json.loads(lines[0])
        except ValueError:
            first = None
        if not isinstance(first, dict) or first.get("kernelnet_manifest") != VERSION:
            raise KernelnetError(f"{self.path} is not a kernelnet run manifest: remove it or choose another output")
        if first != wanted:
            differ = sorted(k for k in set(first) | set(wanted) if first.get(k) != wanted.get(k))
            raise KernelnetError(f"{self.path} records a run with another {', '.join(differ)}: use a new output "
                                 "folder, or remove the manifest to redo every file")
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the last line of a killed run, torn mid-write
            if isinstance(record, dict) and isinstance(record.get("out"), str):
                self.done[record["out"]] = record
        if lines[-1] != "":  # a torn line: end it, so that the next record starts a line of its own
            self.handle.write("\n")
            self.handle.flush()

    def _append(self, records: list[dict[str, Any]]) -> None:
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        if text:
            self.handle.write(text)
            self.appended += len(records)
            self.handle.flush()
            os.fsync(self.handle.fileno())

    def record(self, records: list[dict[str, Any]]) -> None:
        """Append finished outputs (durable when this returns)."""
        try:
            self._append(records)
        except OSError as exc:
            raise KernelnetError(f"cannot write the run manifest {self.path}: {exc.strerror or exc}") from exc
        self.done.update((r["out"], r) for r in records)

    def discard(self) -> None:
        """Remove the manifest of a run that wrote nothing (while still holding its lock)."""
        if self.created and not self.appended:
            try:
                self.path.unlink()
            except OSError:
                pass

    def close(self) -> None:
        self.handle.close()  # closing releases the lock

    def __enter__(self) -> RunManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def model_digest(path: Path) -> str:
    """SHA-256 of the model file (what a manifest's header names)."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()  # a filter's graph: kilobytes
