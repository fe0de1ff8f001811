"""Image-size lists as text (``"1x1,224x224,1080x1920"``), shared by verify, bench, tune and the pipeline."""

from __future__ import annotations

from kernelnet.runtime.errors import KernelnetError

MAX_CASE_PIXELS = 8192 * 8192
"""Largest synthetic case (its float64 references alone take 0.5 GB)."""


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"1x1,224x224,1080x1920"`` → ((1, 1), (224, 224), (1080, 1920))."""
    sizes = []
    for part in text.split(","):
        try:
            h, w = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise KernelnetError(f"invalid size {part!r}: use HxW[,HxW...]") from None
        if not (1 <= h <= 1 << 20 and 1 <= w <= 1 << 20):
            raise KernelnetError(f"invalid size {part!r}: sides must be between 1 and {1 << 20}")
        if h * w > MAX_CASE_PIXELS:
            raise KernelnetError(f"size {part!r} is {h * w:,} pixels: verify and bench cases stop at "
                                 f"{MAX_CASE_PIXELS:,} (8192x8192)")
        sizes.append((h, w))
    return tuple(sizes)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """``"1,3"`` → (1, 3); every value ≥ 1."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise KernelnetError(f"invalid {what} {text!r}: use comma-separated integers") from None
    if not values or min(values) < 1:
        raise KernelnetError(f"invalid {what} {text!r}: values must be >= 1")
    return values
