"""``kernelnet tune``: autotune onnxruntime session settings and store the winner beside the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    from kernelnet.runtime.backends.autotune import TuneResult


def _choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in allowed]
    if bad or not values:
        raise KernelnetError(f"invalid {what} {text!r}: choose from {', '.join(allowed)}")
    return values


def report_tune(result: TuneResult) -> None:
    """Print the candidates table (fastest first) and where the choice went."""
    from kernelnet.cli.common import print_table

    columns = ["candidate", *[k for k in result.rows[0] if k.endswith("_ms")], "ms_per_mpix", "ok", "best"]
    print_table(sorted(result.rows, key=lambda r: (not r["ok"], r["ms_per_mpix"])), columns)
    stored = f"  (stored in {result.path})" if result.path else ""
    click.echo(f"best: {result.best.label()}{stored}")


@click.command()
@click.argument("model", type=click.Path())
@click.option("--sizes", default="1080x1920", show_default=True, help="HxW list to tune on.")
@click.option("--levels", default="disabled,basic,extended,all", show_default=True,
              help="Graph optimization levels to try.")
@click.option("--threads", "threads", default=None,
              help="Intra-op thread counts to try, e.g. 1,2 [default: 1, 2, 4, ... up to the CPU count].")
@click.option("--modes", default="sequential,parallel", show_default=True, help="Execution modes to try.")
@click.option("--spinning", default="on", show_default=True, help="Thread spinning: on, off or on,off.")
@click.option("--tiles", default="auto", show_default=True,
              help="Tilings to try: auto, off, N or RxC (0 = full axis; 256x0 = 256-row strips).")
@click.option("--min-time", type=float, default=0.3, show_default=True, help="Seconds timed per candidate/size.")
@click.option("--dry-run", is_flag=True, help="Measure and print, but do not store the choice.")
def tune(model: str, sizes: str, levels: str, threads: str | None, modes: str, spinning: str, tiles: str,
         min_time: float, dry_run: bool) -> None:
    """Try onnxruntime session settings on MODEL (.onnx or run directory), keep the fastest that reproduces the
    default output, and store it in MODEL.tune.json, which 'kernelnet.runtime.load' (and apply/bench/verify) use.

    \b
    Examples:
      kernelnet tune artifacts/runs/sobel-single
      kernelnet tune model.onnx --threads 2 --levels basic,all --tiles auto,off,256x0
    """
    from kernelnet.cli.common import parse_tile
    from kernelnet.runtime.sizes import parse_ints, parse_sizes
    from kernelnet.runtime.backends.autotune import autotune, candidates, thread_choices
    from kernelnet.runtime.backends.session import EXECUTION_MODES, OPT_LEVELS

    spins = {"on": (True,), "off": (False,), "on,off": (True, False), "off,on": (False, True)}
    if spinning not in spins:
        raise KernelnetError(f"invalid --spinning {spinning!r}: use on, off or on,off")
    cands = candidates(_choices(levels, OPT_LEVELS, "--levels"),
                       parse_ints(threads, "--threads") if threads else thread_choices(),
                       _choices(modes, EXECUTION_MODES, "--modes"), spins[spinning],
                       tuple(parse_tile(t.strip()) for t in tiles.split(",")))
    report_tune(autotune(model, cands, parse_sizes(sizes), min_seconds=min_time, save=not dry_run))
