"""Every border means the same thing in the numpy reference, the exported graph, the native stencil and the
PyTorch model, and equals the libraries it is named after (numpy, OpenCV, SciPy, Pillow)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from kernelnet.export.onnx_graph import build_graph
from kernelnet.runtime.backends import native_backend
from kernelnet.runtime.backends.base import ModelInfo
from kernelnet.runtime.reference import apply_spec, correlate
from kernelnet.runtime.spec import BORDERS, FilterSpec, OutputStage
from tests.helpers import HAS_TORCH


def graph_output(spec: FilterSpec, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(build_graph(spec).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("combine", ["raw", "magnitude"])
def test_graph_native_and_torch_equal_the_reference(rng, border, k, combine):
    c = 2 if combine == "magnitude" else 1
    spec = FilterSpec(rng.uniform(-2, 2, (c, k, k)).astype(np.float32), rng.uniform(-1, 1, c), combine, border)
    for h, w in ((23, 31), (k // 2 + 1, k + 2), (7, 4)):
        if min(h, w) < spec.min_side:
            continue
        x = rng.random((2, 1, h, w), dtype=np.float32)
        want = apply_spec(x, spec)
        assert np.abs(graph_output(spec, x) - want).max() < 1e-5 * spec.output_bound(), (h, w)
        if native_backend.available() and border != "copy":
            got = native_backend.NativeRunner(ModelInfo(spec=spec), threads=2).run(x)
            assert np.abs(got - want).max() < 1e-5 * spec.output_bound(), (h, w)
        if HAS_TORCH and border != "copy":
            import torch

            from kernelnet.learn.models import model_from_spec

            with torch.no_grad():
                got = model_from_spec(spec)(torch.from_numpy(x)).numpy()
            assert np.abs(got - want).max() < 1e-5 * spec.output_bound(), (h, w)


def test_borders_are_the_libraries_borders(rng):
    cv2 = pytest.importorskip("cv2")
    ndimage = pytest.importorskip("scipy.ndimage")
    x = rng.random((19, 26))
    kern = rng.uniform(-1, 1, (5, 5))
    cv = {"zeros": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "symmetric": cv2.BORDER_REFLECT,
          "replicate": cv2.BORDER_REPLICATE}
    scipy = {"zeros": "constant", "reflect": "mirror", "symmetric": "reflect", "replicate": "nearest"}
    for border in cv:
        ours = correlate(x, kern, border)
        assert np.abs(ours - cv2.filter2D(x, cv2.CV_64F, kern, borderType=cv[border])).max() < 1e-12, border
        assert np.abs(ours - ndimage.correlate(x, kern, mode=scipy[border])).max() < 1e-12, border


def test_reflect_symmetric_is_ffmpegs(rng):
    """ffmpeg's 3×3 convolution filter reflects at the top and left and mirrors with the edge repeated at the
    bottom and right (``reflect_symmetric``); its 5×5 one reflects on every side (``reflect``)."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from PIL import Image

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    pixels = (rng.random((13, 17)) * 255).astype(np.uint8)
    for k, total, border, other_border in ((3, 16, "reflect_symmetric", "symmetric"), (5, 64, "reflect", "symmetric")):
        ints = rng.integers(0, 6, (k, k))
        ints[k // 2, k // 2] += total - ints.sum()  # the weights sum to a power of two: every output is exact
        matrix = " ".join(str(v) for v in ints.ravel())
        with tempfile.TemporaryDirectory() as tmp:
            Image.fromarray(pixels).save(Path(tmp) / "in.png")
            subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(Path(tmp) / "in.png"), "-vf",
                            f"convolution={matrix}:{matrix}:{matrix}:{matrix}:1/{total}:1/{total}:1/{total}:1/{total}",
                            "-pix_fmt", "gray", str(Path(tmp) / "out.png")], check=True)
            theirs = np.asarray(Image.open(Path(tmp) / "out.png"))
        ours = np.floor(correlate(pixels.astype(np.float64), ints / total, border) + 0.5)
        assert np.array_equal(ours, theirs), k
        other = np.floor(correlate(pixels.astype(np.float64), ints / total, other_border) + 0.5)
        assert not np.array_equal(other, theirs)  # the test tells the borders apart


def test_copy_border_is_pillows(rng):
    from PIL import Image, ImageFilter

    pixels = (rng.random((21, 30)) * 255).astype(np.uint8)
    kern = np.array([[-1, -1, -1], [-1, 16, -1], [-1, -1, -1]], dtype=np.float64)  # Pillow's SHARPEN, scale 8
    got = np.asarray(Image.fromarray(pixels).filter(ImageFilter.Kernel((3, 3), kern.ravel().tolist(), scale=8)))
    # Pillow flips its kernel vertically, rounds half up, clips to [0, 255] and keeps the input's outer ring
    spec = FilterSpec.from_kind(kern[::-1] / 8 * 255, padding="copy",
                                output=OutputStage(clip=(0.0, 255.0), rounding="half_up", bits=8))
    assert np.array_equal(apply_spec(pixels / 255.0, spec), got)
    assert np.array_equal(graph_output(spec, (pixels / 255.0).astype(np.float32)[None, None])[0, 0], got)
