"""``kernelnet train``."""

from __future__ import annotations

import click

from kernelnet.cli.common import build_run_config, print_pairs
from kernelnet.runtime.spec import BORDERS


@click.command()
@click.option("--filter", "filter_", default=None,
              help="Target filter: sobel, sobel-y, scharr, prewitt, laplacian, gaussian, gaussian5, box, box5, "
                   "sharpen, emboss, random[:SEED], a kernel string '1,0,-1;2,0,-2;1,0,-1', or a .npy/.txt file "
                   "[default: sobel; not with --targets, whose filter is what is learned].")
@click.option("--model", type=click.Choice(["single", "double"]), default=None,
              help="single: one kernel; double: magnitude of two kernels [default: single; with --targets: "
                   "identified].")
@click.option("--normalize/--no-normalize", default=None,
              help="single only: learn |k*x| (abs) instead of the raw response [default: no; with --targets: "
                   "identified].")
@click.option("--kernel-size", type=int, default=None, help="Learned kernel side (odd); default: the target's.")
@click.option("--bias/--no-bias", default=True, show_default=True, help="Learn a bias per kernel.")
@click.option("--padding", type=click.Choice(list(BORDERS)), default=None,
              help="Border of the target and the model [default: zeros; with --targets: identified]. reflect = "
                   "OpenCV REFLECT_101, symmetric = OpenCV REFLECT / SciPy reflect, replicate = SciPy nearest, "
                   "reflect_symmetric = reflect at the top/left and symmetric at the bottom/right (ffmpeg's "
                   "3×3 filters), copy = the input's outer ring kept (Pillow).")
@click.option("--targets", default=None, type=click.Path(file_okay=False),
              help="Folder of the black box's outputs for the images in --data (matched by relative path and "
                   "stem): learn that filter, identifying what is not given.")
@click.option("--clip", "clip_", default="auto", show_default=True,
              help="With --targets: output clip bounds LO,HI, 'none', or auto (the integer format's range, or "
                   "saturated float values).")
@click.option("--rounding", default="auto", show_default=True,
              type=click.Choice(["auto", "none", "half_even", "half_up", "toward_zero", "floor"]),
              help="With --targets: how integer outputs are rounded (auto: the rule that reproduces the most levels).")
@click.option("--data", default="builtin", show_default=True,
              help="'builtin' (photos shipped with scikit-image) or a folder of images (searched recursively).")
@click.option("--crop", type=int, default=64, show_default=True, help="Training crop side in pixels.")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--steps-per-epoch", type=int, default=40, show_default=True)
@click.option("--epochs", type=int, default=200, show_default=True, help="Upper bound; early stopping ends sooner.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Initial learning rate (reduced on plateau).")
@click.option("--patience", type=int, default=6, show_default=True,
              help="Epochs without validation improvement before stopping.")
@click.option("--restarts", type=int, default=0, show_default=True,
              help="Random starts warmed up for one epoch each, best kept (0: 1 for raw single, 6 for abs/double).")
@click.option("--solver", type=click.Choice(["adam", "sgd", "exact"]), default=None,
              help="adam/sgd: gradient descent; exact: closed-form least-squares fit in one pass [default: adam; "
                   "with --targets: exact, and adam/sgd refine it on random crops of the pairs].")
@click.option("--init", type=click.Choice(["random", "exact"]), default="random", show_default=True,
              help="Starting point of the gradient solvers.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the model init, crops and random kernels.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: artifacts/runs/<filter>-<model>].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="With --targets: ray fits a one-kernel linear program again on every training pixel, its normal "
                   "equations summed by Ray tasks over shards of the pairs (needs kernelnet[ray]).")
@click.option("--address", default=None,
              help="With --engine ray: the Ray cluster [default: RAY_ADDRESS, else a new local one].")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT/checkpoint.safetensors.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def train(filter_: str, model: str | None, normalize: bool | None, kernel_size: int | None, bias: bool,
          padding: str | None, targets: str | None, clip_: str, rounding: str, data: str, crop: int, batch_size: int, steps_per_epoch: int, epochs: int, lr: float, patience: int, restarts: int, solver: str,
          init: str, seed: int, device: str, out: str | None, engine: str, address: str | None, resume: bool,
          no_plots: bool, quiet: bool) -> None:
    """Train a SingleFilter/DoubleFilter to reproduce a target filter and write a run directory.

    \b
    The run directory holds model.safetensors, config.json, metrics.json, history.csv and plots/*.png.
    Examples:
      kernelnet train                                   # Sobel, single, raw, built-in photos
      kernelnet train --model double --solver exact     # Sobel magnitude, closed form
      kernelnet train --filter random:3 --model double --data ~/tiny-imagenet-200/train
      kernelnet train --data photos/ --targets edited/   # learn the black box that made edited/ from photos/
      kernelnet train --data photos/ --targets edited/ --engine ray --address HEAD:6379
    """
    if (engine != "local" or address) and targets is None:
        raise click.UsageError("--engine ray and --address go with --targets (fitting from pairs)")
    if targets is not None:
        if filter_ is not None:
            from kernelnet.runtime.errors import KernelnetError

            raise KernelnetError("--filter and --targets are alternatives: the targets' filter is what is learned")
        _train_pairs(data, targets, out, model, normalize, kernel_size, padding, clip_, rounding, seed, no_plots,
                     solver or "exact", epochs, lr, engine, address)
        return
    config = build_run_config(filter_ or "sobel", model or "single", bool(normalize), kernel_size, seed, bias=bias,
                              padding=padding or "zeros", data=data,
                              crop=crop, batch_size=batch_size, steps_per_epoch=steps_per_epoch, epochs=epochs, lr=lr,
                              patience=patience, restarts=restarts, solver=solver or "adam", init=init, device=device)
    from kernelnet.learn.training import train as run_training

    result = run_training(config, out, resume=resume, progress=not quiet, plots=not no_plots)
    m = result.metrics
    click.echo()
    print_pairs([
        ("run", str(result.run_dir)),
        ("model", f"{result.config.model}{' abs' if result.config.normalize else ''} "
                  f"{result.config.kernel_size}x{result.config.kernel_size}, target {result.config.filter}"),
        ("solver", m["solver"]),
        ("epochs", m["epochs_run"]),
        ("kernel_max_abs_error", m["kernel_max_abs_error"]),
        ("test_mse", m["test_mse"]),
        ("test_psnr_db", m["test_psnr_db"]),
        ("train_seconds", m["train_seconds"]),
    ])


def _train_pairs(data: str, targets: str, out: str | None, model: str | None, normalize: bool | None,
                 kernel_size: int | None, padding: str | None, clip_: str, rounding: str, seed: int,
                 no_plots: bool, solver: str, epochs: int, lr: float, engine: str = "local",
                 address: str | None = None) -> None:
    import math
    from pathlib import Path

    from kernelnet.identify import Fixed
    from kernelnet.learn.pairs_train import summary_lines, train_pairs
    from kernelnet.runtime.errors import KernelnetError

    if data == "builtin":
        raise KernelnetError("--targets needs --data: the folder of the images the targets were made from")
    combine = {"double": "magnitude"}.get(model or "", None)
    if model == "single":
        combine = "abs" if normalize else "raw" if normalize is not None else None
    elif normalize:
        raise KernelnetError("--normalize applies to --model single only (double is a magnitude already)")
    clip: object = "auto"
    if clip_ == "none":
        clip = None
    elif clip_ != "auto":
        try:
            lo, hi = (float(v) for v in clip_.split(","))
        except ValueError:
            raise KernelnetError(f"invalid --clip {clip_!r}: use auto, none or LO,HI") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise KernelnetError(f"invalid --clip {clip_!r}: LO and HI must be finite numbers with LO < HI")
        clip = (lo, hi)
    if not (math.isfinite(lr) and lr > 0):
        raise KernelnetError(f"--lr must be a finite number above 0, got {lr}")
    if epochs < 1:
        raise KernelnetError(f"--epochs must be at least 1, got {epochs}")
    fixed = Fixed(combine, kernel_size, padding, clip, None if rounding == "none" else rounding,  # type: ignore[arg-type]
                  linear=model is not None, kinds=("raw", "abs") if model == "single" and combine is None else None)
    run_dir = Path(out) if out else Path("artifacts/runs") / f"pairs-{Path(targets).resolve().name}"
    if engine == "ray":
        from kernelnet.runtime.cluster.connection import require_ray

        require_ray()  # before any work
    result = train_pairs(data, targets, run_dir, fixed, seed=seed, plots=not no_plots, solver=solver,
                         epochs=min(epochs, 200), lr=lr if lr != 0.05 else 0.01, engine=engine, address=address)
    click.echo()
    print_pairs([("run", str(result.run_dir)), *summary_lines(result.metrics)])
