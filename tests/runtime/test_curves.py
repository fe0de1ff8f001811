"""Curve stages (``FilterSpec.decode``, ``OutputStage.encode``): names validated, metadata round trip, the graph
against the numpy reference on 8-bit and float inputs, tiles exact (the curve is pointwise), a bad name refused."""

from __future__ import annotations

import numpy as np
import pytest

from kernelnet.runtime.curves import check_curve, decode, encode
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import FilterSpec, InputEncoding, OutputStage
from kernelnet.runtime.spec_codec import decode_info, encode_spec


def linear_light(curve, dtype="uint8", border="reflect"):
    kernel = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    return FilterSpec(kernel[None], None, "raw", border, input=InputEncoding.for_dtype(dtype), decode=curve,
                      output=OutputStage(255.0, 0.0, (0.0, 255.0), "half_even", 8, None, curve))


@pytest.mark.parametrize("curve", ["gamma:2.2", "gamma:0.45", "srgb"])
def test_curves_invert_each_other_and_srgb_is_the_standard(curve):
    v = np.linspace(0, 1, 1001)
    assert np.allclose(encode(decode(v, curve), curve), v, atol=1e-12)
    if curve == "srgb":  # IEC 61966-2-1 anchor points
        assert np.isclose(decode(np.array(0.5), curve), 0.21404114, atol=1e-8)
        assert np.isclose(decode(np.array(0.04045), curve), 0.04045 / 12.92)


def test_bad_curve_names_are_refused_in_one_line():
    for bad in ("gamma:0", "gamma:9", "gamma:x", "linear", 2.2, None):
        with pytest.raises(KernelnetError, match="'srgb' or 'gamma:<g>'"):
            check_curve(bad)
    meta = encode_spec(linear_light("gamma:2.2"))
    with pytest.raises(KernelnetError, match="decode"):
        decode_info({**meta, "kernelnet.decode": "gamma:99"})
    with pytest.raises(KernelnetError, match="copy border"):
        linear_light("srgb", border="copy")


@pytest.mark.parametrize("curve", ["gamma:2.2", "srgb"])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_the_graph_is_the_reference_and_tiles_are_exact(tmp_path, curve, dtype):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    spec = linear_light(curve, dtype)
    back = decode_info(encode_spec(spec)).spec
    assert back.decode == curve and back.output.encode == curve
    with pytest.warns(UserWarning, match="no curve stages"):
        model = load(write_graph(tmp_path / "c.onnx", spec))  # native declines in one line; onnxruntime runs it
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 1, 61, 83), dtype=np.uint8)
    frame = x if dtype == "uint8" else (x / np.float32(255)).astype(np.float32)
    want = apply_spec(frame, spec)
    got = model(frame)
    assert np.mean(got == want) >= 0.999 and np.abs(got - want).max() <= 1  # float32 Pow vs float64 at ties
    assert model.runner.halo == 2
    tiled = load(tmp_path / "c.onnx", backend="onnxruntime", tile=(17, 29))
    assert np.array_equal(tiled(frame), got)
