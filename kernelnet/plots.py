"""Run plots (matplotlib, Agg): loss curves, learned vs target kernels, sample predictions. Written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.runtime.io.atomic import write_with


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _figure()
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_losses(history: list[dict[str, Any]], path: Path) -> None:
    """Train/validation MSE per epoch, log scale."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [h["epoch"] for h in history]
    ax.semilogy(epochs, [h["train_loss"] for h in history], label="train")
    ax.semilogy(epochs, [h["val_loss"] for h in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE")
    ax.set_title("Loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_kernels(learned: np.ndarray, target: np.ndarray | None, path: Path, title: str = "Kernels",
                 mask: np.ndarray | None = None, label: str = "learned") -> None:
    """Heat maps with values: learned (aligned) / target / difference, one row per kernel (C, k, k); without a
    ``target`` (a black box identified from pairs has none) the ``label``-ed kernels alone.

    ``mask`` (C, k, k), if given, marks pruned positions with a cross.
    """
    plt = _figure()
    c, k = learned.shape[0], learned.shape[-1]
    from kernelnet.metrics import embed_center

    target = None if target is None else embed_center(target, k)
    fig, axes = plt.subplots(c, 1 if target is None else 3, figsize=((1 if target is None else 3) * 3.1, c * 3.0),
                             squeeze=False)
    vmax = float(max(np.abs(learned).max(), 1e-12 if target is None else np.abs(target).max(), 1e-12))
    for row in range(c):
        panels = [(label, learned[row], vmax)]
        if target is not None:
            diff = learned[row] - target[row]
            panels += [("target", target[row], vmax), ("learned - target", diff, float(np.abs(diff).max()) or 1e-12)]
        for col, (name, data, vm) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(data, cmap="RdBu_r", vmin=-vm, vmax=vm)
            fmt = "{:.2e}" if col == 2 else "{:.3f}"
            for (i, j), v in np.ndenumerate(data):
                if k <= 7:
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7 if k <= 3 else 5)
            if mask is not None and col == 0:
                for i, j in zip(*np.nonzero(mask[row] == 0)):
                    ax.plot(j, i, "kx", markersize=14, alpha=0.6)
            ax.set_title(f"{name}" + (f" [{row}]" if c > 1 else ""), fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    _save(fig, path)


def plot_samples(inputs: list[np.ndarray], targets: list[np.ndarray], preds: list[np.ndarray], path: Path,
                 names: list[str] | None = None) -> None:
    """Grid: input / target / prediction / |error| for a few test images."""
    plt = _figure()
    n = len(inputs)
    fig, axes = plt.subplots(n, 4, figsize=(4 * 2.6, n * 2.6), squeeze=False)
    for i in range(n):
        err = np.abs(preds[i] - targets[i])
        panels = [("input", inputs[i], "gray"), ("target", targets[i], "gray"),
                  ("prediction", preds[i], "gray"), (f"|error| max {err.max():.1e}", err, "magma")]
        for j, (title, data, cmap) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(data, cmap=cmap)
            if j == 3:
                fig.colorbar(im, ax=ax, fraction=0.046)
            ax.set_title(title if not names or j else f"{names[i]}", fontsize=8)
            ax.axis("off")
    _save(fig, path)


def plot_run(run_dir: str | os.PathLike[str], model: Any, config: Any, history: list[dict[str, Any]],
             metrics: dict[str, Any], test_images: dict[str, np.ndarray], max_samples: int = 3) -> list[Path]:
    """All plots of a finished run under ``run_dir/plots``; returns their paths."""
    import torch

    from kernelnet.learn.models import apply_target

    plots = Path(run_dir) / "plots"
    written = []
    if history:
        plot_losses(history, plots / "loss.png")
        written.append(plots / "loss.png")
    plot_kernels(np.asarray(metrics["learned_kernels"]), np.asarray(metrics["target_kernels"]),
                 plots / "kernels.png",
                 title=f"{config.filter} {config.model}: max |error| {metrics['kernel_max_abs_error']:.2e}")
    written.append(plots / "kernels.png")
    names = list(test_images)[:max_samples]
    inputs, targets, preds = [], [], []
    kernel = torch.tensor(config.target_kernel, dtype=torch.float64)
    with torch.no_grad():
        for name in names:
            im = test_images[name]
            h, w = min(im.shape[0], 256), min(im.shape[1], 256)
            crop = im[(im.shape[0] - h) // 2:(im.shape[0] - h) // 2 + h, (im.shape[1] - w) // 2:(im.shape[1] - w) // 2 + w]
            x = torch.from_numpy(np.ascontiguousarray(crop))[None, None]
            inputs.append(crop)
            targets.append(apply_target(x.double(), kernel, config.model, config.normalize, config.padding)[0, 0].numpy())
            preds.append(model(x)[0, 0].numpy())
    plot_samples(inputs, targets, preds, plots / "samples.png", names)
    written.append(plots / "samples.png")
    return written
