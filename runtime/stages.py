"""The ends of a filter description: :class:`InputEncoding` (how pixels become values) and :class:`OutputStage`
(what follows the kernels: curve, scale, offset, grid, clip, rounding, bit depth). Torch-free (numpy only);
:mod:`kernelnet.runtime.spec` holds the filter itself and re-exports both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kernelnet.runtime.errors import KernelnetError

INPUT_DTYPES = ("float32", "uint8")
ROUNDINGS = ("half_even", "half_up", "toward_zero", "floor")
MAX_CHANNELS = 4
"""Largest number of image channels a model filters (each one independently)."""


def finite(value: Any, what: str) -> float:
    """``value`` as a finite float; KernelnetError naming ``what`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise KernelnetError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(number) or isinstance(value, bool):
        raise KernelnetError(f"{what} must be a finite number, got {value!r}")
    return number


@dataclass(frozen=True)
class InputEncoding:
    """How input pixels become the filter's values: ``value = pixel · scale``.

    ``dtype`` is what the graph takes (float32 in [0, 1], or raw uint8 with ``scale`` 1/255); ``channels`` is how
    many image channels are filtered independently (1 = gray).
    """

    channels: int = 1
    dtype: str = "float32"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) \
                or not 1 <= self.channels <= MAX_CHANNELS:
            raise KernelnetError(f"input channels must be an integer in 1..{MAX_CHANNELS}, got {self.channels!r}")
        if self.dtype not in INPUT_DTYPES:
            raise KernelnetError(f"input dtype must be one of {', '.join(INPUT_DTYPES)}, got {self.dtype!r}")
        scale = finite(self.scale, "input scale")
        if scale <= 0:
            raise KernelnetError(f"input scale must be > 0, got {scale}")
        object.__setattr__(self, "scale", scale)

    @classmethod
    def for_dtype(cls, dtype: str, channels: int = 1) -> InputEncoding:
        """The standard mapping of ``dtype``: float32 as is, uint8 / 255."""
        return cls(channels, dtype, 1.0 / 255.0 if dtype == "uint8" else 1.0)


@dataclass(frozen=True)
class OutputStage:
    """What follows the combine step: ``y = v · scale + offset``, snapped to the nearest multiple of 1/``grid``
    (the exact values of an integer-arithmetic filter, so that float32 noise never moves a tie), then ``clip``
    (lo, hi), then ``rounding``.

    ``bits`` (8 or 16) marks an integer output whose levels are ``y`` itself (``clip`` is then within
    [0, 2^bits − 1]); ``None`` is a float output. The identity stage is ``OutputStage()``.
    """

    scale: float = 1.0
    offset: float = 0.0
    clip: tuple[float, float] | None = None
    rounding: str | None = None
    bits: int | None = None
    grid: int | None = None
    encode: str | None = None
    """A curve (:mod:`kernelnet.runtime.curves`) applied to the combined value before ``scale``: linear → encoded."""

    def __post_init__(self) -> None:
        if self.encode is not None:
            from kernelnet.runtime.curves import check_curve

            object.__setattr__(self, "encode", check_curve(self.encode, "output encode curve"))
        if self.grid is not None and (isinstance(self.grid, bool) or not isinstance(self.grid, int)
                                      or not 1 <= self.grid <= 1 << 16):
            raise KernelnetError(f"output grid must be an integer in 1..65536, got {self.grid!r}")
        object.__setattr__(self, "scale", finite(self.scale, "output scale"))
        object.__setattr__(self, "offset", finite(self.offset, "output offset"))
        if self.scale == 0:
            raise KernelnetError("output scale must not be 0")
        if self.clip is not None:
            if not isinstance(self.clip, (tuple, list)) or len(self.clip) != 2:
                raise KernelnetError(f"output clip must be [lo, hi], got {self.clip!r}")
            lo, hi = (finite(v, "output clip bound") for v in self.clip)
            if not lo < hi:
                raise KernelnetError(f"output clip needs lo < hi, got [{lo}, {hi}]")
            object.__setattr__(self, "clip", (lo, hi))
        if self.rounding is not None and self.rounding not in ROUNDINGS:
            raise KernelnetError(f"output rounding must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")
        if self.bits is not None:
            if self.bits not in (8, 16) or isinstance(self.bits, bool):
                raise KernelnetError(f"output bits must be 8 or 16, got {self.bits!r}")
            top = float(2 ** self.bits - 1)
            if self.clip is None or self.clip[0] < 0 or self.clip[1] > top or self.rounding is None:
                raise KernelnetError(f"a {self.bits}-bit output needs a clip within [0, {top:g}] and a rounding")

    @property
    def identity(self) -> bool:
        return self == OutputStage()
