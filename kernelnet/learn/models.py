"""The two learned-filter models. Fully convolutional: input (N, 1, H, W), output (N, 1, H, W), any N/H/W ≥ 1.

Example::

    >>> import torch
    >>> m = SingleFilter(kernel_size=3)
    >>> m(torch.rand(2, 1, 1, 1)).shape
    torch.Size([2, 1, 1, 1])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import BORDERS, FilterSpec

PADDINGS = BORDERS
_MAGNITUDE_FLOOR = 1e-30
"""Floor under a² + b² before the square root: its gradient is 0 below it (no NaN on flat regions), and the
output moves by at most 1e-15."""


def pad_same(x: torch.Tensor, kernel_size: int, padding: str) -> torch.Tensor:
    """Pad (N, C, H, W) by k//2 on each side with the border ``padding`` (``zeros`` and ``copy`` are left to the
    conv: ``copy`` computes the interior as ``zeros`` does, and the ring is put back after the output stage)."""
    r = kernel_size // 2
    if r == 0 or padding in ("zeros", "copy"):
        return x
    if padding in ("reflect", "reflect_symmetric") and min(x.shape[-2:]) <= r:
        raise ValueError(f"{padding} border needs H and W > {r}, got {tuple(x.shape[-2:])}")
    if padding == "reflect_symmetric":  # reflect before each axis, symmetric after it
        x = torch.cat([x[..., 1:r + 1, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
        return torch.cat([x[..., 1:r + 1].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)
    if padding == "symmetric":
        if min(x.shape[-2:]) < r:
            raise ValueError(f"symmetric border needs H and W >= {r}, got {tuple(x.shape[-2:])}")
        x = torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)
        return torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)
    return F.pad(x, (r, r, r, r), mode=padding)


def correlate(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: str) -> torch.Tensor:
    """Same-size cross-correlation of (N, 1, H, W) with ``weight`` (C, 1, k, k) → (N, C, H, W)."""
    k = weight.shape[-1]
    x = pad_same(x, k, padding)
    return F.conv2d(x, weight, bias, padding=k // 2 if padding in ("zeros", "copy") else 0)


def magnitude(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """√(a² + b²) with a finite gradient everywhere (0 where a = b = 0)."""
    return torch.sqrt(torch.clamp(a * a + b * b, min=_MAGNITUDE_FLOOR))


class _FilterBase(nn.Module):
    channels: int = 1

    def __init__(self, kernel_size: int = 3, bias: bool = True, padding: str = "zeros") -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {kernel_size}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        self.kernel_size = kernel_size
        self.padding = padding
        self.conv = nn.Conv2d(1, self.channels, kernel_size, bias=bias, padding=0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return correlate(x, self.conv.weight, self.conv.bias, self.padding)

    @property
    def kernels(self) -> torch.Tensor:
        """The learned kernels, (C, k, k)."""
        return self.conv.weight.detach()[:, 0]


class SingleFilter(_FilterBase):
    """One k×k kernel: y = k⋆x + b, or |k⋆x + b| when ``normalize`` (the seed's SingleFilter).

    ``SingleFilter(normalize=False)`` is the seed's SingleFilterNoNorm.
    """

    channels = 1

    def __init__(self, kernel_size: int = 3, bias: bool = True, normalize: bool = False,
                 padding: str = "zeros") -> None:
        super().__init__(kernel_size, bias, padding)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        return torch.abs(y) if self.normalize else y


class DoubleFilter(_FilterBase):
    """Two k×k kernels combined as √(a² + b²) (the Sobel gradient magnitude for (Sobel, Sobelᵀ))."""

    channels = 2
    normalize = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(x)
        return magnitude(y[:, 0:1], y[:, 1:2])


class RankFilter(nn.Module):
    """The order statistic ``rank`` (min / max / median, or range = max − min) of each pixel's footprint taps
    (N, 1, H, W) → (N, 1, H, W): an erosion, dilation, median filter or morphological gradient. Nothing to learn: the footprint (1, 1, k, k) of 0 and 1 is a buffer (it
    travels in model.safetensors), and identification picks the rank, footprint and border."""

    normalize = False

    def __init__(self, kernel_size: int = 3, rank: str = "median", padding: str = "replicate",
                 footprint: np.ndarray | None = None) -> None:
        super().__init__()
        if rank not in ("min", "max", "median", "range") or padding not in PADDINGS or padding == "copy":
            raise ValueError(f"a rank filter takes min / max / median / range and a padding border, got {rank!r}, "
                             f"{padding!r}")
        self.kernel_size, self.rank, self.padding = kernel_size, rank, padding
        taps = np.ones((kernel_size, kernel_size)) if footprint is None else footprint
        self.register_buffer("footprint", torch.tensor(np.asarray(taps, np.float32).reshape(1, 1, kernel_size,
                                                                                          kernel_size)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, (n, _, h, w) = self.kernel_size, x.shape
        padded = F.pad(x, (k // 2,) * 4) if self.padding == "zeros" else pad_same(x, k, self.padding)
        taps = F.unfold(padded, k)[:, self.footprint.reshape(-1) != 0]  # (N, taps, H·W)
        if self.rank == "min":
            y = taps.amin(dim=1)
        elif self.rank == "max":
            y = taps.amax(dim=1)
        elif self.rank == "range":  # the morphological gradient
            y = taps.amax(dim=1) - taps.amin(dim=1)
        else:
            y = taps.median(dim=1).values  # an odd number of taps: the middle one, exactly
        return y.reshape(n, 1, h, w)


def build_model(model: str, kernel_size: int = 3, bias: bool = True, normalize: bool = False,
                padding: str = "zeros", rank: str = "") -> nn.Module:
    """``single`` → :class:`SingleFilter`, ``double`` → :class:`DoubleFilter`, ``rank`` → :class:`RankFilter`."""
    if model == "rank":
        return RankFilter(kernel_size, rank, padding)
    if model == "single":
        return SingleFilter(kernel_size, bias, normalize, padding)
    if model == "double":
        return DoubleFilter(kernel_size, bias, padding)
    raise ValueError(f"unknown model {model!r}; expected 'single', 'double' or 'rank'")


def set_kernels(model: nn.Module, kernels: np.ndarray, bias: np.ndarray | None = None) -> None:
    """Copy ``kernels`` (C, k, k) and, when given (and the model has one), ``bias`` (C,) into ``model.conv``."""
    with torch.no_grad():
        model.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernels))[:, None].to(model.conv.weight))
        if model.conv.bias is not None and bias is not None:
            model.conv.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)).to(model.conv.bias))


def target_weight(kernel: torch.Tensor, model: str) -> torch.Tensor:
    """The target's conv weight: (1, 1, k, k) for single, (2, 1, k, k) = (K, Kᵀ) for double."""
    if model == "double":
        return torch.stack([kernel, kernel.T])[:, None]
    return kernel[None, None]


def apply_target(x: torch.Tensor, kernel: torch.Tensor, model: str, normalize: bool, padding: str) -> torch.Tensor:
    """Vectorised target for a batch (N, 1, H, W) on the batch's device (exact magnitude, no floor)."""
    y = correlate(x, target_weight(kernel.to(x), model), None, padding)
    if model == "double":
        return torch.hypot(y[:, 0:1], y[:, 1:2])
    return torch.abs(y) if normalize else y


def model_from_spec(spec: FilterSpec) -> _FilterBase:
    """The PyTorch model computing ``spec`` (float32 input in [0, 1], no output stage)."""
    if spec.after:
        raise KernelnetError(f"PyTorch models compute one pass; this is a chain of {len(spec.passes)} passes")
    if spec.input.scale != 1.0 or spec.input.channels != 1 or not spec.output.identity or spec.decode:
        raise KernelnetError("PyTorch models compute gray float filters without an output stage")
    model = build_model(spec.model, spec.kernel_size, spec.has_bias, spec.normalize, spec.border)
    set_kernels(model, spec.kernels.astype(np.float32), spec.bias.astype(np.float32))
    return model.eval()
