"""TensorRT backend: a runner (:class:`TensorRTRunner`) for serialized engines, TensorRT 10 API.

The engine is a plain serialized plan (``kernelnet export --format tensorrt``) with one dynamic input and one
output; its side-car ``<engine>.json`` carries the kernelnet metadata. Device buffers come from cuda-python
(``cuda.bindings.runtime``, or ``cuda.cudart`` in older releases) and grow on demand; each call sets the input
shape (``set_input_shape``) within the engine's optimisation profile 0, whose (N, H, W) limits the runner exposes
so that :class:`~kernelnet.runtime.model.Model` can split larger inputs into batches and tiles.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.backends.base import Runner
from kernelnet.runtime.metadata import sidecar_info


def missing_requirements() -> list[str]:
    """What this machine lacks to run an engine: ``tensorrt``, ``cuda-python``, a CUDA device."""
    missing = []
    if importlib.util.find_spec("tensorrt") is None:
        missing.append("the 'tensorrt' package")
    if importlib.util.find_spec("cuda") is None:
        missing.append("the 'cuda-python' package")
    if not missing:
        try:
            cudart = _cudart()
            err, count = cudart.cudaGetDeviceCount()
            if int(err) != 0 or count < 1:
                missing.append("an NVIDIA GPU with CUDA")
        except Exception:  # broken driver installs raise from the import itself
            missing.append("an NVIDIA GPU with CUDA")
    return missing


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # type: ignore[no-redef]  # older cuda-python
    return cudart


def _check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising KernelnetError on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise KernelnetError(f"CUDA error in {what}: {err}")
    return values[0] if len(values) == 1 else values


class _DeviceBuffer:
    """A grow-only device allocation."""

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0

    def ensure(self, nbytes: int) -> int:
        if nbytes > self.nbytes:
            self.free()
            self.ptr = int(_check(self.cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self.nbytes = nbytes
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine: (N, 1, H, W) within the profile → (N, 1, H, W) float32."""

    def __init__(self, path: str | os.PathLike[str], name: str = "tensorrt") -> None:
        missing = missing_requirements()
        if missing:
            raise KernelnetError(f"running a TensorRT engine needs {', '.join(missing)} (install with: pip install "
                                 "'kernelnet[tensorrt]' on a machine with an NVIDIA GPU)")
        import tensorrt as trt

        self.trt, self.cudart = trt, _cudart()
        self.path, self.name = Path(path), name
        self.logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(self.logger)
        try:
            self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        except OSError as exc:
            raise KernelnetError(f"cannot read engine {self.path}: {exc.strerror or exc}") from None
        if self.engine is None:
            raise KernelnetError(f"cannot load TensorRT engine {self.path}: not a plan for this TensorRT version/GPU")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise KernelnetError(f"{self.path} is not a kernelnet filter engine (inputs {inputs}, outputs {outputs})")
        self.input_name, self.output_name = inputs[0], outputs[0]
        in_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        if in_dtype not in (np.float32, np.uint8):
            raise KernelnetError(f"{self.path}: unsupported engine input dtype {in_dtype}")
        self.input_dtype = str(in_dtype)
        lo, _opt, hi = (tuple(int(d) for d in s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.min_shape, self.max_shape = (lo[0], lo[2], lo[3]), (hi[0], hi[2], hi[3])
        self.info = sidecar_info(self.path)
        self.context = self.engine.create_execution_context()
        self.stream = _check(self.cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._in, self._out = _DeviceBuffer(self.cudart), _DeviceBuffer(self.cudart)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, H, W) ``input_dtype`` → (N, 1, H, W) float32; the shape must lie within the profile."""
        n, _, h, w = batch.shape
        if not all(lo <= v <= hi for lo, v, hi in zip(self.min_shape, (n, h, w), self.max_shape)):
            raise KernelnetError(f"input {n}x{h}x{w} is outside the engine's profile "
                                 f"{'x'.join(map(str, self.min_shape))} .. {'x'.join(map(str, self.max_shape))}")
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if not self.context.set_input_shape(self.input_name, batch.shape):
            raise KernelnetError(f"TensorRT refused input shape {batch.shape}")
        out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        out = np.empty(out_shape, dtype=self.out_dtype)
        cudart, kind = self.cudart, self.cudart.cudaMemcpyKind
        src = self._in.ensure(batch.nbytes)
        dst = self._out.ensure(out.nbytes)
        self.context.set_tensor_address(self.input_name, src)
        self.context.set_tensor_address(self.output_name, dst)
        _check(cudart.cudaMemcpyAsync(src, batch.ctypes.data, batch.nbytes, kind.cudaMemcpyHostToDevice,
                                      self.stream), "cudaMemcpyAsync (to device)")
        if not self.context.execute_async_v3(int(self.stream)):
            raise KernelnetError("TensorRT execution failed (see the TensorRT log)")
        _check(cudart.cudaMemcpyAsync(out.ctypes.data, dst, out.nbytes, kind.cudaMemcpyDeviceToHost, self.stream),
               "cudaMemcpyAsync (to host)")
        _check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return out if out.dtype == np.float32 else out.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "profile_min": self.min_shape, "profile_max": self.max_shape}

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: CUDA may already be gone
            pass

    def close(self) -> None:
        if getattr(self, "stream", None) is not None:
            self._in.free()
            self._out.free()
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None
