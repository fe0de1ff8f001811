"""Which backend runs which artifact, and which artifacts sit beside a model (for verify and bench).

Backends: ``native`` (the C stencil, CPU; fp32 models with float32 input, checked against the graph on load),
``onnxruntime`` (CPU), ``onnxruntime-cuda`` / ``onnxruntime-tensorrt`` (onnxruntime's execution providers, need
``onnxruntime-gpu``) and ``tensorrt`` (a serialized engine). ``auto`` picks ``tensorrt`` for ``.engine`` files,
else ``native`` where it can run the model, else ``onnxruntime`` (CPU).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.backends.base import Runner
from kernelnet.runtime.describe import check_fresh, resolve_model_path
from kernelnet.runtime.backends.session import SessionConfig

BACKENDS = ("auto", "native", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


def pick_backend(path: Path, backend: str = "auto") -> str:
    if backend not in BACKENDS:
        raise KernelnetError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "tensorrt" if path.suffix == ".engine" else "auto"
    if (backend == "tensorrt") != (path.suffix == ".engine"):
        raise KernelnetError(f"backend {backend!r} cannot run {path.name}: "
                             + ("use a .engine file" if backend == "tensorrt" else "use an .onnx file"))
    return backend


def open_runner(path: str | os.PathLike[str], backend: str = "auto", threads: int | None = None,
                name: str | None = None, config: SessionConfig | None = None) -> Runner:
    """Load ``path`` (a model file or a run directory) with ``backend``; ``config``: onnxruntime session settings
    (default: the model's tune file, else :class:`SessionConfig` defaults)."""
    path = resolve_model_path(path)
    chosen = pick_backend(path, backend)
    if chosen == "tensorrt":
        from kernelnet.runtime.backends.tensorrt_backend import TensorRTRunner

        runner: Runner = TensorRTRunner(path, name=name or "tensorrt")
        check_fresh(path, runner.info.fields)
        return runner
    if chosen in ("auto", "native"):
        return _native_or_graph(path, chosen, threads, name, config)
    from kernelnet.runtime.backends.onnxruntime_backend import load_onnxruntime

    device = {"onnxruntime": "cpu", "onnxruntime-cuda": "cuda", "onnxruntime-tensorrt": "tensorrt"}[chosen]
    graph = load_onnxruntime(path, threads=threads, device=device, config=config, name=name)
    check_fresh(path, graph.info.fields)
    return graph


def _native_or_graph(path: Path, chosen: str, threads: int | None, name: str | None,
                     config: SessionConfig | None) -> Runner:
    """The native stencil for a model proven before (no onnxruntime at all) or proven now against its onnxruntime
    graph; else (``auto``) that graph."""
    from kernelnet.runtime.backends.native_backend import BUILD_PROBLEM, try_native, unsupported
    from kernelnet.runtime.backends.native_cache import proven_runner, remember_proven
    from kernelnet.runtime.backends.session import resolve_session

    if BUILD_PROBLEM:  # said once per process (the warnings registry drops repeats of one line)
        warnings.warn(f"kernelnet: {BUILD_PROBLEM}", stacklevel=3)
    config = resolve_session(path, config)[0]  # the tune file read once
    threads = threads if threads is not None else config.intra_op_threads or None
    proven, data = proven_runner(path, threads, name or "native")
    if proven is not None:
        check_fresh(path, proven.info.fields)
        return proven
    from kernelnet.runtime.backends.onnxruntime_backend import load_onnxruntime

    graph = load_onnxruntime(path, threads=threads, config=config, name=None if chosen == "native" else name)
    check_fresh(path, graph.info.fields)
    native, reason = try_native(graph, threads=threads, name=name or "native")
    if native is not None:
        remember_proven(path, data, graph.info.fields)
        graph.close()
        return native
    if chosen == "native":
        raise KernelnetError(f"native backend cannot run {path}: {reason}")
    spec = graph.info.spec
    curved = spec is not None and any(p.decode or p.output.encode for p in spec.passes)
    if not unsupported(graph.info, graph.input_dtype) or (spec is not None and spec.is_rank) or curved:  # say so
        warnings.warn(f"native backend not used for {path}: {reason}; running it with onnxruntime", stacklevel=3)
    return graph  # onnxruntime runs what the stencil cannot (int8, fp16, uint8 input, no metadata)


@dataclass(frozen=True)
class Artifact:
    """An artifact of one model: ``name`` (table label), ``path``, ``backend``, and why it cannot run here
    (``missing``, empty when it can)."""

    name: str
    path: Path
    backend: str
    missing: str = ""


def chosen_backend(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The backend ``load(path)`` picks and, where it is not the native stencil, why the stencil declined."""
    path = resolve_model_path(path)
    if path.suffix == ".engine":
        return "tensorrt", ""
    reason = native_missing(path)
    return ("onnxruntime", reason) if reason else ("native", "")


_DECLINED: dict[tuple[str, int, int, int], str] = {}
"""native_missing's answers by (file, mtime, size, stencil build): one command asks about one file more than once."""


def native_missing(path: Path) -> str:
    """Why the native backend cannot run the ONNX model at ``path`` (empty: it can and matches the graph)."""
    from kernelnet.runtime.backends import native_backend
    from kernelnet.runtime.backends.native_backend import try_native
    from kernelnet.runtime.backends.native_cache import proven_runner, remember_proven

    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, id(native_backend._stencil))
    except OSError:
        key = None
    if key in _DECLINED:
        return _DECLINED[key]
    proven, data = proven_runner(path, 1, "native")
    if proven is not None:
        return ""
    from kernelnet.runtime.backends.onnxruntime_backend import OnnxRuntimeRunner  # imports onnxruntime: after the cache

    try:
        graph = OnnxRuntimeRunner(path)
    except KernelnetError as exc:
        return str(exc)
    with graph:
        native, reason = try_native(graph, threads=1)
        if native is not None:
            remember_proven(path, data, graph.info.fields)
    if native is not None:
        native.close()
    if key is not None:
        _DECLINED[key] = reason
    return reason


INT8_SUFFIXES = {".int8.onnx": "onnxruntime-int8", ".int8.u8.onnx": "onnxruntime-int8-u8"}
"""Quantized siblings written by ``kernelnet quantize`` (float input / raw uint8 input)."""


def int8_paths(fp32: Path) -> dict[str, Path]:
    stem = fp32.name[: -len(".onnx")]
    return {name: fp32.with_name(stem + suffix) for suffix, name in INT8_SUFFIXES.items()}


def discover(path: str | os.PathLike[str]) -> list[Artifact]:
    """The fp32 ONNX model at/for ``path`` and its siblings: ``*.int8.onnx``, ``*.int8.u8.onnx`` and ``*.engine``
    where present."""
    path = resolve_model_path(path)
    fp32 = path.with_suffix(".onnx") if path.suffix == ".engine" else path
    for suffix in INT8_SUFFIXES:
        if path.name.endswith(suffix):
            fp32 = path.with_name(path.name[: -len(suffix)] + ".onnx")
    found: list[Artifact] = []
    if fp32.is_file():
        found.append(Artifact("onnxruntime", fp32, "onnxruntime"))
        found.append(Artifact("native", fp32, "native", native_missing(fp32)))
    for name, int8 in int8_paths(fp32).items():
        if int8.is_file():
            found.append(Artifact(name, int8, "onnxruntime"))
    engine = path if path.suffix == ".engine" else fp32.with_suffix(".engine")
    if engine.is_file():
        from kernelnet.runtime.backends.tensorrt_backend import missing_requirements

        missing = missing_requirements()
        found.append(Artifact("tensorrt", engine, "tensorrt",
                              f"needs {', '.join(missing)}" if missing else ""))
    return found


def open_backends(model: str | os.PathLike[str], threads: int | None = None) -> tuple[list[Any], list[dict[str, str]]]:
    """Every runnable artifact of ``model`` (fp32 ONNX on onnxruntime and natively, int8 ONNX, TensorRT engine)
    as verify :class:`~kernelnet.runtime.checks.verify.Backend` s, and the ones skipped with why."""
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.checks.verify import Backend

    backends, skipped = [], []
    for artifact in discover(model):
        if artifact.missing:
            skipped.append({"name": artifact.name, "path": str(artifact.path), "reason": artifact.missing})
            continue
        runner = open_runner(artifact.path, artifact.backend, threads, name=artifact.name)
        precision = runner.info.precision
        if artifact.backend == "tensorrt" and precision == "fp32":
            precision = "tf32"  # TensorRT runs fp32 engines on TF32 tensor cores by default (Ampere and newer)
        backends.append(Backend(artifact.name, Model(runner), precision))
    if not backends:
        reasons = "; ".join(f"{s['name']} {s['reason']}" for s in skipped)
        raise KernelnetError(f"nothing runnable found for {model}" + (f": {reasons}" if reasons else ""))
    return backends, skipped
