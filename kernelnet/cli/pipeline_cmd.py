"""``kernelnet pipeline``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from kernelnet.cli.common import build_run_config
from kernelnet.runtime.spec import BORDERS


@click.command()
@click.option("--filter", "filter_", default="sobel", show_default=True, help="Target filter (as for train).")
@click.option("--model", type=click.Choice(["single", "double"]), default=None,
              help="[default: single; with --targets: identified]")
@click.option("--normalize/--no-normalize", default=None,
              help="single only: abs model [default: no; with --targets: identified].")
@click.option("--padding", type=click.Choice(list(BORDERS)), default=None,
              help="[default: zeros; with --targets: identified]")
@click.option("--data", default="builtin", show_default=True, help="'builtin' or a folder of images.")
@click.option("--targets", type=click.Path(file_okay=False), default=None,
              help="The black box's outputs for --data: identify and learn that filter (kind, size, border, clip "
                   "and rounding are identified).")
@click.option("--solver", type=click.Choice(["adam", "sgd", "exact"]), default=None,
              help="[default: adam; with --targets: exact identification]")
@click.option("--epochs", type=int, default=200, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bench-sizes", default="256x256,1080x1920,2160x3840", show_default=True, help="HxW list for bench.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Pipeline directory [default: artifacts/pipeline/<filter>-<model>].")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def pipeline(filter_: str, model: str | None, normalize: bool | None, padding: str | None, data: str,
             targets: str | None, solver: str | None, epochs: int, seed: int, bench_sizes: str, out: str | None,
             quiet: bool) -> None:
    """Train, prune (auto, lossless), export ONNX, quantize int8, verify and bench; write report.html/.md.

    \b
    Everything lands in one directory: train/, pruned/ (model.onnx, model.int8.onnx), verify.json,
    bench.json, bench.png, report.html (self-contained) and report.md. Exit 1 if verification fails.
    Example:
      kernelnet pipeline                        # Sobel, built-in photos -> artifacts/pipeline/sobel-single
      kernelnet pipeline --data photos/ --targets edited/   # learn the black box behind edited/
    """
    from kernelnet.pipeline import run_pipeline

    if targets is not None:
        from kernelnet.config import RunConfig
        from kernelnet.runtime.errors import KernelnetError

        if data == "builtin":
            raise KernelnetError("--targets needs --data: the folder of the images the targets were made from")
        fixed = [name for name, value in (("--model", model), ("--normalize", normalize), ("--padding", padding),
                                          ("--solver", solver)) if value is not None]
        if fixed:
            raise KernelnetError(f"with --targets the pipeline identifies the filter: drop {', '.join(fixed)} "
                                 "(kernelnet train --data --targets takes them to fix what is not identified)")
        config = RunConfig(filter="pairs", data=data, targets=targets, solver="exact", seed=seed,
                           name=f"pairs-{Path(targets).resolve().name}")
    else:
        config = build_run_config(filter_, model or "single", bool(normalize), None, seed, padding=padding or "zeros",
                                  data=data, solver=solver or "adam", epochs=epochs)
    out_dir = Path(out) if out else Path("artifacts/pipeline") / config.run_name
    t0 = time.perf_counter()
    result = run_pipeline(config, out_dir, bench_sizes=bench_sizes, progress=not quiet,
                          say=lambda s: click.echo(click.style(s, bold=True)))
    click.echo()
    click.echo(f"report: {result.report_html}")
    click.echo(f"        {result.report_md}")
    click.echo("stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.seconds.items()))
    click.echo(f"pipeline wall time: {time.perf_counter() - t0:.1f} s")
