"""``kernelnet verify``: parity of every backend against each other and the numpy ground truth.

The PyTorch runner lives here, on the CLI side: it is the only part that imports torch (lazily, and only when
``--run`` is given), so :mod:`kernelnet.runtime` stays torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np

from kernelnet.errors import CheckFailed, KernelnetError
from kernelnet.runtime.base import ModelInfo, Runner


class TorchRunner(Runner):
    """PyTorch eager execution of a run's checkpoint or of an exported model's metadata kernels."""

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
        from kernelnet.rundir import load_model, load_weights

        config, module = load_model(run_dir)
        weights = load_weights(run_dir)
        info = ModelInfo(model=config.model, normalize=config.normalize, padding=config.padding,
                         kernel_size=config.kernel_size, kernels=weights["conv.weight"][:, 0].astype(np.float64),
                         bias=weights["conv.bias"].astype(np.float64) if "conv.bias" in weights else None,
                         target_kernel=np.asarray(config.target_kernel, dtype=np.float64))
        return cls(module, info, Path(run_dir), threads)

    @classmethod
    def from_info(cls, info: ModelInfo, threads: int | None = None) -> TorchRunner:
        """An eager model rebuilt from exported metadata (kernels, bias, model, normalize, padding)."""
        import torch

        from kernelnet.models import build_model

        if info.kernels is None or info.model is None:
            raise KernelnetError("the model has no kernelnet metadata to rebuild a PyTorch model from")
        module = build_model(info.model, int(info.kernels.shape[-1]), info.bias is not None, info.normalize,
                             info.padding)
        with torch.no_grad():
            module.conv.weight.copy_(torch.from_numpy(info.kernels[:, None].astype(np.float32)))
            if info.bias is not None:
                module.conv.bias.copy_(torch.from_numpy(info.bias.astype(np.float32)))
        return cls(module, info, None, threads)

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"1x1,224x224,1080x1920"`` → ((1, 1), (224, 224), (1080, 1920))."""
    sizes = []
    for part in text.split(","):
        try:
            h, w = (int(v) for v in part.strip().lower().split("x"))
        except ValueError:
            raise KernelnetError(f"invalid size {part!r}: use HxW[,HxW...]") from None
        if h < 1 or w < 1:
            raise KernelnetError(f"invalid size {part!r}: sides must be >= 1")
        sizes.append((h, w))
    return tuple(sizes)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise KernelnetError(f"invalid {what} {text!r}: use comma-separated integers") from None
    if not values or min(values) < 1:
        raise KernelnetError(f"invalid {what} {text!r}: values must be >= 1")
    return values


def open_backends(model: str, run: str | None, threads: int | None) -> tuple[list[Any], list[dict[str, str]]]:
    """Every runnable artifact of MODEL (fp32 ONNX, int8 ONNX, TensorRT engine) plus PyTorch for ``--run``."""
    from kernelnet.runtime.backends import discover, open_runner
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.verify import Backend

    backends, skipped = [], []
    for artifact in discover(model):
        if artifact.missing:
            skipped.append({"name": artifact.name, "path": str(artifact.path), "reason": artifact.missing})
            continue
        runner = open_runner(artifact.path, artifact.backend, threads, name=artifact.name)
        precision = "int8" if "int8" in artifact.name else runner.info.precision
        if artifact.backend == "tensorrt" and precision == "fp32":
            precision = "tf32"  # TensorRT runs fp32 engines on TF32 tensor cores by default (Ampere and newer)
        backends.append(Backend(artifact.name, Model(runner), precision))
    if not backends:
        reasons = "; ".join(f"{s['name']} {s['reason']}" for s in skipped)
        raise KernelnetError(f"nothing runnable found for {model}" + (f": {reasons}" if reasons else ""))
    if run is not None:
        backends.append(Backend("pytorch", Model(TorchRunner.from_run(run, threads)), "fp32"))
    return backends, skipped


@click.command()
@click.argument("model", type=click.Path())
@click.option("--run", type=click.Path(file_okay=False), default=None,
              help="Run directory whose PyTorch checkpoint joins the comparison (imports torch).")
@click.option("--sizes", default=None, help="HxW list [default: 1x1,1x97,97x1,13x7,127x257,224x224,1080x1920,"
              "2160x3840].")
@click.option("--batch", "batches", default="1,3", show_default=True,
              help="Batch sizes (cases above 4 Mpx run at the first only).")
@click.option("--no-tiled", is_flag=True, help="Skip the forced-tiling case (509x383 in 64x96 tiles).")
@click.option("--random", "n_random", type=click.IntRange(min=0), default=0, show_default=True,
              help="Add N random sizes (and random tiles on half of them).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--atol", type=float, default=None,
              help="Backend tolerance (fp32) [default: 2e-6 x G, G = the largest possible |output|].")
@click.option("--rtol", type=float, default=1e-5, show_default=True)
@click.option("--truth-tol", type=float, default=1e-3, show_default=True,
              help="Learned-vs-target allowance, as a fraction of G.")
@click.option("--int8-tol", type=float, default=2e-2, show_default=True, help="int8 tolerance, fraction of G.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime/PyTorch threads.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the full report.")
def verify(model: str, run: str | None, sizes: str | None, batches: str, no_tiled: bool, n_random: int, seed: int,
           atol: float | None, rtol: float, truth_tol: float, int8_tol: float, threads: int | None,
           json_path: str | None) -> None:
    """Check MODEL's backends against each other and against the true filter computed in numpy.

    \b
    Backends: onnxruntime (fp32), the int8 model beside it (model.int8.onnx), the TensorRT engine
    (model.engine, where TensorRT and a GPU exist) and PyTorch (--run). References: 'weights' (the model's own
    kernels in float64) and 'truth' (the target filter). Backends must match each other and 'weights' within
    atol + rtol·|ref| (int8: int8-tol·G); 'weights' must match 'truth' within truth-tol·G; backend vs truth may
    differ by the tolerance plus the kernel gap (a bound of learned-vs-target). Exit 1 on any mismatch.
    """
    from kernelnet.cli.common import print_pairs, print_table
    from kernelnet.runtime.verify import DEFAULT_SIZES, Tolerances, build_cases
    from kernelnet.runtime.verify import verify as run_verify

    size_list = parse_sizes(sizes) if sizes else DEFAULT_SIZES
    batch_list = parse_ints(batches, "--batch")
    if json_path is not None:
        from kernelnet.atomic import ensure_writable_dir

        ensure_writable_dir(Path(json_path).parent)
    backends, skipped = open_backends(model, run, threads)
    info = backends[0].model.info
    min_side = info.halo + 1 if info.padding == "reflect" and info.halo else 1
    cases = build_cases(size_list, batch_list, not no_tiled, n_random, seed, min_side)
    report = run_verify(backends, cases, Tolerances(atol, rtol, truth_tol, int8_tol=int8_tol), seed, skipped)
    print_table(report.summary, ["check", "cases", "max_abs_error", "worst_case", "mismatches", "tolerance", "ok"])
    click.echo()
    pairs: list[tuple[str, Any]] = [("backends", ", ".join(b.name for b in backends)),
                                    ("cases", len(cases)), ("inputs", report.input_dtype),
                                    ("output bound G", report.gain),
                                    ("kernel gap", report.kernel_gap), ("seconds", report.seconds)]
    pairs += [(f"skipped {s['name']}", s["reason"]) for s in skipped]
    print_pairs(pairs)
    if json_path is not None:
        from kernelnet.atomic import write_text

        write_text(json_path, json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    if not report.ok:
        bad = next(row for row in report.summary if not row["ok"])
        raise CheckFailed(f"{bad['check']}: max abs error {bad['max_abs_error']:.3g} at {bad['worst_case']} "
                          f"(tolerance {bad['tolerance']}); {sum(not r['ok'] for r in report.summary)} check(s) failed")
    click.echo("verify: all checks passed")
