"""Shape strings for export options: ``HxW`` or ``NxHxW`` → (N, 1, H, W). Torch-free."""

from __future__ import annotations

from kernelnet.runtime.errors import KernelnetError


def parse_shape(text: str, what: str = "shape") -> tuple[int, int, int, int]:
    """``"1080x1920"`` → (1, 1, 1080, 1920); ``"3x480x640"`` → (3, 1, 480, 640). Zero or negative is an error."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise KernelnetError(f"invalid {what} {text!r}: expected HxW or NxHxW, e.g. 1080x1920") from None
    if len(dims) not in (2, 3):
        raise KernelnetError(f"invalid {what} {text!r}: expected HxW or NxHxW")
    if min(dims) < 1:
        raise KernelnetError(f"invalid {what} {text!r}: every dimension must be >= 1")
    n, h, w = dims if len(dims) == 3 else [1, *dims]
    return n, 1, h, w


def check_profile(lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> None:
    """Require min ≤ opt ≤ max in every dimension (a TensorRT optimisation profile)."""
    for a, b, c in zip(lo, opt, hi):
        if not a <= b <= c:
            raise KernelnetError(f"invalid shape profile: need min <= opt <= max per dimension, got "
                                 f"{'x'.join(map(str, lo))} / {'x'.join(map(str, opt))} / {'x'.join(map(str, hi))}")
