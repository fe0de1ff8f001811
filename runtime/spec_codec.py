"""The model metadata codec: a :class:`FilterSpec` (+ artifact facts) ⇄ ``kernelnet.*`` string key/values.

The one place that writes and reads kernelnet metadata (ONNX ``metadata_props``, the TensorRT side-car). Reading
trusts nothing: every field is checked (odd ``kernel_size`` equal to the kernels' side and ≤ 31, finite numbers,
known names, one bias per kernel, bounded size and nesting), and a bad one is refused with one
:class:`KernelnetError` line naming the field. A model with no ``kernelnet.kernels`` at all is a foreign model:
it decodes to ``spec=None`` (onnxruntime runs it whole, untiled).

Keys (all prefixed ``kernelnet.``): ``version``, ``model`` (single/double/rank), ``rank`` (min/max/median/range, for a rank
model: its kernel is the footprint), ``normalize`` (true/false),
``kernels`` (C, k, k), ``bias``, ``padding``, ``kernel_size``, ``input_dtype``, ``input_scale``, ``channels``,
``output_stage`` (JSON object; ``encode``: its curve), ``decode`` (the input's curve), ``precision``, ``filter``, ``target_kernel``, ``graph_form``, ``metrics``; a chain:
``passes`` (how many) and each later pass's own ``PASS_KEYS`` under ``pass<i>.`` (``pass2.kernels``, …).

    >>> import numpy as np
    >>> from kernelnet.runtime.spec import FilterSpec
    >>> spec = FilterSpec.from_kind(np.eye(3), model="single")
    >>> decode_info(encode_spec(spec)).spec.kernel_size
    3
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import (BORDERS, INPUT_DTYPES, MODELS, RANKS, FilterSpec, InputEncoding,
                                    OutputStage, as_kernel_stack, check_kernel_size)

PREFIX = "kernelnet."
PRECISIONS = ("fp32", "fp16", "int8")
PASS_KEYS = ("model", "rank", "normalize", "kernels", "bias", "padding", "kernel_size", "output_stage", "decode")
"""The keys of a chain's later pass (its input is always the previous output as float32)."""
MAX_PASSES = 8
"""Most passes one chain holds."""
MAX_FIELD_CHARS = 1 << 20
"""No metadata value may exceed 1 MiB (a 2×31×31 kernel stack takes ~40 KB)."""
MAX_NESTING = 4


def _compact(values: Any) -> str:
    """JSON of float32-rounded values in their shortest round-trip form (keeps a 3×3 model under 1 KB)."""
    arr = np.asarray(values, dtype=np.float32)

    def number(v: float) -> str:
        if 1e-4 <= abs(v) < 1e6 or v == 0:
            return np.format_float_positional(v, unique=True, trim="-")
        return np.format_float_scientific(v, unique=True, trim="-")

    text = np.array2string(arr, separator=",", threshold=1 << 30, max_line_width=1 << 30,
                           formatter={"float_kind": number})
    return text.replace(" ", "").replace("\n", "")


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _json(props: dict[str, str], key: str, default: Any = None) -> Any:
    """Decode the JSON value of ``key``: bounded size and nesting, one line on error."""
    text = props.get(PREFIX + key)
    if text is None:
        return default
    if not isinstance(text, str) or len(text) > MAX_FIELD_CHARS:
        raise KernelnetError(f"model metadata {key}: not a string of at most {MAX_FIELD_CHARS} characters")
    if _nesting(text) > MAX_NESTING:
        raise KernelnetError(f"model metadata {key}: nested deeper than {MAX_NESTING} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise KernelnetError(f"model metadata {key}: not valid JSON ({exc})") from exc


def _numbers(value: Any, key: str, ranks: tuple[int, ...]) -> Any:
    """``value`` if it is a nested list of JSON numbers (no booleans, no strings) of one of ``ranks``."""
    def rank(v: Any) -> int:
        if isinstance(v, list):
            inner = {rank(item) for item in v} if v else {0}
            if len(inner) != 1:
                raise KernelnetError(f"model metadata {key}: ragged or mixed nesting")
            return 1 + inner.pop()
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise KernelnetError(f"model metadata {key}: {str(v)[:20]!r} is not a number")
        return 0

    if rank(value) not in ranks:
        raise KernelnetError(f"model metadata {key}: expected a {' or '.join(f'{r}-D' for r in ranks)} array")
    return value


def _choice(props: dict[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    value = props.get(PREFIX + key, default)
    if value not in allowed:
        raise KernelnetError(f"model metadata {key}: {str(value)[:40]!r} is not one of {', '.join(allowed)}")
    return value


def _integer(props: dict[str, str], key: str) -> int | None:
    text = props.get(PREFIX + key)
    if text is None:
        return None
    if not isinstance(text, str) or not re.fullmatch(r"[0-9]{1,6}", text):
        raise KernelnetError(f"model metadata {key}: {str(text)[:40]!r} is not a whole number")
    return int(text)


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """What the runtime knows about an exported filter: its :class:`FilterSpec` (``None`` for a model without
    kernelnet metadata), the true filter it was trained for (``target``, when known), and artifact facts."""

    spec: FilterSpec | None = None
    target: FilterSpec | None = None
    precision: str = "fp32"
    graph_form: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    """Every decoded metadata value (for ``kernelnet info``)."""

    # shorthands the runtime reads everywhere
    @property
    def model(self) -> str | None:
        return self.spec.model if self.spec else None

    @property
    def normalize(self) -> bool:
        return bool(self.spec and self.spec.normalize)

    @property
    def padding(self) -> str:
        return self.spec.border if self.spec else "zeros"

    @property
    def kernel_size(self) -> int | None:
        return self.spec.kernel_size if self.spec else None

    @property
    def halo(self) -> int | None:
        return self.spec.reach if self.spec else None

    @property
    def kernels(self) -> np.ndarray | None:
        return self.spec.kernels if self.spec else None

    @property
    def bias(self) -> np.ndarray | None:
        return self.spec.bias if self.spec else None

    @property
    def input_dtype(self) -> str:
        return self.spec.input.dtype if self.spec else str(self.fields.get("input_dtype", "float32"))

    @property
    def target_kernel(self) -> np.ndarray | None:
        return None if self.target is None else self.target.kernels[0]


def encode_spec(spec: FilterSpec, *, precision: str = "fp32", target: FilterSpec | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    """``kernelnet.*`` string metadata for ``spec`` (and the true filter ``target``); ``extra`` keys are added
    as given (``filter``, ``graph_form``, ``metrics``, ``version``)."""
    if precision not in PRECISIONS:
        raise KernelnetError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    out = spec.output
    meta = {
        "model": spec.model,
        "normalize": "true" if spec.normalize else "false",
        "kernels": _compact(spec.kernels),
        "bias": _compact(spec.bias) if spec.has_bias else "[]",
        "padding": spec.border,
        "kernel_size": str(spec.kernel_size),
        "input_dtype": spec.input.dtype,
        "input_scale": repr(spec.input.scale),
        "channels": str(spec.input.channels),
        "precision": precision,
    }
    if spec.is_rank:
        meta["rank"] = spec.combine
    if spec.decode is not None:
        meta["decode"] = spec.decode
    if not out.identity:
        stage = {"scale": out.scale, "offset": out.offset, "clip": list(out.clip) if out.clip else None,
                 "rounding": out.rounding, "bits": out.bits, "grid": out.grid}
        meta["output_stage"] = json.dumps({**stage, **({"encode": out.encode} if out.encode else {})},
                                          separators=(",", ":"))
    if spec.after:  # a chain: each later pass's own keys under pass<i>. (i from 2)
        meta["passes"] = str(len(spec.passes))
        from kernelnet.runtime.chain_codec import pass_fields

        for i, later in enumerate(spec.after, 2):
            meta.update({f"pass{i}.{k}": v for k, v in pass_fields(later).items()})
    if target is not None:
        meta["target_kernel"] = _compact(target.kernels[0])
    meta.update(extra or {})
    return {PREFIX + k: v for k, v in meta.items()}


def _output_stage(props: dict[str, str]) -> OutputStage:
    doc = _json(props, "output_stage", {})
    if not isinstance(doc, dict) or set(doc) - {"scale", "offset", "clip", "rounding", "bits", "grid", "encode"}:
        raise KernelnetError("model metadata output_stage: expected an object of scale, offset, clip, rounding, "
                             "bits, grid, encode")
    for name in ("scale", "offset"):
        if name in doc and (isinstance(doc[name], bool) or not isinstance(doc[name], (int, float))):
            raise KernelnetError(f"model metadata output_stage: {name} must be a number")
    clip = doc.get("clip")
    if clip is not None:
        _numbers(clip, "output_stage clip", (1,))
    if doc.get("bits") is not None and (isinstance(doc["bits"], bool) or not isinstance(doc["bits"], int)):
        raise KernelnetError("model metadata output_stage: bits must be 8 or 16")
    try:
        return OutputStage(doc.get("scale", 1.0), doc.get("offset", 0.0),
                           tuple(clip) if isinstance(clip, list) else clip, doc.get("rounding"), doc.get("bits"),
                           doc.get("grid"), doc.get("encode"))
    except KernelnetError as exc:
        raise KernelnetError(f"model metadata output_stage: {exc}") from exc


def _spec(props: dict[str, str]) -> FilterSpec:
    model = _choice(props, "model", MODELS, "single")
    normalize = _choice(props, "normalize", ("true", "false"), "false") == "true"
    if normalize and model == "double":
        raise KernelnetError("model metadata normalize: true contradicts model double (a magnitude is never negative)")
    border = _choice(props, "padding", BORDERS, "zeros")
    dtype = _choice(props, "input_dtype", INPUT_DTYPES, "float32")
    try:
        kernels = _float32(as_kernel_stack(_numbers(_json(props, "kernels"), "kernels", (2, 3))))
        size = _integer(props, "kernel_size")
        if size is not None:
            check_kernel_size(size)
            if size != kernels.shape[-1]:
                raise KernelnetError(f"kernel_size {size} disagrees with the {kernels.shape[-1]}x{kernels.shape[-1]} kernels")
        bias = _numbers(_json(props, "bias", []), "bias", (1,))
        channels = _integer(props, "channels")
        encoding = InputEncoding.for_dtype(dtype, 1 if channels is None else channels)
        if PREFIX + "input_scale" in props and _scale(props[PREFIX + "input_scale"]) != encoding.scale:
            raise KernelnetError(f"input_scale {props[PREFIX + 'input_scale'][:40]!r} is not the {dtype} mapping "
                                 f"({encoding.scale!r}); other mappings are not supported yet")
        rank = _choice(props, "rank", RANKS, "") if model == "rank" else None
        if rank and normalize:
            raise KernelnetError("model metadata normalize: true contradicts model rank")
        if model != "rank" and PREFIX + "rank" in props:
            raise KernelnetError(f"rank {props[PREFIX + 'rank'][:20]!r} given for a {model} model")
        decode = props.get(PREFIX + "decode")
        return FilterSpec.from_weights(kernels, _float32(np.array(bias, dtype=np.float64)) if bias else None, model,
                                       normalize, border, rank, input=encoding, output=_output_stage(props),
                                       decode=decode)
    except KernelnetError as exc:
        text = str(exc)
        raise KernelnetError(text if text.startswith("model metadata") else f"model metadata: {text}") from exc


def _float32(values: np.ndarray) -> np.ndarray:
    """The float32 values the graph holds (metadata prints them in their shortest float32 form), as float64."""
    with np.errstate(over="ignore"):
        return values.astype(np.float32).astype(np.float64)


def _scale(text: Any) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise KernelnetError("input_scale must be a number of at most 40 characters")
    try:
        return float(text)
    except ValueError as exc:
        raise KernelnetError(f"input_scale {text!r} is not a number") from exc


def decode_info(props: dict[str, str]) -> ModelInfo:
    """:class:`ModelInfo` from ``kernelnet.*`` metadata (other keys ignored); raises KernelnetError naming the
    first bad field."""
    props = {k: v for k, v in props.items() if k.startswith(PREFIX)}
    fields: dict[str, Any] = {k[len(PREFIX):]: v for k, v in props.items()}
    precision = _choice(props, "precision", PRECISIONS, "fp32")
    from kernelnet.runtime.chain_codec import chained

    spec = chained(props, _spec(props)) if PREFIX + "kernels" in props else None
    target = None
    raw_target = _json(props, "target_kernel")
    if spec is not None and raw_target not in (None, []):
        try:
            target = FilterSpec.from_kind(_numbers(raw_target, "target_kernel", (2,)), spec.model, spec.normalize,
                                          spec.border)
        except KernelnetError as exc:
            raise KernelnetError(f"model metadata target_kernel: {exc}") from exc
    for key in ("kernels", "bias", "target_kernel", "metrics", "output_stage", "quantization", "target_encoding"):
        if key in fields:
            try:
                fields[key] = _json(props, key)
            except KernelnetError:
                pass  # informational copies only; the validated values live in spec / target
    if spec is not None:
        fields.update(model=spec.model, normalize=spec.normalize, kernel_size=spec.kernel_size)
    elif "kernel_size" in fields:
        fields["kernel_size"] = _integer(props, "kernel_size")
    form = fields.get("graph_form")
    return ModelInfo(spec, target, precision, form if isinstance(form, str) else None, fields)


SPEC_KEYS = ("model", "rank", "normalize", "kernels", "bias", "padding", "kernel_size", "input_dtype", "input_scale",
             "channels", "output_stage", "precision", "target_kernel", "passes", "decode")


def reencode(props: dict[str, str], *, precision: str | None = None, input_dtype: str | None = None,
             extra: dict[str, str] | None = None) -> dict[str, str]:
    """``props`` decoded, changed (precision, input encoding) and encoded again; provenance keys are kept."""
    info = decode_info(props)
    if info.spec is None:
        raise KernelnetError("model metadata: no kernelnet filter description to carry over")
    spec = info.spec
    if input_dtype is not None:
        spec = spec.replace(input=InputEncoding.for_dtype(input_dtype, spec.input.channels))
    kept = {k[len(PREFIX):]: v for k, v in props.items()
            if k.startswith(PREFIX) and k[len(PREFIX):] not in SPEC_KEYS and not k[len(PREFIX):].startswith("pass")}
    return encode_spec(spec, precision=precision or info.precision, target=info.target, extra={**kept, **(extra or {})})


def decode_fields(props: dict[str, str]) -> dict[str, Any]:
    """Every ``kernelnet.*`` value decoded (for ``kernelnet info``), validated as :func:`decode_info` does."""
    return decode_info(props).fields
