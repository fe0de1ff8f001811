"""Real image programs as black boxes: ImageMagick 6, GraphicsMagick, ffmpeg and libvips (Debian packages
``imagemagick graphicsmagick ffmpeg libvips-tools``), each run on an 8-bit gray PNG written to a temporary folder.

``PROGRAMS`` maps a case name to its command (``{src}`` / ``{dst}`` stand for the two files), whether kernelnet's
filter description is meant to hold it — one linear filter, or a gradient magnitude, plus an output stage; the
battery's bar for these is 99.9% of levels, and ``tests/learn/test_programs.py`` names the ones that already come
out byte for byte — and what it is. Held-out cases use
other parameters than the training ones. :func:`missing` says why a program cannot run here (not installed, or
the stand-in ``convert`` some images ship instead of ImageMagick's).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Program:
    argv: tuple[str, ...]
    exact: bool
    what: str
    files: dict[str, str] | None = None
    """Extra files the command reads (name → text), written beside the input."""


FFMPEG = ("ffmpeg", "-loglevel", "error", "-y", "-i", "{src}", "-vf")
GRAY_OUT = ("-pix_fmt", "gray", "{dst}")
SHARPEN3 = "0 -1 0 -1 5 -1 0 -1 0"
EDGE3 = "1 2 1 0 0 0 -1 -2 -1"

PROGRAMS: dict[str, Program] = {
    "im_blur": Program(("convert", "{src}", "-blur", "0x1", "{dst}"), True, "ImageMagick Gaussian blur σ 1"),
    "im_sharpen": Program(("convert", "{src}", "-sharpen", "0x1", "{dst}"), True, "ImageMagick sharpen σ 1"),
    "im_convolve": Program(("convert", "{src}", "-morphology", "Convolve", "3x3: 0,-1,0 -1,5,-1 0,-1,0", "{dst}"),
                           True, "ImageMagick 3×3 sharpen kernel"),
    "gm_convolve": Program(("gm", "convert", "{src}", "-convolve", "1,2,1,2,4,2,1,2,1", "{dst}"), True,
                           "GraphicsMagick normalised 3×3 binomial"),
    "gm_blur": Program(("gm", "convert", "{src}", "-blur", "0x1", "{dst}"), True, "GraphicsMagick blur σ 1"),
    "ff_convolution": Program((*FFMPEG, f"convolution={SHARPEN3}:{SHARPEN3}:{SHARPEN3}:{SHARPEN3}", *GRAY_OUT),
                              True, "ffmpeg convolution 3×3 sharpen"),
    "ff_unsharp": Program((*FFMPEG, "unsharp=5:5:1.0:5:5:0", *GRAY_OUT), True, "ffmpeg unsharp 5×5 amount 1"),
    "ff_sobel": Program((*FFMPEG, "sobel", *GRAY_OUT), True, "ffmpeg sobel: trunc √(Gx² + Gy²) of integer responses"),
    "vips_conv": Program(("vips", "conv", "{src}", "{dst}", "{dir}/mask.mat", "--precision", "integer"), True,
                         "libvips integer 3×3 mask / 16", {"mask.mat": "3 3 16 0\n1 2 1\n2 4 2\n1 2 1\n"}),
    "vips_sobel": Program(("vips", "sobel", "{src}", "{dst}"), False, "libvips sobel"),
    # held out: other parameters than any case above
    "held_im_blur": Program(("convert", "{src}", "-blur", "0x0.7", "{dst}"), True, "ImageMagick blur σ 0.7"),
    "held_im_sharpen": Program(("convert", "{src}", "-sharpen", "0x1.4", "{dst}"), True, "ImageMagick sharpen σ 1.4"),
    "held_gm_convolve": Program(("gm", "convert", "{src}", "-convolve", "0,1,0,1,4,1,0,1,0", "{dst}"), True,
                                "GraphicsMagick normalised cross"),
    "held_ff_convolution": Program((*FFMPEG, f"convolution={EDGE3}:{EDGE3}:{EDGE3}:{EDGE3}:1:1:1:1:128:128:128:128",
                                    *GRAY_OUT), True, "ffmpeg convolution 3×3 edge + 128"),
    "held_vips_conv": Program(("vips", "conv", "{src}", "{dst}", "{dir}/mask.mat", "--precision", "integer"), True,
                              "libvips integer 3×3 mask / 8 + 20",
                              {"mask.mat": "3 3 8 20\n0 1 0\n1 4 1\n0 1 0\n"}),
}


def missing(name: str) -> str:
    """Why the program of case ``name`` cannot run here (empty: it can)."""
    tool = PROGRAMS[name].argv[0]
    path = shutil.which(tool, path="/usr/bin:/bin") or shutil.which(tool)
    if path is None:
        return f"{tool} is not installed (apt-get install imagemagick graphicsmagick ffmpeg libvips-tools)"
    if tool == "convert":
        probe = subprocess.run([path, "-version"], capture_output=True, text=True)
        if "ImageMagick" not in probe.stdout:
            return f"{path} is not ImageMagick (apt-get install imagemagick)"
    return ""


def program_box(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The black box of case ``name``: an (H, W) uint8 image through the program, back as (H, W) uint8."""
    from PIL import Image

    program = PROGRAMS[name]
    tool = shutil.which(program.argv[0], path="/usr/bin:/bin") or program.argv[0]

    def box(image: np.ndarray) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="kernelnet-program-") as tmp:
            folder = Path(tmp)
            for file, text in (program.files or {}).items():
                (folder / file).write_text(text)
            Image.fromarray(image).save(folder / "src.png")
            names = {"src": str(folder / "src.png"), "dst": str(folder / "dst.png"), "dir": tmp}
            argv = [tool, *(part.format(**names) for part in program.argv[1:])]
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
            out = np.asarray(Image.open(folder / "dst.png"))
        if out.shape != image.shape or out.dtype != np.uint8:
            raise RuntimeError(f"{name} wrote {out.dtype} {out.shape} for a {image.shape} gray image")
        return out

    return box
