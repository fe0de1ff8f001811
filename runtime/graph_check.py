"""Proof that an ONNX graph is a stencil the native backend may replace: its structure, read from the file.

The native stencil computes what a model's metadata says; it may stand in for the graph only when the graph
computes the same thing for *every* input, not just on a probe. A probe alone can be dodged (a graph that
behaves at the probe's height only, or clips its input where the probe never goes), so :func:`stencil_problem`
reads the graph itself — with a small protobuf wire-format reader, so the bare runtime needs no ``onnx``
package — and accepts only the forms kernelnet exports for a gray float filter without output stage:

* ops from {Pad, Slice, Concat, Conv, Abs, Mul, Add, Sqrt, Identity}, default domain, no control flow and no
  op that reads a shape (so nothing can depend on the image size);
* Conv with stride 1, dilation 1, group 1, its weights and bias initializers; Pad with the spec's mode and
  exactly k//2 on H and W; Slice only as the symmetric border's mirror of k//2 samples;
* the effective kernels (a separable pair multiplied out) and biases equal to the metadata's in float32, the
  combine (Abs, or Mul·Mul + Add → Sqrt) and the border as the metadata says.

With the structure fixed this way, the graph is a composition of shape-independent local operators whose
only parameters were checked; the load-time probe (:func:`kernelnet.runtime.native_backend.try_native`) then
checks the wiring on random shapes and values outside [0, 1].
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.spec import FilterSpec

NATIVE_OPS = frozenset({"Pad", "Slice", "Concat", "Conv", "Abs", "Mul", "Add", "Sqrt", "Identity"})
MAX_BYTES = 64 << 20


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message; length-delimited values stay bytes."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated message")
        out.append((field, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(entries: list[tuple[int, int, Any]], field: int) -> list[int]:
    values: list[int] = []
    for f, wire, v in entries:
        if f != field:
            continue
        if wire == 2:  # packed
            pos = 0
            while pos < len(v):
                x, pos = _varint(v, pos)
                values.append(_signed(x))
        else:
            values.append(_signed(v))
    return values


def _tensor(buf: bytes) -> tuple[str, np.ndarray]:
    entries = _fields(buf)
    name = next((v.decode() for f, _, v in entries if f == 8), "")
    dims = _ints(entries, 1)
    dtype = next((v for f, _, v in entries if f == 2), 0)
    raw = next((v for f, _, v in entries if f == 9), None)
    kinds = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16, 11: np.float64}
    if dtype not in kinds:
        return name, np.zeros(0)
    if dtype in (2, 3, 6) and raw is None:  # int32_data (field 5) holds the 8/32-bit integer types
        values = _ints(entries, 5)
        arr = np.array(values, dtype=kinds[dtype])
        count = int(np.prod(dims)) if dims else 1
        return name, arr.reshape(dims) if arr.size == count else arr
    if raw is not None:
        arr = np.frombuffer(raw, dtype=np.dtype(kinds[dtype]).newbyteorder("<")).copy()
    elif dtype == 1:
        data = b"".join(v for f, w, v in entries if f == 4 and w == 2)
        singles = [struct.unpack("<f", v)[0] for f, w, v in entries if f == 4 and w == 5]
        arr = np.concatenate([np.frombuffer(data, "<f4"), np.array(singles, np.float32)])
    elif dtype == 7:
        arr = np.array(_ints(entries, 7), np.int64)
    else:
        arr = np.zeros(0)
    count = int(np.prod(dims)) if dims else 1
    return name, arr.reshape(dims) if arr.size == count else arr


def _node(buf: bytes) -> dict[str, Any]:
    entries = _fields(buf)
    attrs: dict[str, Any] = {}
    for f, _, v in entries:
        if f == 5:
            a = _fields(v)
            aname = next((x.decode() for g, _, x in a if g == 1), "")
            ints, s = _ints(a, 8), next((x for g, _, x in a if g == 4), None)
            i = next((_signed(x) for g, w, x in a if g == 3 and w == 0), None)
            attrs[aname] = ints if ints else (s.decode() if s is not None else i)
    return {"op": next((v.decode() for f, _, v in entries if f == 4), ""),
            "domain": next((v.decode() for f, _, v in entries if f == 7), ""),
            "inputs": [v.decode() for f, _, v in entries if f == 1],
            "outputs": [v.decode() for f, _, v in entries if f == 2], "attrs": attrs}


def read_graph(path: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """(nodes in file order, initializers by name) of an ONNX file."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise ValueError("larger than any kernelnet filter")
    graph = next((v for f, w, v in _fields(data) if f == 7 and w == 2), None)
    if graph is None:
        raise ValueError("no graph")
    entries = _fields(graph)
    nodes = [_node(v) for f, _, v in entries if f == 1]
    inits = dict(_tensor(v) for f, _, v in entries if f == 5)
    return nodes, inits


def _conv_problem(node: dict[str, Any], r: int, padded: bool, shape: tuple[int, int]) -> str:
    a = node["attrs"]
    if a.get("group", 1) != 1 or any(v != 1 for v in a.get("strides", [1, 1])) or \
            any(v != 1 for v in a.get("dilations", [1, 1])) or a.get("auto_pad", "NOTSET") != "NOTSET":
        return "a Conv with stride, dilation, group or auto_pad"
    kh, kw = shape
    want = [0, 0, 0, 0] if padded else [kh // 2, kw // 2, kh // 2, kw // 2]
    if list(a.get("pads", [0, 0, 0, 0])) != want:
        return f"a Conv padding {a.get('pads')} that is not the border's"
    return ""


def stencil_problem(path: str | Path, spec: FilterSpec) -> str:
    """Why the graph at ``path`` is not provably ``spec``'s stencil (empty string: it is; see the module)."""
    try:
        nodes, inits = read_graph(Path(path))
    except (OSError, ValueError, UnicodeDecodeError, struct.error) as exc:
        return f"its graph cannot be read ({exc})"
    r, padded = spec.halo, spec.border not in ("zeros",) and spec.halo > 0
    for node in nodes:
        if node["domain"] not in ("", "ai.onnx") or node["op"] not in NATIVE_OPS:
            return f"its graph holds a {node['op'] or '?'} node, which no native stencil form has"
    ops = [n["op"] for n in nodes]
    if ("Abs" in ops) != (spec.combine == "abs") or ("Sqrt" in ops) != (spec.combine == "magnitude"):
        return "its graph's combine step is not the metadata's"
    if ("Pad" in ops) != (padded and spec.border in ("reflect", "replicate")) or \
            ("Slice" in ops) != (padded and spec.border == "symmetric"):
        return "its graph's border is not the metadata's"
    for node in nodes:
        if node["op"] == "Pad":
            pads = inits.get(node["inputs"][1]) if len(node["inputs"]) > 1 else None
            mode = node["attrs"].get("mode", "constant")
            if pads is None or pads.tolist() != [0, 0, r, r, 0, 0, r, r] or \
                    mode != {"reflect": "reflect", "replicate": "edge"}[spec.border] or len(node["inputs"]) > 2:
                return "its graph pads differently from the metadata's border"
        if node["op"] == "Slice":
            args = [inits.get(name) for name in node["inputs"][1:]]
            if len(args) != 4 or any(a is None for a in args) or args[3].tolist() != [-1] or \
                    args[2].tolist() not in ([2], [3]) or (args[0].tolist(), args[1].tolist()) not in (
                        ([r - 1], [np.iinfo(np.int64).min]), ([-1], [-r - 1])):
                return "its graph slices other than the symmetric border's mirror"
        if node["op"] == "Concat" and (node["attrs"].get("axis") not in (2, 3) or len(node["inputs"]) != 3):
            return "its graph concatenates other than the symmetric border's mirror"
    convs = [n for n in nodes if n["op"] == "Conv"]
    producer = {out: n for n in nodes for out in n["outputs"]}
    kernels, biases = [], []
    for conv in convs:
        weight = inits.get(conv["inputs"][1]) if len(conv["inputs"]) > 1 else None
        if weight is None or weight.ndim != 4 or weight.shape[:2] != (1, 1):
            return "its graph has a Conv whose weights are not one constant kernel"
        bias = inits.get(conv["inputs"][2]) if len(conv["inputs"]) > 2 else np.zeros(1)
        if bias is None or bias.size != 1:
            return "its graph has a Conv whose bias is not a constant"
        first = producer.get(conv["inputs"][0])
        if first is not None and first["op"] == "Conv":  # the second half of a separable pair: v · uᵀ
            v = inits[first["inputs"][1]][0, 0].astype(np.float64)
            kernels[-1] = v @ weight[0, 0].astype(np.float64)
            biases[-1] = float(bias.ravel()[0])
            problem = _conv_problem(conv, r, padded, (1, spec.kernel_size))
        else:
            kernels.append(weight[0, 0].astype(np.float64))
            biases.append(float(bias.ravel()[0]))
            problem = _conv_problem(conv, r, padded, weight.shape[2:])
        if problem:
            return f"its graph has {problem}"
    if not kernels or any(k.shape != spec.kernels[0].shape for k in kernels):
        return "its graph's kernels are not the metadata's in size"
    tolerance = 1e-5 * max(1.0, float(np.abs(spec.kernels).max()))

    def same(k: np.ndarray, b: float, want: np.ndarray, want_b: float) -> bool:
        return float(np.abs(k - want).max()) <= tolerance and abs(b - want_b) <= tolerance

    # as sets: a simplifier may merge two equal Convs (a 1×1 magnitude pair is K and Kᵀ = K)
    pairs = list(zip(kernels, biases))
    wanted = list(zip(spec.kernels, spec.bias))
    if not all(any(same(k, b, w, wb) for w, wb in wanted) for k, b in pairs) or \
            not all(any(same(k, b, w, wb) for k, b in pairs) for w, wb in wanted):
        return "its graph's weights are not the metadata's"
    return ""


TILE_SAFE_OPS = NATIVE_OPS | frozenset({
    "Cast", "Div", "Sub", "Clip", "Round", "Floor", "Sign", "Where", "Shape", "Gather", "Range", "GreaterOrEqual",
    "Less", "And", "Reshape", "QuantizeLinear", "DequantizeLinear"})
"""Ops whose outputs depend on a bounded neighbourhood of their inputs (pointwise, Conv, borders, the copy border's
edge mask, QDQ): a graph made of them has a receptive field that :func:`receptive_radius` bounds."""


def receptive_radius(path: str | Path) -> int | None:
    """How far (pixels) an output of the graph at ``path`` can see: per axis, the longest chain of Conv half-sizes
    from the input to the output (a separable k×1, 1×k pair reaches k//2 each way); ``None`` when the graph holds an op outside :data:`TILE_SAFE_OPS` or cannot be read."""
    try:
        nodes, inits = read_graph(Path(path))
    except (OSError, ValueError, UnicodeDecodeError, struct.error):
        return None
    radius: dict[str, tuple[int, int]] = {}  # (rows, columns) each tensor's values reach
    for node in nodes:  # ONNX nodes are topologically sorted
        if node["domain"] not in ("", "ai.onnx") or node["op"] not in TILE_SAFE_OPS:
            return None
        seen = [radius.get(name, (0, 0)) for name in node["inputs"]]
        reach = (max((r for r, _ in seen), default=0), max((c for _, c in seen), default=0))
        if node["op"] == "Conv":
            weight = inits.get(node["inputs"][1]) if len(node["inputs"]) > 1 else None
            if weight is None and node["inputs"][1] in radius:  # a QDQ weight: its DequantizeLinear's source
                weight = next((inits[n["inputs"][0]] for n in nodes if node["inputs"][1] in n["outputs"]
                               and n["inputs"][0] in inits), None)
            if weight is None or weight.ndim != 4:
                return None
            reach = (reach[0] + weight.shape[2] // 2, reach[1] + weight.shape[3] // 2)
        for out in node["outputs"]:
            radius[out] = reach
    return max((max(r) for r in radius.values()), default=0)
