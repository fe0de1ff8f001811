"""Peak memory and wall time of `kernelnet apply` on a huge float32 .npy, and exactness against the true filter.

Bar (issue "Runtime"): 12000×12000 float32 .npy → peak RSS ≤ 2 GB (a whole-image onnxruntime run of one 3×3 Conv
needs ≈ 6.5 GB for its im2col buffer; the separable / split graph forms exported by default need less, as
``--whole`` shows) and output identical to the true filter. The CLI runs in a subprocess whose own peak RSS
is read with ``os.wait4`` (ru_maxrss); the reference is an independent float64 correlation of the padded image,
computed block by block in this process.

    python benchmarks/apply_memory.py                         # 12000², Sobel single and double
    python benchmarks/apply_memory.py --size 4000 --models single
    python benchmarks/apply_memory.py --whole                 # also a forced whole-image run (GBs of RSS)
    python benchmarks/apply_memory.py --backends onnxruntime  # one backend (default: native and onnxruntime)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SOBEL = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}


def make_model(folder: Path, model: str) -> Path:
    """An exact Sobel run (weights = the target) exported to ONNX."""
    import torch

    from kernelnet.config import RunConfig
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.learn.models import build_model, target_weight
    from kernelnet.rundir import save_metrics, save_model

    config = RunConfig(filter="sobel", target_kernel=tuple(map(tuple, SOBEL)), model=model, bias=False)
    net = build_model(model, 3, False, False, "zeros")
    with torch.no_grad():
        net.conv.weight.copy_(target_weight(torch.from_numpy(SOBEL), model).float())
    save_model(folder, net, config)
    save_metrics(folder, {"kernel_max_abs_error": 0.0, "solver": "exact"})
    return export_onnx(folder).path


def make_input(path: Path, size: int, seed: int = 0) -> None:
    """A size×size float32 .npy of uniform [0, 1) values, written in row blocks."""
    rng = np.random.default_rng(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, size))
    for a in range(0, size, 1024):
        out[a:a + 1024] = rng.random((min(1024, size - a), size), dtype=np.float32)
    out.flush()
    del out


_WRAPPER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def run_measured(args: list[str]) -> tuple[int, float, float, str]:
    """Run a command; return (exit code, wall seconds, peak RSS in MiB of that command, stderr).

    The command is started by a tiny wrapper process: Linux carries the RSS high-water mark of the process that
    forks/execs into the child's ``ru_maxrss``, so spawning directly from this (large) process would report our
    own memory, not the command's.
    """
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    code, maxrss_kib = (int(v) for v in proc.stdout.split())
    return code, wall, maxrss_kib / 1024, proc.stderr


def max_error_vs_truth(x_path: Path, y_path: Path, model: str, padding: str = "zeros", block: int = 512) -> float:
    """max |y − truth| where truth = Σ k_ij · pad(x)[i + row, j + col] in float64 (magnitude for double)."""
    x = np.load(x_path, mmap_mode="r")
    y = np.load(y_path, mmap_mode="r")
    padded = np.pad(x, 1, mode=NUMPY_PAD[padding])
    h, w = x.shape
    worst = 0.0
    for a in range(0, h, block):
        b = min(h, a + block)
        resp = []
        for kern in ([SOBEL, SOBEL.T] if model == "double" else [SOBEL]):
            acc = np.zeros((b - a, w))
            for i in range(3):
                for j in range(3):
                    if kern[i, j]:
                        acc += kern[i, j] * padded[a + i:b + i, j:j + w]
            resp.append(acc)
        truth = np.hypot(*resp) if model == "double" else resp[0]
        worst = max(worst, float(np.abs(y[a:b] - truth).max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=12000)
    parser.add_argument("--models", default="single,double")
    parser.add_argument("--backends", default="native,onnxruntime", help="kernelnet apply --backend values.")
    parser.add_argument("--whole", action="store_true", help="Also run with --tile off (whole image, GBs of RSS).")
    parser.add_argument("--tmp", default=None, help="Scratch folder (needs ≈ 2.5 × size² × 4 bytes).")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        x_path = root / "input.npy"
        make_input(x_path, args.size)
        for model in args.models.split(","):
            onnx_path = make_model(root / model, model)
            modes = [("auto tiling", []), *([("whole image", ["--tile", "off"])] if args.whole else [])]
            for backend in args.backends.split(","):
                for label, extra in modes:
                    y_path = root / f"{model}-out.npy"
                    code, wall, rss, err = run_measured([
                        sys.executable, "-m", "kernelnet", "apply", str(onnx_path), str(x_path), "--out", str(y_path),
                        "-q", "--backend", backend, *extra])
                    if code != 0:
                        rows.append((model, backend, label, wall, rss, float("nan"),
                                     f"exit {code}: {err.strip()[-80:]}"))
                        continue
                    error = max_error_vs_truth(x_path, y_path, model)
                    ok = rss <= 2048 and error <= 1e-5
                    verdict = ("ok" if ok else "MISSED") if label == "auto tiling" else "(for contrast)"
                    rows.append((model, backend, label, wall, rss, error, verdict))
                    y_path.unlink()
    mb = args.size * args.size * 4 / 2**20
    print(f"kernelnet apply on a {args.size}x{args.size} float32 .npy ({mb:.0f} MiB in, {mb:.0f} MiB out)")
    print(f"{'model':<8} {'backend':<12} {'mode':<12} {'wall_s':>7} {'peak_rss_mib':>13} {'max_err_vs_truth':>17}  "
          "bar (rss <= 2048 MiB, err <= 1e-5)")
    for model, backend, label, wall, rss, error, verdict in rows:
        print(f"{model:<8} {backend:<12} {label:<12} {wall:7.1f} {rss:13.0f} {error:17.3g}  {verdict}")
    return 0 if all(r[-1] in ("ok", "(for contrast)") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
