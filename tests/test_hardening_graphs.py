"""Graphs that lie: the native stencil stands in only for a graph proven to be its metadata's stencil, tiling only
for a graph that reads nearby pixels; anything else runs whole in onnxruntime, as the graph says."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from kernelnet.runtime import load
from kernelnet.runtime.errors import KernelnetError
from tests.helpers import SOBEL, kn


def _graph(path, nodes, inits, out_dims=("batch", 1, "height", "width"), props=None):
    dims = ["batch", 1, "height", "width"]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(out_dims))], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    proto.ir_version = 8
    meta = {"model": "single", "normalize": "false", "padding": "zeros", "kernel_size": "3",
            "kernels": json.dumps(SOBEL[None].tolist()), "bias": "[]", "precision": "fp32", **(props or {})}
    helper.set_model_props(proto, {f"kernelnet.{k}": v for k, v in meta.items()})
    onnx.save(proto, str(path))
    return path


def _weight():
    return helper.make_tensor("w", TensorProto.FLOAT, (1, 1, 3, 3), SOBEL.astype(np.float32).ravel())


def test_a_graph_that_dodges_the_probe_height_is_run_as_itself(tmp_path, rng):
    """Equal to its metadata at H = 37 only (the old probe's height), negated elsewhere: the structure check
    refuses the native stencil, and onnxruntime computes what the graph says."""
    inits = [_weight(), helper.make_tensor("two", TensorProto.INT64, (1,), [2]),
             helper.make_tensor("h37", TensorProto.INT64, (1,), [37]),
             helper.make_tensor("minus", TensorProto.FLOAT, (), [-1.0])]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["input"], ["s"]), helper.make_node("Gather", ["s", "two"], ["h"]),
             helper.make_node("Equal", ["h", "h37"], ["is37"]), helper.make_node("Mul", ["c", "minus"], ["neg"]),
             helper.make_node("Where", ["is37", "c", "neg"], ["output"])]
    path = _graph(tmp_path / "dodge.onnx", nodes, inits)
    with pytest.warns(UserWarning, match="Shape node"):
        model = load(path)
    assert model.runner.name == "onnxruntime"
    x = rng.random((20, 30), dtype=np.float32)
    graph = load(path, backend="onnxruntime")
    assert np.array_equal(model(x), graph(x))
    with pytest.raises(KernelnetError, match="native backend cannot run"):
        load(path, backend="native")


def test_a_graph_that_clips_its_input_is_not_replaced(tmp_path):
    inits = [_weight(), helper.make_tensor("lo", TensorProto.FLOAT, (), [0.0]),
             helper.make_tensor("hi", TensorProto.FLOAT, (), [1.0])]
    nodes = [helper.make_node("Clip", ["input", "lo", "hi"], ["x"]),
             helper.make_node("Conv", ["x", "w"], ["output"], pads=[1, 1, 1, 1])]
    with pytest.warns(UserWarning, match="Clip node"):
        assert load(_graph(tmp_path / "clip.onnx", nodes, inits)).runner.name == "onnxruntime"


@pytest.mark.parametrize("out_dims", [("batch", 1, "width", "height"), ("batch", 1, "h2", "w2")])
def test_graphs_whose_output_shape_differs_are_refused(tmp_path, out_dims):
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["output"], perm=[0, 1, 3, 2])]
    path = _graph(tmp_path / "t.onnx", nodes, [_weight()], out_dims)
    with pytest.warns(UserWarning):
        model = load(path)
    with pytest.raises(KernelnetError, match="not a same-size kernelnet filter"):
        model(np.zeros((10, 14), np.float32))


def _sobel_conv(src="input", out="c0", name="w"):
    return helper.make_node("Conv", [src, name], [out], pads=[1, 1, 1, 1])


ATTACKS = {
    # a tiny x⁴ term: invisible on a probe in [−3, 4], large for bright inputs
    "extra-pointwise-term": ([_sobel_conv(), helper.make_node("Mul", ["input", "input"], ["x2"]),
                              helper.make_node("Mul", ["x2", "x2"], ["x4"]),
                              helper.make_node("Mul", ["x4", "tiny"], ["t"]),
                              helper.make_node("Add", ["c0", "t"], ["output"])],
                             {"tiny": np.array(1e-9, np.float32)}),
    # adds row 0 to every row: reads far away, so tiles differ
    "far-slice": ([_sobel_conv(), helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["row0"]),
                   helper.make_node("Add", ["c0", "row0"], ["output"])],
                  {"s0": np.array([0], np.int64), "s1": np.array([1], np.int64), "ax": np.array([2], np.int64)}),
    # nodes out of order: the second Conv is listed first
    "out-of-order": ([helper.make_node("Conv", ["c0", "w"], ["output"], pads=[1, 1, 1, 1]), _sobel_conv()], {}),
    # a 3×3 Conv then a 1×1 Conv is no separable pair
    "conv-then-1x1": ([_sobel_conv(), helper.make_node("Conv", ["c0", "one"], ["output"])],
                      {"one": np.ones((1, 1, 1, 1), np.float32)}),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_graphs_that_only_look_like_stencils_run_as_themselves(tmp_path, attack, rng):
    nodes, extra = ATTACKS[attack]
    inits = [_weight()] + [onnx.numpy_helper.from_array(v, k) for k, v in extra.items()]
    path = _graph(tmp_path / "a.onnx", nodes, inits)
    with pytest.warns(UserWarning):
        model = load(path)
    assert model.runner.name == "onnxruntime"  # no native stand-in
    graph = load(path, backend="onnxruntime")
    x = (rng.random((1, 1, 300, 200), dtype=np.float32) * 1000).astype(np.float32)
    assert np.array_equal(model(x), graph(x))
    if attack in ("far-slice", "out-of-order"):  # not position-local: never tiled
        assert model.runner.halo is None
        with pytest.raises(KernelnetError, match="cannot tile it"):
            load(path, tile=64)(x)
    else:  # local (reach ≤ k//2 = 1): tiles are the whole image's result
        assert model.runner.halo == 1 and np.array_equal(load(path, tile=64)(x), graph(x))
    np.save(tmp_path / "x.npy", x[0, 0])
    assert kn("apply", path, tmp_path / "x.npy", "--out", tmp_path / "y.npy").exit_code == 0  # streamed whole
    assert np.array_equal(np.load(tmp_path / "y.npy"), graph(x[0, 0]))


def test_a_dominated_kernel_of_a_pair_is_still_checked(tmp_path):
    big = np.zeros((3, 3), np.float32)
    big[1, 1] = 1e6
    meta = {"model": "double", "kernels": json.dumps([big.tolist(), SOBEL.tolist()])}
    inits = [helper.make_tensor("wa", TensorProto.FLOAT, (1, 1, 3, 3), big.ravel()),
             helper.make_tensor("wb", TensorProto.FLOAT, (1, 1, 3, 3), np.zeros(9, np.float32))]
    nodes = [helper.make_node("Conv", ["input", "wa"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["input", "wb"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["a", "a"], ["aa"]), helper.make_node("Mul", ["b", "b"], ["bb"]),
             helper.make_node("Add", ["aa", "bb"], ["s"]), helper.make_node("Sqrt", ["s"], ["output"])]
    with pytest.warns(UserWarning, match="weights are not the metadata's"):
        assert load(_graph(tmp_path / "d.onnx", nodes, inits, props=meta)).runner.name == "onnxruntime"
