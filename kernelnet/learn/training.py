"""Training: gradient descent (Adam/SGD, LR schedule, early stopping, atomic checkpoints, resume) or the exact
closed-form fit, then test evaluation and the run directory.

Example::

    >>> from kernelnet import RunConfig, train
    >>> result = train(RunConfig(filter="sobel", epochs=2), "artifacts/runs/doc")  # doctest: +SKIP
    >>> result.metrics["kernel_max_abs_error"] < 1e-2  # doctest: +SKIP
    True
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernelnet.learn.checkpoint import load_state, save_state
from kernelnet.config import RunConfig
from kernelnet.learn.data import Split, epoch_rng, load_source, sample_crops, split_images, usable_for_crops
from kernelnet.runtime.errors import KernelnetError
from kernelnet.filters import resolve_filter
from kernelnet.metrics import align_kernels, kernel_error, mse, psnr_db, target_kernels
from kernelnet.learn.models import apply_target, build_model
from kernelnet.rundir import CHECKPOINT_FILE, run_facts, save_history, save_metrics, save_model

VAL_CROPS = 256
RESUME_KEYS = frozenset({"model", "optimizer", "scheduler", "history", "best", "epoch", "bad_epochs", "config"})
"""What a checkpoint must hold for ``--resume`` (see ``_checkpoint_state``)."""
STOP_LOSS = 1e-14
"""Validation MSE at which float32 training has nothing left to gain: stop early."""


@dataclass
class TrainResult:
    """What :func:`train` produced: the run directory, the model and its metrics."""

    run_dir: Path
    model: torch.nn.Module
    config: RunConfig
    metrics: dict[str, Any]


def resolve_config(config: RunConfig) -> RunConfig:
    """Fill in the resolved target kernel (and the kernel size when left at the target's)."""
    if config.target_kernel:
        return config
    filt = resolve_filter(config.filter, config.kernel_size, config.seed)
    size = max(config.kernel_size, filt.size)
    return config.replace(target_kernel=tuple(tuple(float(v) for v in row) for row in filt.kernel), kernel_size=size)


def pick_device(name: str) -> torch.device:
    """``auto`` → cuda, then mps, then cpu; otherwise the named device (checked)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise KernelnetError(f"unknown device {name!r}: use auto, cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KernelnetError("device cuda requested but no CUDA device is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KernelnetError("device mps requested but MPS is not available")
    return device


def _targets(x: torch.Tensor, config: RunConfig) -> torch.Tensor:
    kernel = torch.tensor(config.target_kernel, dtype=x.dtype, device=x.device)
    return apply_target(x, kernel, config.model, config.normalize, config.padding)


def _make_optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    if config.solver == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.Adam(model.parameters(), lr=config.lr)


def _make_scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=1, threshold=0.05)


def _predict_images(model: torch.nn.Module, images: dict[str, np.ndarray], config: RunConfig,
                    device: torch.device) -> tuple[list[np.ndarray], list[np.ndarray]]:
    preds, targets = [], []
    with torch.no_grad():
        for im in images.values():
            x = torch.from_numpy(im)[None, None].to(device)
            preds.append(model(x)[0, 0].cpu().numpy())
            targets.append(_targets(x.double(), config)[0, 0].cpu().numpy())
    return preds, targets


def evaluate(model: torch.nn.Module, images: dict[str, np.ndarray], config: RunConfig,
             device: torch.device | str = "cpu") -> dict[str, float]:
    """Test MSE and PSNR of ``model`` over whole images against the exact (float64) target."""
    preds, targets = _predict_images(model, images, config, torch.device(device))
    pred = np.concatenate([p.ravel() for p in preds])
    target = np.concatenate([t.ravel() for t in targets])
    return {"test_mse": mse(pred, target), "test_psnr_db": psnr_db(pred, target), "test_pixels": int(pred.size)}


def kernel_summary(model: torch.nn.Module, config: RunConfig) -> dict[str, Any]:
    """Learned kernels aligned to the target by the model's symmetry, the target, and the max abs error."""
    learned = model.kernels.cpu().double().numpy()
    bias = model.conv.bias.detach().cpu().double().numpy() if model.conv.bias is not None else None
    target = np.array(config.target_kernel)
    aligned, aligned_bias = align_kernels(learned, target_kernels(target, config.model), config.model,
                                          config.normalize, bias)
    return {
        "kernel_max_abs_error": kernel_error(learned, target, config.model, config.normalize),
        "learned_kernels": aligned,
        "learned_bias": aligned_bias,
        "target_kernels": target_kernels(target, config.model),
    }


def _checkpoint_state(model, optimizer, scheduler, history, best, epoch, bad_epochs, config) -> dict[str, Any]:
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "history": history, "best": best, "epoch": epoch, "bad_epochs": bad_epochs,
            "config": config.to_dict()}


def restarts_for(config: RunConfig) -> int:
    """Random starts tried before training: ``config.restarts`` when set; otherwise 1 for the convex raw model and 6
    for the others (the abs and magnitude losses have spurious local minima that a short warm-up tells apart)."""
    if config.restarts:
        return config.restarts
    return 1 if config.model == "single" and not config.normalize else 6


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: RunConfig,
                 train_images: list[np.ndarray], rng: np.random.Generator, device: torch.device,
                 desc: str = "", progress: bool = False) -> float:
    """One epoch's optimizer steps on fresh training crops drawn with ``rng``; returns the mean step loss."""
    from tqdm.auto import tqdm

    crops = torch.from_numpy(sample_crops(train_images, config.steps_per_epoch * config.batch_size, config.crop,
                                          rng)).to(device)
    targets = _targets(crops, config)
    loss_fn = torch.nn.MSELoss()
    total = 0.0
    bar = tqdm(range(config.steps_per_epoch), desc=desc, leave=False, disable=None if progress else True,
               unit="step", mininterval=0.5)
    for step in bar:
        sl = slice(step * config.batch_size, (step + 1) * config.batch_size)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(crops[sl]), targets[sl])
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        bar.set_postfix(loss=f"{float(loss.detach()):.3e}")
    return total / config.steps_per_epoch


def _pick_restart(model: torch.nn.Module, config: RunConfig, train_images: list[np.ndarray], val_x: torch.Tensor,
                  val_y: torch.Tensor, device: torch.device) -> None:
    """Warm up several seeded random inits for one epoch's worth of steps each; keep the best by val loss."""
    n = restarts_for(config)
    if n <= 1:
        return
    loss_fn = torch.nn.MSELoss()
    best_loss, best_state = math.inf, None
    for i in range(n):
        torch.manual_seed(config.seed * 1000 + i)
        model.conv.reset_parameters()
        _train_epoch(model, _make_optimizer(model, config), config, train_images, epoch_rng(config.seed, 0, 100 + i),
                     device)
        with torch.no_grad():
            val = float(loss_fn(model(val_x), val_y))
        if val < best_loss:
            best_loss, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)


def _gradient_fit(model: torch.nn.Module, config: RunConfig, split: Split, device: torch.device, run_dir: Path,
                  resume_state: dict[str, Any] | None, progress: bool,
                  warm_start: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Gradient descent with early stopping and a checkpoint per epoch; ``warm_start`` keeps the model's current
    weights as the starting point (and the best so far) instead of picking among random restarts.

    Leaves the best epoch's weights in ``model``; returns the history and that epoch (0: the warm start was kept,
    no epoch beat it by more than 0.1%)."""
    from tqdm.auto import tqdm

    train_images = usable_for_crops(split.train, config.crop)
    val_images = usable_for_crops(split.val, config.crop)
    val_x = torch.from_numpy(sample_crops(val_images, VAL_CROPS, config.crop, epoch_rng(config.seed, 0, 1))).to(device)
    val_y = _targets(val_x, config)
    optimizer = _make_optimizer(model, config)
    scheduler = _make_scheduler(optimizer)
    history: list[dict[str, Any]] = []
    best = {"val_loss": math.inf, "epoch": 0, "state": {k: v.clone() for k, v in model.state_dict().items()}}
    start, bad_epochs = 1, 0
    if resume_state is not None:
        from kernelnet.learn.resume import apply_resume, check_resume_state

        check_resume_state(resume_state, model, config, run_dir / CHECKPOINT_FILE)
        apply_resume(model, optimizer, scheduler, resume_state)
        history, best = list(resume_state["history"]), resume_state["best"]
        start, bad_epochs = int(resume_state["epoch"]) + 1, int(resume_state["bad_epochs"])
    loss_fn = torch.nn.MSELoss()
    if resume_state is None and not warm_start:
        _pick_restart(model, config, train_images, val_x, val_y, device)
    if resume_state is None and warm_start:
        # The closed form is the run's best so far (epoch 0); fine-tuning may only improve on it.
        with torch.no_grad():
            best["val_loss"] = float(loss_fn(model(val_x), val_y))
        if best["val_loss"] <= STOP_LOSS:
            return history, 0
    for epoch in range(start, config.epochs + 1):
        if history and (bad_epochs > config.patience or history[-1]["val_loss"] <= STOP_LOSS):
            break
        t0 = time.perf_counter()
        model.train()
        train_loss = _train_epoch(model, optimizer, config, train_images, epoch_rng(config.seed, epoch), device,
                                  f"epoch {epoch}/{config.epochs}", progress)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(val_x), val_y))
        if not math.isfinite(val_loss):
            raise KernelnetError(f"training diverged at epoch {epoch} (validation loss {val_loss}): lower the learning rate")
        scheduler.step(val_loss)
        if val_loss < best["val_loss"] * (1 - 1e-3):
            best = {"val_loss": val_loss, "epoch": epoch,
                    "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
            bad_epochs = 0
        else:
            bad_epochs += 1
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                        "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 4)})
        if progress:
            tqdm.write(f"epoch {epoch:3d}  train {train_loss:.3e}  val {val_loss:.3e}  lr {history[-1]['lr']:.1e}")
        save_state(run_dir / CHECKPOINT_FILE,
                   _checkpoint_state(model, optimizer, scheduler, history, best, epoch, bad_epochs, config))
    model.load_state_dict(best["state"])
    return history, int(best["epoch"])


def train(config: RunConfig, out: str | os.PathLike[str] | None = None, *, resume: bool = False,
          progress: bool = True, plots: bool = True) -> TrainResult:
    """Train a model per ``config`` and write the run directory ``out`` (default ``artifacts/runs/<name>``).

    The run is written beside ``out`` and replaces it whole when complete (an earlier run there stays until then).
    With ``resume`` an interrupted run continues from the checkpoint its partial folder kept
    (:func:`kernelnet.rundir.partial_dir`; its stored config wins) and ends with the same result as an
    uninterrupted run.
    """
    from kernelnet.rundir import check_run_dir, default_run_dir, partial_dir, run_transaction

    config = resolve_config(config)
    run_dir = Path(out) if out is not None else default_run_dir(config)
    resume_state = None
    if resume:
        ckpt = partial_dir(run_dir) / CHECKPOINT_FILE
        if not ckpt.is_file():
            raise KernelnetError(f"nothing to resume: no interrupted run of {run_dir} ({ckpt} does not exist)")
        resume_state = load_state(ckpt)
        missing = sorted(RESUME_KEYS - set(resume_state)) if isinstance(resume_state, dict) else ["everything"]
        if missing:
            raise KernelnetError(f"{ckpt} is not a kernelnet training checkpoint (no {', '.join(missing)})")
        try:
            config = RunConfig.from_dict(resume_state["config"])
        except (AttributeError, TypeError, ValueError) as exc:
            raise KernelnetError(f"{ckpt} holds an invalid run config: {exc}") from None
    check_run_dir(run_dir, () if config.data == "builtin" else (config.data,))
    device = pick_device(config.device)
    split = split_images(load_source(config.data))
    from kernelnet.runtime.io.atomic import remove_stale_temps

    # the run is built beside run_dir and replaces it whole: bad input, a full disk or an interrupt leave an
    # earlier run there as it was
    with run_transaction(run_dir, resume=resume_state is not None) as staging:
        if resume_state is not None:
            remove_stale_temps(staging)  # the interrupted process may have died inside an atomic write
        result = _train_into(config, staging, device, split, resume_state, progress, plots)
    return TrainResult(run_dir, result.model, result.config, result.metrics)


def _train_into(config: RunConfig, run_dir: Path, device: torch.device, split: Split,
                resume_state: dict[str, Any] | None, progress: bool, plots: bool) -> TrainResult:
    """The body of :func:`train` once the run directory exists: fit, evaluate, write the run directory."""
    torch.manual_seed(config.seed)
    model = build_model(config.model, config.kernel_size, config.bias, config.normalize, config.padding).to(device)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if config.solver == "exact" or config.init == "exact":
        from kernelnet.learn.exact import fit_exact

        fit = fit_exact(config, split.train, model)
        extra.update(fit.report())
    history: list[dict[str, Any]] = []
    if config.solver != "exact":
        history, _ = _gradient_fit(model, config, split, device, run_dir, resume_state, progress,
                                   warm_start=config.init == "exact")
    train_seconds = time.perf_counter() - t0
    if resume_state is not None:
        train_seconds += sum(h["seconds"] for h in resume_state["history"])
    model = model.cpu().eval()
    metrics: dict[str, Any] = {
        **kernel_summary(model, config),
        **evaluate(model, split.test, config),
        **run_facts(train_seconds, history, config, device, split),
        **extra,
    }
    save_model(run_dir, model, config)
    save_history(run_dir, history)
    save_metrics(run_dir, metrics)
    if plots:
        from kernelnet.plots import plot_run

        plot_run(run_dir, model, config, history, metrics, split.test)
    ckpt = run_dir / CHECKPOINT_FILE
    if ckpt.exists():
        ckpt.unlink()
    return TrainResult(run_dir, model, config, metrics)
