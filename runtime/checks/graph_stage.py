"""The output stage and the copy border of a graph, read backwards for :mod:`kernelnet.runtime.checks.graph_check`.

:func:`peel_output` accepts exactly the nodes ``kernelnet.export.onnx_graph`` writes for a spec's output stage —
``Mul`` (scale), ``Add`` (offset), ``Mul``/``Round``/``Div`` (grid; ``Round`` alone for grid 1), ``Clip``, the rounding (``Round`` |
``Floor(y + 0.5)`` | ``Floor`` | ``Sign(y)·Floor(|y|)``) — and the copy border's ``Where`` over the edge mask
(``Shape`` → ``Gather`` → ``Range`` compared with k//2 and size − k//2), each constant equal to the spec's in
float32, and returns the tensor the stage starts from. Torch-free, like the rest of the runtime.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.spec import FilterSpec

STAGE_OPS = frozenset({"Round", "Floor", "Sign", "Clip", "Div"})
RING_OPS = frozenset({"Where", "And", "Shape", "Gather", "Range", "GreaterOrEqual", "Less", "Sub", "Reshape"})


Reader = Any
"""graph_check's matcher: ``spec``, ``input`` (the tensor of the filter's float input values), ``node(name, op,
arity)`` → the node making ``name``, ``const(name)`` → array."""


def allowed_ops(spec: FilterSpec) -> frozenset[str]:
    """Ops beyond the stencil's that ``spec``'s output stage and border may add."""
    ops = frozenset() if spec.output.identity else STAGE_OPS
    return ops | RING_OPS | STAGE_OPS if spec.border == "copy" and spec.halo else ops


def _scalar(reader: Reader, name: str, value: float) -> None:
    got = reader.const(name)
    if got.ndim > 1 or got.size != 1 or float(got.ravel()[0]) != float(np.float32(value)):  # a rank-1+ constant
        # would broadcast the output to another rank
        raise ValueError(f"a constant {got.ravel()[:2].tolist()} where the spec has {value:g}")


def _int(reader: Reader, name: str) -> int | None:
    """The integer constant ``name`` holds (one value), else ``None``."""
    got = reader.const(name)
    return int(got.ravel()[0]) if got.ndim <= 1 and got.size == 1 and got.dtype.kind in "iu" else None


def _rounded(reader: Reader, name: str, rounding: str | None) -> str:
    """The tensor that ``rounding`` was applied to at ``name``."""
    if rounding == "half_even":
        return reader.node(name, "Round", 1)["inputs"][0]
    if rounding == "half_up":
        add = reader.node(reader.node(name, "Floor", 1)["inputs"][0], "Add", 2)
        _scalar(reader, add["inputs"][1], 0.5)
        return add["inputs"][0]
    if rounding == "floor":
        return reader.node(name, "Floor", 1)["inputs"][0]
    if rounding == "toward_zero":
        mul = reader.node(name, "Mul", 2)
        sign = reader.node(mul["inputs"][0], "Sign", 1)["inputs"][0]
        absolute = reader.node(reader.node(mul["inputs"][1], "Floor", 1)["inputs"][0], "Abs", 1)["inputs"][0]
        if sign != absolute:
            raise ValueError("a toward-zero rounding of two different tensors")
        return sign
    return name


def _edge_mask(reader: Reader, name: str) -> None:
    """``name`` is And(inside rows, inside columns), each Reshape(GreaterOrEqual(i, r) And Less(i, size − r))."""
    r = reader.spec.halo
    both = reader.node(name, "And", 2)
    for part, axis, dims in zip(both["inputs"], (2, 3), ([1, 1, -1, 1], [1, 1, 1, -1])):
        shaped = reader.node(part, "Reshape", 2)
        if reader.const(shaped["inputs"][1]).tolist() != dims:
            raise ValueError("an edge mask of another shape")
        inside = reader.node(shaped["inputs"][0], "And", 2)
        low, high = (reader.node(n, op, 2) for n, op in zip(inside["inputs"], ("GreaterOrEqual", "Less")))
        index = reader.node(low["inputs"][0], "Range", 3)
        if high["inputs"][0] != low["inputs"][0] or _int(reader, low["inputs"][1]) != r:
            raise ValueError("an edge mask that is not k//2 wide")
        size = index["inputs"][1]
        if _int(reader, index["inputs"][0]) != 0 or _int(reader, index["inputs"][2]) != 1:
            raise ValueError("an edge mask over another range")
        sub = reader.node(high["inputs"][1], "Sub", 2)
        if sub["inputs"][0] != size or _int(reader, sub["inputs"][1]) != r:
            raise ValueError("an edge mask that is not k//2 wide")
        gather = reader.node(size, "Gather", 2)
        shape = reader.node(gather["inputs"][0], "Shape", 1)
        if _int(reader, gather["inputs"][1]) != axis or gather["attrs"].get("axis", 0) != 0 or \
                shape["inputs"][0] != reader.input or shape["attrs"]:  # Shape's start / end would pick other dims
            raise ValueError("an edge mask of another axis")


def peel_output(reader: Reader, name: str) -> str:
    """The tensor before the spec's copy border and output stage at ``name`` (``name`` itself for neither)."""
    spec, out = reader.spec, reader.spec.output
    if spec.border == "copy" and spec.halo:
        where = reader.node(name, "Where", 3)
        _edge_mask(reader, where["inputs"][0])
        ring = reader.node(_rounded(reader, where["inputs"][2], out.rounding), "Mul", 2)
        if ring["inputs"][0] != reader.input:
            raise ValueError("a copy ring that is not the input's")
        _scalar(reader, ring["inputs"][1], spec.ring_scale)
        name = where["inputs"][1]
    name = _rounded(reader, name, out.rounding)
    if out.clip is not None:
        clip = reader.node(name, "Clip", 3)
        _scalar(reader, clip["inputs"][1], out.clip[0])
        _scalar(reader, clip["inputs"][2], out.clip[1])
        name = clip["inputs"][0]
    if out.grid == 1:
        name = reader.node(name, "Round", 1)["inputs"][0]
    elif out.grid is not None:
        div = reader.node(name, "Div", 2)
        _scalar(reader, div["inputs"][1], float(out.grid))
        mul = reader.node(reader.node(div["inputs"][0], "Round", 1)["inputs"][0], "Mul", 2)
        _scalar(reader, mul["inputs"][1], float(out.grid))
        name = mul["inputs"][0]
    if out.offset != 0.0:
        add = reader.node(name, "Add", 2)
        _scalar(reader, add["inputs"][1], out.offset)
        name = add["inputs"][0]
    if out.scale != 1.0:
        mul = reader.node(name, "Mul", 2)
        _scalar(reader, mul["inputs"][1], out.scale)
        name = mul["inputs"][0]
    return name
