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
from kernelnet.runtime.checks.rank_check import RANK_OPS, rank_response, tap_ends
from kernelnet.runtime.spec import FilterSpec, mirror_slices

__all__ = ["NATIVE_OPS", "POINTWISE_OPS", "read_graph", "receptive_radius", "stencil_problem"]

NATIVE_OPS = frozenset({"Pad", "Slice", "Concat", "Conv", "Abs", "Mul", "Add", "Sqrt", "Identity"})
def _topological(nodes: list[dict[str, Any]], inits: dict[str, np.ndarray]) -> str:
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


def _conv_ok(node: dict[str, Any], weight: np.ndarray, padded: bool) -> bool:
    a = node["attrs"]
    if a.get("group", 1) != 1 or any(v != 1 for v in a.get("strides", [1, 1])) or \
            any(v != 1 for v in a.get("dilations", [1, 1])) or a.get("auto_pad", "NOTSET") != "NOTSET":
        return False
    kh, kw = weight.shape[2:]
    want = [0, 0, 0, 0] if padded else [kh // 2, kw // 2, kh // 2, kw // 2]
    return list(a.get("pads", [0, 0, 0, 0])) == want


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
        if weight.ndim != 4 or weight.shape[:2] != (1, 1) or bias.size != 1 or not _conv_ok(conv, weight, padded):
            raise ValueError("a Conv that is not a one-kernel stencil step")
        inner = self.made.get(conv["inputs"][0])
        if inner is not None and inner["op"] == "Conv":  # separable: (k×1 on the input) then 1×k
            first = self.node(conv["inputs"][0], "Conv", 2)
            v = self.const(first["inputs"][1])
            if v.shape != (1, 1, k, 1) or weight.shape != (1, 1, 1, k) or not _conv_ok(first, v, padded):
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
    problem = _topological(nodes, inits)
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
    if _topological(nodes, inits):
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
                    not _conv_ok(node, weight, list(node["attrs"].get("pads", [0, 0, 0, 0])) == [0, 0, 0, 0]):
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
