"""A filter description read as its program of stages: a list for ``metrics.json`` and one line for people.

Stages in order: the linear part (k×k kernels, their combine and border) or a rank part (min / max / median / range over a
footprint, its border), then the output stage's steps that are not the identity (scale, offset, grid, clip,
rounding, bit depth). Example::

    >>> import numpy as np
    >>> from kernelnet.runtime.spec import FilterSpec, OutputStage
    >>> spec = FilterSpec.rank_filter("min", 5, "cross", output=OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8))
    >>> program_line(spec)
    '5×5 cross min (replicate) → ×255 → clip 0..255 → round half_even → 8-bit'
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.curves import label as curve_label
from kernelnet.runtime.spec import FOOTPRINTS, FilterSpec, footprint_of


def footprint_name(spec: FilterSpec) -> str | list[list[int]]:
    """``square``, ``cross``, or the footprint's 0/1 taps."""
    for name in FOOTPRINTS:
        if np.array_equal(footprint_of(name, spec.kernel_size), spec.footprint):
            return name
    return spec.footprint.astype(int).tolist()


def line_axis(spec: FilterSpec) -> str | None:
    """``horizontal`` / ``vertical`` when every kernel's nonzero taps lie on its middle row / column (a 1-D pass)."""
    k, r = spec.kernel_size, spec.kernel_size // 2
    if k == 1 or spec.is_rank:
        return None
    rows, cols = np.any(spec.kernels != 0, axis=(0, 2)), np.any(spec.kernels != 0, axis=(0, 1))
    if not rows.any() or (rows[r] and rows.sum() == 1):
        return "horizontal"
    return "vertical" if cols[r] and cols.sum() == 1 else None


def program_stages(spec: FilterSpec) -> list[dict[str, Any]]:
    """The stages of ``spec`` as JSON-ready dicts (see the module docstring); a chain's passes one after another."""
    if spec.after:
        return [stage for p in spec.passes for stage in program_stages(p)]
    k = spec.kernel_size
    if spec.is_rank:
        stages: list[dict[str, Any]] = [{"stage": "rank", "op": spec.combine, "kernel_size": k,
                                         "footprint": footprint_name(spec), "border": spec.border}]
    else:
        stages = [{"stage": "linear", "kernel_size": k, "kernels": len(spec.kernels), "border": spec.border,
                   "bias": bool(spec.has_bias), **({"axis": line_axis(spec)} if line_axis(spec) else {})}]
        if spec.combine != "raw":
            stages.append({"stage": "combine", "combine": spec.combine})
    if spec.decode:
        stages.insert(0, {"stage": "curve", "way": "decode", "curve": spec.decode})
    out = spec.output
    if out.encode:
        stages.append({"stage": "curve", "way": "encode", "curve": out.encode})
    if not out.identity:
        stages.append({"stage": "output", "scale": out.scale, "offset": out.offset, "grid": out.grid,
                       "clip": list(out.clip) if out.clip else None, "rounding": out.rounding, "bits": out.bits})
    return stages


def program_line(spec: FilterSpec) -> str:
    """``spec``'s program on one line, stages joined by arrows (a chain's passes in order)."""
    if spec.after:
        return " → ".join(program_line(p) for p in spec.passes)
    k, parts, axis = spec.kernel_size, [], line_axis(spec)
    if spec.decode:
        parts.append(curve_label(spec.decode, "decode"))
    if k == 1 and spec.combine == "raw" and not spec.has_bias and spec.kernels[0, 0, 0] != 0:
        gain = float(spec.kernels[0, 0, 0])
        parts.append(f"÷{1 / gain:.6g}" if abs(1 / gain - round(1 / gain)) < 1e-9 else f"×{gain:.6g}")
    elif axis:
        shape = f"1×{k}" if axis == "horizontal" else f"{k}×1"
        parts.append(f"{shape} {axis} linear{' + bias' if spec.has_bias else ''} ({spec.border})")
    elif spec.is_rank:
        shape = footprint_name(spec)
        parts.append(f"{k}×{k} {shape if isinstance(shape, str) else 'footprint'} {spec.combine} ({spec.border})")
    else:
        parts.append(f"{k}×{k} linear{' + bias' if spec.has_bias else ''} ({spec.border})")
        parts += {"abs": ["|·|"], "magnitude": ["√(a² + b²)"]}.get(spec.combine, [])
    out = spec.output
    if out.encode:
        parts.append(curve_label(out.encode, "encode"))
    if out.scale != 1.0:
        parts.append(f"×{out.scale:g}")
    if out.offset != 0.0:
        parts.append(f"{out.offset:+g}")
    if out.grid is not None:
        parts.append(f"grid 1/{out.grid}")
    if out.clip is not None:
        parts.append(f"clip {out.clip[0]:g}..{out.clip[1]:g}")
    if out.rounding is not None:
        parts.append(f"round {out.rounding}")
    if out.bits is not None:
        parts.append(f"{out.bits}-bit")
    return " → ".join(parts)
