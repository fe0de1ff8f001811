"""How far a graph's outputs see (:func:`receptive_radius`, which tiling trusts) and the structural helpers the
native proof (:mod:`kernelnet.runtime.checks.graph_check`) shares with it: node order and plain Convs."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.checks.onnx_wire import read_graph
from kernelnet.runtime.checks.rank_check import tap_ends


def topological_problem(nodes: list[dict[str, Any]], inits: dict[str, np.ndarray]) -> str:
    """Empty when every node's inputs are the graph input, initializers or outputs of earlier nodes."""
    known = set(inits) | {"input", ""}
    for node in nodes:
        if any(name not in known for name in node["inputs"]):
            return "its graph's nodes are not in order (or read a tensor no node makes)"
        for out in node["outputs"]:
            if out in known:
                return f"its graph writes the tensor {out!r} twice"
            known.add(out)
    return ""


def conv_ok(node: dict[str, Any], weight: np.ndarray, padded: bool) -> bool:
    """A Conv of stride 1, dilation 1, group 1, padded k//2 by itself (or not at all after a Pad)."""
    a = node["attrs"]
    if a.get("group", 1) != 1 or any(v != 1 for v in a.get("strides", [1, 1])) or \
            any(v != 1 for v in a.get("dilations", [1, 1])) or a.get("auto_pad", "NOTSET") != "NOTSET":
        return False
    kh, kw = weight.shape[2:]
    want = [0, 0, 0, 0] if padded else [kh // 2, kw // 2, kh // 2, kw // 2]
    return list(a.get("pads", [0, 0, 0, 0])) == want


POINTWISE_OPS = frozenset({"Mul", "Add", "Sub", "Div", "Abs", "Neg", "Min", "Max", "Sqrt", "Clip", "Round", "Floor",
                           "Sign", "Cast", "Identity", "QuantizeLinear", "DequantizeLinear", "Pow", "LessOrEqual"})
"""Ops that combine values at the same position (with other such values or scalar constants)."""


def _tap_slice(ins: list[str], inits: dict[str, np.ndarray], halo: int) -> bool:
    """A rank filter's tap: H and W of an image padded by ``halo`` sliced at offsets (i, j) ≤ 2·halo to the
    unpadded size (ends i − 2·halo, or the far end for i = 2·halo)."""
    if len(ins) != 4 or any(n not in inits for n in ins[1:]) or inits[ins[3]].ravel().tolist() != [2, 3]:
        return False
    starts, ends = inits[ins[1]].ravel().tolist(), inits[ins[2]].ravel().tolist()
    return len(starts) == 2 and all(0 <= i <= 2 * halo for i in starts) and ends == tap_ends(starts, 2 * halo + 1)


def receptive_radius(path: str | Path, halo: int) -> int | None:
    """How far (pixels, the larger axis) an output of the graph at ``path`` can see (``halo``: the largest of one
    pass; a chain's passes add up), when the graph is made of
    position-local steps only — pointwise ops on same-position values or scalar constants, Conv (stride 1,
    dilation 1, group 1, constant weights), a Pad or a mirror (symmetric, reflect_symmetric) of at most ``halo``
    pixels, and the copy border's edge mask of exactly ``halo`` — so that tiles with a ``halo``-pixel margin give
    the whole-image result. ``None`` for any other graph (no tiling, then)."""
    try:
        nodes, inits = read_graph(Path(path))
    except (OSError, ValueError, UnicodeDecodeError, struct.error):
        return None
    if topological_problem(nodes, inits):
        return None
    reach: dict[str, tuple[int, int]] = {"input": (0, 0)}  # data tensors: how far they see per axis
    kind: dict[str, str] = {}  # non-data tensors made from the shape: "shape", "dim", "index", "mask"
    made_by = {out: n for n in nodes for out in n["outputs"]}

    def scalar(name: str, value: float | None = None) -> bool:
        if name not in inits or inits[name].size > 2:
            return False
        return value is None or (inits[name].size == 1 and float(inits[name].ravel()[0]) == value)

    for node in nodes:
        op, ins = node["op"], node["inputs"]
        if node["domain"] not in ("", "ai.onnx"):
            return None
        data = [reach[n] for n in ins if n in reach]
        seen = (max((r for r, _ in data), default=0), max((c for _, c in data), default=0))
        if op in POINTWISE_OPS:
            if not data or any(n not in reach and n and not scalar(n) for n in ins):
                if op == "Sub" and kind.get(ins[0]) == "dim" and scalar(ins[1], halo):
                    kind[node["outputs"][0]] = "dim"
                    continue
                if op == "DequantizeLinear" and ins[0] in inits:  # a quantized weight
                    continue
                return None
            out = seen
        elif op == "Conv":
            weight = inits.get(ins[1]) if len(ins) > 1 else None
            if weight is None and len(ins) > 1 and ins[1] in made_by:
                src = made_by[ins[1]]
                weight = inits.get(src["inputs"][0]) if src["op"] == "DequantizeLinear" else None
            if ins[0] not in reach or weight is None or weight.ndim != 4 or \
                    not conv_ok(node, weight, list(node["attrs"].get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]):
                return None
            out = (reach[ins[0]][0] + weight.shape[2] // 2, reach[ins[0]][1] + weight.shape[3] // 2)
        elif op == "Pad":
            pads = inits.get(ins[1]) if len(ins) > 1 else None
            if ins[0] not in reach or pads is None or pads.size != 8 or any(pads[[0, 1, 4, 5]]) or \
                    pads[[2, 3, 6, 7]].max() > halo or len(ins) > 2:
                return None
            out = reach[ins[0]]
        elif op == "Slice" and len(ins) >= 4 and ins[0] in reach and ins[3] in inits and \
                inits[ins[3]].tolist() == [1] and all(n in inits for n in ins[1:]) and \
                (len(ins) == 4 or inits[ins[4]].tolist() == [1]):
            out = reach[ins[0]]  # a channel of a multi-output Conv: positions untouched
        elif op == "Slice" and any(_tap_slice(ins, inits, h) for h in range(1, halo + 1)):
            h = next(h for h in range(1, halo + 1) if _tap_slice(ins, inits, h))  # a chain's rank pass: its own
            out = (reach[ins[0]][0] + h, reach[ins[0]][1] + h) if ins[0] in reach else None
            if out is None:
                return None
        elif op == "MaxPool":
            shape = list(node["attrs"].get("kernel_shape", []))
            plain = all(list(node["attrs"].get(a, [1, 1])) == [1, 1] for a in ("strides", "dilations")) and \
                list(node["attrs"].get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0] and \
                node["attrs"].get("auto_pad", "NOTSET") in ("NOTSET", b"NOTSET") and len(node["outputs"]) == 1
            if ins[0] not in reach or len(shape) != 2 or not plain:
                return None
            out = (reach[ins[0]][0] + shape[0] // 2, reach[ins[0]][1] + shape[1] // 2)
        elif op in ("ReduceMin", "ReduceMax"):  # over the channel axis of stacked taps
            axes = inits.get(ins[1]) if len(ins) > 1 else None
            if ins[0] not in reach or axes is None or axes.ravel().tolist() != [1] or \
                    node["attrs"].get("keepdims", 1) != 1:
                return None
            out = reach[ins[0]]
        elif op == "Slice":
            args = [inits[n].tolist() if n in inits else None for n in ins[1:]]
            if ins[0] not in reach or len(args) != 4 or args[2] not in ([2], [3]) or args[3] != [-1] or \
                    (args[0], args[1]) not in [([r - 1], [np.iinfo(np.int64).min]) for r in range(1, halo + 1)] + \
                    [([r], [0]) for r in range(1, halo + 1)] + [([-1], [-r - 1]) for r in range(1, halo + 1)]:
                return None
            out = reach[ins[0]]
        elif op == "Concat":
            if len(data) != len(ins) or node["attrs"].get("axis") not in (1, 2, 3):
                return None
            out = seen
        elif op == "Shape" and ins[0] in reach:
            kind[node["outputs"][0]] = "shape"
            continue
        elif op == "Gather" and kind.get(ins[0]) == "shape" and scalar(ins[1]) and \
                float(inits[ins[1]].ravel()[0]) in (2.0, 3.0):
            kind[node["outputs"][0]] = "dim"
            continue
        elif op == "Range" and scalar(ins[0], 0) and kind.get(ins[1]) == "dim" and scalar(ins[2], 1):
            kind[node["outputs"][0]] = "index"
            continue
        elif op in ("GreaterOrEqual", "Less") and kind.get(ins[0]) == "index" and (
                (op == "GreaterOrEqual" and scalar(ins[1], halo)) or (op == "Less" and kind.get(ins[1]) == "dim")):
            kind[node["outputs"][0]] = "mask"
            continue
        elif op in ("And", "Reshape") and kind.get(ins[0]) == "mask" and (
                (op == "And" and kind.get(ins[1]) == "mask") or (op == "Reshape" and ins[1] in inits)):
            kind[node["outputs"][0]] = "mask"
            continue
        elif op == "Where" and all(n in reach for n in ins):  # a curve's two segments, chosen per value
            out = seen
        elif op == "Where" and kind.get(ins[0]) == "mask" and ins[1] in reach and ins[2] in reach:
            out = (max(reach[ins[1]][0], reach[ins[2]][0]), max(reach[ins[1]][1], reach[ins[2]][1]))
        else:
            return None
        for name in node["outputs"]:
            reach[name] = out
    return max(reach["output"]) if "output" in reach else None
