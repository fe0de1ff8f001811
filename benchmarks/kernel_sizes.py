"""Kernel-size sweep: the native stencil through ``load()`` against OpenCV ``filter2D`` (same kernel, border, threads,
preallocated output; magnitude: two filter2D + ``cv2.magnitude``) and a Halide pipeline (``pip install halide``:
explicit tap sums with constant coefficients, zero taps dropped, the magnitude fused in the same loop, parallel
16-row strips, 16-wide vectors, JIT for this CPU, same threads, preallocated output), random k×k kernels, single
and double, float32 and uint8 frames. One run, contenders interleaved over rounds; p50 ms and ratio = the best
peer's p50 / ours (> 1: ours is faster).

    python benchmarks/kernel_sizes.py [--sizes 3,5,7,9,11,15] [--rounds 3] [--reps 10]
"""

from __future__ import annotations

import argparse
import os
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

    os.environ["HL_NUM_THREADS"] = str(args.threads)  # before Halide starts its thread pool
    import cv2
    import onnx

    try:
        import halide as hl
    except ImportError:
        hl = None

    from kernelnet.export.onnx_graph import build_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.spec import FilterSpec
    from kernelnet.runtime.spec_codec import encode_spec

    cv2.setNumThreads(args.threads)
    rng = np.random.default_rng(0)
    print(f"{'model':<7} {'k':>3} {'frame':<8} {'size':<10} {'native ms':>10} {'OpenCV ms':>10} {'Halide ms':>10} "
          f"{'ratio':>6}")
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
                        if hl is not None:
                            contenders["halide"] = halide_contender(hl, spec.kernels, frame, out)
                        times: dict[str, list[float]] = {name: [] for name in contenders}
                        for _ in range(args.rounds):
                            for name, fn in contenders.items():
                                fn()
                                for _ in range(args.reps):
                                    t0 = time.perf_counter()
                                    fn()
                                    times[name].append(time.perf_counter() - t0)
                        med = {n: statistics.median(t) * 1e3 for n, t in times.items()}
                        best = min(v for n, v in med.items() if n != "native")
                        print(f"{model_kind:<7} {k:>3} {frame_kind:<8} {h}x{w:<5} {med['native']:10.3f} "
                              f"{med['opencv']:10.3f} {med.get('halide', float('nan')):10.3f} "
                              f"{best / med['native']:6.2f}", flush=True)


def halide_contender(hl, kernels: np.ndarray, frame: np.ndarray, out: np.ndarray):
    """A JIT-compiled Halide pipeline for these kernels (uint8 frames read as v / 255), realised into ``out``."""
    inp = hl.ImageParam(hl.UInt(8) if frame.dtype == np.uint8 else hl.Float(32), 2, "inp")
    x, y = hl.Var("x"), hl.Var("y")
    clamped = hl.BoundaryConditions.constant_exterior(inp, 0)
    src = hl.Func("src")
    src[x, y] = hl.cast(hl.Float(32), clamped[x, y]) * hl.f32(1.0 / 255.0 if frame.dtype == np.uint8 else 1.0)
    k = kernels.shape[-1]
    r = k // 2

    def response(kern: np.ndarray):
        e = hl.f32(0)
        for i in range(k):
            for j in range(k):
                if kern[i, j] != 0:
                    e = e + hl.f32(float(kern[i, j])) * src[x + j - r, y + i - r]
        return e

    f = hl.Func("f")
    if len(kernels) == 2:
        a, b = response(kernels[0]), response(kernels[1])
        f[x, y] = hl.sqrt(a * a + b * b)
    else:
        f[x, y] = response(kernels[0])
    yo, yi = hl.Var("yo"), hl.Var("yi")
    f.split(y, yo, yi, 16).parallel(yo).vectorize(x, 16)
    f.compile_jit(hl.get_jit_target_from_environment())
    inp.set(hl.Buffer(frame))
    result = hl.Buffer(out)
    return lambda: f.realize(result)


if __name__ == "__main__":
    main()
