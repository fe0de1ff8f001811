"""The ONNX nodes of a rank filter (min / max / median over a footprint), exact in float32 and float16: order
statistics only pick input values, they never round; ``range`` is ``Sub`` of the max and the min (one rounding,
the same as the reference's in float32).

Input: the padded image (N, 1, H + 2r, W + 2r); output (N, 1, H, W), with dynamic H and W.

* ``max`` over a square: one ``MaxPool`` (k×k, stride 1, no pads); ``min``: ``Neg`` → ``MaxPool`` → ``Neg``;
* any other footprint or the median: one ``Slice`` per footprint tap (offsets (i, j) of the padded image,
  ends counted from the far edge so H and W stay dynamic), then ``Concat`` on the channel axis and ``ReduceMin`` /
  ``ReduceMax``, or for the median a selection network of elementwise ``Min`` / ``Max``
  (:mod:`kernelnet.runtime.rank_network`).

Every op here is one onnxruntime and TensorRT's ONNX parser take with dynamic shapes (TensorRT in float types:
the graph casts integer inputs to float first).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.checks.rank_check import tap_ends
from kernelnet.runtime.rank_network import median_network
from kernelnet.runtime.spec import FilterSpec


def rank_nodes(b: Any, x: str, spec: FilterSpec) -> str:
    """The order statistic of ``spec`` over the padded ``x``; ``b`` is the graph builder of
    :mod:`kernelnet.export.onnx_graph`."""
    k, op = spec.kernel_size, spec.combine
    footprint = spec.footprint
    if k == 1:
        return b.op("Sub", [x, x]) if op == "range" else x
    if footprint.all() and op in ("min", "max", "range"):
        top = b.op("MaxPool", [x], kernel_shape=[k, k], strides=[1, 1]) if op != "min" else None
        low = b.op("Neg", [b.op("MaxPool", [b.op("Neg", [x])], kernel_shape=[k, k], strides=[1, 1])]) \
            if op != "max" else None
        return b.op("Sub", [top, low]) if op == "range" else top or low
    axes = b.const("rank_axes", np.array([2, 3], np.int64))
    taps = []
    for i, j in zip(*np.nonzero(footprint)):
        starts = b.const(f"tap_start_{i}_{j}", np.array([i, j], np.int64))
        ends = b.const(f"tap_end_{i}_{j}", np.array(tap_ends((int(i), int(j)), k), np.int64))
        taps.append(b.op("Slice", [x, starts, ends, axes]))
    if op == "median":
        return _median(b, taps)
    stack = b.op("Concat", taps, axis=1)
    channel = b.const("rank_channel", np.array([1], np.int64))
    top = b.op("ReduceMax", [stack, channel], keepdims=1) if op != "min" else None
    low = b.op("ReduceMin", [stack, channel], keepdims=1) if op != "max" else None
    return b.op("Sub", [top, low]) if op == "range" else top or low


def _median(b: Any, taps: list[str]) -> str:
    """The median of the tap images by a selection network of elementwise Min / Max (onnxruntime's TopK over
    the taps took 0.2 s for a 3×3 median of a 1080p frame, 3.7 s for 7×7)."""
    wires = list(taps)
    for a, c, low, high in median_network(len(wires)):
        lo = b.op("Min", [wires[a], wires[c]]) if low else None
        hi = b.op("Max", [wires[a], wires[c]]) if high else None
        wires[a], wires[c] = lo or wires[a], hi or wires[c]
    return wires[len(wires) // 2]
