"""A chain's graph cut into its passes, each renamed to a one-pass graph that
:func:`kernelnet.runtime.checks.graph_check.stencil_problem` proves against that pass's spec."""

from __future__ import annotations

from typing import Any

import numpy as np


def chain_parts(nodes: list[dict[str, Any]], inits: dict[str, np.ndarray], count: int
                ) -> list[list[dict[str, Any]]] | str:
    """A chain's graph cut into its ``count`` passes (as :mod:`kernelnet.export.chain_graph` writes them): pass i
    runs from ``p<i−1>/output`` (``input`` for the first) to ``p<i>/output`` (``output`` for the last), reads
    nothing of another pass, and is renamed to a one-pass graph (``input`` → ``output``); else why not."""
    parts, start = [], 0
    for i in range(1, count + 1):
        src, dst = ("input" if i == 1 else f"p{i - 1}/output"), ("output" if i == count else f"p{i}/output")
        end = next((j for j in range(start, len(nodes)) if dst in nodes[j]["outputs"]), None)
        if end is None:
            return f"its graph has no pass {i} ending in {dst!r}"
        own = {src}
        part = []
        for node in nodes[start:end + 1]:
            if any(n and n not in own and n not in inits for n in node["inputs"]):
                return f"pass {i} of its graph reads a tensor of another pass"
            own.update(node["outputs"])
            rename = {src: "input", dst: "output"}
            part.append({**node, "inputs": [rename.get(n, n) for n in node["inputs"]],
                         "outputs": [rename.get(n, n) for n in node["outputs"]]})
        parts.append(part)
        start = end + 1
    if start != len(nodes):
        return "its graph computes more after its last pass"
    return parts
