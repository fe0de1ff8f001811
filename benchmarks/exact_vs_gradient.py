"""Exact closed-form fit vs the default gradient run, side by side (issue 3's bar).

For each bar case (Sobel single raw, Sobel abs, Sobel double, random double) it trains twice on the built-in
photos with :func:`kernelnet.learn.training.train` (in process, plots off, into a temp dir): ``--solver exact`` and
the default gradient solver (Adam, every other RunConfig value at its default), then prints
case, solver, train seconds, kernel error, test PSNR and the speed ratio.

Bar: exact kernel_max_abs_error ≤ 1e-5 and train_seconds ≤ 5 (2 CPU cores), ≥ 10× faster than the
gradient run, at a better error.

    python benchmarks/exact_vs_gradient.py                  # all four cases
    python benchmarks/exact_vs_gradient.py --only double
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

from kernelnet.config import RunConfig
from kernelnet.learn.exact import ExactFitWarning
from kernelnet.learn.training import train

CASES: dict[str, dict[str, object]] = {
    "sobel-raw": dict(filter="sobel", model="single"),
    "sobel-abs": dict(filter="sobel", model="single", normalize=True),
    "sobel-double": dict(filter="sobel", model="double"),
    "random-double": dict(filter="random", model="double"),
}
SOLVERS = ("exact", "adam")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES), action="append", help="Run only this case (repeatable).")
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.only or list(CASES):
            for solver in SOLVERS:
                config = RunConfig(solver=solver, **CASES[case])  # type: ignore[arg-type]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)  # library chatter, but never a failed exact fit:
                    warnings.simplefilter("always", ExactFitWarning)
                    m = train(config, Path(tmp) / f"{case}-{solver}", progress=False, plots=False).metrics
                rows.append((case, solver, m["train_seconds"], m["kernel_max_abs_error"], m["test_psnr_db"],
                             m["epochs_run"]))
                print(f"  done {case} {solver}: {m['train_seconds']:.2f} s", file=sys.stderr, flush=True)
    print(f"{'case':<14} {'solver':<6} {'train_s':>8} {'epochs':>6} {'kernel_err':>10} {'psnr_db':>8} "
          f"{'speedup':>8}  bar")
    missed = 0
    for i in range(0, len(rows), len(SOLVERS)):
        exact, grad = rows[i], rows[i + 1]
        speedup = grad[2] / max(exact[2], 1e-9)
        ok = exact[3] <= 1e-5 and exact[2] <= 5.0 and speedup >= 10.0 and exact[3] < grad[3]
        missed += not ok
        for case, solver, secs, err, psnr, epochs in (exact, grad):
            tail = f"{speedup:7.1f}x  {'ok' if ok else 'MISSED'}" if solver == "exact" else ""
            print(f"{case:<14} {solver:<6} {secs:8.2f} {epochs:6d} {err:10.2e} {psnr:8.1f} {tail:>8}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
