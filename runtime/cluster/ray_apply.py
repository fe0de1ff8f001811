"""The driver of ``kernelnet apply --engine ray``: plan the outputs, skip the ones the manifest has, hand the rest in
chunks to Ray actors that each hold the model, and record every finished file as it comes back.

Ray core actors, each handed one chunk at a time (``ray.wait``), rather than Ray Data's ``map_batches``: the work is one file in,
one file out, with nothing to shuffle, and on a 2-core machine the pool ran 20,000 small PNGs at 0.9–1.0× the local
apply where Ray Data's streaming executor ran them at 0.7–0.8× (docs/architecture.md). Actors restart when their
process dies (``max_restarts=-1``) and the chunk they held is run again (``max_task_retries=-1``): its files are
written again with the same bytes, each placed whole (:func:`~kernelnet.runtime.cluster.locations.place`).

    >>> summary = apply_on_ray("model.onnx", ("photos/",), "edges/")      # doctest: +SKIP
    >>> print("\\n".join(summary.lines()))                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelnet.runtime.cluster.locations import is_url, join, list_inputs, plan_outputs, sweep_partials
from kernelnet.runtime.cluster.manifest import MANIFEST_NAME, RunManifest, model_digest
from kernelnet.runtime.errors import KernelnetError


@dataclass
class RunSummary:
    """What a run did: files planned, already done before it, written by it, failed (source, one-line error)."""

    total: int
    done_before: int
    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pixels: int = 0
    seconds: float = 0.0
    workers: int = 0
    backend: str = ""
    manifest: str = ""
    stopped: bool = False
    """True when ``fail_fast`` stopped the run at a bad file."""

    def lines(self) -> list[str]:
        """The summary as printed: one line of counts and speed, then one line per failed file."""
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        head = (f"ray: {self.total} files: {self.written} written, {self.done_before} already done, "
                f"{len(self.failed)} failed; {self.pixels / 1e6:.1f} Mpx in {self.seconds:.1f} s "
                f"({rate:.0f} files/s, {self.workers} workers, {self.backend or 'no backend started'})")
        tail = [f"failed: {text}" for _, text in self.failed]
        if self.stopped:
            tail.append("stopped at the first failed file (--fail-fast); finished files are kept")
        return [head, *tail, f"manifest: {self.manifest}"]


def require_ray() -> Any:
    """The ``ray`` module, or a one-line error naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise KernelnetError("--engine ray needs Ray: pip install 'kernelnet[ray]'") from exc
    return ray


def connect(address: str | None, cpus: int | None) -> tuple[Any, bool]:
    """``(ray, started)``: the Ray module connected to the cluster at ``address`` (``None``: ``RAY_ADDRESS``, else
    a new local one with ``cpus`` CPUs); ``started`` is False when this process was connected already."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=cpus, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = address or os.environ.get("RAY_ADDRESS") or "a new local cluster"
        raise KernelnetError(f"cannot start Ray ({where}): {first}") from exc
    return ray, True


def default_manifest(out: str) -> Path:
    """Inside a local output folder; for a URL, in the working folder under a name drawn from the URL."""
    if not is_url(out):
        return Path(out) / MANIFEST_NAME
    return Path(f"kernelnet-manifest-{hashlib.sha256(out.encode()).hexdigest()[:12]}.jsonl")


def apply_on_ray(model: str, inputs: tuple[str, ...], out: str, fmt: str | None = None, bits: int | None = None,
                 scale: str | None = None, *, backend: str = "auto", address: str | None = None,
                 workers: int | None = None, manifest: Path | None = None, fail_fast: bool = False,
                 max_pixels: int | None = None, chunk: int | None = None,
                 progress: bool | None = None) -> RunSummary:
    """Filter every input file into ``out`` (a folder or URL) on a Ray cluster; files the manifest records as
    finished are skipped. ``workers``: actors (default: the cluster's CPUs); ``chunk``: files per actor call.
    Raises :class:`KernelnetError` for bad input; bad files are listed in the summary (the first one raises nothing
    but stops the run with ``fail_fast``)."""
    from kernelnet.runtime import load
    from kernelnet.runtime.apply import target_encoding
    from kernelnet.runtime.describe import resolve_model_path

    start = time.perf_counter()
    require_ray()  # before anything is planned or written
    model_file = resolve_model_path(model)
    encoding = target_encoding(load(model_file, backend=backend))  # refuses a bad model before any work
    jobs = plan_outputs(list_inputs(inputs), out, fmt, encoding["format"] if encoding else None)
    if not is_url(out) and Path(out).exists() and not Path(out).is_dir():
        raise KernelnetError(f"output {out} exists and is not a folder (--engine ray writes a folder)")
    header = {"model_sha256": model_digest(model_file), "format": fmt, "bits": bits, "scale": scale}
    manifest_path = manifest or default_manifest(out)
    made = [p for p in (manifest_path.parent, *manifest_path.parent.parents) if not p.exists()]
    fresh = not manifest_path.exists()
    summary = RunSummary(len(jobs), 0, manifest=str(manifest_path))
    try:
        with RunManifest.open(manifest_path, header) as record:
            pending = [job for job in jobs if not _finished(record.done.get(job[1]), out)]
            summary.done_before = len(jobs) - len(pending)
            sweep_partials(out, [target for _, target in pending])
            if pending:
                _run(pending, model_file.read_bytes(), out, (backend, bits, scale, max_pixels), record, summary,
                     address, workers, fail_fast, chunk, progress)
    except BaseException:
        if fresh and not summary.written:  # nothing done: leave no manifest and no folder behind
            with contextlib.suppress(OSError):
                manifest_path.unlink()
            for folder in made:  # deepest first
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    summary.seconds = time.perf_counter() - start
    return summary


def _finished(entry: dict[str, Any] | None, out: str) -> bool:
    """Recorded as finished, and (for a local output) still there at the recorded size."""
    if entry is None:
        return False
    if is_url(out):
        return True
    try:
        return os.stat(join(out, entry["out"])).st_size == entry.get("bytes")
    except OSError:
        return False


def _run(pending: list[tuple[str, str]], model_bytes: bytes, out: str, options: tuple[Any, ...],
         record: RunManifest, summary: RunSummary, address: str | None, workers: int | None, fail_fast: bool,
         chunk: int | None, progress: bool | None) -> None:
    from kernelnet.runtime.cluster.worker import FileWorker

    ray, started = connect(address, workers)
    actors: list[Any] = []
    try:
        count = max(1, min(workers or int(ray.cluster_resources().get("CPU", 1)), len(pending)))
        size = chunk or max(1, min(256, math.ceil(len(pending) / (count * 8))))
        remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(FileWorker)
        actors = [remote.remote(model_bytes, out, *options) for _ in range(count)]
        summary.workers = count
        try:
            summary.backend = ray.get(actors[0].backend.remote())
        except ray.exceptions.RayError as exc:
            raise KernelnetError(f"a Ray worker could not load the model: {first_line(exc)}") from exc
        queue = deque(pending[i:i + size] for i in range(0, len(pending), size))
        idle, running = list(actors), {}
        with _progress(len(pending), progress) as step:
            while queue or running:
                while idle and queue:  # one chunk per actor at a time: the rest waits here, not in Ray
                    actor = idle.pop()
                    running[actor.run.remote(queue.popleft())] = actor
                done, _ = ray.wait(list(running), num_returns=1)
                idle.append(running.pop(done[0]))
                records = ray.get(done[0])
                finished = [r for r in records if "error" not in r]
                record.record([{k: r[k] for k in ("out", "bytes", "sha256")} for r in finished])
                summary.written += len(finished)
                summary.pixels += sum(r["pixels"] for r in finished)
                summary.failed.extend((r["source"], r["error"]) for r in records if "error" in r)
                step(len(records))
                if fail_fast and summary.failed and queue:
                    summary.stopped = True
                    queue.clear()  # the chunks in flight finish and are recorded; no new one starts
    except Exception as exc:
        if type(exc).__module__.startswith("ray"):
            raise KernelnetError(f"the Ray run failed: {first_line(exc)}") from exc
        raise
    finally:
        if started:  # the cluster ends the actors this driver owns as it disconnects
            ray.shutdown()
        else:  # a caller's own connection: free the CPUs now
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor)


def first_line(exc: BaseException) -> str:
    """One line for a Ray error: the task's own exception where Ray kept it, else its message's last error line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and str(cause).strip():
        text = str(cause).strip().splitlines()[0]
        return text if isinstance(cause, KernelnetError) else f"{type(cause).__name__}: {text}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else type(exc).__name__)


@contextlib.contextmanager
def _progress(total: int, show: bool | None) -> Iterator[Callable[[int], Any]]:
    """A step function for a tqdm bar over ``total`` files (shown on a terminal unless ``show`` says)."""
    if not (sys.stderr.isatty() if show is None else show) or total < 2:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="apply (ray)", unit="file", leave=False) as bar:
        yield bar.update
