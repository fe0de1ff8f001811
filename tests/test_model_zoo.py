"""The model zoo: every way a user makes a model, and which backend ``load()`` picks for it.

A model whose spec the native stencil can run (fp32, gray, float32 or uint8 input) must run on it: a silent fall
back to onnxruntime (5-10x slower) fails here, whatever the route — exact, Adam or SGD training, every named
filter, every border, raw / abs / magnitude, conv / separable / split graph forms, pairs-identified black boxes
with output stages, pruned runs, uint8-input exports. Models the stencil cannot run (int8, fp16) go to
onnxruntime with the reason the spec gives, never "does not describe the graph".
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import needs_torch, save_exact_run

pytestmark = [needs_torch, pytest.mark.slow]

NAMED = ("sobel", "scharr", "prewitt", "laplacian", "gaussian", "box", "sharpen", "emboss", "random:5", "gaussian5")
ROUTES = (
    [("exact", model, normalize, "sobel", "zeros") for model, normalize in
     (("single", False), ("single", True), ("double", False))]
    + [(solver, model, normalize, "sobel", "zeros") for solver in ("adam", "sgd")
       for model, normalize in (("single", False), ("single", True), ("double", False))]
    + [("exact", "single", False, name, "zeros") for name in NAMED[1:]]
    + [("exact", model, False, "sobel", border) for border in ("reflect", "replicate", "symmetric", "reflect_symmetric")
       for model in ("single", "double")]
)


def loaded(path: Path) -> tuple[str, list[str]]:
    """The backend ``load(path)`` picks and the warnings it gives."""
    from kernelnet.runtime import load

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load(path)
    return model.runner.name, [str(w.message) for w in caught]


def assert_native(path: Path) -> None:
    backend, said = loaded(path)
    assert (backend, said) == ("native", []), path


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


def train_route(out: Path, solver: str, model: str, normalize: bool, name: str, border: str) -> Path:
    from kernelnet.config import RunConfig
    from kernelnet.filters import resolve_filter
    from kernelnet.learn.training import train

    target = resolve_filter(name)
    config = RunConfig(filter=name, target_kernel=tuple(map(tuple, target.kernel.tolist())), model=model,
                       normalize=normalize, kernel_size=target.kernel.shape[0], padding=border, solver=solver,
                       epochs=2, steps_per_epoch=5)
    train(config, out, progress=False, plots=False)
    return out


@pytest.mark.parametrize("route", ROUTES, ids=["-".join(map(str, r)) for r in ROUTES])
def test_trained_models_run_natively(zoo, route):
    from kernelnet.export.onnx_export import export_onnx

    run = train_route(zoo / "-".join(map(str, route)).replace(":", ""), *route)
    result = export_onnx(run)
    if route[1] == "double":
        assert result.metadata["kernelnet.graph_form"] == "split"
    elif route[3] in ("sobel", "scharr", "prewitt", "gaussian", "box") and route[0] == "exact":
        assert result.metadata["kernelnet.graph_form"] == "separable"  # exact fits of rank-1 kernels: near-zero taps
    assert_native(result.path)
    assert_native(export_onnx(run, run / "u8.onnx", input_dtype="uint8").path)
    if result.metadata["kernelnet.graph_form"] == "separable":
        assert_native(export_onnx(run, run / "conv.onnx", form="conv").path)


def test_rank_one_plus_noise_is_exported_as_the_kernel_it_is(zoo):
    """A kernel a hair from rank 1 is exported whole (its separable product would not be the metadata's kernel),
    an exactly rank-1 one with float noise in its zero taps separably; both run natively."""
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.export.onnx_graph import choose_form
    from kernelnet.runtime.spec import FilterSpec

    sobel = np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    noisy_zeros = sobel + np.array([[0, -1.75e-13, 0], [0, 3e-14, 0], [0, 0, 0]])
    assert choose_form(FilterSpec.from_kind(noisy_zeros)) == "separable"
    near = sobel + 1e-5 * np.random.default_rng(0).standard_normal((3, 3))
    assert choose_form(FilterSpec.from_kind(near)) == "conv"
    for name, kernel in (("zeros", noisy_zeros), ("near", near)):
        run = save_exact_run(zoo / f"custom-{name}", kernel, padding="reflect")
        assert_native(export_onnx(run).path)


def test_pairs_black_boxes_run_natively(zoo):
    """Pairs-identified models carry output stages (clip, grid, rounding, 16-bit levels, Pillow's copy ring)."""
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.learn.pairs_train import train_pairs
    from tests.black_boxes import BOXES, make_pairs

    for name, (box, suffix, rgb, _) in sorted(BOXES.items()):
        folder = zoo / "pairs" / name
        data, targets = make_pairs(folder, box, suffix, rgb, count=4, side=48)
        train_pairs(data, targets, folder / "run", plots=False)
        assert_native(export_onnx(folder / "run").path)


def test_pruned_runs_run_natively_and_compressed_ones_say_why_not(zoo):
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.export.quantize import quantize_run
    from kernelnet.compress.prune import prune_run

    run = train_route(zoo / "to-prune", "exact", "double", False, "sobel", "reflect")
    pruned = prune_run(run, zoo / "pruned", amount="auto", plots=False).run_dir
    assert_native(export_onnx(pruned).path)
    export_onnx(run)
    int8 = quantize_run(run, samples=4, latency_runs=1).path
    assert loaded(int8) == ("onnxruntime", [])  # int8 runs where int8 runs: expected, so silent
    half = export_onnx(run, run / "half.onnx", fp16=True).path
    assert loaded(half) == ("onnxruntime", [])
    from kernelnet.runtime.backends import chosen_backend

    for path, why in ((int8, "only fp32 models"), (half, "only fp32 models"), (run / "model.onnx", "")):
        backend, reason = chosen_backend(path)
        assert why in reason and (backend == "native") == (not why), (path, reason)
