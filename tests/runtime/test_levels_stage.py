"""Integer frames and integer outputs on the native stencil: uint16 frames read directly, output stages (scale,
offset, grid, clip, every rounding, the copy border) computed by the stencil equal to the graph, levels written as
uint8 / uint16, and the structural check that lets the stencil stand in for such graphs."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from kernelnet.runtime import load
from kernelnet.runtime.io.images import quantize_unit, value_range
from kernelnet.runtime.spec import FilterSpec, OutputStage
from tests.helpers import spec_onnx

pytestmark = pytest.mark.usefixtures("stencil_build")  # every stencil build this CPU runs

SOBEL = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])


def photo() -> np.ndarray:
    """A real photo that ships with scikit-image, or a smooth synthetic frame where it is not installed."""
    try:
        from skimage import data

        return data.camera()[:200, :240]
    except ImportError:
        yy, xx = np.mgrid[0:200, 0:240]
        return (127 + 100 * np.sin(xx / 9.0) * np.cos(yy / 13.0)).astype(np.uint8)


def test_uint16_frames_give_the_results_of_the_converted_frame(tmp_path):
    net = load(spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(np.random.default_rng(0).uniform(-1, 1, (5, 5)),
                                                                     "double")))
    assert net.runner.name == "native" and net.runner.accepts_integer
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    as_float = (levels / 65535.0).astype(np.float32)  # what read_gray makes of a 16-bit file
    assert np.array_equal(net(levels), net(as_float))
    graph = load(tmp_path / "m.onnx", backend="onnxruntime")
    assert np.allclose(net(levels), graph(levels), rtol=1e-5, atol=1e-5)  # onnxruntime converts in numpy first


@pytest.mark.parametrize("border", ["zeros", "reflect", "replicate", "symmetric", "copy"])
@pytest.mark.parametrize("rounding", ["half_even", "half_up", "floor", "toward_zero"])
def test_integer_output_stages_run_natively_and_equal_the_graph(tmp_path, border, rounding):
    # an integer-arithmetic black box (OpenCV-style Sobel magnitude... here abs-Sobel in 8-bit levels): the grid
    # holds the exact values, so the stencil's other summation order can never move a tie
    spec = FilterSpec(kernels=(SOBEL * 255 / 4)[None], combine="abs", border=border,
                      output=OutputStage(clip=(0.0, 255.0), rounding=rounding, bits=8, grid=4))
    path = spec_onnx(tmp_path / "m.onnx", spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the native backend takes it: no fallback warning
        net = load(path)
    graph = load(path, backend="onnxruntime")
    assert net.runner.name == "native"
    frame = photo()
    want = graph(frame)
    assert np.array_equal(net(frame), want)
    levels = net.levels(frame)
    assert levels.dtype == np.uint8 and np.array_equal(levels, want)
    wide = net.levels((frame.astype(np.uint16) * 257))  # the same frame as 16-bit levels
    assert np.array_equal(wide, want)


def test_scale_offset_and_16_bit_levels(tmp_path):
    spec = FilterSpec(kernels=np.full((1, 3, 3), 1 / 9), border="replicate",
                      output=OutputStage(scale=65535.0, offset=-100.0, clip=(0.0, 65535.0), rounding="half_up",
                                         bits=16))
    path = spec_onnx(tmp_path / "m.onnx", spec)
    net, graph = load(path), load(path, backend="onnxruntime")
    assert net.runner.name == "native"
    frame = photo().astype(np.uint16) * 257
    levels = net.levels(frame)
    want = graph(frame)
    assert levels.dtype == np.uint16
    # float noise of two summation orders may move a half-level tie here (no grid): never more than one level
    assert np.abs(levels.astype(np.int64) - want).max() <= 1 and np.mean(levels == want) > 0.999


def test_levels_of_a_float_model_are_refused(tmp_path):
    from kernelnet.runtime.errors import KernelnetError

    net = load(spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single")))
    with pytest.raises(KernelnetError, match="no integer output"):
        net.levels(photo())


@pytest.mark.parametrize("backend", ["native", "onnxruntime"])
def test_levels_are_the_filters_levels_on_every_backend(tmp_path, backend):
    from kernelnet.runtime.reference import apply_spec

    spec = FilterSpec(kernels=SOBEL[None] * 255, combine="abs",
                      output=OutputStage(clip=(0.0, 255.0), rounding="half_even", bits=8))
    net = load(spec_onnx(tmp_path / "m.onnx", spec), backend=backend)
    frame = photo()
    levels = net.levels(frame)
    want = apply_spec(frame.astype(np.float64) / 255, spec)  # float64 ground truth: integer sums, no ties
    assert levels.dtype == np.uint8 and levels.shape == frame.shape and np.array_equal(levels, want)
    assert levels.max() == 255 and levels.min() == 0  # the clip was exercised


@pytest.mark.parametrize("tamper", ["clip_hi", "grid", "grid_div", "ring_scale", "half", "rank"])
def test_a_stage_constant_that_differs_from_the_metadata_keeps_the_graph(tmp_path, tamper):
    spec = FilterSpec(kernels=SOBEL[None] * 64, combine="abs", border="copy",
                      output=OutputStage(clip=(0.0, 255.0), rounding="half_up", bits=8, grid=4))
    proto = onnx.load(str(spec_onnx(tmp_path / "m.onnx", spec)))
    names = [i.name for i in proto.graph.initializer]
    target = {"half": next(n for n in names if n.startswith("half")), "rank": "clip_lo"}.get(tamper, tamper)
    for init in proto.graph.initializer:
        if init.name == target:
            value = numpy_helper.to_array(init)
            # the same value in rank 5 would broadcast the output to rank 5
            value = value.reshape(1, 1, 1, 1, 1) if tamper == "rank" else value * np.float32(0.5)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    onnx.save(proto, str(tmp_path / "t.onnx"))
    with pytest.warns(UserWarning, match="not the metadata's stencil"):
        net = load(tmp_path / "t.onnx")
    assert net.runner.name == "onnxruntime"


def test_one_pass_levels_equal_numpys():
    rng = np.random.default_rng(5)
    for trial in range(50):
        y = (rng.standard_normal((31, 45)) * rng.uniform(0.1, 1000)).astype(np.float32)
        if trial % 2:
            y = (np.round(y * 4) / 4).astype(np.float32)  # exact ties
        lo, hi = value_range(y)
        assert (lo, hi) == (float(y.min()), float(y.max()))
        factor, shift = 0.5 / max(abs(lo), abs(hi)), 0.5
        for bits in (8, 16):
            scratch = np.multiply(y, np.float32(factor), dtype=np.float32) + np.float32(shift)
            want = np.rint(np.clip(scratch, 0, 1) * np.float32(2**bits - 1)).astype(np.uint8 if bits == 8 else
                                                                                  np.uint16)
            assert np.array_equal(quantize_unit(y, factor, bits, shift), want)


@pytest.mark.parametrize("tile", [(17, 0), (23, 31)])
def test_stage_models_give_the_whole_image_result_in_tiles(tmp_path, tile):
    spec = FilterSpec(kernels=(SOBEL * 255 / 4)[None], combine="abs", border="copy",
                      output=OutputStage(clip=(0.0, 255.0), rounding="half_up", bits=8, grid=4))
    path = spec_onnx(tmp_path / "m.onnx", spec)
    whole, tiled = load(path, tile=0), load(path, tile=tile)
    assert whole.runner.name == tiled.runner.name == "native"
    frame = photo()
    assert np.array_equal(tiled(frame), whole(frame))
    assert np.array_equal(tiled.levels(frame), whole.levels(frame))


def test_results_go_into_a_given_frame_buffer(tmp_path):
    from kernelnet.runtime.errors import KernelnetError

    path = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "double"))
    for backend in ("native", "onnxruntime"):
        net = load(path, backend=backend)
        frame = photo()
        buffer = np.full(frame.shape, np.nan, np.float32)
        assert net(frame, out=buffer) is buffer and np.array_equal(buffer, net(frame))
        batch = np.stack([frame, frame[::-1]])
        many = np.empty(batch.shape, np.float32)
        assert np.array_equal(net(batch, out=many), net(batch))
        with pytest.raises(KernelnetError, match="out must be"):
            net(frame, out=np.empty(frame.shape, np.float64))


@pytest.mark.parametrize("combine", ["raw", "abs", "magnitude"])
def test_one_by_one_filters_of_integer_frames_equal_the_converted_frame(tmp_path, combine):
    kernels = np.array([[[0.7]], [[-1.3]]])[: 2 if combine == "magnitude" else 1]
    spec = FilterSpec(kernels=kernels, combine=combine, bias=np.array([0.25, -0.5])[: len(kernels)])
    net = load(spec_onnx(tmp_path / "m.onnx", spec))
    assert net.runner.name == "native"
    levels8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    levels16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    assert np.array_equal(net(levels8), net((levels8 / 255.0).astype(np.float32)))
    assert np.array_equal(net(levels16), net((levels16 / 65535.0).astype(np.float32)))


def test_value_range_is_nan_where_numpy_says_so():
    y = np.arange(40, dtype=np.float32)
    y[23] = np.nan
    assert all(np.isnan(v) for v in value_range(y))
    assert value_range(np.arange(5, dtype=np.float32)) == (0.0, 4.0)


def test_an_output_that_aliases_the_input_is_refused(tmp_path):
    from kernelnet.runtime.errors import KernelnetError

    net = load(spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single")))
    frame = photo().astype(np.float32) / 255
    with pytest.raises(KernelnetError, match="shares memory"):
        net(frame, out=frame)
