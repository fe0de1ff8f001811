"""One worker of a cluster run: holds a loaded model (the native stencil where its spec allows it, on one thread)
and filters chunks of files, each read, filtered, encoded and placed exactly as the local ``kernelnet apply`` does
(:func:`kernelnet.runtime.apply_jobs.run_job`), then placed whole (:func:`~kernelnet.runtime.cluster.locations.place`).

A plain class: :mod:`~kernelnet.runtime.cluster.ray_apply` makes it a Ray actor; the tests also run it in process.

    >>> worker = FileWorker(Path("model.onnx").read_bytes(), "edges/")         # doctest: +SKIP
    >>> worker.run([("photos/a.png", "a.png")])                               # doctest: +SKIP
    [{'out': 'a.png', 'bytes': 812, 'sha256': '...', 'pixels': 65536}]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError


class _Counted:
    """A model that counts the pixels it filters (every other attribute is the model's)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.pixels = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.pixels += np.asarray(x).size
        return self._model(x)

    def levels(self, x: np.ndarray) -> np.ndarray:
        self.pixels += np.asarray(x).size
        return self._model.levels(x)

    def apply_to(self, x: np.ndarray, out: np.ndarray, **kwargs: Any) -> Any:
        self.pixels += np.asarray(x).size
        return self._model.apply_to(x, out, **kwargs)


class FileWorker:
    """Filters files with one model.

    Args:
        model_bytes: the exported ``.onnx`` (the driver reads it once; workers may run on other machines).
        out: the output root (local folder or URL) that targets are relative to.
        backend: as ``load`` takes it (``auto``: the native stencil where the model allows it).
        bits, scale: the PNG options of ``kernelnet apply`` (``None``: its defaults / the targets' encoding).
        max_pixels: the decoded-pixel budget per image (``None``: the default or this worker's
            ``KERNELNET_MAX_PIXELS``).
        suffix: the model file's suffix (``.onnx``, ``.engine``).
    """

    def __init__(self, model_bytes: bytes, out: str, backend: str = "auto", bits: int | None = None,
                 scale: str | None = None, max_pixels: int | None = None, suffix: str = ".onnx") -> None:
        import shutil

        from kernelnet.runtime import load
        from kernelnet.runtime.apply import target_encoding

        if max_pixels is not None:
            os.environ["KERNELNET_MAX_PIXELS"] = str(max_pixels)
        folder = Path(tempfile.mkdtemp(prefix="kernelnet-worker-"))
        try:  # the file is read whole by load: nothing is left behind a worker, killed or not
            model_path = folder / f"model{suffix}"
            model_path.write_bytes(model_bytes)
            self.model = load(model_path, backend=backend, threads=1)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.scratch = Path(tempfile.gettempdir())  # URL files pass through unique names here, removed at once
        self.encoding = target_encoding(self.model)
        self.out, self.bits, self.scale = out, bits, scale

    def backend(self) -> str:
        """The backend this worker's model runs on."""
        return str(self.model.runner.name)

    def run(self, chunk: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Filter each (source, target name) of ``chunk``; one record per file: ``{"out", "bytes", "sha256",
        "pixels"}`` when it was placed, ``{"out", "source", "error"}`` (one line) when it could not be."""
        return [self._one(source, target) for source, target in chunk]

    def _one(self, source: str, target: str) -> dict[str, Any]:
        from kernelnet.runtime.apply import Job
        from kernelnet.runtime.apply_jobs import run_job
        from kernelnet.runtime.cluster.locations import join, local_copy, place

        counted = _Counted(self.model)
        destination = join(self.out, target)
        try:
            with local_copy(source, self.scratch) as path:
                job = Job(path, Path(target))  # run_job reads the output kind from the target's suffix

                def write(into: Path) -> None:
                    run_job(counted, job, self.bits, self.scale, self.encoding, into=into)  # type: ignore[arg-type]

                size, digest = place(destination, write, self.scratch)
        except Exception as exc:  # one file's trouble (undecodable, too large, a file system's error) is listed
            text = " ".join(str(exc).split()) or type(exc).__name__
            if not isinstance(exc, (KernelnetError, OSError, ValueError)):
                text = f"{type(exc).__name__}: {text}"
            return {"out": target, "source": source, "error": text if source in text else f"{source}: {text}"}
        return {"out": target, "bytes": size, "sha256": digest, "pixels": counted.pixels}
