"""onnxruntime backend: a loader (:func:`create_session`) and a runner (:class:`OnnxRuntimeRunner`).

CPU by default; ``device="cuda"`` / ``"tensorrt"`` use onnxruntime's CUDA / TensorRT execution providers when the
installed onnxruntime has them (``onnxruntime-gpu``). Session settings come from :class:`SessionConfig` — by
default the model's tune file (``model.onnx.tune.json``, written by ``kernelnet tune``) or ORT_ENABLE_BASIC.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.backends.base import ModelInfo, Runner
from kernelnet.runtime.spec_codec import PREFIX, decode_info
from kernelnet.runtime.backends.session import SessionConfig, resolve_session

PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8"}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def create_session(path: str | os.PathLike[str], config: SessionConfig | None = None,
                   device: str = "cpu") -> ort.InferenceSession:
    """Load ``path`` into an ``InferenceSession`` on ``device`` (cpu/cuda/tensorrt); errors → KernelnetError."""
    if device not in PROVIDERS:
        raise KernelnetError(f"unknown onnxruntime device {device!r}: use one of {', '.join(PROVIDERS)}")
    wanted = PROVIDERS[device][0]
    if wanted not in ort.get_available_providers():
        raise KernelnetError(f"this onnxruntime has no {wanted} (available: "
                             f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu on a CUDA machine")
    options = (config or SessionConfig()).to_session_options()
    try:
        return ort.InferenceSession(str(path), options, providers=PROVIDERS[device])
    except Exception as exc:  # onnxruntime raises several private exception types
        raise KernelnetError(f"cannot load ONNX model {path}: {_first_line(exc)}") from None


def _model_info(session: ort.InferenceSession, path: Path) -> ModelInfo:
    """Validated metadata of ``path``; a quantized ``*.int8*.onnx`` without any borrows its fp32 sibling's."""
    props = dict(session.get_modelmeta().custom_metadata_map)
    if PREFIX + "kernels" not in props and ".int8" in path.name:
        sibling = path.with_name(path.name.split(".int8")[0] + ".onnx")
        if sibling.is_file():
            try:
                import onnx

                fp32 = {p.key: p.value for p in onnx.load(str(sibling), load_external_data=False).metadata_props}
                props = {**fp32, PREFIX + "precision": "int8", **props}
            except Exception:  # onnx missing or the sibling unreadable: the model itself still runs
                pass
    try:
        return decode_info(props)
    except KernelnetError as exc:
        raise KernelnetError(f"{path}: {exc}") from exc


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX model with onnxruntime. ``run``: (N, 1, H, W) in the graph's input dtype → float32."""

    concurrent = True  # InferenceSession.run may be called from several threads at once

    def __init__(self, path: str | os.PathLike[str], config: SessionConfig | None = None, device: str = "cpu",
                 name: str | None = None) -> None:
        self.path = Path(path)
        self.config = config or SessionConfig()
        self.device = device
        self.session = create_session(self.path, self.config, device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise KernelnetError(f"{self.path} is not a kernelnet filter: expected one input and one output, got "
                                 f"{len(inputs)} and {len(outputs)}")
        if inputs[0].type not in _ORT_TYPES:
            raise KernelnetError(f"{self.path}: unsupported input type {inputs[0].type} (float32 or uint8 expected)")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = _ORT_TYPES[inputs[0].type]
        self.info = _model_info(self.session, self.path)
        self._halo = self.info.halo
        if self.info.spec is not None:
            from kernelnet.runtime.checks.graph_check import receptive_radius

            spec = self.info.spec
            reach = receptive_radius(self.path, max(p.halo for p in spec.passes))
            if reach is None or reach > spec.reach:
                warnings.warn(f"{self.path}: the graph sees "
                              + ("an unknown distance" if reach is None else f"{reach} pixels") +
                              f" beyond each output, its metadata says {spec.reach}: images run whole, "
                              "never in tiles", stacklevel=2)
                self._halo = None
        self.name = name or ("onnxruntime" if device == "cpu" else f"onnxruntime-{device}")
        self._np_dtype = np.dtype(self.input_dtype)

    @property
    def halo(self) -> int | None:
        return self._halo

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) ``input_dtype`` → (N, 1, H, W) float32."""
        if batch.dtype != self._np_dtype:
            raise KernelnetError(f"{self.name} expects {self.input_dtype} input, got {batch.dtype}")
        try:
            out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})[0]
        except Exception as exc:
            raise KernelnetError(f"onnxruntime failed on input {'x'.join(map(str, batch.shape))}: "
                                 f"{_first_line(exc)}") from None
        if out.shape != batch.shape:  # a graph that crops, pads or transposes is no same-size filter
            raise KernelnetError(f"{self.path}: the graph returns {'x'.join(map(str, out.shape))} for input "
                                 f"{'x'.join(map(str, batch.shape))}: not a same-size kernelnet filter")
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.session.get_providers(), "session": self.config.to_dict()}

    def close(self) -> None:
        self.session = None  # type: ignore[assignment]


def load_onnxruntime(path: str | os.PathLike[str], threads: int | None = None, device: str = "cpu",
                     config: SessionConfig | None = None, name: str | None = None) -> OnnxRuntimeRunner:
    """Loader: session settings = ``config``, else the model's tune file, else the defaults; ``threads``
    (intra-op) overrides either."""
    config, _ = resolve_session(path, config)
    if threads is not None:
        if threads < 1:
            raise KernelnetError(f"threads must be >= 1, got {threads}")
        config = config.replace(intra_op_threads=threads)
    return OnnxRuntimeRunner(path, config, device, name)
