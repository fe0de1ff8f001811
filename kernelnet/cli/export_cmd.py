"""``kernelnet export``."""

from __future__ import annotations

import click

from kernelnet.cli.common import print_pairs, print_table


@click.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: RUN/model.onnx or RUN/model.engine].")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--simplify/--no-simplify", default=False, show_default=True,
              help="Run onnxsim over the graph. The graph is already built minimal from the filter spec; onnxsim's "
                   "fusions fold an output stage's scale into the kernel, which moves float32 rounding at ties, and "
                   "the native stencil then no longer stands in for the graph.")
@click.option("--static", default=None, metavar="HxW", help="Fixed input shape instead of dynamic N, H, W.")
@click.option("--input-dtype", type=click.Choice(["float32", "uint8"]), default="float32", show_default=True,
              help="uint8 bakes the /255 scaling into the graph (raw camera frames in).")
@click.option("--form", type=click.Choice(["auto", "conv", "separable"]), default="auto", show_default=True,
              help="Graph form: separable = k×1 then 1×k Conv for rank-1 kernels (2k taps instead of k²: faster "
                   "on CPU from 5×5 on, the same at 3×3); auto picks it "
                   "when the kernel is rank 1 to float32 precision.")
@click.option("--fp16", is_flag=True, help="Half-precision weights and compute (float32 in/out).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="TensorRT precision [default: fp32, or fp16 with --fp16]; int8 uses RUN/model.int8.onnx.")
@click.option("--min-shape", default="1x1", show_default=True, help="TensorRT profile minimum (HxW or NxHxW).")
@click.option("--opt-shape", default="1080x1920", show_default=True, help="TensorRT profile optimum.")
@click.option("--max-shape", default="4096x4096", show_default=True, help="TensorRT profile maximum.")
def export(run: str, fmt: str, out: str | None, opset: int, simplify: bool, static: str | None, input_dtype: str,
           form: str, fp16: bool, precision: str | None, min_shape: str, opt_shape: str, max_shape: str) -> None:
    """Export a trained run to dynamic-shape ONNX (default) or a TensorRT engine.

    \b
    ONNX export builds the graph from the run's filter spec, checks it (onnx.checker, full) and verifies
    onnxruntime against PyTorch on several shapes, within the float32 rounding bound of the filter, before it
    writes RUN/model.onnx; a mismatch exits 1 and leaves no file.
    Examples:
      kernelnet export artifacts/runs/sobel-single
      kernelnet export artifacts/runs/sobel-single --input-dtype uint8 --out sobel_u8.onnx
      kernelnet export artifacts/runs/sobel-single --format tensorrt --precision fp16
    """
    from kernelnet.export.shapes import parse_shape

    if fmt == "onnx":
        from kernelnet.export.onnx_export import export_onnx

        result = export_onnx(run, out, opset=opset, simplify=simplify, input_dtype=input_dtype, fp16=fp16, form=form,
                             static=parse_shape(static, "--static") if static else None)
        print_table(result.checks, ["shape", "max_abs_error", "allowed", "ok"])
        click.echo()
        print_pairs([("wrote", str(result.path)), ("size_bytes", result.size_bytes), ("opset", result.opset),
                     ("simplified", result.simplified), ("graph form", result.metadata.get("kernelnet.graph_form"))])
        return
    from kernelnet.export.tensorrt_export import export_tensorrt

    engine = export_tensorrt(run, out, precision=precision or ("fp16" if fp16 else "fp32"),
                             min_shape=parse_shape(min_shape, "--min-shape"),
                             opt_shape=parse_shape(opt_shape, "--opt-shape"),
                             max_shape=parse_shape(max_shape, "--max-shape"))
    print_pairs([("wrote", str(engine.path)), ("size_bytes", engine.size_bytes), ("precision", engine.precision),
                 ("profile", " / ".join("x".join(map(str, s)) for s in engine.profile))])
