"""The ONNX nodes of a rank filter (min / max / median over a footprint), exact in float32 and float16: order
statistics only pick input values, they never round.

Input: the padded image (N, 1, H + 2r, W + 2r); output (N, 1, H, W), with dynamic H and W.

* ``max`` over a square: one ``MaxPool`` (k×k, stride 1, no pads); ``min``: ``Neg`` → ``MaxPool`` → ``Neg``;
* any other footprint or the median: one ``Slice`` per footprint tap (offsets (i, j) of the padded image,
  ends counted from the far edge so H and W stay dynamic), ``Concat`` on the channel axis, then ``ReduceMin`` /
  ``ReduceMax``, or for the median of n taps ``TopK`` of the n // 2 + 1 largest and its last value.

Both forms are what onnxruntime and TensorRT's ONNX parser take with dynamic shapes (TensorRT in float types:
the graph casts integer inputs to float first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.spec import FilterSpec

_FAR = np.iinfo(np.int64).max


def rank_nodes(b: Any, x: str, spec: FilterSpec) -> str:
    """The order statistic of ``spec`` over the padded ``x``; ``b`` is the graph builder of
    :mod:`kernelnet.export.onnx_graph`."""
    k, op = spec.kernel_size, spec.combine
    footprint = spec.footprint
    if k == 1:
        return x
    if footprint.all() and op in ("min", "max"):
        src = b.op("Neg", [x]) if op == "min" else x
        y = b.op("MaxPool", [src], kernel_shape=[k, k], strides=[1, 1])
        return b.op("Neg", [y]) if op == "min" else y
    axes = b.const("rank_axes", np.array([2, 3], np.int64))
    taps = []
    for i, j in zip(*np.nonzero(footprint)):
        starts = b.const(f"tap_start_{i}_{j}", np.array([i, j], np.int64))
        ends = b.const(f"tap_end_{i}_{j}", np.array([i - (k - 1) if i < k - 1 else _FAR,
                                                        j - (k - 1) if j < k - 1 else _FAR], np.int64))
        taps.append(b.op("Slice", [x, starts, ends, axes]))
    stack = b.op("Concat", taps, axis=1)
    channel = b.const("rank_channel", np.array([1], np.int64))
    if op == "min":
        return b.op("ReduceMin", [stack, channel], keepdims=1)
    if op == "max":
        return b.op("ReduceMax", [stack, channel], keepdims=1)
    keep = len(taps) // 2 + 1
    values = b.op("TopK", [stack, b.const("rank_keep", np.array([keep], np.int64))], axis=1, largest=1, sorted=1)
    b.nodes[-1].output.append(f"{values}_indices")  # TopK has two outputs; the indices are not used
    last = b.const("rank_last", np.array([keep - 1], np.int64))
    return b.op("Slice", [values, last, b.const("rank_end", np.array([keep], np.int64)), channel])
