"""Memory-mapped ``.npy`` files whose pages can be handed back, so a huge image never has to be resident.

A mapped page that has been touched counts towards the process's RSS until it is unmapped. :meth:`MappedNpy.release`
drops all of the mapping's pages (``MADV_DONTNEED``; the data stays in the file / page cache), so filtering a
12000² image strip by strip keeps only a few strips resident.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from kernelnet.runtime.errors import KernelnetError


class MappedNpy:
    """An ``.npy`` file mapped as ``array`` (read-only, or read-write when created with :func:`create_npy`)."""

    def __init__(self, path: Path, writable: bool) -> None:
        self.path, self.writable = path, writable
        try:
            with open(path, "r+b" if writable else "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read_header(fh)
                offset = fh.tell()
                if dtype.hasobject:
                    raise ValueError("object arrays cannot be mapped")
                if not all(isinstance(d, int) and d >= 0 for d in shape) or len(shape) > 8:
                    raise ValueError(f"invalid shape {shape} in its header")
                count = 1
                for d in shape:  # Python ints: a crafted header cannot overflow the size
                    count *= d
                nbytes = count * dtype.itemsize
                if os.fstat(fh.fileno()).st_size < offset + nbytes:
                    raise ValueError(f"file is shorter than its header's {shape} {dtype} says (truncated or crafted?)")
                self._mmap = (mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ)
                              if nbytes else None)
        except Exception as exc:  # numpy's header parser can raise almost anything on a crafted header
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise KernelnetError(f"cannot read {path} as .npy: {text}") from exc
        if self._mmap is None:
            self.array = np.empty(shape, dtype=dtype)
        else:
            self.array = np.ndarray(shape, dtype=dtype, buffer=self._mmap, offset=offset,
                                    order="F" if fortran else "C")

    def release(self) -> None:
        """Drop every resident page of the mapping from this process (Linux; a no-op elsewhere).

        Safe for written pages too: on a shared file mapping the kernel moves their dirty state to the page cache,
        which the file's readers (and a later access here) see, and writes back in its own time (no msync wait).
        """
        if self._mmap is None:
            return
        if hasattr(mmap, "MADV_DONTNEED"):
            self._mmap.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if self._mmap is not None:
            if self.writable:
                self._mmap.flush()
            self.array = None  # type: ignore[assignment]
            try:
                self._mmap.close()
            except BufferError:  # a view of the array is still alive; the mapping closes when it dies
                pass
            self._mmap = None

    def __enter__(self) -> MappedNpy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_npy(path: str | os.PathLike[str]) -> MappedNpy:
    """Map an existing ``.npy`` read-only."""
    return MappedNpy(Path(path), writable=False)


def create_npy(path: str | os.PathLike[str], shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> MappedNpy:
    """Create a C-ordered ``.npy`` of ``shape``/``dtype`` (sparse, zero-filled) and map it read-write."""
    try:
        header_only = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        del header_only  # unmaps; the file keeps its header and (sparse) size
    except OSError as exc:
        raise KernelnetError(f"cannot create {path}: {exc.strerror or exc}") from None
    return MappedNpy(Path(path), writable=True)
