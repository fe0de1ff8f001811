"""8-bit camera frames through ``load()``: the native stencil reading uint8 directly, against the same frame given as
float32, the old path (numpy converts the frame, then the stencil runs) and OpenCV ``filter2D`` on the uint8
frame (float32 output, same kernel scaled by 1/255, same border, same threads). One run, contenders interleaved
over rounds; p50 ms and ratio = OpenCV p50 / ours (> 1: faster than OpenCV).

    python benchmarks/uint8_frames.py [--rounds 5] [--reps 20]
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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import cv2

    from kernelnet.export.onnx_graph import build_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.inputs import to_dtype
    from kernelnet.runtime.spec import FilterSpec
    from kernelnet.runtime.spec_codec import encode_spec
    import onnx

    cv2.setNumThreads(args.threads)
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_kind in ("single", "double"):
            spec = FilterSpec.from_kind(sobel, model_kind)
            path = Path(tmp) / f"{model_kind}.onnx"
            onnx.save(build_graph(spec, metadata=encode_spec(spec)), str(path))
            net = load(path, threads=args.threads)
            assert net.runner.name == "native"
            kernels = [np.ascontiguousarray(k / 255.0, dtype=np.float32) for k in spec.kernels]
            for h, w in ((1080, 1920), (2160, 3840)):
                frame = (np.random.default_rng(0).random((h, w)) * 255).astype(np.uint8)
                as_float = to_dtype(frame, "float32")
                out = np.empty((h, w), np.float32)
                other = np.empty((h, w), np.float32)

                def opencv() -> None:
                    cv2.filter2D(frame, cv2.CV_32F, kernels[0], dst=out, borderType=cv2.BORDER_CONSTANT)
                    if len(kernels) == 2:
                        cv2.filter2D(frame, cv2.CV_32F, kernels[1], dst=other, borderType=cv2.BORDER_CONSTANT)
                        cv2.magnitude(out, other, magnitude=out)

                contenders = {"native uint8 frame": lambda: net(frame),
                              "native float32 frame": lambda: net(as_float),
                              "numpy convert + native": lambda: net(to_dtype(frame, "float32")),
                              "OpenCV filter2D uint8": opencv}
                times: dict[str, list[float]] = {name: [] for name in contenders}
                for fn in contenders.values():
                    fn()
                for _ in range(args.rounds):
                    for name, fn in contenders.items():
                        for _ in range(args.reps):
                            t0 = time.perf_counter()
                            fn()
                            times[name].append(time.perf_counter() - t0)
                cv_ms = statistics.median(times["OpenCV filter2D uint8"]) * 1e3
                for name, samples in times.items():
                    ms = statistics.median(samples) * 1e3
                    rows.append((model_kind, f"{h}x{w}", name, ms, cv_ms / ms))
    print(f"{'model':<8} {'size':<10} {'contender':<26} {'p50 ms':>8} {'vs OpenCV':>9}")
    for kind, size, name, ms, ratio in rows:
        print(f"{kind:<8} {size:<10} {name:<26} {ms:8.3f} {ratio:9.2f}")


if __name__ == "__main__":
    main()
