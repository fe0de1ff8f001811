"""Test helpers shared by the test modules (import them from here, never from another test module).

Model makers: :func:`exported` (a real ``kernelnet export`` of an exact run, or — where torch is not installed, as
in the runtime-alone CI job — the same graph built straight from the filter spec), :func:`make_onnx` (a
hand-built kernelnet-style graph), :func:`save_exact_run` (a run directory without training).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs the [train] extra (torch): runtime-alone install")


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``kernelnet ARGS`` in a subprocess (the real entry point), capturing output."""
    return subprocess.run([sys.executable, "-m", "kernelnet", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def save_exact_run(run_dir: Path, kernel: np.ndarray | str = "sobel", model: str = "single", normalize: bool = False,
                   padding: str = "zeros", bias: bool = False, metrics: dict | None = None) -> Path:
    """A run directory whose weights are exactly the target filter (no training), for fast downstream tests."""
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.filters import resolve_filter
    from kernelnet.learn.models import build_model, target_weight
    from kernelnet.rundir import save_metrics, save_model

    name = kernel if isinstance(kernel, str) else "custom"
    k = resolve_filter(kernel).kernel if isinstance(kernel, str) else np.asarray(kernel, dtype=np.float64)
    config = RunConfig(filter=name if isinstance(kernel, str) else "custom",
                       target_kernel=tuple(tuple(float(v) for v in row) for row in k), model=model,
                       normalize=normalize, kernel_size=k.shape[0], bias=bias, padding=padding)
    net = build_model(model, k.shape[0], bias, normalize, padding)
    with torch.no_grad():
        net.conv.weight.copy_(target_weight(torch.from_numpy(k), model).float())
        if bias:
            net.conv.bias.zero_()
    save_model(run_dir, net, config)
    save_metrics(run_dir, metrics or {"kernel_max_abs_error": 0.0, "solver": "exact"})
    return run_dir


def kn(*args: object) -> object:
    """Run the CLI in-process (same code path as the console script: exit codes, one-line errors)."""
    from click.testing import CliRunner

    from kernelnet.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def edit_weight(path: Path, change, precision: str | None = None) -> None:
    """Rewrite the first Conv's weight initializer of an ONNX file in place (metadata untouched unless precision)."""
    proto = onnx.load(str(path))
    first = next(n.input[1] for n in proto.graph.node if n.op_type == "Conv")
    for init in proto.graph.initializer:
        if init.name == first:
            init.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(init).copy()), first))
    if precision is not None:
        for prop in proto.metadata_props:
            if prop.key == "kernelnet.precision":
                prop.value = precision
    onnx.save(proto, str(path))


SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_EXPORT_ROOT = tempfile.TemporaryDirectory(prefix="kernelnet-runtime-tests-")
EXPORT_VARIANTS = {
    "single": {},
    "abs": {"normalize": True},
    "double": {"model": "double"},
    "reflect5": {"kernel": "gaussian5", "padding": "reflect"},
}


@functools.lru_cache(maxsize=None)
def exported(variant: str) -> Path:
    """A real ``kernelnet export`` of an exact run (shared by the runtime test modules; exported once)."""
    folder = Path(_EXPORT_ROOT.name) / variant
    export_exact(folder, **EXPORT_VARIANTS[variant])
    return folder


def export_exact(folder: Path, kernel: np.ndarray | str = "sobel", model: str = "single", normalize: bool = False,
                 padding: str = "zeros") -> Path:
    """``folder/model.onnx`` of the exact run of these settings: ``kernelnet export`` where torch is installed;
    in the runtime alone, the same graph built straight from the filter spec (no PyTorch check)."""
    if HAS_TORCH:
        from kernelnet.export.onnx_export import export_onnx

        return export_onnx(save_exact_run(folder, kernel, model, normalize, padding), verify=False).path
    from kernelnet.export.onnx_graph import build_graph, choose_form
    from kernelnet.filters import resolve_filter
    from kernelnet.runtime.spec import FilterSpec
    from kernelnet.runtime.spec_codec import encode_spec

    k = resolve_filter(kernel).kernel if isinstance(kernel, str) else np.asarray(kernel, dtype=np.float64)
    spec = FilterSpec.from_kind(k.astype(np.float32), model, normalize, padding)
    meta = encode_spec(spec, target=spec, extra={"filter": kernel if isinstance(kernel, str) else "custom",
                                                 "graph_form": choose_form(spec)})
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(build_graph(spec, metadata=meta), str(folder / "model.onnx"))
    return folder / "model.onnx"


def copy_run(variant: str, dest: Path) -> Path:
    """A private copy of an exported run (for tests that modify it)."""
    return Path(shutil.copytree(exported(variant), dest / variant))


def make_onnx(path: Path, kernels: np.ndarray, model: str = "single", normalize: bool = False,
              padding: str = "zeros", input_dtype: str = "float32", target: np.ndarray | None = None) -> Path:
    """A hand-built kernelnet-style graph (Pad → Conv → Abs / magnitude) with kernelnet metadata, in milliseconds.

    ``kernels`` is (C, k, k); C = 2 makes the magnitude model.
    """
    kernels = np.asarray(kernels, dtype=np.float32)
    c, k = kernels.shape[0], kernels.shape[-1]
    r = k // 2
    dims = ["batch", 1, "height", "width"]
    inits = [helper.make_tensor("weight", TensorProto.FLOAT, (c, 1, k, k), kernels.ravel())]
    nodes, x = [], "input"
    if input_dtype == "uint8":
        inits.append(helper.make_tensor("scale", TensorProto.FLOAT, (), [255.0]))
        nodes += [helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT),
                  helper.make_node("Div", ["xf", "scale"], ["xs"])]
        x = "xs"
    if padding != "zeros":
        inits.append(helper.make_tensor("pads", TensorProto.INT64, (8,), [0, 0, r, r, 0, 0, r, r]))
        mode = {"reflect": "reflect", "replicate": "edge"}[padding]
        nodes.append(helper.make_node("Pad", [x, "pads"], ["padded"], mode=mode))
        nodes.append(helper.make_node("Conv", ["padded", "weight"], ["conv"]))
    else:
        nodes.append(helper.make_node("Conv", [x, "weight"], ["conv"], pads=[r, r, r, r]))
    if c == 2:
        for i in range(2):
            inits += [helper.make_tensor(f"s{i}", TensorProto.INT64, (1,), [i]),
                      helper.make_tensor(f"e{i}", TensorProto.INT64, (1,), [i + 1])]
        inits.append(helper.make_tensor("axis", TensorProto.INT64, (1,), [1]))
        nodes += [helper.make_node("Slice", ["conv", "s0", "e0", "axis"], ["a"]),
                  helper.make_node("Slice", ["conv", "s1", "e1", "axis"], ["b"]),
                  helper.make_node("Mul", ["a", "a"], ["aa"]), helper.make_node("Mul", ["b", "b"], ["bb"]),
                  helper.make_node("Add", ["aa", "bb"], ["sq"]), helper.make_node("Sqrt", ["sq"], ["output"])]
    elif normalize:
        nodes.append(helper.make_node("Abs", ["conv"], ["output"]))
    else:
        nodes[-1].output[0] = "output"
    in_type = TensorProto.UINT8 if input_dtype == "uint8" else TensorProto.FLOAT
    graph = helper.make_graph(nodes, "kernelnet", [helper.make_tensor_value_info("input", in_type, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    target = kernels[0] if target is None else target
    meta = {"model": "double" if c == 2 else "single", "normalize": "true" if normalize else "false",
            "padding": padding, "kernel_size": str(k), "kernels": json.dumps(kernels.tolist()), "bias": "[]",
            "target_kernel": json.dumps(np.asarray(target).tolist()), "input_dtype": input_dtype,
            "precision": "fp32", "filter": "custom"}
    helper.set_model_props(proto, {f"kernelnet.{key}": value for key, value in meta.items()})
    onnx.save(proto, str(path))
    return path


def one_line_exit_2(res) -> None:
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "Traceback" not in res.output, res.output



def spec_onnx(path: Path, spec) -> Path:
    """``path``: the graph ``kernelnet.export.onnx_graph`` builds for the FilterSpec ``spec``, with its metadata."""
    from kernelnet.export.onnx_graph import write_graph

    return write_graph(path, spec)
