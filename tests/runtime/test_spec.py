"""The filter description (FilterSpec) and its metadata codec: round trips, and every malformed or lying field
refused with one line (exit 2 through the CLI) within a second — never a traceback, a hang or a wrong answer."""

from __future__ import annotations

import time

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelnet.runtime import load
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import BORDERS, ROUNDINGS, FilterSpec, InputEncoding, OutputStage
from kernelnet.runtime.spec_codec import decode_info, encode_spec
from tests.helpers import SOBEL, kn, make_onnx


@st.composite
def specs(draw) -> FilterSpec:
    combine = draw(st.sampled_from(["raw", "abs", "magnitude"]))
    k = draw(st.sampled_from([1, 3, 5, 7]))
    c = 2 if combine == "magnitude" else 1
    values = st.floats(-4, 4, allow_nan=False, width=32)
    kernels = np.array(draw(st.lists(values, min_size=c * k * k, max_size=c * k * k)), dtype=np.float32)
    bias = draw(st.none() | st.lists(values, min_size=c, max_size=c))
    output = OutputStage()
    if draw(st.booleans()):
        lo = draw(st.floats(-10, 0))
        output = OutputStage(draw(st.sampled_from([0.5, 1.0, 255.0])), draw(st.floats(-2, 2)), (lo, lo + 5.0),
                             draw(st.sampled_from((None, *ROUNDINGS))))
    return FilterSpec(kernels.reshape(c, k, k), bias, combine, draw(st.sampled_from(BORDERS)),
                      InputEncoding.for_dtype(draw(st.sampled_from(["float32", "uint8"]))), output)


@settings(max_examples=60, deadline=None)
@given(spec=specs())
def test_metadata_round_trip_is_exact(spec):
    info = decode_info(encode_spec(spec, target=FilterSpec.from_kind(SOBEL, spec.model, spec.normalize)))
    got = info.spec
    assert np.array_equal(got.kernels, spec.kernels.astype(np.float32))
    assert np.array_equal(got.bias, spec.bias.astype(np.float32))
    assert (got.combine, got.border, got.input, got.output) == (spec.combine, spec.border, spec.input, spec.output)
    assert np.array_equal(info.target_kernel, SOBEL)


def test_output_stage_in_the_reference():
    spec = FilterSpec.from_kind(np.ones((1, 1)), output=OutputStage(2.0, 0.25, (0.0, 3.0), "half_up"))
    y = apply_spec(np.array([[0.0, 0.375, 1.0, 2.0]]), spec)
    assert y.tolist() == [[0.0, 1.0, 2.0, 3.0]]  # 0.25 → 0 (floor 0.75), 1.0 → 1 (tie, half up), clipped at 3
    with pytest.raises(KernelnetError, match="8-bit output needs a clip"):
        OutputStage(bits=8)


def _with_props(path, **changes: str):
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in changes.items():
        if value is None:
            props.pop(f"kernelnet.{key}", None)
        else:
            props[f"kernelnet.{key}"] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(path))
    return path


DEEP = "[" * 100_000 + "]" * 100_000
BAD_FIELDS = [
    ("kernel_size", "1", "disagrees"), ("kernel_size", "-1", "whole number"), ("kernel_size", "99999999", "whole"),
    ("kernel_size", "abc", "whole number"), ("kernel_size", "3.0", "whole number"), ("kernel_size", "", "whole"),
    ("kernel_size", "5", "disagrees"), ("kernel_size", "33", "between 1 and 31"),
    ("kernel_size", "\u00b3", "whole number"), ("kernel_size", "\u0663", "whole number"),
    ("kernels", "[[1,2],[3]]", "array of numbers"), ("kernels", "[[1,2],3]", "ragged"), ("kernels", "[1,2,3]", "2-D or 3-D"),
    ("kernels", "[[[[1]]]]", "2-D or 3-D"), ("kernels", "3", "2-D or 3-D"), ("kernels", '{"a": 1}', "not a number"),
    ("kernels", '[["1",0,0],[0,0,0],[0,0,0]]', "not a number"), ("bias", "[true]", "not a number"),
    ("bias", '["1"]', "not a number"), ("bias", "[[1]]", "1-D"), ("channels", "0", "channels"),
    ("output_stage", '{"scale": "2"}', "must be a number"), ("output_stage", '{"bits": 8.0}', "bits"), ("kernels", DEEP, "nested deeper"),
    ("kernels", "[[NaN,0,0],[0,0,0],[0,0,0]]", "NaN or Inf"), ("kernels", "[[1,0],[0,1]]", "odd"),
    ("kernels", "not json", "not valid JSON"), ("kernels", "[" + "1," * 600_000 + "1]", "at most"),
    ("bias", "[1,2]", "one per kernel"), ("bias", "abc", "not valid JSON"), ("bias", "[Infinity]", "NaN or Inf"),
    ("padding", "wrap", "padding"), ("model", "triple", "model"), ("normalize", "False", "normalize"),
    ("normalize", "yes", "normalize"), ("input_dtype", "int16", "input_dtype"), ("precision", "fp64", "precision"),
    ("input_scale", "nan", "input_scale"), ("input_scale", "0.5", "not the float32 mapping"), ("output_stage", '{"clip": [3, 1]}', "lo < hi"),
    ("output_stage", '{"rounding": "up"}', "rounding"), ("target_kernel", "[[1,2],[3,4]]", "target_kernel"),
]


@pytest.mark.parametrize("key, value, needle", BAD_FIELDS, ids=[f"{k}={v[:12]}" for k, v, _ in BAD_FIELDS])
def test_malformed_metadata_is_one_line(tmp_path, key, value, needle):
    path = _with_props(make_onnx(tmp_path / "m.onnx", SOBEL[None]), **{key: value})
    start = time.perf_counter()
    with pytest.raises(KernelnetError) as caught:
        load(path)
    assert time.perf_counter() - start < 1.0
    text = str(caught.value)
    assert needle in text and "\n" not in text and len(text) < 400, text


def test_normalize_on_a_magnitude_is_refused(tmp_path):
    path = _with_props(make_onnx(tmp_path / "m.onnx", np.stack([SOBEL, SOBEL.T])), normalize="true")
    with pytest.raises(KernelnetError, match="contradicts model double"):
        load(path)


def test_malformed_metadata_through_the_cli_exits_2(tmp_path):
    path = _with_props(make_onnx(tmp_path / "m.onnx", SOBEL[None]), kernel_size="1")
    for command in (["info", path], ["verify", path], ["bench", path], ["apply", path, path, "--out", tmp_path / "o"]):
        res = kn(*command)
        assert res.exit_code == 2 and "kernel_size 1 disagrees" in res.output and res.output.count("\n") == 1


def test_a_model_without_kernelnet_metadata_runs_whole_on_onnxruntime(tmp_path, rng):
    path = _with_props(make_onnx(tmp_path / "m.onnx", SOBEL[None]), kernels=None, kernel_size=None, bias=None,
                       target_kernel=None)
    model = load(path)
    assert model.info.spec is None and model.runner.name == "onnxruntime"
    x = rng.random((20, 30), dtype=np.float32)
    assert np.abs(model(x) - apply_spec(x, FilterSpec.from_kind(SOBEL))).max() < 1e-5


@pytest.mark.parametrize("shape", [(32, 40, 3), (32, 40, 4)])
def test_colour_frames_are_refused_not_read_as_a_batch(tmp_path, shape):
    model = load(make_onnx(tmp_path / "m.onnx", SOBEL[None]))
    with pytest.raises(KernelnetError, match="colour image"):
        model(np.zeros(shape, np.float32))
    assert model(np.zeros((2, 1, 32, 3), np.float32)).shape == (2, 1, 32, 3)  # width-3 batches: N×1×H×W


def test_matrix_input_is_refused(tmp_path):
    model = load(make_onnx(tmp_path / "m.onnx", SOBEL[None]))
    with pytest.raises(KernelnetError, match="numpy array"):
        model(np.matrix(np.zeros((8, 8), np.float32)))


def test_learning_commands_name_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    for command in ("train", "prune", "export", "quantize", "pipeline"):
        args = [command] if command in ("train", "pipeline") else [command, "somewhere"]
        res = kn(*args)
        assert res.exit_code == 2 and "pip install 'kernelnet[train]'" in res.output, (command, res.output)
        assert res.output.count("\n") == 1
        assert kn(command, "--help").exit_code == 0
