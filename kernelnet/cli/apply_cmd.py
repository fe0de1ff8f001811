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
                   "worker processes (native stencil) or threads (onnxruntime). With --engine ray: the number of "
                   "Ray workers [default: the cluster's free CPUs], and a new local cluster's CPUs.")
@click.option("--tile", default=None,
              help="auto (default: tile above the memory budget), off, N or RxC (local engine only).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Decoded-pixel budget per image [default: 100000000, or KERNELNET_MAX_PIXELS].")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this machine, all or nothing. ray: a Ray cluster, file by file, resumable from the run's "
                   "manifest (needs kernelnet[ray]); INPUT and --out may also be file system URLs (s3://...).")
@click.option("--address", default=None,
              help="Ray cluster to use with --engine ray [default: RAY_ADDRESS, else a new local one on --threads "
                   "CPUs].")
@click.option("--manifest", type=click.Path(), default=None,
              help="With --engine ray: the run's record of finished files [default: OUT/.kernelnet-manifest.jsonl; "
                   "for a URL output, kernelnet-manifest-<hash>.jsonl here].")
@click.option("--fail-fast", is_flag=True,
              help="With --engine ray: stop at the first file that cannot be filtered — files are then handed out "
                   "one at a time, and none is started once a failure is back (other workers finish the file they "
                   "hold) [default: list such files and go on].")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")
def apply(model: str, inputs: tuple[str, ...], out: str, fmt: str | None, bits: str | None, scale: str | None,
          backend: str,
          threads: int | None, tile: str | None, max_pixels: int | None, engine: str, address: str | None,
          manifest: str | None, fail_fast: bool, quiet: bool) -> int:
    """Filter images or .npy arrays with MODEL (.onnx/.engine file or run directory).

    \b
    INPUT may be image files (any format the data pipeline reads: PNG, JPEG, TIFF, ...), .npy arrays (HxW,
    NxHxW or Nx1xHxW, float32 in [0, 1] or uint8), folders (recursive) or globs. Outputs: PNG (8/16-bit, the
    value mapping is printed), TIFF or .npy (float32, exact). Large inputs are tiled with a k//2 halo (identical
    result); .npy to .npy streams between memory maps, so a 12000x12000 image needs well under 2 GB.
    Folders are decoded, filtered and encoded file by file on every core (at most one image per core in memory).
    Nothing is written unless every input succeeds (local engine).

    \b
    --engine ray runs the files on a Ray cluster's workers, one loaded model per worker (the same bytes as a
    local run), and places each output whole as it is done: a run that dies keeps its finished files, and the
    same command again does only what its manifest does not list. Files that cannot be filtered are listed
    in the summary (exit 2 at the end) unless --fail-fast stops at the first.

    \b
    Examples:
      kernelnet apply artifacts/runs/sobel-single photo.png --out edges.png --bits 16
      kernelnet apply model.onnx 'frames/*.png' --out edges/ --format tiff
      kernelnet apply model.onnx huge.npy --out huge_edges.npy
      kernelnet apply model.onnx s3://bucket/photos/ --out s3://bucket/edges/ --engine ray --address HOST:6379
    """
    import os

    import numpy as np

    from kernelnet.runtime.apply_jobs import png_mapping

    if scale not in (None, "auto"):
        png_mapping(np.zeros(1, np.float32), scale)  # a bad --scale is refused before any work
    if engine == "ray":
        return _apply_on_ray(model, inputs, out, fmt, bits, scale, backend, threads, tile, max_pixels, address,
                             manifest, fail_fast, quiet)
    if address or manifest or fail_fast:
        raise click.UsageError("--address, --manifest and --fail-fast go with --engine ray")
    from kernelnet.runtime import load
    from kernelnet.runtime.apply import expand_inputs, plan_jobs, run_all, staged_outputs, target_encoding

    if max_pixels is not None:
        os.environ["KERNELNET_MAX_PIXELS"] = str(max_pixels)
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
    return 0


def _apply_on_ray(model: str, inputs: tuple[str, ...], out: str, fmt: str | None, bits: str | None,
                  scale: str | None, backend: str, threads: int | None, tile: str | None, max_pixels: int | None,
                  address: str | None, manifest: str | None, fail_fast: bool, quiet: bool) -> int:
    """``--engine ray``: the summary printed, exit 2 when a file failed."""
    from kernelnet.runtime.cluster.ray_apply import apply_on_ray

    if tile not in (None, "auto"):
        raise click.UsageError("--tile is not taken with --engine ray (each worker tiles as the local apply does)")
    try:
        summary = apply_on_ray(model, inputs, out, fmt, int(bits) if bits else None, scale, backend=backend,
                               address=address, workers=threads, manifest=manifest,
                               fail_fast=fail_fast, max_pixels=max_pixels)
    except BaseException as exc:
        cause: BaseException | None = exc
        while cause is not None and type(cause).__name__ != "Interrupted":  # Ray may wrap it
            cause = cause.__cause__ or cause.__context__
        done = getattr(exc, "kernelnet_summary", None)
        if cause is not None and done is not None:  # the finished files are kept: say how many, and how to go on
            cause.kernelnet_note = (  # type: ignore[attr-defined]
                f"{done.written} files written and recorded in {done.manifest} (the same command does the rest)"
                if done.written else "nothing was written")
        raise
    lines = summary.lines()
    for line in lines if not quiet else lines[1:-1]:
        click.echo(line, err=line.startswith(("failed:", "stopped")))
    return 2 if summary.failed else 0
