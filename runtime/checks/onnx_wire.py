"""A minimal reader of ONNX files at the protobuf wire level: nodes (op, domain, inputs, outputs, attributes) and
initializers (name, dims, values), enough for :mod:`kernelnet.runtime.checks.graph_check` to prove a graph's structure
on an edge box without the ``onnx`` package (onnxruntime exposes no graph). Untrusted input: every read is
bounded and a malformed file raises ``ValueError``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

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
    return read_graph_io(path)[:2]  # type: ignore[return-value]


def read_graph_io(path: Path) -> tuple[list[dict[str, Any]], dict[str, np.ndarray], list[str], list[str]]:
    """(nodes in file order, initializers by name, the graph's declared input names, its output names)."""
    data = path.read_bytes()
    if len(data) > MAX_BYTES:
        raise ValueError("larger than any kernelnet filter")
    graph = next((v for f, w, v in _fields(data) if f == 7 and w == 2), None)
    if graph is None:
        raise ValueError("no graph")
    entries = _fields(graph)
    nodes = [_node(v) for f, _, v in entries if f == 1]
    inits = dict(_tensor(v) for f, _, v in entries if f == 5)
    names = {f: [next((x.decode() for g, _, x in _fields(v) if g == 1), "") for g2, _, v in entries if g2 == f]
             for f in (11, 12)}
    return nodes, inits, [n for n in names[11] if n not in inits], names[12]


def read_metadata(data: bytes) -> dict[str, str]:
    """The model's ``metadata_props`` (ModelProto field 14: key/value string pairs) from an ONNX file's bytes.
    Strict: a repeated key, or a key or value given twice in one entry (protobuf readers keep the last, a naive
    one the first), raises ``ValueError`` — no two readers can then see different metadata."""
    if len(data) > MAX_BYTES:
        raise ValueError("larger than any kernelnet filter")
    props: dict[str, str] = {}
    for f, w, v in _fields(data):
        if f == 14:
            if w != 2:
                raise ValueError("a metadata entry that is not a message")
            entry = [(g, x) for g, _, x in _fields(v) if g in (1, 2)]
            keys, values = [x for g, x in entry if g == 1], [x for g, x in entry if g == 2]
            if len(keys) != 1 or len(values) > 1 or keys[0].decode() in props:
                raise ValueError("a metadata key given twice")
            props[keys[0].decode()] = values[0].decode() if values else ""
    return props
