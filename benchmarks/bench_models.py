"""Models for the benchmarks: the graph ``kernelnet.export.onnx_graph`` builds for a FilterSpec, with its metadata
(what ``kernelnet export`` writes for an exact run, without a training run first)."""

from __future__ import annotations

from pathlib import Path


def save_graph(path: Path, spec) -> Path:
    import onnx

    from kernelnet.export.onnx_graph import build_graph
    from kernelnet.runtime.spec_codec import encode_spec

    onnx.save(build_graph(spec, metadata=encode_spec(spec)), str(path))
    return path
