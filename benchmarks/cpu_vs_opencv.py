"""CPU inference vs OpenCV, side by side: the public path load(model.onnx) and the onnxruntime levers that lost.

Issue "CPU inference at least as fast as OpenCV". For exact Sobel single and double (magnitude) models exported by kernelnet, at 1080p and 4K, float32, 2 threads,
one process: memcpy floor, OpenCV (`filter2D`; two `filter2D` + `magnitude` for double), the public path
`kernelnet.runtime.load(model.onnx)` (backend auto = the native C stencil, checked against the graph on load),
and what lost: onnxruntime at ORT_ENABLE_BASIC (graph form auto = separable k×1 + 1×k Convs for the rank-1 single
model, two 1-output Convs + Sqrt(a²+b²) for double), the same at onnxruntime's default level (ORT_ENABLE_ALL), the
one-3×3-Conv graph form, I/O binding into a preallocated output (no wrapper), and a lower bound for a MatMul
formulation (image rows as 16-pixel blocks times a 16×16 banded matrix: only the in-block part of the horizontal
pass, so a full filter built that way can only be slower). Contenders are timed in interleaved rounds. Prints
p50 ms, the throughput ratio vs OpenCV (> 1 = faster than OpenCV) and the time over the memcpy floor.

    python benchmarks/cpu_vs_opencv.py [--sizes 1080x1920,2160x3840] [--min-time 1.0] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from kernelnet.config import RunConfig
from kernelnet.runtime import load
from kernelnet.runtime.bench import opencv_contender, time_calls
from kernelnet.runtime.backends.session import SessionConfig

THREADS = 2


def exact_model(root: Path, model: str, form: str = "auto") -> Path:
    """Exact Sobel run exported in graph ``form`` (auto: separable for single, split convs for double)."""
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.learn.training import train

    run = root / model
    if not (run / "model.safetensors").exists():
        train(RunConfig(filter="sobel", model=model, solver="exact"), run, progress=False, plots=False)
    return export_onnx(run, run / f"{form}.onnx", form=form).path


def iobinding_fn(path: Path, shape: tuple[int, ...]):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), SessionConfig(intra_op_threads=THREADS).to_session_options(),
                                   providers=["CPUExecutionProvider"])
    out = np.empty(shape, np.float32)
    binding = session.io_binding()
    binding.bind_output("output", "cpu", 0, np.float32, list(shape), out.ctypes.data)

    def run(x: np.ndarray) -> np.ndarray:
        binding.bind_cpu_input("input", x)
        session.run_with_iobinding(binding)
        return out

    return run


def matmul_block_floor(shape: tuple[int, ...], block: int = 16):
    """Reshape → MatMul(block × block band) → Reshape in onnxruntime: what the cheapest GEMM form costs."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    band = np.eye(block, k=1, dtype=np.float32) - np.eye(block, k=-1, dtype=np.float32)
    nodes = [helper.make_node("Reshape", ["input", "rows"], ["x"]), helper.make_node("MatMul", ["x", "band"], ["y"]),
             helper.make_node("Reshape", ["y", "shape"], ["output"])]
    inits = [numpy_helper.from_array(np.array([-1, block], np.int64), "rows"), numpy_helper.from_array(band, "band"),
             numpy_helper.from_array(np.array(shape, np.int64), "shape")]
    graph = helper.make_graph(nodes, "matmul_block", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(proto.SerializeToString(), SessionConfig(intra_op_threads=THREADS).to_session_options(),
                                   providers=["CPUExecutionProvider"])
    onnx.checker.check_model(proto)
    return lambda x: session.run(None, {"input": x})[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1080x1920,2160x3840")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per contender and size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds the time is split into")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("single", "double"):
            path = exact_model(Path(tmp), kind)
            public = load(path, session=SessionConfig(intra_op_threads=THREADS))
            assert public.runner.name == "native", "the C stencil extension is not built"
            basic = load(path, backend="onnxruntime", session=SessionConfig(intra_op_threads=THREADS))
            default_level = load(path, backend="onnxruntime",
                                 session=SessionConfig(graph_optimization_level="all", intra_op_threads=THREADS))
            cv = opencv_contender(public.info, THREADS)
            for h, w in sizes:
                x = np.random.default_rng(0).random((1, 1, h, w), dtype=np.float32)
                floor = np.empty_like(x)
                contenders = [("memcpy floor", lambda a: np.copyto(floor, a)), ("opencv", cv.fn),
                              ("load() default: native stencil", public),
                              ("onnxruntime basic, auto form", basic), ("onnxruntime ORT_ENABLE_ALL", default_level),
                              ("onnxruntime io-binding, prealloc", iobinding_fn(path, x.shape))]
                if kind == "single":
                    conv = load(exact_model(Path(tmp), kind, "conv"), backend="onnxruntime",
                                session=SessionConfig(intra_op_threads=THREADS))
                    contenders.append(("onnxruntime one 3x3 Conv graph", conv))
                    contenders.append(("MatMul 16-block floor (partial)", matmul_block_floor(x.shape)))
                want = np.asarray(cv.fn(x)).reshape(x.shape)
                for name, fn in contenders:
                    if name not in ("memcpy floor", "MatMul 16-block floor (partial)"):
                        got = np.asarray(fn(x)).reshape(x.shape)
                        assert np.abs(got - want).max() < 1e-4, name
                samples: dict[str, list[np.ndarray]] = {name: [] for name, _ in contenders}
                for _ in range(args.rounds):  # interleaved, so that drift on a shared machine hits all alike
                    for name, fn in contenders:
                        samples[name].append(time_calls(fn, x, min_seconds=args.min_time / args.rounds))
                p50 = {name: float(np.median(np.concatenate(t))) * 1e3 for name, t in samples.items()}
                for name, ms in p50.items():
                    rows.append((kind, f"{h}x{w}", name, ms, p50["opencv"] / ms, ms / p50["memcpy floor"]))
    print(f"{'model':<7} {'size':<10} {'contender':<34} {'p50_ms':>8} {'vs_opencv':>10} {'x_memcpy':>9}")
    for kind, size, name, ms, vs, floor in rows:
        print(f"{kind:<7} {size:<10} {name:<34} {ms:8.2f} {vs:10.2f} {floor:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
