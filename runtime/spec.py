"""The one description of a deployed filter: :class:`FilterSpec`. Torch-free (numpy only).

Every layer reads it: the torch model is built from it, the exported graph, the numpy reference and the native
stencil implement it, verify and the metrics compare against it. :mod:`kernelnet.runtime.spec_codec` writes it
into a model's metadata and reads it back, validating every field.

A spec maps an input image ``x`` (N, 1, H, W) to ``y`` (N, 1, H, W):

1. input encoding: ``v = x · input.scale`` (float32 in [0, 1] → 1; uint8 → 1/255);
2. ``z_c = K_c ⋆ v + b_c`` (cross-correlation, ``border`` outside the image) for each kernel c;
3. combine: ``raw`` z₀, ``abs`` |z₀|, ``magnitude`` √(z₀² + z₁²);
4. output stage: ``y = combined · output.scale + output.offset``, clipped to ``output.clip``, rounded by
   ``output.rounding`` (integer outputs of ``output.bits``).

A rank filter (combine ``min``, ``max`` or ``median``) replaces steps 2–3 by the order statistic of the values
under its footprint — the nonzero taps of its one kernel of ones (a k×k square, a cross, …), ``border`` outside
the image: ``min`` over a square is an erosion (``cv2.erode``, ``scipy.ndimage.grey_erosion``), ``max`` a
dilation, ``median`` over an odd number of taps a median filter (``cv2.medianBlur``, ``ImageFilter.MedianFilter``).

Example::

    >>> import numpy as np
    >>> s = FilterSpec.from_kind(np.array([[-1., 0, 1], [-2, 0, 2], [-1, 0, 1]]), model="double")
    >>> s.combine, s.kernels.shape, s.kernel_size, s.halo
    ('magnitude', (2, 3, 3), 3, 1)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.stages import INPUT_DTYPES, MAX_CHANNELS, ROUNDINGS, InputEncoding, OutputStage

__all__ = ["BORDERS", "COMBINES", "FOOTPRINTS", "INPUT_DTYPES", "MAX_CHANNELS", "MAX_KERNEL", "MODELS", "RANKS", "ROUNDINGS",
           "FilterSpec", "InputEncoding", "OutputStage", "check_kernel_size", "footprint_of", "min_side",
           "mirror_slices", "as_kernel_stack"]

BORDERS = ("zeros", "reflect", "symmetric", "replicate", "reflect_symmetric", "copy")
"""Border names (numpy's): ``zeros``; ``reflect`` (= OpenCV REFLECT_101 = PyTorch reflect); ``symmetric`` (= OpenCV
REFLECT = SciPy / scikit-image ``reflect``); ``replicate`` (= OpenCV REPLICATE = SciPy ``nearest``);
``reflect_symmetric`` (``reflect`` at the start of each axis — top, left — and ``symmetric`` at its end — bottom,
right: ffmpeg's 3×3 ``convolution``, ``sobel``, ``prewitt`` and ``roberts`` filters; its 5×5 ``convolution``
reflects on every side); ``copy`` (the output's outer
k//2 ring is the input pixel itself, in the output's units, as Pillow's ``ImageFilter`` does)."""
RANKS = ("min", "max", "median", "range")
"""Order statistics over the footprint (the kernel's nonzero taps): erode, dilate, median, and range = max − min
(the morphological gradient: OpenCV's ``MORPH_GRADIENT``, SciPy's ``morphological_gradient``)."""
COMBINES = ("raw", "abs", "magnitude", *RANKS)
MODELS = ("single", "double", "rank")
MAX_KERNEL = 31
"""Largest supported kernel side (odd)."""


def min_side(border: str, halo: int) -> int:
    """Smallest image side ``border`` is defined for with a ``halo``-pixel halo."""
    if border in ("reflect", "reflect_symmetric"):
        return halo + 1
    return max(1, halo) if border == "symmetric" else 1


def mirror_slices(border: str, r: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(start, end) of the reversed slices (step −1) of an axis that make its ``r`` samples before and after for a
    mirror border in an ONNX graph: ``symmetric`` repeats the edge sample, ``reflect_symmetric`` skips it before
    the start (``end`` −2⁶³: through the first sample)."""
    head = (r, 0) if border == "reflect_symmetric" else (r - 1, -(1 << 63))
    return head, (-1, -r - 1)


FOOTPRINTS = ("square", "cross")


def footprint_of(name: str, size: int) -> np.ndarray:
    """(size, size) bool footprint: ``square``, or ``cross`` (the middle row and column)."""
    check_kernel_size(size, "footprint size")
    if name == "square":
        return np.ones((size, size), dtype=bool)
    if name == "cross":
        out = np.zeros((size, size), dtype=bool)
        out[size // 2] = out[:, size // 2] = True
        return out
    raise KernelnetError(f"footprint must be one of {', '.join(FOOTPRINTS)}, got {name!r}")


def _check_footprint(kernel: np.ndarray, combine: str, border: str, bias: Any) -> None:
    """A rank filter's kernel is a footprint: taps of 0 and 1 holding the centre, no bias, a border that pads."""
    if not np.isin(kernel, (0.0, 1.0)).all() or kernel[kernel.shape[0] // 2, kernel.shape[1] // 2] != 1:
        raise KernelnetError(f"a {combine} filter's kernel is a footprint of 0 and 1 holding its centre")
    if combine == "median" and int(np.count_nonzero(kernel)) % 2 == 0:
        raise KernelnetError("a median filter needs an odd number of taps in its footprint")
    if border == "copy":
        raise KernelnetError("a rank filter takes a padding border, not copy")
    if bias is not None and np.any(np.asarray(bias, dtype=np.float64) != 0):
        raise KernelnetError(f"a {combine} filter has no bias")


def _check_after(spec: Any) -> None:
    """``spec.after`` holds passes a chain may run (see :attr:`FilterSpec.after`)."""
    if not isinstance(spec.after, tuple) or not all(isinstance(p, FilterSpec) for p in spec.after):
        raise KernelnetError("after must be a tuple of FilterSpec passes")
    if spec.after and spec.border == "copy" or any(p.border == "copy" for p in spec.after):
        raise KernelnetError("a chain of passes cannot use the copy border")
    for p in spec.after:
        if p.after or p.input != InputEncoding(spec.input.channels):
            raise KernelnetError("a later pass takes the previous output as float32 values (input scale 1) and has "
                                 "no passes of its own")


def check_kernel_size(size: Any, what: str = "kernel_size") -> int:
    """``size`` as an odd int in [1, MAX_KERNEL] or a KernelnetError naming ``what``."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise KernelnetError(f"{what} must be an integer, got {size!r}")
    if size < 1 or size % 2 == 0 or size > MAX_KERNEL:
        raise KernelnetError(f"{what} must be odd and between 1 and {MAX_KERNEL}, got {size}")
    return int(size)


def as_kernel_stack(values: Any, what: str = "kernels") -> np.ndarray:
    """``values`` (k, k) or (C, k, k) → a read-only float64 (C, k, k) array of finite numbers, odd k ≤ MAX_KERNEL."""
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise KernelnetError(f"{what} must be a (C, k, k) array of numbers") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] < 1:
        raise KernelnetError(f"{what} must be square kernels (C, k, k), got shape {arr.shape}")
    check_kernel_size(arr.shape[-1], f"{what} side")
    if not np.isfinite(arr).all():
        raise KernelnetError(f"{what} hold NaN or Inf")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class FilterSpec:
    """A deployed filter: ``kernels`` (C, k, k), ``bias`` (C,), ``border``, ``combine``, input and output stages.

    C is 1 for ``raw`` / ``abs`` and 2 for ``magnitude``. Arrays are float64 and read-only; construction
    validates every field (:class:`KernelnetError`, one line each).
    """

    kernels: np.ndarray
    bias: np.ndarray | None = None
    combine: str = "raw"
    border: str = "zeros"
    input: InputEncoding = field(default_factory=InputEncoding)
    output: OutputStage = field(default_factory=OutputStage)
    after: tuple[FilterSpec, ...] = ()
    """Passes run on this one's output, in order (a rounded chain): each a spec of its own, taking the previous
    output's values as float32 (input scale 1), without passes of its own and without the ``copy`` border."""
    decode: str | None = None
    """A curve (:mod:`kernelnet.runtime.curves`) applied to the input values (after ``input.scale``) before the
    kernels: encoded → linear (a blur in linear light)."""

    def __post_init__(self) -> None:
        _check_after(self)
        if self.decode is not None:
            from kernelnet.runtime.curves import check_curve

            object.__setattr__(self, "decode", check_curve(self.decode, "input decode curve"))
            if self.border == "copy":
                raise KernelnetError("a decode curve cannot use the copy border")
        kernels = as_kernel_stack(self.kernels)
        object.__setattr__(self, "kernels", kernels)
        if self.combine not in COMBINES:
            raise KernelnetError(f"combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")
        want = 2 if self.combine == "magnitude" else 1
        if kernels.shape[0] != want:
            raise KernelnetError(f"a {self.combine} filter needs {want} kernel(s), got {kernels.shape[0]}")
        if self.border not in BORDERS:
            raise KernelnetError(f"border must be one of {', '.join(BORDERS)}, got {self.border!r}")
        if self.combine in RANKS:
            _check_footprint(kernels[0], self.combine, self.border, self.bias)
        bias = np.zeros(want) if self.bias is None else self.bias
        try:
            bias = np.array(bias, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise KernelnetError("bias must be a list of numbers") from None
        if bias.shape != (want,):
            raise KernelnetError(f"bias must hold {want} value(s) (one per kernel), got {bias.size}")
        if not np.isfinite(bias).all():
            raise KernelnetError("bias holds NaN or Inf")
        bias.setflags(write=False)
        object.__setattr__(self, "bias", bias)
        if not isinstance(self.input, InputEncoding) or not isinstance(self.output, OutputStage):
            raise KernelnetError("input and output must be an InputEncoding and an OutputStage")

    # ---------------------------------------------------------------------------------------------- views
    @property
    def kernel_size(self) -> int:
        return int(self.kernels.shape[-1])

    @property
    def halo(self) -> int:
        """Pixels each output depends on beyond its own position (k // 2)."""
        return self.kernel_size // 2

    @property
    def passes(self) -> tuple[FilterSpec, ...]:
        """Every pass in order: this one (without ``after``), then ``after``."""
        return (self.replace(after=()), *self.after) if self.after else (self,)

    @property
    def final_output(self) -> OutputStage:
        """The output stage of the last pass: what the whole program writes."""
        return self.after[-1].output if self.after else self.output

    @property
    def reach(self) -> int:
        """Pixels an output of the whole program depends on beyond its position: the passes' halos summed."""
        return self.halo + sum(p.halo for p in self.after)

    @property
    def model(self) -> str:
        """``single`` (raw / abs), ``double`` (magnitude) or ``rank`` (min / max / median / range): the model's kind."""
        return "double" if self.combine == "magnitude" else "rank" if self.combine in RANKS else "single"

    @property
    def is_rank(self) -> bool:
        return self.combine in RANKS

    @property
    def footprint(self) -> np.ndarray:
        """(k, k) bool: the taps a rank filter orders (every tap of a linear one)."""
        return self.kernels[0] != 0 if self.is_rank else np.ones(self.kernels.shape[1:], dtype=bool)

    @property
    def normalize(self) -> bool:
        """True for the abs model (the seed's name for it)."""
        return self.combine == "abs"

    @property
    def min_side(self) -> int:
        """Smallest H and W the border is defined for: reflect and reflect_symmetric need > k//2, symmetric ≥ k//2
        samples."""
        return max(min_side(p.border, p.halo) for p in self.passes)

    @property
    def ring_scale(self) -> float:
        """``copy`` border: output units per input unit of the copied ring (2^bits − 1 for integer outputs)."""
        return float(2 ** self.output.bits - 1) if self.output.bits else 1.0

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias != 0))

    def output_bound(self) -> float:
        """Largest |combined value| an input in [0, 1] can produce: √Σ_c (Σ|K_c| + |b_c|)² (before the output
        stage)."""
        if self.is_rank:
            return 1.0
        per = np.abs(self.kernels).reshape(len(self.kernels), -1).sum(axis=1) + np.abs(self.bias)
        return float(np.sqrt(np.sum(per ** 2)))

    def replace(self, **changes: Any) -> FilterSpec:
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------------- builders
    @classmethod
    def from_kind(cls, kernel: Any, model: str = "single", normalize: bool = False, padding: str = "zeros",
                  bias: Any = None, **stages: Any) -> FilterSpec:
        """The target filter of a model kind from one kernel (k, k): single → (K,) raw or abs; double →
        (K, Kᵀ) magnitude."""
        kern = as_kernel_stack(kernel, "target kernel")
        if kern.shape[0] != 1:
            raise KernelnetError(f"a target kernel is one (k, k) array, got shape {kern.shape}")
        if model not in MODELS:
            raise KernelnetError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if model == "double":
            return cls(np.stack([kern[0], kern[0].T]), bias, "magnitude", padding, **stages)
        return cls(kern, bias, "abs" if normalize else "raw", padding, **stages)

    @classmethod
    def from_weights(cls, kernels: Any, bias: Any, model: str, normalize: bool = False, padding: str = "zeros",
                     rank: str | None = None, **stages: Any) -> FilterSpec:
        """A learned model's spec from its kernels (C, k, k) and bias (C,) (or ``None``); a ``rank`` model from
        its footprint (1, k, k) and ``rank`` (min / max / median / range)."""
        if model not in MODELS:
            raise KernelnetError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
        if model == "rank":
            if rank not in RANKS:
                raise KernelnetError(f"a rank model needs rank {', '.join(RANKS)}, got {rank!r}")
            return cls(kernels, bias, rank, padding, **stages)
        combine = "magnitude" if model == "double" else "abs" if normalize else "raw"
        return cls(kernels, bias, combine, padding, **stages)

    @classmethod
    def rank_filter(cls, op: str, size: int, footprint: str = "square", border: str = "replicate",
                    **stages: Any) -> FilterSpec:
        """A rank filter over a ``size``×``size`` ``footprint`` (:data:`FOOTPRINTS`)."""
        return cls(footprint_of(footprint, size)[None].astype(np.float64), None, op, border, **stages)

    def __repr__(self) -> str:
        return (f"FilterSpec({self.combine}, k={self.kernel_size}, border={self.border}, "
                f"bias={self.bias.tolist()}, input={self.input}, output={self.output}"
                + (f", decode={self.decode}" if self.decode else "")
                + (f", after={list(self.after)})" if self.after else ")"))
