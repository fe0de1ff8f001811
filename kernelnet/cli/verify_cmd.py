"""``kernelnet verify``: parity of every backend against each other and the numpy ground truth."""

from __future__ import annotations

import json
from typing import Any

import click

from kernelnet.runtime.errors import CheckFailed, KernelnetError


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
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=None, help="onnxruntime/PyTorch threads.")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Folder of inputs whose black-box outputs are in --targets: check every backend against them.")
@click.option("--targets", type=click.Path(file_okay=False), default=None,
              help="Folder of the black box's outputs (matched to --data by relative path and stem).")
@click.option("--min-exact", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.999, show_default=True,
              help="Integer targets: the share of levels each backend must write exactly (and reach the rounding "
                   "floor's PSNR); train's 'reproduced' verdict uses the same rule.")
@click.option("--exact", is_flag=True, help="Integer targets: every level equal (--min-exact 1).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the full report.")
def verify(model: str, run: str | None, sizes: str | None, batches: str, no_tiled: bool, n_random: int, seed: int,
           atol: float | None, rtol: float, truth_tol: float, int8_tol: float, threads: int | None,
           data: str | None, targets: str | None, min_exact: float, exact: bool, json_path: str | None) -> None:
    """Check MODEL's backends against each other and against the true filter computed in numpy.

    \b
    Backends: onnxruntime (fp32), the int8 model beside it (model.int8.onnx), the TensorRT engine
    (model.engine, where TensorRT and a GPU exist) and PyTorch (--run). References: 'weights' (the model's own
    kernels in float64) and 'truth' (the target filter). Backends must match each other and 'weights' within
    atol + rtol·|ref| (int8: int8-tol·G); 'weights' must match 'truth' within truth-tol·G; backend vs truth may
    differ by the tolerance plus the kernel gap (a bound of learned-vs-target). Exit 1 on any mismatch.
    """
    from kernelnet.cli.common import print_pairs, print_table
    from kernelnet.runtime.backends import open_backends
    from kernelnet.runtime.sizes import parse_ints, parse_sizes
    from kernelnet.runtime.checks.verify import DEFAULT_SIZES, Tolerances, build_cases
    from kernelnet.runtime.checks.verify import verify as run_verify

    if (data is None) != (targets is None):
        raise KernelnetError("--data and --targets go together (inputs and the black box's outputs)")
    size_list = parse_sizes(sizes) if sizes else DEFAULT_SIZES
    batch_list = parse_ints(batches, "--batch")
    if json_path is not None:
        from kernelnet.runtime.io.atomic import check_output_file
        from kernelnet.runtime.backends import discover

        check_output_file(json_path, (*(a.path for a in discover(model)), run, data, targets), "--json")
    backends, skipped = open_backends(model, threads)
    if run is not None:
        from kernelnet.cli.common import need_train_extra

        need_train_extra("verify --run")
        from kernelnet.learn.torch_runner import pytorch_backend

        backends.append(pytorch_backend(run, threads))
    info = backends[0].model.info
    min_side = info.spec.min_side if info.spec is not None else 1
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
    pair_rows = []
    if data is not None and targets is not None:
        from kernelnet.runtime.io.pairs import load_pairs
        from kernelnet.runtime.checks.verify_pairs import verify_pairs

        pair_rows = [r.to_dict() for r in verify_pairs(backends, load_pairs(data, targets),
                                                        1.0 if exact else min_exact)]
        click.echo()
        print_table(pair_rows, ["check", "pairs", "exact_fraction", "max_error", "psnr_db", "floor_db", "ok"])
    if json_path is not None:
        from kernelnet.runtime.io.atomic import write_text

        doc = {**report.to_dict(), "pairs": pair_rows}
        write_text(json_path, json.dumps(doc, indent=2, default=str) + "\n")
    bad_pairs = [r for r in pair_rows if r["ok"] is False]
    if bad_pairs:
        worst = bad_pairs[0]
        raise CheckFailed(f"{worst['check']}: {worst['why']} ({len(bad_pairs)} backend(s) failed on the pairs)")
    if not report.ok:
        bad = next(row for row in report.summary if not row["ok"])
        raise CheckFailed(f"{bad['check']}: max abs error {bad['max_abs_error']:.3g} at {bad['worst_case']} "
                          f"(tolerance {bad['tolerance']}); {sum(not r['ok'] for r in report.summary)} check(s) failed")
    click.echo("verify: all checks passed")
