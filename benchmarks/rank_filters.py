"""Rank filters side by side: erosion, dilation and median over 3×3 and 5×5 squares at 1080p (and 4K), on 8-bit
frames written as 8-bit levels (what a pairs-identified erosion of 8-bit targets deploys) and on float32 frames.

Contenders, 2 threads each, outputs preallocated where the API allows: the native stencil (``load(path)``), the same
model on onnxruntime (its exported graph: MaxPool, or a Min/Max selection network for the median), OpenCV
(``erode`` / ``dilate`` / ``medianBlur``, replicated border) and ``scipy.ndimage`` (``grey_erosion`` /
``grey_dilation`` / ``median_filter`` on two row strips with a k//2 halo, in two threads: scipy has no thread
option). ratio = the best of OpenCV and SciPy / native (> 1: native is faster). Run on its own::

    python benchmarks/rank_filters.py [--rounds 5] [--sizes 3,5] [--uhd]

or as the ``rank`` section of ``benchmarks/side_by_side.py``.
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
SCIPY = {"min": "grey_erosion", "max": "grey_dilation", "median": "median_filter"}


def scipy_rank(ndimage: Any, op: str, k: int, frame: np.ndarray, out: np.ndarray,
               two_strips: Callable) -> Callable[[], None]:
    """scipy.ndimage's rank filter on two row strips (mode nearest = the replicated border)."""
    h, r, fn = frame.shape[0], k // 2, getattr(ndimage, SCIPY[op])
    strips = {lo: (max(0, lo - r), min(h, hi + r)) for lo, hi in ((0, h // 2), (h // 2, h))}
    buffers = {lo: np.empty((b - a, frame.shape[1]), frame.dtype) for lo, (a, b) in strips.items()}

    def work(lo: int, hi: int) -> None:
        a, b = strips[lo]
        fn(frame[a:b], size=(k, k), output=buffers[lo], mode="nearest")
        out[lo:hi] = buffers[lo][lo - a:lo - a + hi - lo]

    return two_strips(work, h)


def main(args: argparse.Namespace, cv2: Any, ndimage: Any, median_ms: Callable, two_strips: Callable) -> float:
    """Print the table; return the worst ratio over 1080p cases."""
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.spec import FilterSpec, InputEncoding, OutputStage

    print("\n## Rank filters (square footprint, replicated border; ratio = best of OpenCV and SciPy / native)\n")
    print("| filter | k | frame → output | size | native | onnxruntime | OpenCV | scipy.ndimage | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    worst = float("inf")
    levels = OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8)
    with tempfile.TemporaryDirectory() as tmp:
        for op in ("min", "max", "median"):
            for k in [int(v) for v in args.sizes.split(",")]:
                for kind in ("uint8", "float32"):
                    spec = FilterSpec.rank_filter(op, k, "square", "replicate", input=InputEncoding.for_dtype(kind),
                                                  output=levels if kind == "uint8" else OutputStage())
                    path = write_graph(Path(tmp) / f"{op}{k}{kind}.onnx", spec)
                    net, graph = load(path, threads=args.threads), load(path, backend="onnxruntime",
                                                                        threads=args.threads)
                    assert net.runner.name == "native", net.runner.name
                    element = np.ones((k, k), np.uint8)
                    for shape in [FULL_HD] + ([UHD] if args.uhd else []):
                        frame = rng.integers(0, 256, shape, dtype=np.uint8)
                        if kind == "float32":
                            frame = frame.astype(np.float32) / 255
                        out = np.empty(shape, frame.dtype)
                        mine = np.empty(shape, np.float32)

                        def opencv() -> None:
                            if op == "median":
                                cv2.medianBlur(frame, k, dst=out)
                            else:
                                (cv2.erode if op == "min" else cv2.dilate)(frame, element, dst=out,
                                                                          borderType=cv2.BORDER_REPLICATE)

                        run = (lambda: net.levels(frame)) if kind == "uint8" else (lambda: net(frame, out=mine))
                        other = (lambda: graph.levels(frame)) if kind == "uint8" else (lambda: graph(frame))
                        if kind == "uint8":
                            opencv()
                            assert np.array_equal(net.levels(frame), out), (op, k)
                        contenders = {"native": run, "onnxruntime": other, "opencv": opencv}
                        if ndimage is not None:
                            contenders["scipy"] = scipy_rank(ndimage, op, k, frame, np.empty(shape, frame.dtype),
                                                             two_strips)
                        med = median_ms(contenders, args.rounds, args.reps)
                        best = min(v for n, v in med.items() if n in ("opencv", "scipy"))
                        ratio = best / med["native"]
                        if shape == FULL_HD:
                            worst = min(worst, ratio)
                        cells = " | ".join(f"{med[n]:.3f}" if n in med else "" for n in
                                           ("native", "onnxruntime", "opencv", "scipy"))
                        name = {"min": "erode", "max": "dilate", "median": "median"}[op]
                        io = "uint8 → uint8" if kind == "uint8" else "float32 → float32"
                        print(f"| {name} | {k} | {io} | {shape[0]}x{shape[1]} | {cells} | {ratio:.2f}× |",
                              flush=True)
    print(f"\nworst 1080p ratio: {worst:.2f}")
    return worst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="3,5")
    parser.add_argument("--uhd", action="store_true", help="also 3840x2160")
    cli = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    import cv2
    from scipy import ndimage

    from side_by_side import cpu_name, median_ms, two_strips

    cv2.setNumThreads(cli.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(cli.threads))
    print(f"# Rank filters: {cpu_name()}, {cli.threads} threads")
    main(cli, cv2, ndimage, median_ms, two_strips)
