"""Chains of rounded passes side by side: Pillow's own ``BoxBlur(r)`` (two 1-D box passes, each written to 8 bits)
against the same program exported by kernelnet, on 8-bit frames at 1080p (and 4K), written as 8-bit levels.

Contenders: Pillow (``Image.filter(ImageFilter.BoxBlur(r))``: its C code, one thread — it has no thread option),
the native stencil running the chain pass by pass (``load(path).levels``), the same graph on onnxruntime, and — a
speed peer only, since it rounds once and so writes other levels — OpenCV's ``cv2.blur`` into a preallocated
output; 2 threads where the library takes them. Every kernelnet output is checked equal to Pillow's first.
ratio = Pillow / native (> 1: native is faster). Run::

    python benchmarks/chains.py [--rounds 5] [--radii 1,2,4] [--uhd]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

FULL_HD, UHD = (1080, 1920), (2160, 3840)


def box_chain(radius: int) -> Any:
    """Pillow's BoxBlur(radius) as kernelnet's program: 1×k box → 8-bit (half up) → k×1 box → 8-bit."""
    from kernelnet.runtime.spec import FilterSpec, InputEncoding, OutputStage

    k = 2 * radius + 1
    stage = OutputStage(clip=(0.0, 255.0), rounding="half_up", bits=8, grid=k)
    row, col = np.zeros((1, k, k)), np.zeros((1, k, k))
    row[0, radius], col[0, :, radius] = 255.0 / k, 1.0 / k
    second = FilterSpec(col, None, "raw", "replicate", output=stage)
    return FilterSpec(row, None, "raw", "replicate", input=InputEncoding.for_dtype("uint8"), output=stage,
                      after=(second,))


def main(args: argparse.Namespace, cv2: Any, median_ms: Callable) -> float:
    """Print the table; return the worst 1080p ratio."""
    from PIL import Image, ImageFilter

    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    print("\n## Rounded chains: Pillow BoxBlur(r) (ratio = Pillow / native; OpenCV blur rounds once: speed only)\n")
    print("| program | size | native | onnxruntime | Pillow | OpenCV blur | ratio |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    worst = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        for radius in [int(v) for v in args.radii.split(",")]:
            path = write_graph(Path(tmp) / f"box{radius}.onnx", box_chain(radius))
            net, graph = load(path, threads=args.threads), load(path, backend="onnxruntime", threads=args.threads)
            assert net.runner.name == "native", net.runner.name
            k = 2 * radius + 1
            for shape in [FULL_HD] + ([UHD] if args.uhd else []):
                frame = rng.integers(0, 256, shape, dtype=np.uint8)
                image = Image.fromarray(frame)
                want = np.asarray(image.filter(ImageFilter.BoxBlur(radius)))
                assert np.array_equal(net.levels(frame), want) and np.array_equal(graph.levels(frame), want)
                out = np.empty(shape, np.uint8)
                med = median_ms({"native": lambda: net.levels(frame), "onnxruntime": lambda: graph.levels(frame),
                                 "pillow": lambda: image.filter(ImageFilter.BoxBlur(radius)),
                                 "opencv": lambda: cv2.blur(frame, (k, k), dst=out,
                                                            borderType=cv2.BORDER_REPLICATE)},
                                args.rounds, args.reps)
                ratio = med["pillow"] / med["native"]
                if shape == FULL_HD:
                    worst = min(worst, ratio)
                cells = " | ".join(f"{med[n]:.3f}" for n in ("native", "onnxruntime", "pillow", "opencv"))
                print(f"| BoxBlur({radius}) | {shape[0]}x{shape[1]} | {cells} | {ratio:.2f}× |", flush=True)
    print(f"\nworst 1080p ratio: {worst:.2f}")
    return worst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--radii", default="1,2,4")
    parser.add_argument("--uhd", action="store_true", help="also 3840x2160")
    cli = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import cv2

    from side_by_side import cpu_name, median_ms

    cv2.setNumThreads(cli.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(cli.threads))
    print(f"# Rounded chains: {cpu_name()}, {cli.threads} threads")
    main(cli, cv2, median_ms)
