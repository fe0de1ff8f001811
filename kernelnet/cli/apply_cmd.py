"""``kernelnet apply``: run an exported filter on image files or ``.npy`` arrays (torch-free)."""

from __future__ import annotations

from pathlib import Path

import click

from kernelnet.cli.common import parse_tile


@click.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(), help="Output file (one input) or folder.")
@click.option("--format", "fmt", type=click.Choice(["png", "tiff", "npy"]), default=None,
              help="Output format in a folder [default: npy for .npy inputs, png for images].")
@click.option("--bits", type=click.Choice(["8", "16"]), default=None,
              help="PNG bit depth [default: 8; a model trained on pairs writes its targets' own encoding].")
@click.option("--scale", default=None,
              help="PNG value mapping: auto (y/max, or 0.5 + y/(2 max|y|) when signed) or a factor [default: auto; "
                   "a model trained on pairs writes its values as they are].")
@click.option("--backend", default="auto", show_default=True,
              type=click.Choice(["auto", "native", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt"]))
@click.option("--threads", type=click.IntRange(min=1, max=1024), default=None,
              help="Cores to use [default: all]: one image is split over them; the files of a folder run on as many "
                   "worker processes (native stencil) or threads (onnxruntime).")
@click.option("--tile", default=None, help="auto (default: tile above the memory budget), off, N or RxC.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Decoded-pixel budget per image [default: 100000000, or KERNELNET_MAX_PIXELS].")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def apply(model: str, inputs: tuple[str, ...], out: str, fmt: str | None, bits: str | None, scale: str | None,
          backend: str,
          threads: int | None, tile: str | None, max_pixels: int | None, quiet: bool) -> None:
    """Filter images or .npy arrays with MODEL (.onnx/.engine file or run directory).

    \b
    INPUT may be image files (any format the data pipeline reads: PNG, JPEG, TIFF, ...), .npy arrays (HxW,
    NxHxW or Nx1xHxW, float32 in [0, 1] or uint8), folders (recursive) or globs. Outputs: PNG (8/16-bit, the
    value mapping is printed), TIFF or .npy (float32, exact). Large inputs are tiled with a k//2 halo (identical
    result); .npy to .npy streams between memory maps, so a 12000x12000 image needs well under 2 GB.
    Folders are decoded, filtered and encoded file by file on every core (at most one image per core in memory).
    Nothing is written unless every input succeeds.
    Examples:
      kernelnet apply artifacts/runs/sobel-single photo.png --out edges.png --bits 16
      kernelnet apply model.onnx 'frames/*.png' --out edges/ --format tiff
      kernelnet apply model.onnx huge.npy --out huge_edges.npy
    """
    from kernelnet.runtime import load
    from kernelnet.runtime.apply import expand_inputs, plan_jobs, run_all, staged_outputs, target_encoding

    import os

    import numpy as np

    from kernelnet.runtime.apply_jobs import png_mapping

    if max_pixels is not None:
        os.environ["KERNELNET_MAX_PIXELS"] = str(max_pixels)
    if scale not in (None, "auto"):
        png_mapping(np.zeros(1, np.float32), scale)  # a bad --scale is refused before any work
    net = load(model, backend=backend, threads=threads, tile=parse_tile(tile))
    encoding = target_encoding(net)
    jobs = plan_jobs(expand_inputs(inputs), Path(out), fmt, encoding["format"] if encoding else None)
    with staged_outputs(jobs) as staging:
        lines = run_all(net, jobs, int(bits) if bits else None, scale, workers=threads, staging=staging)
    if not quiet:
        for job, text in lines:
            click.echo(f"{job.source} -> {job.target}  [{text}]")
        if len(jobs) > 1:
            click.echo(f"wrote {len(jobs)} files to {out}")
