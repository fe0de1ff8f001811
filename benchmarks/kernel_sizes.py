"""Kernel-size sweep: the native stencil through ``load()`` against OpenCV ``filter2D`` (same kernel, border, threads,
preallocated output), random k×k kernels, single and double (magnitude: two filter2D + ``cv2.magnitude``),
float32 and uint8 frames. One run, contenders interleaved over rounds; p50 ms and ratio = OpenCV p50 / ours.

    python benchmarks/kernel_sizes.py [--sizes 3,5,7,9,11,15] [--rounds 3] [--reps 10]

Halide is not a contender here yet (see the README's performance notes).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,5,7,9,11,15")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import cv2
    import onnx

    from kernelnet.export.onnx_graph import build_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.spec import FilterSpec
    from kernelnet.runtime.spec_codec import encode_spec

    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{'model':<7} {'k':>3} {'frame':<8} {'size':<10} {'native ms':>10} {'OpenCV ms':>10} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for model_kind in ("single", "double"):
            for k in (int(v) for v in args.sizes.split(",")):
                spec = FilterSpec.from_kind(rng.uniform(-1, 1, (k, k)), model_kind)
                path = Path(tmp) / f"{model_kind}{k}.onnx"
                onnx.save(build_graph(spec, form="conv", metadata=encode_spec(spec)), str(path))
                net = load(path, threads=args.threads)
                assert net.runner.name == "native", net.runner.name
                sizes = [(1080, 1920)] + ([(2160, 3840)] if k <= 5 else [])
                for h, w in sizes:
                    for frame_kind in ("float32", "uint8"):
                        frame = rng.random((h, w), dtype=np.float32)
                        scale = 1.0
                        if frame_kind == "uint8":
                            frame, scale = (frame * 255).astype(np.uint8), 1.0 / 255.0
                        kernels = [np.ascontiguousarray(kk * scale, dtype=np.float32) for kk in spec.kernels]
                        out, other = np.empty((h, w), np.float32), np.empty((h, w), np.float32)

                        def opencv() -> None:
                            cv2.filter2D(frame, cv2.CV_32F, kernels[0], dst=out, borderType=cv2.BORDER_CONSTANT)
                            if len(kernels) == 2:
                                cv2.filter2D(frame, cv2.CV_32F, kernels[1], dst=other,
                                             borderType=cv2.BORDER_CONSTANT)
                                cv2.magnitude(out, other, magnitude=out)

                        contenders = {"native": lambda: net(frame), "opencv": opencv}
                        times: dict[str, list[float]] = {name: [] for name in contenders}
                        for _ in range(args.rounds):
                            for name, fn in contenders.items():
                                fn()
                                for _ in range(args.reps):
                                    t0 = time.perf_counter()
                                    fn()
                                    times[name].append(time.perf_counter() - t0)
                        ours, cv = (statistics.median(times[n]) * 1e3 for n in ("native", "opencv"))
                        print(f"{model_kind:<7} {k:>3} {frame_kind:<8} {h}x{w:<5} {ours:10.3f} {cv:10.3f} "
                              f"{cv / ours:6.2f}", flush=True)


if __name__ == "__main__":
    main()
