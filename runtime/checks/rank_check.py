"""The structural proof that a graph is its metadata's rank filter (min / max / median over the footprint), in the
forms ``kernelnet export`` writes: ``MaxPool`` (between two ``Neg`` for a min) over a square; one ``Slice`` per
footprint tap, ``Concat`` on the channel axis and ``ReduceMin`` / ``ReduceMax``; for a median, the taps through
exactly the selection network of :mod:`kernelnet.runtime.rank_network`. The taps read the input with the spec's
border (a constant ``Pad`` for ``zeros``). Anything else is refused (``ValueError`` naming it), and the native
stencil then declines the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.rank_network import median_network

RANK_OPS = frozenset({"Neg", "MaxPool", "ReduceMin", "ReduceMax", "Min", "Max", "Pad", "Slice", "Concat"})
FAR_END = int(np.iinfo(np.int64).max)


def tap_ends(offsets: tuple[int, ...], k: int) -> list[int]:
    """The Slice ends of the tap at ``offsets`` (i, j) of an image padded by k // 2: the unpadded size, counted from
    the far edge (so H and W stay dynamic), or the far end itself for the last offset k − 1."""
    return [FAR_END if v == k - 1 else v - (k - 1) for v in offsets]


def _source(m: Any, name: str) -> None:
    """``name`` is the input with the spec's border: for ``zeros`` a constant Pad of k // 2 (rank filters pad)."""
    spec, r = m.spec, m.r
    if spec.border != "zeros" or r == 0:
        m.source(name)
        return
    pad = m.node(name, "Pad")
    if pad["inputs"][0] != m.input or len(pad["inputs"]) != 2 or \
            pad["attrs"].get("mode", b"constant") not in ("constant", b"constant") or \
            m.const(pad["inputs"][1]).tolist() != [0, 0, r, r, 0, 0, r, r]:
        raise ValueError("the Pad is not the zeros border's")


def _taps(m: Any, nodes: list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    """(i, j) → the tensor of every tap Slice in the graph (starts (i, j), the far ends of the unpadded size)."""
    k = m.spec.kernel_size
    found: dict[tuple[int, int], str] = {}
    for node in nodes:
        ins = node["inputs"]
        if node["op"] != "Slice" or len(ins) != 4 or m.const(ins[3]).ravel().tolist() != [2, 3]:
            continue  # not a tap (a mirror border's Slices are checked as the border)
        (i, j), ends = m.const(ins[1]).ravel().tolist(), m.const(ins[2]).ravel().tolist()
        if not (0 <= i < k and 0 <= j < k) or ends != tap_ends((i, j), k) or (i, j) in found:
            raise ValueError("a Slice that is not a footprint tap")
        _source(m, ins[0])
        found[(i, j)] = node["outputs"][0]
    return found


def rank_response(m: Any, nodes: list[dict[str, Any]], name: str) -> tuple[np.ndarray, float]:
    """The (footprint kernel, bias 0) that the rank filter ending at ``name`` orders, after checking its form; ``m``
    is the graph matcher of :mod:`kernelnet.runtime.checks.graph_check`."""
    spec, k = m.spec, m.spec.kernel_size
    footprint = spec.footprint
    if k == 1:
        if name != m.input:
            raise ValueError("a 1×1 rank filter that is not its input")
        return footprint.astype(np.float64), 0.0
    if footprint.all() and spec.combine in ("min", "max"):
        node = m.node(name, "Neg", 1)["inputs"][0] if spec.combine == "min" else name
        pool = m.node(node, "MaxPool", 1)
        a = pool["attrs"]
        if list(a.get("kernel_shape", [])) != [k, k] or list(a.get("strides", [1, 1])) != [1, 1] or \
                any(v != 0 for v in a.get("pads", [0, 0, 0, 0])) or \
                any(v != 1 for v in a.get("dilations", [1, 1])) or a.get("ceil_mode", 0) != 0 or \
                a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET") or len(pool["outputs"]) != 1:
            raise ValueError("a MaxPool that is not the k×k window")
        source = pool["inputs"][0]
        _source(m, m.node(source, "Neg", 1)["inputs"][0] if spec.combine == "min" else source)
        return footprint.astype(np.float64), 0.0
    taps = _taps(m, nodes)
    order = [tuple(int(v) for v in t) for t in zip(*np.nonzero(footprint))]
    if set(taps) != set(order):
        raise ValueError("its taps are not the footprint's")
    if spec.combine in ("min", "max"):
        reduce = m.node(name, "ReduceMin" if spec.combine == "min" else "ReduceMax", 2)
        if m.const(reduce["inputs"][1]).ravel().tolist() != [1] or reduce["attrs"].get("keepdims", 1) != 1:
            raise ValueError("a reduction that is not over the taps")
        cat = m.node(reduce["inputs"][0], "Concat")
        if cat["attrs"].get("axis") != 1 or sorted(cat["inputs"]) != sorted(taps.values()):
            raise ValueError("a Concat that is not of the taps")
        return footprint.astype(np.float64), 0.0
    made = {(n["op"], *n["inputs"]): n["outputs"][0] for n in nodes if n["op"] in ("Min", "Max")}
    wires = [taps[t] for t in order]
    for a, b, low, high in median_network(len(wires)):
        lo = made.get(("Min", wires[a], wires[b])) if low else wires[a]
        hi = made.get(("Max", wires[a], wires[b])) if high else wires[b]
        if lo is None or hi is None:
            raise ValueError("its Min/Max nodes are not the median's selection network")
        wires[a], wires[b] = lo, hi
    if wires[len(wires) // 2] != name:
        raise ValueError("the output is not the median's wire")
    return footprint.astype(np.float64), 0.0
