"""PyTorch eager execution behind the runtime's Runner interface, for verify and bench (imports torch).

Input (N, 1, H, W) float32 → (N, 1, H, W) float32, as every runner. Built from a run directory's checkpoint or
from an exported model's :class:`~kernelnet.runtime.spec.FilterSpec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.backends.base import ModelInfo, Runner
from kernelnet.runtime.errors import KernelnetError


class TorchRunner(Runner):
    """PyTorch eager execution of a run's checkpoint or of an exported model's spec."""

    def __init__(self, module: Any, info: ModelInfo, path: Path | None, threads: int | None = None,
                 name: str = "pytorch") -> None:
        import torch

        if threads is not None:
            torch.set_num_threads(threads)
        self.torch, self.module = torch, module.eval()
        self.info, self.path, self.name, self.input_dtype = info, path, name, "float32"

    @classmethod
    def from_run(cls, run_dir: str | Path, threads: int | None = None) -> TorchRunner:
        """The checkpoint of a run directory (``model.safetensors`` + ``config.json``)."""
        from kernelnet.export.metadata import run_spec
        from kernelnet.rundir import load_model, load_weights

        config, module = load_model(run_dir)
        if config.decode or config.encode:
            raise KernelnetError(f"{run_dir} wraps its kernel in curves; its PyTorch checkpoint holds the kernel only")
        if config.after:
            raise KernelnetError(f"{run_dir} is a chain of {len(config.after) + 1} passes rounded in between; its "
                                 "PyTorch checkpoint holds the first pass only")
        info = ModelInfo(spec=run_spec(config, load_weights(run_dir)), target=config.target_spec())
        return cls(module, info, Path(run_dir), threads)

    @classmethod
    def from_info(cls, info: ModelInfo, threads: int | None = None) -> TorchRunner:
        """An eager model rebuilt from exported metadata."""
        from kernelnet.learn.models import model_from_spec

        if info.spec is None:
            raise KernelnetError("the model has no kernelnet metadata to rebuild a PyTorch model from")
        return cls(model_from_spec(info.spec), info, None, threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def pytorch_backend(run_dir: str | Path, threads: int | None = None) -> Any:
    """The run's checkpoint as a verify :class:`~kernelnet.runtime.checks.verify.Backend` named ``pytorch``."""
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.checks.verify import Backend

    return Backend("pytorch", Model(TorchRunner.from_run(run_dir, threads)), "fp32")


def pytorch_contender(run_dir: str | Path | None, info: ModelInfo, threads: int) -> Any:
    """PyTorch eager as a bench contender: the run's checkpoint, else rebuilt from the model's ``info``."""
    from kernelnet.runtime.bench import Contender
    from kernelnet.runtime.model import Model

    runner = TorchRunner.from_run(run_dir, threads) if run_dir else TorchRunner.from_info(info, threads)
    return Contender("pytorch", Model(runner, tile=0), f"eager t{threads}")
