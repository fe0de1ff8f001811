"""``kernelnet quantize``."""

from __future__ import annotations

import click

from kernelnet.cli.common import fmt, print_pairs, print_table


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--calibration", default="builtin", show_default=True, metavar="builtin|DIR",
              help="Calibration photos: the built-in set (for a run learned from pairs: its own input photos) or "
                   "an image folder (its train split calibrates, its test split evaluates).")
@click.option("--calibration-method", "method", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="minmax", show_default=True, help="onnxruntime calibrator for the activation ranges.")
@click.option("--samples", type=int, default=64, show_default=True, help="Calibration crops (128x128).")
@click.option("--uint8-input", is_flag=True,
              help="Raw 8-bit frames in (the /255 folded into the input quantization) -> RUN/model.int8.u8.onnx.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: RUN/model.int8.onnx, or RUN/model.int8.u8.onnx with --uint8-input].")
@click.option("--latency-runs", type=int, default=10, show_default=True,
              help="Timed runs per model and optimisation level at 1080p (0 skips timing).")
def quantize(run: str, calibration: str, method: str, samples: int, uint8_input: bool, out: str | None,
             latency_runs: int) -> None:
    """Quantize a run's fp32 ONNX model (RUN/model.onnx) to int8 QDQ with static calibration.

    \b
    Per-channel int8 weights; symmetric int8 activations by default (the form TensorRT builds an int8 engine
    from), uint8 activations with --uint8-input (onnxruntime CPU, camera frames in). Compares the int8 model
    with the fp32 one on held-out test photos and times both at 1080p; writes RUN/quantize.json
    (RUN/quantize.u8.json with --uint8-input) and RUN/plots/int8_error.png.
    Examples:
      kernelnet export artifacts/runs/sobel-single && kernelnet quantize artifacts/runs/sobel-single
      kernelnet quantize artifacts/runs/sobel-single --calibration-method percentile --samples 128
      kernelnet quantize artifacts/runs/sobel-single --uint8-input
    """
    from kernelnet.export.quantize import quantize_run

    r = quantize_run(run, calibration=calibration, method=method, samples=samples, uint8_input=uint8_input,
                     out=out, latency_runs=latency_runs)
    rep = r.report
    for note in rep["notes"]:
        click.echo(f"note: {note}", err=True)
    worst = min(rep["psnr_vs_fp32_db_per_image"].items(), key=lambda kv: kv[1])
    sizes = rep["size_bytes"]
    print_pairs([
        ("wrote", str(r.path)),
        ("report", str(r.report_path)),
        ("plot", str(r.plot_path)),
        ("quantization", f"QDQ, {rep['activations']} activations, {rep['weights']} weights"),
        ("calibration", f"{rep['calibration']} ({len(rep['calibration_images'])} train images, {rep['samples']} "
                        f"crops {rep['crop']}x{rep['crop']}, {rep['method']})"),
        ("psnr_vs_fp32_db", f"{fmt(rep['psnr_vs_fp32_db'])} on {len(rep['evaluation_images'])} "
                            f"{'held-out test' if rep['evaluation_held_out'] else 'NOT held-out'} photo(s); "
                            f"worst photo {worst[0]} {fmt(worst[1])}"),
        ("max_abs_error", rep["max_abs_error"]),
        ("size_bytes", f"fp32 {sizes['fp32']} -> int8 {sizes['int8']}"),
    ])
    latency = rep["latency_1080p_ms"]
    if latency is None:
        return
    click.echo()
    rows = [{"ort_level": level, "fp32_ms": latency[level]["fp32_ms"], "int8_ms": latency[level]["int8_ms"],
             "int8/fp32": latency[level]["int8_over_fp32"]} for level in ("basic", "all")]
    click.echo(f"onnxruntime CPU latency at {latency['shape']}, {latency['threads']} threads, "
               f"median of {latency['runs']}:")
    print_table(rows)
    ratio = rep["int8_over_fp32"]
    if rep["int8_slower_on_this_cpu"]:
        click.echo(f"int8 is SLOWER than fp32 on this CPU: best int8 {latency['best']['int8_ms']:.3g} ms vs best fp32 "
                   f"{latency['best']['fp32_ms']:.3g} ms ({ratio:.2f}x)")
    else:
        click.echo(f"int8 is faster than fp32 on this CPU: {1 / ratio:.2f}x (best of both levels)")
