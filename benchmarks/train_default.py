"""Wall time and kernel error of `kernelnet train` (gradient solver, defaults) for the foundation's bar.

Runs the real CLI in a subprocess per case (so `import torch` and data loading are counted) and prints a table.
Bar (issue "Foundation"): default run (Sobel, single, raw, built-in data) wall ≤ 60 s and
kernel_max_abs_error ≤ 1e-3; abs, double and random double should converge too (goal ≤ 1e-3).

    python benchmarks/train_default.py            # all cases
    python benchmarks/train_default.py --only default
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "default": [],
    "abs": ["--normalize"],
    "double": ["--model", "double"],
    "random-double": ["--filter", "random", "--model", "double"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES), action="append")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(CASES):
            out = Path(tmp) / name
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "kernelnet", "train", *CASES[name], "--out", str(out), "-q"],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            m = json.loads((out / "metrics.json").read_text())
            rows.append((name, wall, m["train_seconds"], m["epochs_run"], m["kernel_max_abs_error"], m["test_psnr_db"]))
    print(f"{'case':<14} {'wall_s':>7} {'train_s':>8} {'epochs':>6} {'kernel_err':>11} {'psnr_db':>8}  bar")
    missed = False
    for name, wall, train_s, epochs, err, psnr in rows:
        ok = err <= 1e-3 and (wall <= 60 or name != "default")
        missed |= not ok
        print(f"{name:<14} {wall:7.1f} {train_s:8.1f} {epochs:6d} {err:11.2e} {psnr:8.1f}  {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
