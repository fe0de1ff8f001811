"""Chains of passes (``FilterSpec.after``): validation, metadata round trip, the spliced graph and the native
chain against the numpy reference and Pillow's own BoxBlur, tiles, every stencil build, and a tampered pass."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image, ImageFilter

from kernelnet.runtime.backends import native_backend
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.program import program_line
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.spec import FilterSpec, InputEncoding, OutputStage
from kernelnet.runtime.spec_codec import decode_info, encode_spec

needs_native = pytest.mark.skipif(not native_backend.available(), reason="the C stencil extension is not built")


def line(taps, axis, gain=1.0):
    k = len(taps)
    kernel = np.zeros((k, k))
    if axis == "h":
        kernel[k // 2] = np.asarray(taps) * gain
    else:
        kernel[:, k // 2] = np.asarray(taps) * gain
    return kernel


def box_chain(radius, border="replicate", dtype="uint8", rounding="half_up"):
    """Pillow's BoxBlur(radius) as two rounded passes (8-bit levels in and out)."""
    k = 2 * radius + 1
    stage = OutputStage(clip=(0.0, 255.0), rounding=rounding, bits=8, grid=k)
    second = FilterSpec(line(np.full(k, 1 / k), "v"), None, "raw", border, output=stage)
    return FilterSpec(line(np.full(k, 1 / k), "h", 255.0), None, "raw", border,
                      input=InputEncoding.for_dtype(dtype), output=stage, after=(second,))


def photo(h=97, w=131, seed=0):
    """A crop of scikit-image's camera photo; the bare runtime install (no scikit-image) gets a textured image of
    smooth shading, hard edges and noise instead."""
    rng = np.random.default_rng(seed)
    try:
        import skimage.data as data
    except ImportError:
        yy, xx = np.mgrid[0:h, 0:w]
        img = 120 + 80 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + 60 * ((xx // 17 + yy // 11) % 2)
        return np.clip(img + rng.normal(0, 12, (h, w)), 0, 255).astype(np.uint8)
    img = data.camera()
    y, x = rng.integers(0, 300, 2)
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def test_a_chain_is_validated_and_reads_as_its_passes():
    spec = box_chain(2)
    assert spec.reach == 4 and spec.halo == 2 and len(spec.passes) == 2 and spec.final_output.bits == 8
    assert program_line(spec).count("→ 5×1 vertical") == 1
    with pytest.raises(KernelnetError, match="copy border"):
        spec.replace(border="copy")
    with pytest.raises(KernelnetError, match="float32 values"):
        spec.replace(after=(spec.passes[0],))  # a later pass taking uint8
    with pytest.raises(KernelnetError, match="no passes of its own"):
        spec.replace(after=(spec.passes[1].replace(after=(spec.passes[1],)),))
    symmetric = spec.replace(after=(spec.after[0].replace(border="reflect", kernels=np.ones((1, 9, 9)) / 81),))
    assert symmetric.min_side == 5  # the widest pass's mirror sets the smallest image


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_the_reference_is_pillows_box_blur(radius):
    x = photo(seed=radius)
    want = np.asarray(Image.fromarray(x).filter(ImageFilter.BoxBlur(radius)))
    assert np.array_equal(apply_spec(x, box_chain(radius)), want)


def test_metadata_round_trips_and_refuses_a_bad_pass():
    spec = box_chain(3, "symmetric")
    meta = encode_spec(spec)
    back = decode_info(meta).spec
    assert back.reach == 6 and back.after[0].border == "symmetric"
    assert np.array_equal(back.after[0].kernels, spec.after[0].kernels.astype(np.float32))
    assert decode_info(meta).halo == 6  # tiles take the whole chain's halo
    for key, value, message in (("kernelnet.passes", "9", "2..8 passes"),
                                ("kernelnet.passes", "3", "pass3: no kernels"),
                                ("kernelnet.pass2.padding", "copy", "cannot use the copy border"),
                                ("kernelnet.pass2.kernels", "[[[1,2]]]", "pass2")):
        with pytest.raises(KernelnetError, match=message):
            decode_info({**meta, key: value})


@pytest.mark.parametrize("border", ["replicate", "zeros", "reflect", "symmetric", "reflect_symmetric"])
def test_the_graph_and_the_native_chain_give_the_references_bits(tmp_path, border):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    spec = box_chain(2, border)
    path = write_graph(tmp_path / "chain.onnx", spec)
    backends = ["onnxruntime"] + (["native"] if native_backend.available() else [])
    for backend in backends:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the native chain is proven pass by pass: no fallback warning
            model = load(path, backend=backend)
        for h, w in ((61, 83), (3, 40), (5, 5)):
            if min(h, w) < spec.min_side:
                continue
            x = photo(h, w, seed=h)
            want = apply_spec(x, spec)
            assert np.array_equal(model(x), want.astype(np.float32)), (backend, h, w)
            assert np.array_equal(model.levels(x), want.astype(np.uint8)), (backend, h, w)
        big = photo(240, 300, seed=7)
        tiled = load(path, backend=backend, tile=(37, 53))
        assert np.array_equal(tiled(big), apply_spec(big, spec).astype(np.float32)), backend


@needs_native
def test_a_tampered_pass_is_refused_by_the_native_backend(tmp_path):
    import onnx

    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    path = write_graph(tmp_path / "chain.onnx", box_chain(1))
    proto = onnx.load(str(path))
    second = next(t for t in proto.graph.initializer if t.name.startswith("p2/") and len(t.float_data or []) == 0
                  and onnx.numpy_helper.to_array(t).size == 3)
    value = onnx.numpy_helper.to_array(second).copy()
    value.flat[0] *= 1.5
    second.CopyFrom(onnx.numpy_helper.from_array(value, second.name))
    onnx.save(proto, str(path))
    with pytest.raises(KernelnetError, match="pass 2"):
        load(path, backend="native")


@needs_native
def test_every_stencil_build_runs_the_chain(tmp_path):
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime.backends.stencil_isa import available
    from tests.runtime.test_stencil_builds import run_in

    spec = box_chain(2, "reflect", dtype="float32")
    path = write_graph(tmp_path / "c.onnx", spec)
    x = (photo(61, 207, seed=3)[None, None] / np.float32(255)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for isa in available():
        (got,) = run_in(isa, [path], tmp_path / "x.npy")
        assert np.array_equal(got, apply_spec(x, spec).astype(np.float32)), isa


@needs_native
def test_a_graph_whose_declared_output_is_not_the_chains_is_refused(tmp_path):
    """The proof walks back from the tensor named ``output``: a graph that declares another output (here the
    first pass's) is not the chain, whatever its nodes hold."""
    import onnx

    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load

    path = write_graph(tmp_path / "chain.onnx", box_chain(2))
    proto = onnx.load(str(path))
    proto.graph.node.append(onnx.helper.make_node("Identity", ["p1/output"], ["early"]))
    proto.graph.output[0].name = "early"
    onnx.save(proto, str(path))
    with pytest.raises(KernelnetError, match="outputs \\['early'\\]"):
        load(path, backend="native")


def test_mixed_chains_tile_and_verify_within_their_propagated_tolerance(tmp_path):
    """A 5×5 blur then a 3×3 median (a rank pass narrower than the widest), and a float chain whose second pass
    has a gain of 121 (no rounding): tiles are exact, and verify's tolerance follows the passes' gains."""
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load
    from tests.helpers import kn

    median = FilterSpec.rank_filter("median", 3, "square", "replicate")
    blur = FilterSpec(np.ones((1, 5, 5)) / 25, None, "raw", "reflect", after=(median,))
    sharp = FilterSpec(line([0.3, 0.4, 0.3], "h"), None, "raw", "replicate",
                       after=(FilterSpec(line([-30.0, 61.0, -30.0], "v"), None, "raw", "replicate"),))
    x = photo(90, 120, seed=5).astype(np.float32) / 255
    for i, spec in enumerate((blur, sharp)):
        path = write_graph(tmp_path / f"m{i}.onnx", spec)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # tiling trusted: no "never in tiles" warning
            model = load(path, backend="onnxruntime", tile=(23, 31))
        assert model.runner.halo == spec.reach
        got, want = model(x), apply_spec(x, spec)
        assert np.abs(got - want).max() <= 1e-5 * (121 if i else 1), i
        res = kn("verify", path, "--sizes", "17x23,64x64")
        assert res.exit_code == 0, res.output


def test_chain_metadata_refuses_stray_pass_keys():
    meta = encode_spec(box_chain(2))
    for key in ("kernelnet.pass2.input_dtype", "kernelnet.pass3.kernels", "kernelnet.pass1.kernels"):
        with pytest.raises(KernelnetError, match="not a key of a pass"):
            decode_info({**meta, key: "[[[1]]]"})
    with pytest.raises(KernelnetError, match="not a key of a pass"):
        decode_info({k: v for k, v in meta.items() if k != "kernelnet.passes"})


@needs_native
def test_a_floored_grid_pass_after_float_passes_is_proven_at_every_seed(tmp_path):
    """ImageMagick's blur: float 1-D taps rounded to 16-bit quanta, then ÷257 floored to 8 bits. The last pass is
    on a grid, but what it reads may differ by a quantum between two float implementations, so its floor may tip
    a level: the tolerance allows that step and the native proof holds at every probe seed (it failed at ~7%)."""
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime import load
    from kernelnet.runtime.backends.native_chain import chain_probe_difference
    from kernelnet.runtime.checks.float_bounds import chain_tolerance

    taps = np.array([0.0044, 0.054, 0.242, 0.399, 0.242, 0.054, 0.0044, 0.0, 0.0]) + 1e-4 * np.arange(9)
    taps /= taps.sum()
    quanta = OutputStage(clip=(0.0, 65535.0), rounding="half_up", bits=16)
    down = FilterSpec(np.ones((1, 1, 1)) / 257, None, "raw", "replicate",
                      output=OutputStage(clip=(0.0, 255.0), rounding="floor", bits=8, grid=257))
    second = FilterSpec(line(taps, "v"), None, "raw", "replicate", output=quanta)
    spec = FilterSpec(line(taps, "h", 65535.0), None, "raw", "replicate", input=InputEncoding.for_dtype("uint8"),
                      output=quanta, after=(second, down))
    assert chain_tolerance(spec) >= 1.0  # one level of the floored output
    path = write_graph(tmp_path / "im_blur.onnx", spec)
    native = load(path, backend="native").runner
    graph = load(path, backend="onnxruntime").runner
    assert max(chain_probe_difference(native, graph, seed) for seed in range(40)) <= 1.0
