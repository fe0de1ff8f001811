"""``kernelnet bench``: p50/p90/p99 latency and megapixels/s per size and backend, beside OpenCV and PyTorch."""

from __future__ import annotations

import importlib.util
import json

import click

from kernelnet.runtime.errors import KernelnetError


@click.command()
@click.argument("model", type=click.Path())
@click.option("--sizes", default="256x256,1080x1920,2160x3840", show_default=True, help="HxW list.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=2, show_default=True,
              help="Threads for every contender (onnxruntime intra-op, OpenCV, PyTorch).")
@click.option("--run", type=click.Path(file_okay=False), default=None,
              help="Time PyTorch eager on this run's checkpoint [default: rebuilt from the model's metadata].")
@click.option("--torch/--no-torch", "use_torch", default=True, show_default=True,
              help="Include PyTorch eager (when torch is installed).")
@click.option("--opencv/--no-opencv", "use_opencv", default=True, show_default=True,
              help="Include OpenCV filter2D (when cv2 is installed).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--reps", type=click.IntRange(min=1), default=10, show_default=True, help="Minimum timed calls.")
@click.option("--min-time", type=float, default=1.0, show_default=True, help="Minimum seconds timed per cell.")
@click.option("--tile", default=None, help="Tiling for the model backends: auto (default / tune file), off, N or RxC.")
@click.option("--autotune", is_flag=True, help="Run 'kernelnet tune' first (stores the choice beside the model).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None, help="Write the timings.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="Write a PNG chart.")
def bench(model: str, sizes: str, batch: int, threads: int, run: str | None, use_torch: bool, use_opencv: bool,
          warmup: int, reps: int, min_time: float, tile: str | None, autotune: bool, json_path: str | None,
          plot_path: str | None) -> None:
    """Time MODEL's backends (onnxruntime fp32, int8 and TensorRT when present) through the public load() path,
    side by side with OpenCV filter2D (two filter2D + magnitude for the double model) and PyTorch eager.

    \b
    vs_opencv = OpenCV p50 / p50 (> 1: faster than OpenCV); max_abs_diff = largest difference from the first
    contender's output (the comparison is like for like).
    Examples:
      kernelnet bench artifacts/runs/sobel-single --json bench.json --plot bench.png
      kernelnet bench model.onnx --autotune --sizes 1080x1920,2160x3840
    """
    from kernelnet.cli.common import parse_tile
    from kernelnet.cli.common import print_table
    from kernelnet.runtime.io.atomic import check_output_file
    from kernelnet.runtime.backends import chosen_backend, discover
    from kernelnet.runtime.bench import bench_document, open_contenders, plot_timings, run_bench
    from kernelnet.runtime.sizes import parse_sizes

    size_list = parse_sizes(sizes)
    tile_arg = parse_tile(tile)
    reads = (*(a.path for a in discover(model)), run)  # the model's files (a report may go in its run folder)
    for path, what in ((json_path, "--json"), (plot_path, "--plot")):
        if path is not None:
            check_output_file(path, reads, what)
    if autotune:
        from kernelnet.cli.tune_cmd import report_tune
        from kernelnet.runtime.backends.autotune import autotune as run_autotune, candidates

        report_tune(run_autotune(discover(model)[0].path, candidates(threads=(threads,)),
                                 sizes=tuple(s for s in size_list if s[0] * s[1] >= 1 << 20) or size_list[-1:]))
        click.echo()
    contenders, skipped, nets = open_contenders(model, threads, tile_arg, use_opencv)
    backend, declined = chosen_backend(model)
    click.echo(f"load() runs this model on {backend}" + (f" (native declined: {declined})" if declined else ""))
    if use_torch:
        if importlib.util.find_spec("torch") is None:
            skipped.append("pytorch: torch not installed")
        else:
            from kernelnet.learn.torch_runner import pytorch_contender

            try:
                contenders.append(pytorch_contender(run, nets[0].info, threads))
            except KernelnetError as exc:  # e.g. an output stage or uint8 input: not a like-for-like contender
                skipped.append(f"pytorch: {exc}")
    timings = run_bench(contenders, size_list, batch, nets[0].input_dtype, warmup, reps, min_time)
    print_table([t.to_dict() for t in timings], ["size", "contender", "p50_ms", "p90_ms", "p99_ms", "mpix_per_s",
                                                 "vs_opencv", "reps", "max_abs_diff", "settings"])
    for line in skipped:
        click.echo(f"skipped {line}")
    if json_path is not None:
        from kernelnet.runtime.io.atomic import write_text

        doc = bench_document(nets[0].runner.path or model, threads, batch, timings, skipped)
        write_text(json_path, json.dumps(doc, indent=2) + "\n")
    if plot_path is not None and not plot_timings(timings, plot_path):
        raise KernelnetError("--plot needs matplotlib (pip install matplotlib)")
