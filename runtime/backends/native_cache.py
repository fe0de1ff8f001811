"""Proven models remembered: a model file that this installation has already proven to be its metadata's stencil
(graph structure checked, random probes against onnxruntime within the float32 bound) loads natively again
without onnxruntime — no import, no session, no probe: 0.17 s less on every ``kernelnet apply`` (torch-free).

A verdict is an empty file named by a SHA-256 over the model's bytes, the stencil build's bytes and the identity
(path, size, mtime) of onnxruntime's package and of every module of kernelnet's runtime. Any change to one of
them — another model file, a rebuilt stencil, another onnxruntime, an edited check — makes another name, so the
model is proven again. A proof is remembered only where this module's strict reading of the metadata
(:func:`~kernelnet.runtime.checks.onnx_wire.read_metadata`) equals onnxruntime's, which the proof used. Only proofs are
remembered; a declined model is asked again on every load. Verdicts live in ``$KERNELNET_CACHE_DIR``, else
``$XDG_CACHE_HOME/kernelnet``, else ``~/.cache/kernelnet`` (``KERNELNET_CACHE_DIR=`` empty: remember nothing). A
cache that cannot be read or written is skipped without a word: the model is then proven as if it were new.

    >>> runner, data = proven_runner(Path("model.onnx"), 2, "native")        # doctest: +SKIP
    >>> runner is None  # not proven yet: load() proves it, then remember_proven(...)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from kernelnet.runtime.backends.base import Runner
from kernelnet.runtime.errors import KernelnetError

CACHE_ENV = "KERNELNET_CACHE_DIR"
VERDICT_VERSION = b"kernelnet-native-verdict-1"


def cache_dir() -> Path | None:
    """Where verdicts live (``None``: remembering is off)."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen) / "native" if chosen else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kernelnet" / "native"


def _stat_line(path: str | None) -> bytes:
    if not path:
        return b"-\n"
    try:
        st = os.stat(path)
    except OSError:
        return f"{path} missing\n".encode()
    return f"{os.path.realpath(path)} {st.st_size} {st.st_mtime_ns}\n".encode()


def _onnxruntime_file() -> str | None:
    """onnxruntime's package file, found without importing it (the import is what a verdict saves)."""
    try:
        spec = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def _contents(path: str | None) -> bytes:
    try:
        return hashlib.sha256(Path(path).read_bytes()).digest() if path else b"-"
    except OSError:
        return b"missing"


def verdict_name(data: bytes, stencil: ModuleType) -> str:
    """The verdict's file name for a model of bytes ``data`` checked with the stencil build ``stencil``: the
    model's and the stencil build's contents, onnxruntime's package file and every module of kernelnet's runtime
    (their path, size and modification time)."""
    digest = hashlib.sha256(VERDICT_VERSION)
    digest.update(hashlib.sha256(data).digest())
    digest.update(_contents(getattr(stencil, "__file__", None)))
    digest.update(_stat_line(_onnxruntime_file()))
    for module in sorted(Path(__file__).parents[1].rglob("*.py")):
        digest.update(_stat_line(str(module)))
    return digest.hexdigest()


def is_proven(data: bytes, stencil: ModuleType) -> bool:
    """True when a model of bytes ``data`` was proven with this stencil build, onnxruntime and kernelnet."""
    folder = cache_dir()
    return folder is not None and (folder / verdict_name(data, stencil)).is_file()


def remember_proof(data: bytes, stencil: ModuleType) -> None:
    """Remember that a model of bytes ``data`` was proven (silently nothing where the cache is not writable)."""
    folder = cache_dir()
    if folder is None:
        return
    from kernelnet.runtime.io.atomic import write_bytes

    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes(folder / verdict_name(data, stencil), b"")
    except (OSError, KernelnetError):
        pass


def proven_runner(path: Path, threads: int | None, name: str) -> tuple[Runner | None, bytes | None]:
    """(a native runner for the model at ``path`` if it was proven before, else ``None``; the bytes read, for
    :func:`remember_proven` once a new proof is made — ``None`` where the file could not be read)."""
    from kernelnet.runtime.backends import native_backend
    from kernelnet.runtime.checks.onnx_wire import MAX_BYTES, read_metadata
    from kernelnet.runtime.spec_codec import decode_info

    stencil = native_backend._stencil
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
    except OSError:
        return None, None
    if stencil is None or not is_proven(data, stencil):
        return None, data
    try:
        info = decode_info(read_metadata(data))
        return native_backend.native_runner(info, threads, path, name), data
    except (ValueError, KernelnetError):  # the same bytes decoded when proven: only a changed kernelnet gets here
        return None, data


def remember_proven(path: Path, data: bytes | None, proven_fields: dict[str, Any]) -> None:
    """Remember the proof just made for the model at ``path`` if its bytes are still ``data`` (the ones read
    before onnxruntime loaded it: a file replaced meanwhile is not vouched for) and this module's own reading of
    their metadata is the one the proof used (``proven_fields``, onnxruntime's: a later load reads them here)."""
    from kernelnet.runtime.backends import native_backend
    from kernelnet.runtime.checks.onnx_wire import read_metadata
    from kernelnet.runtime.spec_codec import decode_info

    if data is None or native_backend._stencil is None:
        return
    try:
        if path.read_bytes() != data or decode_info(read_metadata(data)).fields != proven_fields:
            return
    except (OSError, ValueError, KernelnetError):
        return
    remember_proof(data, native_backend._stencil)
