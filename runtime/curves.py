"""Pointwise curves a pass may wrap its kernel in: ``decode`` its input values, ``encode`` its combined value.

Names: ``gamma:<g>`` (0.2 ≤ g ≤ 5; decode v ↦ v^g, encode v ↦ v^(1/g), negative values taken as 0) and ``srgb``
(IEC 61966-2-1: decode v ≤ 0.04045 ↦ v / 12.92, else ((v + 0.055) / 1.055)^2.4; encode its inverse). A program
that blurs in linear light is ``decode γ → kernel → encode γ`` on values in [0, 1]. Numpy only::

    >>> import numpy as np
    >>> float(encode(decode(np.array(0.5), "gamma:2.2"), "gamma:2.2"))
    0.5
"""

from __future__ import annotations

import numpy as np

from kernelnet.runtime.errors import KernelnetError

GAMMA_RANGE = (0.2, 5.0)


def check_curve(name: object, what: str = "curve") -> str:
    """``name`` in its canonical form (``gamma:2.2``, ``srgb``); KernelnetError for anything else."""
    if name == "srgb":
        return "srgb"
    if isinstance(name, str) and name.startswith("gamma:"):
        try:
            g = float(name[6:])
        except ValueError:
            g = float("nan")
        if GAMMA_RANGE[0] <= g <= GAMMA_RANGE[1]:
            return f"gamma:{g:.6g}"
    raise KernelnetError(f"{what} must be 'srgb' or 'gamma:<g>' with g in {GAMMA_RANGE[0]}..{GAMMA_RANGE[1]}, "
                         f"got {str(name)[:40]!r}")


def exponent(name: str) -> float | None:
    """g of ``gamma:<g>``; None for sRGB."""
    return float(name[6:]) if name.startswith("gamma:") else None


def decode(v: np.ndarray, name: str) -> np.ndarray:
    """Encoded values → linear (float64)."""
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    g = exponent(name)
    if g is not None:
        return v ** g
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def encode(v: np.ndarray, name: str) -> np.ndarray:
    """Linear values → encoded (float64)."""
    v = np.maximum(np.asarray(v, dtype=np.float64), 0.0)
    g = exponent(name)
    if g is not None:
        return v ** (1.0 / g)
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * v ** (1 / 2.4) - 0.055)


def label(name: str, way: str) -> str:
    """``decode γ2.2`` / ``encode sRGB`` for a program line."""
    g = exponent(name)
    return f"{way} " + (f"γ{g:g}" if g is not None else "sRGB")
