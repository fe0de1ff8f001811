"""Rank filters (erosion, dilation, median over a footprint): the numpy reference equals OpenCV, SciPy and Pillow;
the exported graph equals the reference bit for bit with dynamic shapes, whole and in tiles; the metadata round
trips and refuses what is not a rank filter."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kernelnet.runtime.backends import native_backend
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.reference import apply_spec, rank_filter
from kernelnet.runtime.spec import FilterSpec, InputEncoding, OutputStage, footprint_of
from kernelnet.runtime.spec_codec import decode_info, encode_spec

cv2 = pytest.importorskip("cv2")
ndimage = pytest.importorskip("scipy.ndimage")


def photo(side: int = 61, seed: int = 0) -> np.ndarray:
    import skimage.data as data

    rng = np.random.default_rng(seed)
    img = data.camera()
    y, x = rng.integers(0, img.shape[0] - side, 2)
    return np.ascontiguousarray(img[y:y + side, x:x + side + 7])


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("shape", ["square", "cross"])
def test_the_reference_is_opencvs_erode_and_dilate(size, shape):
    img, fp = photo(), footprint_of(shape, size)
    element = fp.astype(np.uint8)
    assert np.array_equal(rank_filter(img, fp, "min", "replicate"), cv2.erode(img, element))
    assert np.array_equal(rank_filter(img, fp, "max", "replicate"), cv2.dilate(img, element))
    assert np.array_equal(rank_filter(img, fp, "min", "reflect"),
                          cv2.erode(img, element, borderType=cv2.BORDER_REFLECT_101))


@pytest.mark.parametrize("size", [3, 5])
def test_the_reference_is_every_librarys_median(size):
    img = photo(seed=size)
    square = footprint_of("square", size)
    assert np.array_equal(rank_filter(img, square, "median", "replicate"), cv2.medianBlur(img, size))
    assert np.array_equal(rank_filter(img, square, "median", "symmetric"), ndimage.median_filter(img, size))
    assert np.array_equal(rank_filter(img, square, "median", "zeros"),
                          ndimage.median_filter(img, size, mode="constant"))
    pillow = np.asarray(Image.fromarray(img).filter(ImageFilter.MedianFilter(size)))
    assert np.array_equal(rank_filter(img, square, "median", "replicate"), pillow)
    cross = footprint_of("cross", size)
    assert np.array_equal(rank_filter(img, cross, "median", "symmetric"),
                          ndimage.median_filter(img, footprint=cross))


CASES = list(itertools.product(("min", "max", "median"), ("square", "cross"), (1, 3, 5),
                               ("zeros", "reflect", "symmetric", "replicate", "reflect_symmetric")))


@pytest.mark.parametrize("op, shape, size, border", CASES)
def test_the_graph_is_the_reference_bit_for_bit(tmp_path, op, shape, size, border):
    ort = pytest.importorskip("onnxruntime")
    from kernelnet.export.onnx_graph import write_graph

    rng = np.random.default_rng(size)
    for dtype in ("float32", "uint8"):
        stage = OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8) if dtype == "uint8" else OutputStage()
        spec = FilterSpec.rank_filter(op, size, shape, border, input=InputEncoding.for_dtype(dtype), output=stage)
        path = write_graph(tmp_path / f"{dtype}.onnx", spec)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for n, h, w in ((1, 9, 11), (2, 4, 17), (1, size, size + 2)):
            if border in ("reflect", "reflect_symmetric") and min(h, w) <= size // 2:
                continue
            x = rng.integers(0, 256, (n, 1, h, w), dtype=np.uint8) if dtype == "uint8" else \
                rng.random((n, 1, h, w), dtype=np.float32)
            got = session.run(None, {"input": x})[0]
            assert np.array_equal(got, apply_spec(x, spec).astype(np.float32)), (dtype, h, w)


def test_tiles_give_the_whole_image(tmp_path):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    spec = FilterSpec.rank_filter("median", 5, "cross", "symmetric")
    path = write_graph(tmp_path / "m.onnx", spec)
    x = np.random.default_rng(1).random((203, 157), dtype=np.float32)
    want = apply_spec(x, spec).astype(np.float32)
    for backend in ("onnxruntime", "auto"):
        tiled = load(path, tile=(48, 40), backend=backend)
        assert np.array_equal(tiled(x), want), backend
    assert tiled.runner.name == ("native" if native_backend.available() else "onnxruntime")


@pytest.mark.skipif(not native_backend.available(), reason="the C stencil extension is not built")
@pytest.mark.parametrize("op, shape, size, border", CASES + [("median", "square", 9, "reflect"),
                                                             ("max", "cross", 15, "symmetric")])
def test_the_stencil_runs_rank_filters_with_the_references_bits(tmp_path, op, shape, size, border):
    """Natively, proven against the graph: float32, uint8 and uint16 frames, float and levels out (8-bit frames to
    8-bit levels run on the levels themselves), several sizes."""
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    rng = np.random.default_rng(size)
    stage = OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8)
    for dtype, out in (("float32", OutputStage()), ("uint8", stage), ("float32", stage)):
        spec = FilterSpec.rank_filter(op, size, shape, border, input=InputEncoding.for_dtype(dtype), output=out)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # proven, so no "native backend not used" warning
            model = load(write_graph(tmp_path / "m.onnx", spec), backend="native", threads=2)
        for h, w in ((40, 131), (size, size + 3), (3, 70)):
            if min(h, w) < spec.min_side:
                continue
            x = rng.integers(0, 256, (2, 1, h, w), dtype=np.uint8)
            frames = [x] + ([] if dtype == "uint8" else [x.astype(np.float32) / 255, x.astype(np.uint16) * 257])
            for frame in frames:
                unit = frame / {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(frame.dtype, 1.0)
                want = apply_spec(frame if dtype == "uint8" else unit, spec)  # a uint8 graph takes levels
                assert np.array_equal(model(frame), want.astype(np.float32)), (dtype, frame.dtype, h, w)
                if spec.output.bits == 8 and frame.dtype == np.uint8:  # the 8-bit path: levels in, levels out
                    assert np.array_equal(model.levels(frame), want.astype(np.uint8)), (dtype, h, w)


@pytest.mark.skipif(not native_backend.available(), reason="the C stencil extension is not built")
def test_every_stencil_build_gives_the_rank_filters_bits(tmp_path):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime.backends.stencil_isa import available
    from tests.runtime.test_stencil_builds import run_in

    specs = [FilterSpec.rank_filter(op, size, shape, border) for op, shape, size, border in
             (("min", "square", 5, "replicate"), ("max", "cross", 7, "zeros"), ("median", "square", 3, "symmetric"),
              ("median", "cross", 9, "reflect"), ("median", "square", 7, "reflect_symmetric"))]
    paths = [write_graph(tmp_path / f"r{i}.onnx", spec) for i, spec in enumerate(specs)]
    x = np.random.default_rng(4).random((2, 1, 61, 207), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    for isa in available():
        for spec, got in zip(specs, run_in(isa, paths, tmp_path / "x.npy")):
            assert np.array_equal(got, apply_spec(x, spec).astype(np.float32)), (isa, spec)


def test_metadata_round_trips_and_refuses_what_is_not_a_rank_filter():
    spec = FilterSpec.rank_filter("max", 5, "cross", "reflect", output=OutputStage(255.0, 0.0, (0.0, 255.0),
                                                                                   "half_even", 8))
    props = encode_spec(spec)
    back = decode_info(props).spec
    assert back.combine == "max" and back.model == "rank" and np.array_equal(back.footprint, spec.footprint)
    assert back.output == spec.output and back.border == "reflect"
    bad = {**props, "kernelnet.rank": "mean"}
    with pytest.raises(KernelnetError, match="rank"):
        decode_info(bad)
    weights = {**props, "kernelnet.kernels": "[[[1,0.5,1],[1,1,1],[1,1,1]]]", "kernelnet.kernel_size": "3"}
    with pytest.raises(KernelnetError, match="footprint of 0 and 1"):
        decode_info(weights)
    single = FilterSpec.from_kind(np.ones((3, 3)))
    with pytest.raises(KernelnetError, match="given for a single model"):
        decode_info({**encode_spec(single), "kernelnet.rank": "min"})
    for key, value, said in (("bias", "[0.5]", "no bias"), ("normalize", "true", "contradicts model rank")):
        with pytest.raises(KernelnetError, match=said):
            decode_info({**props, f"kernelnet.{key}": value})
    with pytest.raises(KernelnetError, match="odd number of taps"):
        FilterSpec(np.array([[[1, 1, 0], [0, 1, 0], [0, 1, 0]]], float), None, "median")
    with pytest.raises(KernelnetError, match="padding border"):
        FilterSpec.rank_filter("min", 3, border="copy")


@pytest.mark.parametrize("op, shape, border", [("min", "cross", "zeros"), ("max", "square", "reflect"),
                                               ("median", "square", "replicate"), ("median", "cross", "replicate")])
def test_bench_races_opencvs_own_rank_filter(tmp_path, op, shape, border):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.bench import opencv_contender, opencv_missing

    spec = FilterSpec.rank_filter(op, 5, shape, border)
    model = load(write_graph(tmp_path / "m.onnx", spec))
    peer = opencv_contender(model.info, threads=1)
    if op == "median" and shape == "cross":  # medianBlur has no footprint: said, not raced
        assert peer is None and "medianBlur" in opencv_missing(model.info)
        return
    x = np.random.default_rng(2).random((1, 1, 33, 47), dtype=np.float32)
    assert peer is not None and np.array_equal(peer.fn(x), model(x)[0, 0])


@pytest.mark.parametrize("op, where", [("min", (10, 0)), ("max", (0, 31)), ("median", (31, 5)), ("min", (10, 10))])
def test_inf_input_is_refused_wherever_it_sits(tmp_path, op, where):
    """A min drops +inf from every window (a max drops -inf): the stencil still flags each output's own input
    pixel, edge columns included, so the runtime refuses the frame as it does for every model."""
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    path = write_graph(tmp_path / "m.onnx", FilterSpec.rank_filter(op, 3))
    x = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    x[where] = np.inf if op != "max" else -np.inf
    for backend in ("auto", "onnxruntime"):
        with pytest.raises(KernelnetError, match="NaN|Inf|finite"):
            load(path, backend=backend)(x)


@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("shape", ["square", "cross"])
def test_the_range_is_the_morphological_gradient_of_opencv_and_scipy(tmp_path, size, shape):
    """range = max − min over the footprint: OpenCV's MORPH_GRADIENT, SciPy's morphological_gradient; its graph
    gives the reference's bits (float32 and 8-bit levels), and the stencil declines it in one line."""
    ort = pytest.importorskip("onnxruntime")
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    img, fp = photo(seed=10 + size), footprint_of(shape, size)
    want = cv2.morphologyEx(img, cv2.MORPH_GRADIENT, fp.astype(np.uint8))
    assert np.array_equal(rank_filter(img, fp, "range", "replicate"), want)
    assert np.array_equal(rank_filter(img, fp, "range", "replicate"),
                          ndimage.morphological_gradient(img.astype(np.int16), footprint=fp, mode="nearest"))
    stage = OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8)
    for dtype, out in (("float32", OutputStage()), ("uint8", stage)):
        spec = FilterSpec.rank_filter("range", size, shape, "replicate", input=InputEncoding.for_dtype(dtype),
                                      output=out)
        path = write_graph(tmp_path / f"{dtype}.onnx", spec)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = img[None, None] if dtype == "uint8" else (img[None, None] / np.float32(255)).astype(np.float32)
        got = session.run(None, {"input": x})[0]
        assert np.array_equal(got, apply_spec(x, spec).astype(np.float32)), dtype
        if dtype == "uint8":
            assert np.array_equal(got[0, 0], want)
    if native_backend.available():
        with pytest.warns(UserWarning, match="no range filter"):
            model = load(path)
        assert model.runner.name == "onnxruntime" and np.array_equal(model(img), want.astype(np.float32))
