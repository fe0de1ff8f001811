"""The driver of ``kernelnet apply --engine ray``: plan the outputs, skip the ones the manifest has, hand the rest in
chunks to Ray actors that each hold the model, and record every finished file as it comes back.

Ray core actors, each handed one chunk at a time (``ray.wait``), rather than Ray Data's ``map_batches``: the work is
one file in, one file out, with nothing to shuffle, and on a 2-core machine such actors ran 20,000 small PNGs at
0.9–1.0× the local apply where Ray Data's streaming executor ran them at 0.7–0.8× (docs/architecture.md). An actor
whose process dies is restarted by Ray and its chunk run again (``MAX_RETRIES`` times); a chunk that still fails is
split into single files, and a file that kills its worker every time is listed as failed. Every file is placed
whole (:func:`~kernelnet.runtime.cluster.locations.place`), so a chunk run twice writes the same bytes twice.

    >>> summary = apply_on_ray("model.onnx", ("photos/",), "edges/")      # doctest: +SKIP
    >>> print("\\n".join(summary.lines()))                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelnet.runtime.apply_jobs import OUT_SUFFIXES
from kernelnet.runtime.cluster.connection import connect, first_line, require_ray, wait_any
from kernelnet.runtime.cluster.locations import (is_url, join, list_inputs, output_sizes, plan_outputs,
                                                 sweep_partials)
from kernelnet.runtime.cluster.manifest import MANIFEST_NAME, RunManifest, model_digest
from kernelnet.runtime.errors import KernelnetError

MAX_RETRIES = 3
"""Times a chunk is run again on a restarted actor after its worker process died."""
READY_SECONDS = 120.0
"""How long the actors may take to start and load the model; those not placed by then are not used."""
GPU_BACKENDS = ("onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


@dataclass
class RunSummary:
    """What a run did: files planned, already done before it, written by it, failed (source, one-line error)."""

    total: int
    done_before: int = 0
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
        head = (f"ray: {_count(self.total, 'file')}: {self.written} written, {self.done_before} already done, "
                f"{len(self.failed)} failed; {self.pixels / 1e6:.1f} Mpx in {self.seconds:.1f} s "
                f"({rate:.0f} files/s, {_count(self.workers, 'worker')}, {self.backend or 'no backend started'})")
        tail = [f"failed: {text}" for _, text in self.failed]
        if self.stopped:
            tail.append("stopped at the first failed file (--fail-fast); finished files are kept")
        return [head, *tail, f"manifest: {self.manifest}"]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def default_manifest(out: str) -> Path:
    """Inside a local output folder; for a URL, in the working folder under a name drawn from the URL."""
    if not is_url(out):
        return Path(out) / MANIFEST_NAME
    return Path(f"kernelnet-manifest-{hashlib.sha256(out.encode()).hexdigest()[:12]}.jsonl")


def apply_on_ray(model: str, inputs: tuple[str, ...], out: str, fmt: str | None = None, bits: int | None = None,
                 scale: str | None = None, *, backend: str = "auto", address: str | None = None,
                 workers: int | None = None, manifest: str | Path | None = None, fail_fast: bool = False,
                 max_pixels: int | None = None, chunk: int | None = None,
                 progress: bool | None = None) -> RunSummary:
    """Filter every input file into ``out`` (a folder or URL) on a Ray cluster; files the manifest records as
    finished (same input, output still there) are skipped. ``workers``: actors (default: the cluster's free CPUs);
    ``chunk``: files per actor call. Raises :class:`KernelnetError` for bad input; bad files are listed in the
    summary (with ``fail_fast`` the first one stops the run)."""
    from kernelnet.runtime import load
    from kernelnet.runtime.apply import target_encoding
    from kernelnet.runtime.describe import resolve_model_path

    start = time.perf_counter()
    require_ray()  # before anything is planned or written
    out = out if is_url(out) else os.path.abspath(out)  # workers may run in other folders, or on other machines
    folder = not is_url(out) and Path(out).is_dir()
    if not is_url(out) and Path(out).exists() and not folder:
        raise KernelnetError(f"output {out} exists and is not a folder (--engine ray writes a folder)")
    if Path(out).suffix.lower() in OUT_SUFFIXES and not folder:
        raise KernelnetError(f"--engine ray writes a folder: {out} names a file (use a folder, or the local engine)")
    if manifest is not None and is_url(str(manifest)):
        raise KernelnetError(f"the run manifest is a local file, not {manifest}")
    model_file = resolve_model_path(model)
    encoding = target_encoding(load(model_file, backend=backend))  # refuses a bad model before any work
    jobs = plan_outputs(list_inputs(inputs, out), out, fmt, encoding["format"] if encoding else None)
    header = {"model_sha256": model_digest(model_file), "out": out, "format": fmt, "bits": bits, "scale": scale}
    manifest_path = Path(os.path.abspath(manifest or default_manifest(out)))
    made = [p for p in (manifest_path.parent, *manifest_path.parent.parents) if not p.exists()]
    summary = RunSummary(len(jobs), manifest=str(manifest_path))
    if max_pixels is None and os.environ.get("KERNELNET_MAX_PIXELS"):
        max_pixels = int(os.environ["KERNELNET_MAX_PIXELS"])  # the driver's budget reaches remote workers too
    options = (backend, bits, scale, max_pixels, model_file.suffix)
    with RunManifest.open(manifest_path, header) as record:
        try:
            pending = _pending(jobs, record, out)
            summary.done_before = len(jobs) - len(pending)
            if pending:
                _run(pending, model_file.read_bytes(), out, options, record, summary, address, workers, fail_fast,
                     chunk, progress)
        except BaseException as exc:
            summary.written = record.appended  # what the manifest holds, whatever step the interrupt hit
            with contextlib.suppress(AttributeError, TypeError):
                exc.kernelnet_summary = summary  # type: ignore[attr-defined]  # what an interrupted run kept
            if record.created and not record.appended:  # nothing done: leave no manifest and no folder behind
                record.discard()
                for folder in made:  # deepest first
                    with contextlib.suppress(OSError):
                        folder.rmdir()
            raise
        finally:  # partial files of workers killed in this run or an earlier one (the lock is still held)
            with contextlib.suppress(KernelnetError, OSError):
                sweep_partials(out, [target for _, target, _ in jobs])
    summary.seconds = time.perf_counter() - start
    return summary


def _pending(jobs: list[tuple[str, str, str]], record: RunManifest, out: str) -> list[tuple[str, str, str]]:
    """The jobs not recorded as finished from the same input (stamp) whose output is still there at its size."""
    sizes = output_sizes(out) if is_url(out) and record.done else None
    pending = []
    for source, target, stamp in jobs:
        entry = record.done.get(target)
        if entry is None or entry.get("src") != stamp:
            pending.append((source, target, stamp))
            continue
        if sizes is not None:
            size = sizes.get(target)
        else:
            try:
                size = os.stat(join(out, target)).st_size
            except OSError:
                size = None
        if size != entry.get("bytes"):
            pending.append((source, target, stamp))
    return pending


def _run(pending: list[tuple[str, str, str]], model_bytes: bytes, out: str, options: tuple[Any, ...],
         record: RunManifest, summary: RunSummary, address: str | None, workers: int | None, fail_fast: bool,
         chunk: int | None, progress: bool | None) -> None:
    from kernelnet.runtime.cluster.worker import FileWorker

    stamps = {target: stamp for _, target, stamp in pending}
    ray, started = connect(address, workers)
    spawned: list[Any] = []
    try:
        try:
            free = int(ray.available_resources().get("CPU", 0)) or 1
            count = max(1, min(workers or free, free, len(pending)))
            gpus = 1 if options[0] in GPU_BACKENDS else 0
            remote = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=-1, max_task_retries=MAX_RETRIES)(FileWorker)
            spawned = [remote.remote(model_bytes, out, *options) for _ in range(count)]
            actors = _ready(spawned, ray)
            summary.workers = len(actors)
            summary.backend = ray.get(actors[0].backend.remote())
            size = chunk or (1 if fail_fast else max(1, min(256, math.ceil(len(pending) / (len(actors) * 8)))))
            files = [(source, target) for source, target, _ in pending]
            queue = deque(files[i:i + size] for i in range(0, len(files), size))
            idle, running = list(actors), {}
            with _progress(len(pending), progress) as step:
                while queue or running:
                    while idle and queue:  # one chunk per actor at a time: the rest waits here, not in Ray
                        actor, work = idle.pop(), queue.popleft()
                        running[actor.run.remote(work)] = (actor, work)
                    done = wait_any(ray, list(running))
                    actor, work = running.pop(done)
                    idle.append(actor)
                    try:
                        records = ray.get(done)
                    except ray.exceptions.RayActorError as exc:  # its worker died MAX_RETRIES + 1 times
                        if len(work) > 1:
                            queue.extend([one] for one in work)  # find the file that kills it
                            continue
                        records = [{"out": work[0][1], "source": work[0][0],
                                    "error": f"{work[0][0]}: its worker died each time ({first_line(exc)})"}]
                    finished = [r for r in records if "error" not in r]
                    record.record([{"out": r["out"], "bytes": r["bytes"], "sha256": r["sha256"],
                                    "src": stamps[r["out"]]} for r in finished])
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
            for actor in spawned:
                with contextlib.suppress(Exception):
                    ray.kill(actor)


def _ready(actors: list[Any], ray: Any) -> list[Any]:
    """The actors that started and loaded the model within ``READY_SECONDS`` (the others are not fed: a cluster
    whose CPUs are taken would hold their chunks forever); a one-line error when none did."""
    probes = {actor.backend.remote(): actor for actor in actors}
    ready, late = ray.wait(list(probes), num_returns=len(probes), timeout=READY_SECONDS)
    for ref in ready:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            raise KernelnetError(f"a Ray worker could not load the model: {first_line(exc)}") from exc
    for ref in late:
        ray.kill(probes[ref])
    if not ready:
        raise KernelnetError(f"no Ray worker started within {READY_SECONDS:.0f} s (the cluster's CPUs are busy?)")
    return [probes[ref] for ref in ready]


@contextlib.contextmanager
def _progress(total: int, show: bool | None) -> Iterator[Callable[[int], Any]]:
    """A step function for a tqdm bar over ``total`` files (shown on a terminal unless ``show`` says)."""
    if not (sys.stderr.isatty() if show is None else show) or total < 2:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="apply (ray)", unit="file", leave=False) as bar:
        yield bar.update
