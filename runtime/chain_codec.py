"""A chain's later passes in metadata (``kernelnet.passes``, ``kernelnet.pass<i>.*``) and in ``config.json``
(``after``: each pass's :data:`~kernelnet.runtime.spec_codec.PASS_KEYS` strings), read as strictly as one pass."""

from __future__ import annotations

import re
from typing import Any

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.spec_codec import MAX_PASSES, PASS_KEYS, PREFIX, _integer, _spec, encode_spec


def pass_fields(spec: FilterSpec) -> dict[str, str]:
    """A chain's later pass as its ``PASS_KEYS`` strings (unprefixed; what ``config.json`` ``after`` holds)."""
    return {k[len(PREFIX):]: v for k, v in encode_spec(spec).items() if k[len(PREFIX):] in PASS_KEYS}


def pass_spec(fields: Any) -> FilterSpec:
    """A later pass from :func:`pass_fields`' strings, validated as metadata is."""
    if not isinstance(fields, dict) or not set(fields) <= set(PASS_KEYS) or "kernels" not in fields or \
            not all(isinstance(v, str) for v in fields.values()):
        raise KernelnetError(f"a pass is an object of {', '.join(PASS_KEYS)} strings with kernels")
    return _spec({PREFIX + k: v for k, v in fields.items()})


def chained(props: dict[str, str], head: FilterSpec) -> FilterSpec:
    """``head`` with the later passes of ``kernelnet.passes`` / ``kernelnet.pass<i>.*`` (each validated as a spec)."""
    count = _integer(props, "passes")
    stray = [k for k in props if re.fullmatch(re.escape(PREFIX) + r"pass\d+\..*", k) and
             (count is None or not re.fullmatch(re.escape(PREFIX) + r"pass([2-9])\.(\w+)", k)
              or int(k[len(PREFIX) + 4]) > count or k.split(".", 2)[2] not in PASS_KEYS)]
    if stray:
        raise KernelnetError(f"model metadata {stray[0][len(PREFIX):][:40]}: not a key of a pass of this chain")
    if count is None:
        return head
    if not 2 <= count <= MAX_PASSES:
        raise KernelnetError(f"model metadata passes: a chain holds 2..{MAX_PASSES} passes, got {count}")
    passes = []
    for i in range(2, count + 1):
        tag = f"{PREFIX}pass{i}."
        own = {PREFIX + k[len(tag):]: v for k, v in props.items() if k.startswith(tag) and k[len(tag):] in PASS_KEYS}
        if PREFIX + "kernels" not in own:
            raise KernelnetError(f"model metadata pass{i}: no kernels")
        try:
            passes.append(_spec(own))
        except KernelnetError as exc:
            raise KernelnetError(f"model metadata pass{i}{str(exc).removeprefix('model metadata')}") from exc
    try:
        return head.replace(after=tuple(passes))
    except KernelnetError as exc:
        raise KernelnetError(f"model metadata passes: {exc}") from exc
