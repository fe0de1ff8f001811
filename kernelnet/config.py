"""One frozen dataclass for a run's configuration, round-tripped through ``config.json``. Torch-free."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.spec import BORDERS, MAX_KERNEL, RANKS, FilterSpec, InputEncoding, OutputStage

MODELS = ("single", "double", "rank")
SOLVERS = ("adam", "sgd", "exact")
PADDINGS = BORDERS


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Refuse a config.json value of the wrong JSON type for its field (annotation as written in the class)."""
    optional = "None" in annotation
    if value is None:
        if not optional:
            raise KernelnetError(f"{name} must not be null")
        return
    base = annotation.replace(" | None", "")
    if base == "bool":
        ok = isinstance(value, bool)
    elif base == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif base == "str":
        ok = isinstance(value, str)
    elif base.startswith("tuple"):
        ok = isinstance(value, (list, tuple))
    elif base.startswith("dict"):
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise KernelnetError(f"{name} must be of type {base}, got {type(value).__name__} {str(value)[:40]!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and its target filter.

    ``target_kernel`` is the resolved k×k target (so ``random`` targets rebuild exactly); ``kernel_size`` is the
    learned kernel's side, which may exceed the target's.
    """

    filter: str = "sobel"
    target_kernel: tuple[tuple[float, ...], ...] = ()
    model: str = "single"
    normalize: bool = False
    kernel_size: int = 3
    bias: bool = True
    padding: str = "zeros"
    data: str = "builtin"
    crop: int = 64
    batch_size: int = 32
    steps_per_epoch: int = 40
    epochs: int = 200
    lr: float = 0.05
    patience: int = 6
    restarts: int = 0
    solver: str = "adam"
    init: str = "random"
    seed: int = 0
    device: str = "auto"
    name: str = ""
    targets: str = ""
    """Pairs run: the folder of target images (``data`` holds their inputs)."""
    clip: tuple[float, float] | None = None
    rounding: str | None = None
    output_bits: int | None = None
    grid: int | None = None
    """The output stage identified from pairs (``None``: a float output, no stage)."""
    target_format: str = ""
    target_dtype: str = ""
    target_channels: int = 1
    """How the pair targets are stored (png / tiff / npy; uint8 / uint16 / float32 / float64; 1 or 3)."""
    output_scale: float = 1.0
    output_offset: float = 0.0
    """A rank model's map from input units to the targets' (``y = rank · scale + offset``; linear models fold it
    into their kernels)."""
    rank: str = ""
    """A rank model's order statistic: min, max, median or range (max − min) (its footprint is in model.safetensors)."""
    decode: str = ""
    encode: str = ""
    """Curves around the kernels (:mod:`kernelnet.runtime.curves`): the input's decode, the output's encode."""
    after: tuple[dict[str, str], ...] = ()
    """A chain's later passes, run in order on the model's output (each one's metadata strings,
    :func:`kernelnet.runtime.spec_codec.pass_fields`)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.output_stage  # validates clip, rounding, bits and grid  # noqa: B018
        if self.model not in MODELS:
            raise KernelnetError(f"unknown model {self.model!r}: use one of {', '.join(MODELS)}")
        if (self.model == "rank") != (self.rank in RANKS) or (self.rank and self.rank not in RANKS):
            raise KernelnetError(f"rank {self.rank!r} with model {self.model}: a rank model takes min, max, median or "
                                 "range, other models none")
        if self.solver not in SOLVERS:
            raise KernelnetError(f"unknown solver {self.solver!r}: use one of {', '.join(SOLVERS)}")
        if self.padding not in PADDINGS:
            raise KernelnetError(f"unknown padding {self.padding!r}: use one of {', '.join(PADDINGS)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0 or self.kernel_size > MAX_KERNEL:
            raise KernelnetError(f"kernel size must be odd and between 1 and {MAX_KERNEL}, got {self.kernel_size}")
        for name in ("crop", "batch_size", "steps_per_epoch", "epochs"):
            if getattr(self, name) < 1:
                raise KernelnetError(f"{name.replace('_', ' ')} must be >= 1, got {getattr(self, name)}")
        if self.restarts < 0:
            raise KernelnetError(f"restarts must be >= 0 (0 = automatic), got {self.restarts}")
        if self.patience < 0:
            raise KernelnetError(f"patience must be >= 0, got {self.patience}")
        if not self.lr > 0:
            raise KernelnetError(f"learning rate must be > 0, got {self.lr}")
        if self.target_format not in ("", "png", "tiff", "npy"):
            raise KernelnetError(f"target format must be png, tiff or npy, got {self.target_format!r}")
        if self.target_dtype not in ("", "uint8", "uint16", "int16", "float32", "float64"):
            raise KernelnetError(f"target dtype must be uint8, uint16, int16, float32 or float64, got "
                                 f"{self.target_dtype!r}")
        if self.target_channels not in (1, 3):
            raise KernelnetError(f"target channels must be 1 or 3, got {self.target_channels!r}")
        if self.target_format == "png" and self.target_dtype not in ("", "uint8", "uint16"):
            raise KernelnetError(f"PNG targets hold 8- or 16-bit levels, not {self.target_dtype}")
        if self.after:
            from kernelnet.runtime.chain_codec import pass_spec

            last_bits = pass_spec(self.after[-1]).output.bits  # a chain writes its last pass's levels
        else:
            last_bits = self.output_bits
        if self.target_dtype in ("uint8", "uint16") and last_bits not in (None, int(self.target_dtype[4:])):
            raise KernelnetError(f"{self.target_dtype} targets with {last_bits}-bit outputs")
        if self.target_kernel and len(self.target_kernel) > self.kernel_size:
            raise KernelnetError(
                f"kernel size {self.kernel_size} is smaller than the target kernel ({len(self.target_kernel)})")

    @property
    def run_name(self) -> str:
        """Default run directory name, e.g. ``sobel-single-abs``."""
        if self.name:
            return self.name
        base = self.filter if not any(c in self.filter for c in ";,/\\") else "custom"
        base = base.replace(":", "-")
        abs_part = "-abs" if self.model == "single" and self.normalize else ""
        return f"{base}-{self.model}{abs_part}" + ("-exact" if self.solver == "exact" else "")

    @property
    def output_stage(self) -> OutputStage:
        return OutputStage(self.output_scale, self.output_offset, self.clip, self.rounding, self.output_bits,
                           self.grid, self.encode or None)

    @property
    def is_pairs(self) -> bool:
        return bool(self.targets)

    def filter_spec(self, kernels: Any, bias: Any = None, input_dtype: str = "float32") -> FilterSpec:
        """The deployed filter of this run's model with learned ``kernels`` (C, k, k) and ``bias`` (C,)."""
        from kernelnet.runtime.chain_codec import pass_spec

        return FilterSpec.from_weights(kernels, bias, self.model, self.normalize, self.padding, self.rank or None,
                                       input=InputEncoding.for_dtype(input_dtype), output=self.output_stage,
                                       after=tuple(pass_spec(p) for p in self.after), decode=self.decode or None)

    def target_spec(self) -> FilterSpec | None:
        """The true filter the run learns (``None`` when the target kernel is not known)."""
        if not self.target_kernel:
            return None
        return FilterSpec.from_kind(np.array(self.target_kernel, dtype=np.float64), self.model, self.normalize,
                                    self.padding)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_kernel"] = [list(r) for r in self.target_kernel]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Every field type-checked (``"normalize": "false"`` is a string, not a boolean: refused)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for name, value in values.items():
            _check_type(name, value, str(known[name].type))
        values["target_kernel"] = tuple(tuple(float(v) for v in row) for row in values.get("target_kernel", ()))
        if values.get("clip") is not None:
            values["clip"] = tuple(float(v) for v in values["clip"])
        values["after"] = tuple(values.get("after", ()))
        return cls(**values)

    def save(self, path: str | Path) -> None:
        from kernelnet.runtime.io.atomic import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise KernelnetError(f"cannot read run config {path}: {exc}") from None
        if not isinstance(d, dict):
            raise KernelnetError(f"invalid run config {path}: expected a JSON object, got {type(d).__name__}")
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError, KernelnetError) as exc:
            raise KernelnetError(f"invalid run config {path}: {exc}") from exc
