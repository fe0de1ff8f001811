"""``kernelnet prune``."""

from __future__ import annotations

import click

from kernelnet.cli.common import print_pairs, print_table


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--amount", default="auto", show_default=True,
              help="A fraction in (0, 1), a count of weights (3), or 'auto': the largest count whose test PSNR "
                   "drops by at most --max-psnr-drop.")
@click.option("--method", type=click.Choice(["l1", "random", "structured"]), default="l1", show_default=True,
              help="l1: smallest |w|; random: seeded random weights; structured: whole kernel columns/rows with "
                   "the smallest L1 norm.")
@click.option("--global/--per-kernel", "global_", default=True, show_default=True,
              help="double only: rank both kernels together, or prune each kernel by the same amount.")
@click.option("--structure", type=click.Choice(["columns", "rows"]), default="columns", show_default=True,
              help="What --method structured removes.")
@click.option("--align/--no-align", default=True, show_default=True,
              help="double only: first rotate the kernel pair onto the target's (same output; exposes its zeros).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --method random.")
@click.option("--max-psnr-drop", type=float, default=None,
              help="With --amount auto: dB the test PSNR may drop [default: 0.5]; a drop that stays at or above "
                   "--lossless-psnr is always accepted.")
@click.option("--lossless-psnr", type=float, default=60.0, show_default=True,
              help="Test PSNR (dB, vs the true filter) at or above which the pruning is reported lossless.")
@click.option("--finetune-epochs", type=int, default=0, show_default=True,
              help="Fine-tune the kept weights (Adam, the run's data pipeline) with the mask held.")
@click.option("--finetune-lr", type=float, default=1e-2, show_default=True,
              help="Fine-tuning learning rate (Adam).")
@click.option("--device", default=None, help="Fine-tuning device [default: the run's].")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="New run directory [default: RUN-pruned].")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def prune(run: str, amount: str, method: str, global_: bool, structure: str, align: bool, seed: int,
          max_psnr_drop: float | None, lossless_psnr: float, finetune_epochs: int, finetune_lr: float,
          device: str | None, out: str | None, no_plots: bool, quiet: bool) -> None:
    """Prune a run's kernel weights (torch.nn.utils.prune) and write the result as a new run directory.

    \b
    The new run (model.safetensors with the zeros, config.json, metrics.json with sparsity, pruned_positions
    and the test PSNR / kernel error before and after, history.csv, plots/pruned_kernels.png) is an ordinary
    run: export and the other commands accept it. Nothing is written on bad input.
    Examples:
      kernelnet prune artifacts/runs/sobel-single                    # auto: drops the 3 zero weights
      kernelnet prune artifacts/runs/sobel-single --amount 0.33
      kernelnet prune artifacts/runs/sobel-double --amount 6 --per-kernel --finetune-epochs 5
    """
    from kernelnet.compress.prune import parse_amount, prune_run

    result = prune_run(run, out, amount=parse_amount(amount), method=method,
                       scope="global" if global_ else "per-kernel", structure=structure, seed=seed,
                       max_psnr_drop=max_psnr_drop, lossless_psnr_db=lossless_psnr, align=align,
                       finetune_epochs=finetune_epochs, finetune_lr=finetune_lr,
                       device=device, progress=not quiet, plots=not no_plots)
    m = result.metrics
    if "score_before" in m:  # learned from pairs: scored on its held-out pairs
        if m["auto_search"]:
            print_table(m["auto_search"], ["count", "sparsity", "score", "ok"])
            click.echo()
        print_pairs([("run", str(result.run_dir)), ("pruned", f"{m['pruned_count']}/{m['weight_count']} weights"),
                     ("sparsity", m["sparsity"]),
                     ("held-out before", m["score_before"]), ("held-out after", m["score_after"]),
                     ("lossless", f"{m['lossless']} (held-out pairs unchanged)")])
        return
    if m["auto_search"]:
        print_table(m["auto_search"], ["count", "sparsity", "psnr_db", "drop_db", "ok"])
        click.echo()
    how = m["method"] + (f" {m['structure']}" if m["structure"] else "") + f", {m['scope']}"
    print_pairs([
        ("run", str(result.run_dir)),
        ("method", how),
        ("amount", m["amount"]),
        ("pruned", f"{m['pruned_count']}/{m['weight_count']} weights"),
        ("sparsity", m["sparsity"]),
        ("pruned_positions", " ".join(f"[{c},{i},{j}]" for c, i, j in m["pruned_positions"])),
        ("psnr_before_db", m["psnr_before_db"]),
        ("psnr_after_db", m["psnr_after_db"]),
        ("psnr_drop_db", m["psnr_drop_db"]),
        ("kernel_error_before", m["kernel_error_before"]),
        ("kernel_error_after", m["kernel_error_after"]),
        ("finetune_epochs", m["epochs_run"]),
        ("lossless", f"{m['lossless']} (PSNR after >= {m['lossless_psnr_db']:g} dB)"),
    ])
