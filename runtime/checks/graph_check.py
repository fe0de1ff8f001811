"""Proof that an ONNX graph is a stencil the native backend may replace: its structure, read from the file.

The native stencil computes what a model's metadata says; it may stand in for the graph only when the graph
computes the same thing for *every* input, not just on a probe. A probe alone can be dodged (a graph that
behaves at the probe's height only, or clips its input where the probe never goes), so :func:`stencil_problem`
reads the graph itself — with :mod:`kernelnet.runtime.checks.onnx_wire`, so the bare runtime needs no ``onnx``
package — and accepts only the forms kernelnet exports for a gray float filter:

* ops from {Pad, Slice, Concat, Conv, Abs, Mul, Add, Sqrt, Identity}, default domain, no control flow and no
  op that reads a shape (so nothing can depend on the image size) — plus, where the spec has them, the output
  stage's and the copy border's exact nodes (:mod:`kernelnet.runtime.checks.graph_stage`; the border's edge mask is the
  one shape-reading form allowed);
* Conv with stride 1, dilation 1, group 1, its weights and bias initializers; Pad with the spec's mode and
  exactly k//2 on H and W; Slice only as a mirror border's (symmetric, reflect_symmetric) k//2 samples;
* the effective kernels (a separable pair multiplied out) and biases equal to the metadata's in float32, to
  float32 precision relative to the kernel's scale (:mod:`kernelnet.runtime.checks.float_bounds`), the combine
  (Abs, or Mul·Mul + Add → Sqrt) and the border as the metadata says.

With the structure fixed this way, the graph is a composition of shape-independent local operators whose
only parameters were checked; the load-time probe (:func:`kernelnet.runtime.backends.native_backend.try_native`) then
checks the wiring on random shapes and values outside [0, 1].
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.checks.float_bounds import TINY, UNIT_ROUNDOFF, weights_match
from kernelnet.runtime.checks.graph_stage import allowed_ops, peel_output
from kernelnet.runtime.checks.onnx_wire import read_graph, read_graph_io
from kernelnet.runtime.checks.rank_check import RANK_OPS, rank_response
from kernelnet.runtime.checks.receptive import POINTWISE_OPS, conv_ok, receptive_radius, topological_problem
from kernelnet.runtime.spec import FilterSpec, mirror_slices

__all__ = ["NATIVE_OPS", "POINTWISE_OPS", "read_graph", "receptive_radius", "stencil_problem"]

NATIVE_OPS = frozenset({"Pad", "Slice", "Concat", "Conv", "Abs", "Mul", "Add", "Sqrt", "Identity"})
class _Matcher:
    """Reads the graph backwards from ``output`` and names what each tensor is, refusing anything else."""

    def __init__(self, nodes: list[dict[str, Any]], inits: dict[str, np.ndarray], spec: FilterSpec) -> None:
        self.made = {out: n for n in nodes for out in n["outputs"]}
        self.inits, self.spec, self.r = inits, spec, spec.halo
        self.input = self._scaled_input(nodes) if spec.input.dtype == "uint8" else "input"
        """The tensor holding the filter's float values: the input, or a uint8 input's Cast then Div by 255."""

    def _scaled_input(self, nodes: list[dict[str, Any]]) -> str:
        """The one Div(Cast(input → float), 255) a uint8-input graph starts with (nothing else reads the input)."""
        readers = [n for n in nodes if "input" in n["inputs"]]
        users = lambda name: [n for n in nodes if name in n["inputs"]]  # noqa: E731
        if len(readers) != 1 or readers[0]["op"] != "Cast" or readers[0]["attrs"].get("to") != 1:
            raise ValueError("a uint8 input that is not cast to float once")
        cast = readers[0]["outputs"][0]
        divs = users(cast)
        if len(divs) != 1 or divs[0]["op"] != "Div" or divs[0]["inputs"] != [cast, divs[0]["inputs"][1]] or \
                self.const(divs[0]["inputs"][1]).ravel().tolist() != [255.0] or self.const(divs[0]["inputs"][1]).ndim > 1:
            raise ValueError("a uint8 input that is not divided by 255 once")
        return divs[0]["outputs"][0]

    def node(self, name: str, op: str, arity: int | None = None) -> dict[str, Any]:
        node = self.made.get(name)
        if node is None or node["op"] != op or (arity is not None and len(node["inputs"]) != arity):
            raise ValueError(f"expected a {op} at {name!r}")
        return node

    def const(self, name: str) -> np.ndarray:
        if name not in self.inits or name in self.made:
            raise ValueError(f"{name!r} is not a constant")
        return self.inits[name]

    def source(self, name: str) -> None:
        """``name`` is the input with the spec's border applied (Pad, or the symmetric mirror), or the input."""
        spec, r = self.spec, self.r
        if spec.border in ("zeros", "copy") or r == 0:
            if name != self.input:
                raise ValueError("the Conv does not read the input")
            return
        if spec.border in ("reflect", "replicate"):
            pad = self.node(name, "Pad")
            mode = {"reflect": "reflect", "replicate": "edge"}[spec.border]
            if pad["inputs"][0] != self.input or len(pad["inputs"]) != 2 or pad["attrs"].get("mode") != mode or \
                    self.const(pad["inputs"][1]).tolist() != [0, 0, r, r, 0, 0, r, r]:
                raise ValueError("the Pad is not the border's")
            return
        x = name  # symmetric, reflect_symmetric: Concat(mirror head, x, mirror tail) on axis 3 of the same on axis 2
        head_range, tail_range = mirror_slices(spec.border, r)
        for axis in (3, 2):
            cat = self.node(x, "Concat", 3)
            head, mid, tail = cat["inputs"]
            if cat["attrs"].get("axis") != axis:
                raise ValueError("a Concat on the wrong axis")
            for part, (start, end) in ((head, head_range), (tail, tail_range)):
                sl = self.node(part, "Slice", 5)
                args = [self.const(n).tolist() for n in sl["inputs"][1:]]
                if sl["inputs"][0] != mid or args != [[start], [end], [axis], [-1]]:
                    raise ValueError(f"a Slice that is not the {spec.border} mirror")
            x = mid
        if x != self.input:
            raise ValueError("the mirror is not of the input")

    def response(self, name: str) -> tuple[np.ndarray, float]:
        """A correlation of the (bordered) input: one k×k Conv, or a k×1 Conv then a 1×k Conv."""
        conv = self.node(name, "Conv")
        if len(conv["inputs"]) not in (2, 3):
            raise ValueError("a Conv with other inputs")
        weight = self.const(conv["inputs"][1])
        bias = self.const(conv["inputs"][2]) if len(conv["inputs"]) == 3 else np.zeros(1, np.float32)
        padded = self.spec.border not in ("zeros", "copy") and self.r > 0
        k = self.spec.kernel_size
        if weight.ndim != 4 or weight.shape[:2] != (1, 1) or bias.size != 1 or not conv_ok(conv, weight, padded):
            raise ValueError("a Conv that is not a one-kernel stencil step")
        inner = self.made.get(conv["inputs"][0])
        if inner is not None and inner["op"] == "Conv":  # separable: (k×1 on the input) then 1×k
            first = self.node(conv["inputs"][0], "Conv", 2)
            v = self.const(first["inputs"][1])
            if v.shape != (1, 1, k, 1) or weight.shape != (1, 1, 1, k) or not conv_ok(first, v, padded):
                raise ValueError("a Conv pair that is not a k×1, 1×k separable pair")
            self.source(first["inputs"][0])
            return v[0, 0].astype(np.float64) @ weight[0, 0].astype(np.float64), float(bias.ravel()[0])
        if weight.shape != (1, 1, k, k):
            raise ValueError("a Conv kernel of another size")
        self.source(conv["inputs"][0])
        return weight[0, 0].astype(np.float64), float(bias.ravel()[0])

    def filter(self, nodes: list[dict[str, Any]]) -> list[tuple[np.ndarray, float]]:
        """The responses the output combines, refusing any other combination (a rank filter: its footprint)."""
        name = "output"
        while self.made.get(name, {}).get("op") == "Identity":
            name = self.made[name]["inputs"][0]
        name = peel_output(self, name)
        if self.spec.is_rank:
            return [rank_response(self, nodes, name)]
        if self.spec.combine == "abs":
            return [self.response(self.node(name, "Abs", 1)["inputs"][0])]
        if self.spec.combine == "raw":
            return [self.response(name)]
        total = self.node(self.node(name, "Sqrt", 1)["inputs"][0], "Add", 2)
        squares = []
        for part in total["inputs"]:
            mul = self.node(part, "Mul", 2)
            if mul["inputs"][0] != mul["inputs"][1]:
                raise ValueError("a Mul that is not a square")
            squares.append(self.response(mul["inputs"][0]))
        return squares


def _same_response(got: tuple[np.ndarray, float], want: tuple[np.ndarray, float]) -> bool:
    """A graph's (kernel, bias) is the metadata's (float32) to float32 precision, relative to the kernel's scale
    (:func:`~kernelnet.runtime.checks.float_bounds.weights_match`): a separable pair's product may round each tap."""
    (kernel, bias), (want_kernel, want_bias) = got, want
    scale = float(np.abs(want_kernel).sum()) + abs(want_bias)
    return weights_match(kernel, want_kernel) and abs(bias - want_bias) <= 4 * UNIT_ROUNDOFF["fp32"] * scale + TINY


def stencil_problem(path: str | Path, spec: FilterSpec) -> str:
    """Why the graph at ``path`` is not provably ``spec``'s stencil (empty string: it is; see the module); a chain's
    graph pass by pass (:func:`chain_parts`)."""
    try:
        nodes, inits, inputs, outputs = read_graph_io(Path(path))
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as exc:
        return f"its graph cannot be read ({exc})"
    if inputs != ["input"] or outputs != ["output"]:  # what runs is what the matcher walked back from
        return f"its graph's inputs {inputs[:3]} and outputs {outputs[:3]} are not ['input'] and ['output']"
    if not spec.after:
        return _stencil_problem(nodes, inits, spec)
    from kernelnet.runtime.checks.chain_check import chain_parts

    parts = chain_parts(nodes, inits, len(spec.passes))
    if isinstance(parts, str):
        return parts
    for i, (part, pass_spec) in enumerate(zip(parts, spec.passes), 1):
        problem = _stencil_problem(part, inits, pass_spec)
        if problem:
            return f"pass {i}: {problem}"
    return ""


def _stencil_problem(nodes: list[dict[str, Any]], inits: dict[str, np.ndarray], spec: FilterSpec) -> str:
    ops = NATIVE_OPS | allowed_ops(spec) | ({"Cast", "Div"} if spec.input.dtype == "uint8" else frozenset()) | \
        (RANK_OPS if spec.is_rank else frozenset())
    for node in nodes:
        if node["domain"] not in ("", "ai.onnx") or node["op"] not in ops:
            return f"its graph holds a {node['op'] or '?'} node, which no native stencil form has"
    problem = topological_problem(nodes, inits)
    if problem:
        return problem
    try:
        found = _Matcher(nodes, inits, spec).filter(nodes)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return f"its graph is not the metadata's stencil ({exc})"
    want = [(spec.kernels[c].astype(np.float32).astype(np.float64), float(np.float32(spec.bias[c])))
            for c in range(len(spec.kernels))]
    if len(found) != len(want) and not (len(found) == 2 and len(want) == 2):
        return "its graph combines another number of responses"
    # the magnitude is symmetric in its two responses, and a simplifier may merge two equal Convs into one
    matched = [any(_same_response(f, w) for w in want) for f in found]
    covered = [any(_same_response(f, w) for f in found) for w in want]
    if not all(matched) or not all(covered):
        return "its graph's weights are not the metadata's"
    return ""
