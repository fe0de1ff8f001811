"""The exported graph, built straight from a :class:`~kernelnet.runtime.spec.FilterSpec` with ``onnx.helper``.

Input ``input`` (N, 1, H, W) — float32 in [0, 1], or uint8 mapped by the spec's input scale inside the graph —
and output ``output`` (N, 1, H, W) float32, with symbolic ``batch``, ``height`` and ``width`` unless static.

Graph forms (each computes the spec exactly; export verifies the file against the trained PyTorch model):

* ``conv`` — one k×k Conv (then ``Abs`` for the abs model);
* ``separable`` — a rank-1 kernel k = v·uᵀ as a k×1 Conv then a 1×k Conv (Sobel, Scharr, Prewitt, Gaussian,
  box): fewer multiply-adds and a smaller im2col buffer in onnxruntime's CPU Conv;
* ``split`` — the magnitude is always two single-output Convs and ``Sqrt(a·a + b·b)``: onnxruntime's CPU Conv is
  much slower with two output channels;
* ``rank`` — a rank filter (:mod:`kernelnet.export.rank_graph`) on the input padded by its border (``zeros`` a
  constant ``Pad``).

Borders: ``zeros`` is the Conv's own padding; ``reflect`` / ``replicate`` are a ``Pad`` (mode reflect / edge)
before it; ``symmetric`` and ``reflect_symmetric`` (no Pad mode) are two mirrored ``Slice``s concatenated on each
axis; ``copy`` computes
the interior with zeros and puts the input back on the outer ring with a ``Where`` over a mask built from the
input's shape. The output stage, when not the identity, follows as ``Mul``/``Add``, ``Clip`` and a rounding op.
``auto`` picks ``separable`` when the kernel is rank 1 to float32 precision (its float32 factors' product is the
float32 kernel within 2u·Σ|K|, u = 2⁻²⁴), else ``conv``.

    >>> import numpy as np
    >>> from kernelnet.runtime.spec import FilterSpec, mirror_slices
    >>> proto = build_graph(FilterSpec.from_kind(np.ones((3, 3)) / 9))                  # doctest: +SKIP
    >>> [n.op_type for n in proto.graph.node]                                           # doctest: +SKIP
    ['Conv', 'Conv']
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import FilterSpec, mirror_slices

FORMS = ("auto", "conv", "separable")
INPUT_NAME, OUTPUT_NAME = "input", "output"
_PAD_MODE = {"reflect": "reflect", "replicate": "edge"}


def rank1_factors(kernel: np.ndarray, exact: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """(v, u) with v·uᵀ = kernel (k×k), or ``None`` for a kernel that is not rank 1.

    With ``exact`` the float32 factors' product must be the float32 kernel to float32 precision
    (:func:`~kernelnet.runtime.checks.float_bounds.weights_match` with ``WEIGHT_ROUNDINGS``), so that the separable
    graph
    computes the metadata's kernel and the native stencil can stand in for it; without, the best rank-1 pair."""
    from kernelnet.runtime.checks.float_bounds import WEIGHT_ROUNDINGS, weights_match

    if kernel.shape[0] < 3:
        return None
    u_, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64))
    if s[0] == 0:
        return None
    v, u = u_[:, 0] * s[0], vt[0]
    peak = v[np.argmax(np.abs(v))]  # scale v to a peak of +1: Sobel gives v = (½, 1, ½), u = (−2, 0, 2), exact
    v, u = v / peak, u * peak
    product = np.outer(v.astype(np.float32).astype(np.float64), u.astype(np.float32).astype(np.float64))
    want = np.asarray(kernel, dtype=np.float32).astype(np.float64)
    if exact and not weights_match(product, want, roundings=WEIGHT_ROUNDINGS):
        return None
    return v, u


def choose_form(spec: FilterSpec, form: str = "auto") -> str:
    """Resolve ``form`` for ``spec``: ``split`` for the magnitude; ``auto`` → ``separable`` for rank-1 kernels."""
    if spec.is_rank:
        if form not in ("auto", "rank"):
            raise KernelnetError(f"a {spec.combine} filter has one graph form, rank (not {form})")
        return "rank"
    if spec.combine == "magnitude" and form in (*FORMS, "split"):
        return "split"
    if form not in FORMS:
        raise KernelnetError(f"graph form must be one of {', '.join(FORMS)}, got {form!r}")
    if form != "auto":
        return form
    return "separable" if rank1_factors(spec.kernels[0]) is not None else "conv"


class _Builder:
    """Accumulates nodes and initializers; ``op`` returns the new node's output name."""

    def __init__(self, dtype: int) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper, self.dtype = helper, numpy_helper, dtype
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, name: str, value: np.ndarray) -> str:
        dtype = np.float16 if self.dtype == 10 else np.float32
        return self.const(name, np.asarray(value, dtype=dtype))

    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        self._count += 1
        out = output or f"node{self._count}"
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], **attrs))
        return out


def _correlate(b: _Builder, x: str, spec: FilterSpec, c: int, form: str, padded: bool, tag: str) -> str:
    """K_c ⋆ x + b_c as one Conv or a separable pair; ``padded``: ``x`` already carries the border."""
    k, r = spec.kernel_size, spec.halo
    bias = [b.weight(f"b{tag}", spec.bias[c:c + 1])] if spec.has_bias else []
    if form == "separable":
        factors = rank1_factors(spec.kernels[c], exact=False)
        assert factors is not None
        v, u = factors
        pads_v, pads_u = ([0, 0, 0, 0], [0, 0, 0, 0]) if padded else ([r, 0, r, 0], [0, r, 0, r])
        mid = b.op("Conv", [x, b.weight(f"v{tag}", v.reshape(1, 1, k, 1))], pads=pads_v)
        return b.op("Conv", [mid, b.weight(f"u{tag}", u.reshape(1, 1, 1, k))] + bias, pads=pads_u)
    pads = [0, 0, 0, 0] if padded else [r, r, r, r]
    return b.op("Conv", [x, b.weight(f"w{tag}", spec.kernels[c].reshape(1, 1, k, k))] + bias, pads=pads)


def _mirror_pad(b: _Builder, x: str, r: int, border: str) -> str:
    """Pad H and W by ``r`` with the mirror border ``border`` (``symmetric`` or ``reflect_symmetric``): reversed
    Slices of the input concatenated before and after it (no Pad mode mirrors so)."""
    head_range, tail_range = mirror_slices(border, r)
    for axis in (2, 3):
        ax, step = b.const(f"ax{axis}", np.array([axis], np.int64)), b.const(f"back{axis}", np.array([-1], np.int64))
        head = b.op("Slice", [x, b.const(f"head0_{axis}", np.array([head_range[0]], np.int64)),
                              b.const(f"head1_{axis}", np.array([head_range[1]], np.int64)), ax, step])
        tail = b.op("Slice", [x, b.const(f"tail0_{axis}", np.array([tail_range[0]], np.int64)),
                              b.const(f"tail1_{axis}", np.array([tail_range[1]], np.int64)), ax, step])
        x = b.op("Concat", [head, x, tail], axis=axis)
    return x


def _copy_ring(b: _Builder, y: str, x: str, spec: FilterSpec) -> str:
    """``y`` with its outer ``halo`` ring replaced by the input ``x`` in output units (Pillow's border)."""
    r = spec.halo
    ring = b.op("Mul", [x, b.weight("ring_scale", np.array(spec.ring_scale))])
    ring = _round(b, ring, spec.output.rounding)
    shape = b.op("Shape", [x])
    zero, one = b.const("i0", np.array(0, np.int64)), b.const("i1", np.array(1, np.int64))
    rad = b.const("radius", np.array(r, np.int64))
    masks = []
    for axis, dims in ((2, [1, 1, -1, 1]), (3, [1, 1, 1, -1])):
        size = b.op("Gather", [shape, b.const(f"dim{axis}", np.array(axis, np.int64))], axis=0)
        idx = b.op("Range", [zero, size, one])
        inside = b.op("And", [b.op("GreaterOrEqual", [idx, rad]), b.op("Less", [idx, b.op("Sub", [size, rad])])])
        masks.append(b.op("Reshape", [inside, b.const(f"shape{axis}", np.array(dims, np.int64))]))
    return b.op("Where", [b.op("And", masks), y, ring])


def _output_stage(b: _Builder, y: str, spec: FilterSpec) -> str:
    out = spec.output
    if out.encode is not None:
        from kernelnet.export.curve_graph import curve_nodes

        y = curve_nodes(b, y, out.encode, "encode")
    if out.scale != 1.0:
        y = b.op("Mul", [y, b.weight("out_scale", np.array(out.scale))])
    if out.offset != 0.0:
        y = b.op("Add", [y, b.weight("out_offset", np.array(out.offset))])
    if out.grid == 1:  # Round(y · 1) / 1 is Round(y), bit for bit
        y = b.op("Round", [y])
    elif out.grid is not None:
        y = b.op("Div", [b.op("Round", [b.op("Mul", [y, b.weight("grid", np.array(float(out.grid)))])]),
                         b.weight("grid_div", np.array(float(out.grid)))])
    if out.clip is not None:
        y = b.op("Clip", [y, b.weight("clip_lo", np.array(out.clip[0])), b.weight("clip_hi", np.array(out.clip[1]))])
    return _round(b, y, out.rounding)


def _round(b: _Builder, y: str, rounding: str | None) -> str:
    """``y`` rounded to integers by ``rounding`` (``None``: unchanged)."""
    if rounding == "half_even":
        y = b.op("Round", [y])
    elif rounding == "half_up":
        y = b.op("Floor", [b.op("Add", [y, b.weight(f"half{len(b.nodes)}", np.array(0.5))])])
    elif rounding == "floor":
        y = b.op("Floor", [y])
    elif rounding == "toward_zero":
        y = b.op("Mul", [b.op("Sign", [y]), b.op("Floor", [b.op("Abs", [y])])])
    return y


def build_graph(spec: FilterSpec, *, form: str = "auto", fp16: bool = False, opset: int = 18,
                static: tuple[int, int, int, int] | None = None, metadata: dict[str, str] | None = None) -> Any:
    """The ONNX ``ModelProto`` computing ``spec`` (see the module docstring); ``metadata`` → ``metadata_props``.
    A chain's passes are spliced one after another (:mod:`kernelnet.export.chain_graph`), each in ``form``."""
    from onnx import TensorProto, helper

    if spec.after:
        from kernelnet.export.chain_graph import splice_passes

        return splice_passes(spec, build_graph, form=form, fp16=fp16, opset=opset, static=static, metadata=metadata)
    if spec.input.channels != 1:
        raise KernelnetError(f"graphs of {spec.input.channels}-channel filters are not supported yet")
    chosen = choose_form(spec, form)
    if opset < 18 and chosen == "rank":
        raise KernelnetError(f"rank filters need opset 18 or later (ReduceMin/ReduceMax with axes inputs), got {opset}")
    if chosen == "separable" and rank1_factors(spec.kernels[0]) is None:
        raise KernelnetError("graph form 'separable' needs a rank-1 kernel; this one is not (use conv or auto)")
    work = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    b = _Builder(work)
    x = INPUT_NAME
    if spec.input.dtype != "float32":
        x = b.op("Cast", [x], to=TensorProto.FLOAT)
    if spec.input.scale != 1.0:
        inverse = 1.0 / spec.input.scale
        if float(inverse).is_integer():  # x / 255 is correctly rounded; x · (1/255) may be off by an ulp
            x = b.op("Div", [x, b.const("in_div", np.array(inverse, dtype=np.float32))])
        else:
            x = b.op("Mul", [x, b.const("in_scale", np.array(spec.input.scale, dtype=np.float32))])
    if spec.decode is not None:
        from kernelnet.export.curve_graph import curve_nodes

        x = curve_nodes(b, x, spec.decode, "decode")
    if fp16:
        x = b.op("Cast", [x], to=TensorProto.FLOAT16)
    source = x
    padded = (spec.border not in ("zeros", "copy") or spec.is_rank) and spec.halo > 0
    if padded and spec.border in ("symmetric", "reflect_symmetric"):
        x = _mirror_pad(b, x, spec.halo, spec.border)
    elif padded:
        r = spec.halo
        x = b.op("Pad", [x, b.const("pads", np.array([0, 0, r, r, 0, 0, r, r], dtype=np.int64))],
                 mode=_PAD_MODE.get(spec.border, "constant"))
    if chosen == "rank":
        from kernelnet.export.rank_graph import rank_nodes

        y = rank_nodes(b, x, spec)
    elif chosen == "split":
        a = _correlate(b, x, spec, 0, "conv", padded, "a")
        c = _correlate(b, x, spec, 1, "conv", padded, "b")
        y = b.op("Sqrt", [b.op("Add", [b.op("Mul", [a, a]), b.op("Mul", [c, c])])])
    else:
        y = _correlate(b, x, spec, 0, chosen, padded, "")
        if spec.combine == "abs":
            y = b.op("Abs", [y])
    y = _output_stage(b, y, spec)
    if spec.border == "copy" and spec.halo > 0:
        y = _copy_ring(b, y, source, spec)
    if fp16:
        y = b.op("Cast", [y], to=TensorProto.FLOAT)
    if b.nodes:
        b.nodes[-1].output[0] = OUTPUT_NAME
    else:  # a 1×1 identity kernel without bias still needs one node
        b.op("Identity", [y], OUTPUT_NAME)
    dims: list[Any] = list(static) if static else ["batch", 1, "height", "width"]
    in_type = TensorProto.UINT8 if spec.input.dtype == "uint8" else TensorProto.FLOAT
    graph = helper.make_graph(b.nodes, "kernelnet_filter",
                              [helper.make_tensor_value_info(INPUT_NAME, in_type, dims)],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, dims)], b.inits)
    from kernelnet import __version__

    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="kernelnet",
                              producer_version=__version__)
    proto.ir_version = min(proto.ir_version, 10)  # readable by onnxruntime >= 1.18
    if metadata:
        helper.set_model_props(proto, metadata)
    return proto


def write_graph(path: Any, spec: FilterSpec, **options: Any) -> Any:
    """``path`` ← ``build_graph(spec, **options)`` with ``spec`` encoded in its metadata (what ``kernelnet export``
    writes for an exact run, without the run and its PyTorch check: for tests and benchmarks); returns ``path``."""
    import onnx

    from kernelnet.runtime.spec_codec import encode_spec

    onnx.save(build_graph(spec, metadata=encode_spec(spec), **options), str(path))
    return path
