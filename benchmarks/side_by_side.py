"""The side-by-side speed benchmark: the native stencil through ``load()`` against OpenCV, Halide and
``scipy.ndimage``, one run, two threads, contenders interleaved over rounds; the README's performance section is
this script's output.

Sections (p50 ms; ratio = the best of OpenCV and Halide / ours, > 1: ours is faster):

1. copy floor — a two-thread copy of the frame into a preallocated buffer (numpy ``copyto``, i.e. glibc's
   memmove, on two row strips; a 1080p float32 frame stays in this CPU's cache between calls, where memmove's
   non-temporal stores are slower than plain ones);
2. kernel sweep — random k×k kernels, zeros border, single and double (magnitude), float32 / uint8 / uint16
   frames, 1080p and 4K. Native: ``net(frame, out=buffer)``, a preallocated output as every peer has. OpenCV ``filter2D`` into a preallocated float32 output (the kernel scaled by 1/255 or
   1/65535 for integer frames; double: two of them + ``cv2.magnitude``); Halide: a pipeline JIT-compiled for this
   CPU with explicit tap sums over constant coefficients (zero taps dropped), the magnitude fused in the same
   loop, parallel 16-row strips, 16-wide vectors, the integer frame cast and scaled in the pipeline,
   ``HL_NUM_THREADS``; ``scipy.ndimage.correlate`` (informational, not in the ratio) on two row strips with a k//2
   halo, each into a preallocated strip buffer whose core rows are copied out;
3. integer output — a learned 5×5 filter of 8-bit targets (the pairs issue's models: clip to [0, 255], round half
   to even, coefficients on a 1/256 grid) written as uint8 levels: the stencil's levels, the same model on
   onnxruntime (what ran before), OpenCV ``filter2D`` with a uint8 output (its own rounding) and Halide casting
   with saturation;
4. folder — ``benchmarks/folder_apply.py``: ``kernelnet apply`` on 600 gray 256² PNGs against a plain one-process
   OpenCV loop, whole-process wall.

5. exact fits — Sobel single and magnitude fitted by ``kernelnet train --solver exact`` (kernels with float noise
   where the filter has zeros, exported separable or split) against OpenCV ``filter2D`` of the true Sobel, and
   the folder run with such a model (``--exact-fit``); needs the [train] extra.
6. rank — ``benchmarks/rank_filters.py``: erosion, dilation and median 3×3 / 5×5 at 1080p (``--uhd``: and 4K) on
   8-bit frames to 8-bit levels and float32 frames, against OpenCV and ``scipy.ndimage``.

``--isa avx2`` (or ``baseline``) runs every contender as on a CPU without AVX-512: the stencil's AVX2 build
(``KERNELNET_STENCIL_ISA``), OpenCV with its AVX-512 dispatch disabled (``OPENCV_CPU_DISABLE``) and Halide
compiled for an AVX2 target. The header names the CPU and the stencil build.

    python benchmarks/side_by_side.py [--sizes 3,5,7,9,11,15] [--all-sizes] [--halide-max 15] [--rounds 3]
                                      [--reps 10] [--no-folder] [--isa avx2] [--sections sweep,exact]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

FULL_HD, UHD = (1080, 1920), (2160, 3840)
BAR = "bar"


def median_ms(contenders: dict[str, Callable[[], object]], rounds: int, reps: int) -> dict[str, float]:
    """p50 ms of each contender, interleaved: every round runs each contender ``reps`` times after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():
        fn()
    for _ in range(rounds):
        for name, fn in contenders.items():
            fn()
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


_POOL: list = []


def two_strips(work: Callable[[int, int], None], height: int) -> Callable[[], None]:
    """``work(row0, row1)`` on two threads — this one and a persistent worker — one half of the rows each."""
    from concurrent.futures import ThreadPoolExecutor

    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=1))
    half = height // 2

    def run() -> None:
        other = _POOL[0].submit(work, half, height)
        work(0, half)
        other.result()

    return run


def frame_of(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random frame of ``kind`` and the factor that maps it to [0, 1]."""
    unit = rng.random(shape, dtype=np.float32)
    if kind == "uint8":
        return (unit * 255).astype(np.uint8), 1 / 255
    if kind == "uint16":
        return (unit * 65535).astype(np.uint16), 1 / 65535
    return unit, 1.0


def halide_pipeline(hl, kernels: np.ndarray, frame: np.ndarray, out: np.ndarray, scale: float,
                    levels: bool = False) -> Callable[[], None]:
    """A JIT-compiled Halide pipeline for these kernels, realised into ``out`` (``levels``: uint8 out, rounded
    half to even and saturated)."""
    in_type = {np.dtype(np.uint8): hl.UInt(8), np.dtype(np.uint16): hl.UInt(16)}.get(frame.dtype, hl.Float(32))
    inp = hl.ImageParam(in_type, 2, "inp")
    x, y = hl.Var("x"), hl.Var("y")
    clamped = hl.BoundaryConditions.constant_exterior(inp, 0)
    src = hl.Func("src")
    src[x, y] = hl.cast(hl.Float(32), clamped[x, y]) * hl.f32(scale)
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
    elif levels:
        f[x, y] = hl.saturating_cast(hl.UInt(8), hl.round(response(kernels[0])))
    else:
        f[x, y] = response(kernels[0])
    yo, yi = hl.Var("yo"), hl.Var("yi")
    f.split(y, yo, yi, 16).parallel(yo).vectorize(x, 16)
    f.compile_jit(halide_target(hl))
    inp.set(hl.Buffer(frame))
    result = hl.Buffer(out)
    return lambda: f.realize(result)


HALIDE_TARGETS = {"avx2": "x86-64-linux-avx-avx2-f16c-fma-sse41", "baseline": "x86-64-linux"}


def halide_target(hl):
    """The JIT target: this CPU's, or the instruction set ``--isa`` names."""
    isa = os.environ.get("KERNELNET_STENCIL_ISA", "")
    return hl.Target(HALIDE_TARGETS[isa]) if isa in HALIDE_TARGETS else hl.get_jit_target_from_environment()


def scipy_contender(ndimage, kernels: list[np.ndarray], frame: np.ndarray, out: np.ndarray) -> Callable[[], None]:
    """scipy.ndimage.correlate on two row strips with a k//2 halo (scipy has no thread option)."""
    h, r = frame.shape[0], kernels[0].shape[0] // 2
    half = h // 2
    bounds = [(0, half), (half, h)]
    strips = {lo: (max(0, lo - r), min(h, hi + r)) for lo, hi in bounds}
    buffers = {lo: [np.empty((b - a, frame.shape[1]), np.float32) for _ in kernels] for lo, (a, b) in strips.items()}

    def work(lo: int, hi: int) -> None:
        a, b = strips[lo]
        bufs = buffers[lo]
        for kern, buf in zip(kernels, bufs):
            ndimage.correlate(frame[a:b], kern, output=buf, mode="constant", cval=0.0)
        core = slice(lo - a, lo - a + hi - lo)
        if len(bufs) == 2:
            np.hypot(bufs[0][core], bufs[1][core], out=out[lo:hi])
        else:
            out[lo:hi] = bufs[0][core]

    return two_strips(work, h)


def copy_floor(args: argparse.Namespace) -> None:
    print("\n## Copy floor (two threads, preallocated)\n")
    print("| frame | size | p50 ms |\n|---|---|---|")
    rng = np.random.default_rng(0)
    for kind in ("float32", "uint8"):
        for shape in (FULL_HD, UHD):
            frame, _ = frame_of(kind, shape, rng)
            dst = np.empty_like(frame)
            run = two_strips(lambda a, b: np.copyto(dst[a:b], frame[a:b]), shape[0])
            ms = median_ms({"copy": run}, args.rounds, args.reps)["copy"]
            print(f"| {kind} | {shape[0]}x{shape[1]} | {ms:.3f} |", flush=True)


def sweep(args: argparse.Namespace, hl, cv2, ndimage) -> float:
    """The kernel-size sweep; returns the worst ratio over the bar's cases."""
    from kernelnet.runtime import load
    from kernelnet.runtime.spec import FilterSpec
    from kernelnet.export.onnx_graph import write_graph

    print("\n## Kernel sweep (zeros border, random kernels; ratio = best of OpenCV and Halide / native)\n")
    print("| model | k | frame | size | native | OpenCV | Halide | scipy.ndimage | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    sizes = list(range(1, 32, 2)) if args.all_sizes else [int(v) for v in args.sizes.split(",")]
    worst, worst_case = float("inf"), ""
    with tempfile.TemporaryDirectory() as tmp:
        for model_kind in ("single", "double"):
            for k in sizes if model_kind == "single" else [k for k in sizes if k <= (31 if args.all_sizes else 5)]:
                spec = FilterSpec.from_kind(rng.uniform(-1, 1, (k, k)), model_kind)
                net = load(write_graph(Path(tmp) / f"{model_kind}{k}.onnx", spec), threads=args.threads)
                assert net.runner.name == "native", net.runner.name
                shapes = [FULL_HD] + ([UHD] if k <= 5 else [])
                for shape in shapes:
                    for kind in ("float32", "uint8", "uint16"):
                        frame, scale = frame_of(kind, shape, rng)
                        kernels = [np.ascontiguousarray(kk * scale, dtype=np.float32) for kk in spec.kernels]
                        out, other = np.empty(shape, np.float32), np.empty(shape, np.float32)

                        def opencv() -> None:
                            cv2.filter2D(frame, cv2.CV_32F, kernels[0], dst=out, borderType=cv2.BORDER_CONSTANT)
                            if len(kernels) == 2:
                                cv2.filter2D(frame, cv2.CV_32F, kernels[1], dst=other,
                                             borderType=cv2.BORDER_CONSTANT)
                                cv2.magnitude(out, other, magnitude=out)

                        mine = np.empty(shape, np.float32)  # a frame buffer, as the peers get
                        contenders = {"native": lambda: net(frame, out=mine), "opencv": opencv}
                        if hl is not None and k <= args.halide_max:
                            contenders["halide"] = halide_pipeline(hl, spec.kernels, frame, np.empty(shape, np.float32),
                                                                   scale)
                        if ndimage is not None and k <= 15:
                            contenders["scipy"] = scipy_contender(ndimage, [np.asarray(kk, np.float64) * scale
                                                                            for kk in spec.kernels], frame,
                                                                  np.empty(shape, np.float32))
                        med = median_ms(contenders, args.rounds, args.reps)
                        best = min(v for n, v in med.items() if n in ("opencv", "halide"))  # OpenCV alone above
                        # --halide-max
                        ratio = best / med["native"]
                        in_bar = kind != "uint16" and (
                            (model_kind == "single" and k in (3, 5, 7, 9, 11, 15) and (shape == FULL_HD or k <= 5))
                            or (model_kind == "double" and k in (3, 5)))
                        if in_bar and ratio < worst:
                            worst, worst_case = ratio, f"{model_kind} {k}x{k} {kind} {shape[0]}x{shape[1]}"
                        cells = [f"{med[n]:.3f}" if n in med else "" for n in ("native", "opencv", "halide", "scipy")]
                        print(f"| {model_kind} | {k} | {kind} | {shape[0]}x{shape[1]} | {' | '.join(cells)} | "
                              f"{ratio:.2f}×{'' if in_bar else ' (not in the bar)'} |", flush=True)
    print(f"\nworst ratio over the bar's cases: {worst:.2f} ({worst_case})")
    return worst


def integer_output(args: argparse.Namespace, hl, cv2) -> None:
    from kernelnet.runtime import load
    from kernelnet.runtime.spec import FilterSpec, OutputStage
    from kernelnet.export.onnx_graph import write_graph

    print("\n## Integer output: a 5x5 filter of 8-bit targets written as uint8 levels (uint8 frames)\n")
    print("| size | native levels | onnxruntime graph + cast | OpenCV filter2D (CV_8U) | Halide (saturating) | "
          "ratio |\n|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    taps = rng.integers(-40, 80, (5, 5)) / 256.0  # a fixed-point black box: coefficients on a 1/256 grid
    spec = FilterSpec(kernels=(taps * 255)[None], output=OutputStage(clip=(0.0, 255.0), rounding="half_even",
                                                                       bits=8, grid=256))
    with tempfile.TemporaryDirectory() as tmp:
        path = write_graph(Path(tmp) / "levels.onnx", spec)
        net = load(path, threads=args.threads)
        graph = load(path, backend="onnxruntime", threads=args.threads)
        assert net.runner.name == "native"
        kern = np.ascontiguousarray(taps, dtype=np.float32)
        for shape in (FULL_HD, UHD):
            frame, _ = frame_of("uint8", shape, rng)
            out8 = np.empty(shape, np.uint8)
            assert np.array_equal(net.levels(frame), graph.levels(frame))
            contenders = {"native": lambda: net.levels(frame), "onnxruntime": lambda: graph.levels(frame),
                          "opencv": lambda: cv2.filter2D(frame, cv2.CV_8U, kern, dst=out8,
                                                         borderType=cv2.BORDER_CONSTANT)}
            if hl is not None:
                contenders["halide"] = halide_pipeline(hl, taps[None] * 255, frame, np.empty(shape, np.uint8),
                                                       1 / 255, levels=True)
            med = median_ms(contenders, args.rounds, args.reps)
            best = min(v for n, v in med.items() if n in ("opencv", "halide"))
            print(f"| {shape[0]}x{shape[1]} | {med['native']:.3f} | {med['onnxruntime']:.3f} | {med['opencv']:.3f} | "
                  f"{med.get('halide', float('nan')):.3f} | {best / med['native']:.2f}× |", flush=True)


OPENCV_AVX512 = "AVX512_COMMON,AVX512_SKX,AVX512_KNL,AVX512_KNM,AVX512_CNL,AVX512_CLX,AVX512_ICL"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,5,7,9,11,15", help="kernel sizes of the sweep (double: those ≤ 5)")
    parser.add_argument("--all-sizes", action="store_true", help="every odd size 1..31, single and double")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--halide-max", type=int, default=15,
                        help="largest k given to Halide (its JIT takes 10-100 s per pipeline above 15x15)")
    parser.add_argument("--no-folder", action="store_true", help="skip the folder run")
    parser.add_argument("--isa", choices=["baseline", "avx2"], default=None,
                        help="run every contender as on a CPU without AVX-512 (see above)")
    parser.add_argument("--sections", default="copy,sweep,levels,exact,rank,folder",
                        help="which sections to run (comma list of copy, sweep, levels, exact, rank, folder)")
    parser.add_argument("--uhd", action="store_true", help="rank section: also 3840x2160")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    os.environ["HL_NUM_THREADS"] = str(args.threads)  # before Halide starts its thread pool
    if args.isa:  # before kernelnet and cv2 are imported: both read these on import
        os.environ["KERNELNET_STENCIL_ISA"] = args.isa
        os.environ["OPENCV_CPU_DISABLE"] = OPENCV_AVX512 + (",AVX2,FMA3,AVX,F16C,POPCNT,SSE4_2,SSE4_1,SSSE3,SSE3"
                                                            if args.isa == "baseline" else "")
    sys.path.insert(0, str(Path(__file__).parent))
    import cv2

    from kernelnet.runtime.backends import native_backend

    try:
        import halide as hl
    except ImportError:
        hl = None
        print("halide is not installed (pip install halide): its column stays empty")
    try:
        from scipy import ndimage
    except ImportError:
        ndimage = None
    cv2.setNumThreads(args.threads)
    print(f"# Side by side: {cpu_name()}, {args.threads} threads, {os.cpu_count()} CPUs, stencil build "
          f"{native_backend.ISA}, Halide target {halide_target(hl) if hl else '-'}, rounds {args.rounds} × reps "
          f"{args.reps}")
    if "copy" in sections:
        copy_floor(args)
    if "sweep" in sections:
        sweep(args, hl, cv2, ndimage)
    if "levels" in sections:
        integer_output(args, hl, cv2)
    if "exact" in sections:
        import exact_fits

        exact_fits.main(args, cv2, median_ms)
    if "rank" in sections:
        import rank_filters

        rank_filters.main(argparse.Namespace(**{**vars(args), "sizes": "3,5"}), cv2, ndimage, median_ms, two_strips)
    if "folder" in sections and not args.no_folder:
        import folder_apply

        for extra in ([], ["--exact-fit"]):
            print(f"\n## Folder{' (an exact-solver Sobel fit)' if extra else ''}\n")
            sys.argv = [sys.argv[0], "--threads", str(args.threads), *extra]
            folder_apply.main()


if __name__ == "__main__":
    main()
