"""A folder of camera frames through ``kernelnet apply`` against a plain one-process OpenCV loop, in whole-process
wall time (interpreter start, imports and model load included), and the two outputs compared pixel for pixel.

The folder: ``--files`` gray 8-bit PNGs of ``--size``² cut from the photos that ship in scikit-image (saved by
Pillow). The model: an exact Sobel export on the native stencil. The OpenCV loop: ``cv2.imread`` (gray),
``cv2.filter2D`` (float32 out, kernel / 255, zeros border, ``cv2.setNumThreads(threads)``), the same mapping
(0.5 + y / (2 max|y|), rounded) and ``cv2.imwrite`` (its default PNG settings). Both run as fresh processes of
this interpreter (``kernelnet`` is the console script installed beside it), interleaved over ``--rounds``, each
round into new output folders; p50 seconds and ratio = OpenCV / kernelnet (> 1: kernelnet is faster). kernelnet's
cache of proven models starts empty in a folder of its own: the first round proves the model against onnxruntime
(0.17 s more), the later ones load it without onnxruntime, as a user's second run does.

    python benchmarks/folder_apply.py [--files 600] [--size 256] [--rounds 5] [--threads 2] [--exact-fit]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OPENCV_LOOP = r"""
import sys
from pathlib import Path
import cv2
import numpy as np
cv2.setNumThreads(int(sys.argv[3]))
kernel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / np.float32(255)
out = Path(sys.argv[2])
out.mkdir(exist_ok=True)
for path in sorted(Path(sys.argv[1]).glob("*.png")):
    frame = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    y = cv2.filter2D(frame, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
    peak = float(np.abs(y).max()) or 1.0
    levels = cv2.convertScaleAbs(y, alpha=255 * 0.5 / peak, beta=255 * 0.5)
    cv2.imwrite(str(out / path.name), levels)
"""


def make_folder(folder: Path, files: int, size: int) -> None:
    """``files`` gray crops of ``size``² from scikit-image's photos, as 8-bit PNGs written by Pillow."""
    from PIL import Image
    from skimage import data

    photos = [data.camera(), data.moon(), data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    gray = [p if p.ndim == 2 else (p @ np.array([0.299, 0.587, 0.114])).astype(np.uint8) for p in photos]
    gray = [g for g in gray if min(g.shape) > size]
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(files):
        g = gray[i % len(gray)]
        y, x = rng.integers(0, g.shape[0] - size), rng.integers(0, g.shape[1] - size)
        Image.fromarray(np.ascontiguousarray(g[y:y + size, x:x + size])).save(folder / f"{i:05d}.png")


def make_model(path: Path, exact_fit: bool = False) -> None:
    """The exact Sobel's graph, or (``exact_fit``) the export of a Sobel fitted by the exact solver on the built-in
    photos (float noise where Sobel has zeros: what a user's ``kernelnet train --solver exact`` gives)."""
    if exact_fit:
        run = path.with_suffix("")
        for args in (["train", "--solver", "exact", "--out", str(run), "--no-plots", "-q"],
                     ["export", str(run), "--out", str(path)]):
            subprocess.run([sys.executable, "-m", "kernelnet", *args], check=True, stdout=subprocess.DEVNULL)
        return
    from kernelnet.export.onnx_graph import write_graph

    from kernelnet.runtime.spec import FilterSpec

    write_graph(path, FilterSpec.from_kind(np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]), "single"))


def console_script() -> str:
    """The ``kernelnet`` script beside this interpreter (a version manager's shim on PATH, pyenv's, adds a shell
    and ~60 ms to every start), else the one on PATH; exits with a line when there is none."""
    beside = Path(sys.executable).with_name("kernelnet")
    found = str(beside) if beside.exists() else shutil.which("kernelnet")
    if found is None:
        sys.exit("the kernelnet console script is not installed: pip install -e . first")
    return found


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--exact-fit", action="store_true",
                        help="apply an exact-solver fit of Sobel (needs the [train] extra) instead of the exact Sobel")
    args = parser.parse_args()
    kernelnet = console_script()  # beside this interpreter, as the OpenCV loop runs on it
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root / "in", args.files, args.size)
        make_model(root / "sobel.onnx", args.exact_fit)
        script = root / "opencv_loop.py"
        script.write_text(OPENCV_LOOP)
        def commands(out: int) -> dict[str, list[str]]:
            """Both contenders' command lines, writing round ``out``'s new folders (deleting the last round's files
            first would time the file system's reuse of just-freed inodes, which ext4 skips for a while)."""
            return {"kernelnet apply": [kernelnet, "apply", str(root / "sobel.onnx"), str(root / "in"), "--out",
                                        str(root / f"kn{out}"), "--threads", str(args.threads), "-q"],
                    "OpenCV loop": [sys.executable, str(script), str(root / "in"), str(root / f"cv{out}"),
                                    str(args.threads)]}

        os.environ["KERNELNET_CACHE_DIR"] = str(root / "cache")
        times: dict[str, list[float]] = {name: [] for name in commands(0)}
        for round_ in range(args.rounds):
            for name, command in commands(round_).items():
                times[name].append(timed(command))
        agreement = compare(root / "kn0", root / "cv0")
    p50 = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.files} gray {args.size}x{args.size} PNGs, {args.threads} threads, whole-process wall, "
          f"{args.rounds} rounds")
    print(f"{'contender':<18} {'p50 s':>7} {'min s':>7} {'files/s':>8} {'ratio':>6}")
    for name, t in times.items():
        print(f"{name:<18} {p50[name]:7.3f} {min(t):7.3f} {args.files / p50[name]:8.0f} "
              f"{p50['OpenCV loop'] / p50[name]:6.2f}")
    print(f"outputs: {agreement}")


def compare(ours: Path, theirs: Path) -> str:
    """How the two folders' pixels differ (OpenCV's convertScaleAbs rounds half away from zero, numpy half even,
    and the two sum the taps in other orders: a level at ties)."""
    from PIL import Image

    worst, unequal, total = 0, 0, 0
    for path in sorted(theirs.glob("*.png")):
        a = np.asarray(Image.open(ours / path.name), dtype=np.int32)
        b = np.asarray(Image.open(path), dtype=np.int32)
        worst, unequal, total = max(worst, int(np.abs(a - b).max())), unequal + int(np.count_nonzero(a != b)), \
            total + a.size
    return f"max difference {worst} level(s), {100 * unequal / max(total, 1):.3f}% of pixels differ"


if __name__ == "__main__":
    main()
