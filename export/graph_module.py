"""The PyTorch reference an exported graph is verified against: the trained model with the graph's input mapping
(uint8 / 255 inside) and precision (fp16 between float32 casts), so both take and return the same arrays.

Input (N, 1, H, W) float32 in [0, 1] or uint8 in [0, 255]; output (N, 1, H, W) float32.
"""

from __future__ import annotations

import torch
from torch import nn

from kernelnet.runtime.spec import FilterSpec

INPUT_DTYPES = ("float32", "uint8")


class ReferenceModule(nn.Module):
    """``model`` (a SingleFilter/DoubleFilter) behind the exported graph's input mapping and precision, followed
    by the spec's output stage (and the ``copy`` border's ring) and a chain's later passes, in float64."""

    def __init__(self, model: nn.Module, input_dtype: str = "float32", fp16: bool = False,
                 spec: FilterSpec | None = None) -> None:
        super().__init__()
        if input_dtype not in INPUT_DTYPES:
            raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
        self.model = model.half() if fp16 else model
        self.uint8 = input_dtype == "uint8"
        self.fp16 = fp16
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uint8:
            x = x.to(torch.float32) / 255.0
        if self.spec is not None and self.spec.decode is not None:  # the curve before the kernels, in float64
            from kernelnet.runtime.curves import decode

            x = torch.from_numpy(decode(x.double().numpy(), self.spec.decode).astype("float32"))
        y = self.model(x.to(torch.float16)).to(torch.float32) if self.fp16 else self.model(x)
        if self.spec is None or (self.spec.output.identity and self.spec.border != "copy" and not self.spec.after
                                 and self.spec.decode is None):
            return y
        from kernelnet.runtime.reference import apply_spec, copy_ring, output_stage

        staged = output_stage(y.double().numpy(), self.spec.output)
        if self.spec.border == "copy" and self.spec.halo:
            staged = copy_ring(staged, x.double().numpy(), self.spec)
        for later in self.spec.after:  # a chain's later passes, in float64
            staged = apply_spec(staged, later)
        return torch.from_numpy(staged.astype("float32"))


def example_input(input_dtype: str, shape: tuple[int, ...] = (1, 1, 16, 16), device: str = "cpu") -> torch.Tensor:
    if input_dtype == "uint8":
        return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)
    return torch.rand(shape, device=device)
