"""Graph nodes of the pointwise curves (:mod:`kernelnet.runtime.curves`): ``Max(v, 0)`` then ``Pow`` for a gamma,
a ``Where`` over ``LessOrEqual`` between the linear toe and the power segment for sRGB. Shapes are the input's."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.curves import exponent


def curve_nodes(b: Any, v: str, name: str, way: str) -> str:
    """``v`` through curve ``name`` (``way`` decode or encode) with builder ``b``; returns the output tensor."""
    tag = f"{way}{len(b.nodes)}"
    v = b.op("Max", [v, b.weight(f"{tag}_zero", np.array(0.0))])
    g = exponent(name)
    if g is not None:
        return b.op("Pow", [v, b.weight(f"{tag}_exp", np.array(g if way == "decode" else 1.0 / g))])
    if way == "decode":
        toe = b.op("Div", [v, b.weight(f"{tag}_slope", np.array(12.92))])
        shifted = b.op("Div", [b.op("Add", [v, b.weight(f"{tag}_a", np.array(0.055))]),
                               b.weight(f"{tag}_b", np.array(1.055))])
        power = b.op("Pow", [shifted, b.weight(f"{tag}_exp", np.array(2.4))])
        return b.op("Where", [b.op("LessOrEqual", [v, b.weight(f"{tag}_knee", np.array(0.04045))]), toe, power])
    toe = b.op("Mul", [v, b.weight(f"{tag}_slope", np.array(12.92))])
    power = b.op("Sub", [b.op("Mul", [b.op("Pow", [v, b.weight(f"{tag}_exp", np.array(1 / 2.4))]),
                                      b.weight(f"{tag}_b", np.array(1.055))]), b.weight(f"{tag}_a", np.array(0.055))])
    return b.op("Where", [b.op("LessOrEqual", [v, b.weight(f"{tag}_knee", np.array(0.0031308))]), toe, power])
