"""The module that is exported: the trained model as the graph form onnxruntime runs fastest, plus input scaling
(uint8) and precision casts (fp16).

Input (N, 1, H, W) float32 in [0, 1] or uint8 in [0, 255]; output (N, 1, H, W) float32.

Graph forms (all compute the trained model; export verifies them against it):

* ``conv`` — one k×k Conv (then ``Abs`` for the abs model);
* ``separable`` — a rank-1 kernel k = v·uᵀ as a k×1 Conv then a 1×k Conv (Sobel, Scharr, Prewitt, Gaussian,
  box): fewer multiply-adds and a smaller im2col buffer in onnxruntime's CPU Conv;
* the double model is always two single-output Convs and ``Sqrt(a·a + b·b)``: onnxruntime's CPU Conv is much
  slower with two output channels, and the channel ``Slice``s and the training-time ``Clip`` cost extra passes.

``auto`` picks ``separable`` when the kernel is rank 1 to float32 precision (σ₂ ≤ 1e-6·σ₁), else ``conv``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kernelnet.models import correlate, pad_same

INPUT_DTYPES = ("float32", "uint8")
FORMS = ("auto", "conv", "separable")
RANK1_TOLERANCE = 1e-6


def rank1_factors(kernel: np.ndarray, tolerance: float = RANK1_TOLERANCE) -> tuple[np.ndarray, np.ndarray] | None:
    """(v, u) with v·uᵀ = kernel (k×k) when its second singular value is ≤ ``tolerance``·σ₁, else ``None``."""
    if kernel.shape[0] < 3:
        return None
    u_, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64))
    if s[0] == 0 or s[1] > tolerance * s[0]:
        return None
    v, u = u_[:, 0] * s[0], vt[0]
    peak = v[np.argmax(np.abs(v))]  # scale v to a peak of +1: Sobel gives v = (½, 1, ½), u = (−2, 0, 2), exact
    return v / peak, u * peak


def choose_form(model: nn.Module, form: str = "auto") -> str:
    """Resolve ``auto`` for this model (see the module docstring); double models ignore ``form``. ``model``
    (the trained module exactly as it is, the reference export is verified against) is kept as is."""
    if form == "model":
        return form
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if model.conv.out_channels == 2:
        return "split"
    if form != "auto":
        return form
    kernel = model.conv.weight.detach().double().numpy()[0, 0]
    return "separable" if rank1_factors(kernel) is not None else "conv"


class FilterGraph(nn.Module):
    """The trained filter rewritten in ``form`` (``conv``, ``separable`` or ``split`` for the double model)."""

    def __init__(self, model: nn.Module, form: str) -> None:
        super().__init__()
        self.form, self.padding, self.k = form, model.padding, model.kernel_size
        self.normalize = bool(getattr(model, "normalize", False))
        weight = model.conv.weight.detach()
        bias = model.conv.bias.detach() if model.conv.bias is not None else None
        if form == "separable":
            factors = rank1_factors(weight.double().numpy()[0, 0], tolerance=np.inf)
            v, u = (torch.tensor(f, dtype=weight.dtype) for f in factors)  # type: ignore[misc]
            self.register_buffer("v", v.reshape(1, 1, -1, 1))
            self.register_buffer("u", u.reshape(1, 1, 1, -1))
        elif form == "split":
            self.register_buffer("wa", weight[0:1].clone())
            self.register_buffer("wb", weight[1:2].clone())
        else:
            self.register_buffer("w", weight.clone())
        self.has_bias = bias is not None
        self.register_buffer("b", bias.clone() if bias is not None else torch.zeros(weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.b if self.has_bias else None
        if self.form == "split":
            a = correlate(x, self.wa, bias[0:1] if bias is not None else None, self.padding)
            b = correlate(x, self.wb, bias[1:2] if bias is not None else None, self.padding)
            return torch.sqrt(a * a + b * b)
        if self.form == "separable":
            r = self.k // 2
            if self.padding == "zeros":
                y = F.conv2d(F.conv2d(x, self.v, None, padding=(r, 0)), self.u, bias, padding=(0, r))
            else:
                y = F.conv2d(F.conv2d(pad_same(x, self.k, self.padding), self.v), self.u, bias)
        else:
            y = correlate(x, self.w, bias, self.padding)
        return torch.abs(y) if self.normalize else y


class ExportModule(nn.Module):
    """Wraps a SingleFilter/DoubleFilter as :class:`FilterGraph`: ``uint8`` input is divided by 255 inside the
    graph; ``fp16`` runs the filter in half precision between float32 casts, so callers always exchange float32
    (or uint8) arrays."""

    def __init__(self, model: nn.Module, input_dtype: str = "float32", fp16: bool = False, form: str = "auto") -> None:
        super().__init__()
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        self.form = choose_form(model, form)
        graph = model if self.form == "model" else FilterGraph(model, self.form)
        self.model = graph.half() if fp16 else graph
        self.uint8 = input_dtype == "uint8"
        self.fp16 = fp16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uint8:
            x = x.to(torch.float32) / 255.0
        if self.fp16:
            return self.model(x.to(torch.float16)).to(torch.float32)
        return self.model(x)


def example_input(input_dtype: str, shape: tuple[int, ...] = (1, 1, 16, 16), device: str = "cpu") -> torch.Tensor:
    if input_dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    return torch.rand(shape, device=device)
