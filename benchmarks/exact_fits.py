"""Section 5 of ``benchmarks/side_by_side.py``: Sobel fitted by ``kernelnet train --solver exact`` (kernels with
float noise where Sobel has zeros, exported separable or split) through ``load()``, against OpenCV ``filter2D`` of
the true Sobel, 1080p and 4K float32 frames. Needs the [train] extra (it trains the two runs).

    python benchmarks/side_by_side.py --sections exact
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

FULL_HD, UHD = (1080, 1920), (2160, 3840)


def main(args: Any, cv2: Any, median_ms: Callable[..., dict[str, float]]) -> None:
    """Print the section: ``args`` has ``threads``, ``rounds``, ``reps``; ``median_ms`` times contenders."""
    from kernelnet.runtime import load

    print("\n## Exact-solver fits of Sobel (kernelnet train --solver exact; float32 frames; ratio = OpenCV / native)\n")
    print("| model | graph form | size | native | OpenCV | ratio |\n|---|---|---|---|---|---|")
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        for model in ("single", "double"):
            run = Path(tmp) / model
            subprocess.run([sys.executable, "-m", "kernelnet", "train", "--solver", "exact", "--model", model,
                            "--out", str(run), "--no-plots", "-q"], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([sys.executable, "-m", "kernelnet", "export", str(run)], check=True,
                           stdout=subprocess.DEVNULL)
            net = load(run / "model.onnx", threads=args.threads)
            form = net.info.fields.get("graph_form", "?")
            for shape in (FULL_HD, UHD):
                frame = rng.random(shape, dtype=np.float32)
                mine, out, other = (np.empty(shape, np.float32) for _ in range(3))

                def opencv() -> None:
                    cv2.filter2D(frame, cv2.CV_32F, sobel, dst=out, borderType=cv2.BORDER_CONSTANT)
                    if model == "double":
                        cv2.filter2D(frame, cv2.CV_32F, sobel.T, dst=other, borderType=cv2.BORDER_CONSTANT)
                        cv2.magnitude(out, other, magnitude=out)

                med = median_ms({"native": lambda: net(frame, out=mine), "opencv": opencv}, args.rounds, args.reps)
                print(f"| {model} | {form} ({net.runner.name}) | {shape[0]}x{shape[1]} | {med['native']:.3f} | "
                      f"{med['opencv']:.3f} | {med['opencv'] / med['native']:.2f}× |", flush=True)
