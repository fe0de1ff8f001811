"""Property-based parity (issue 8): exported ONNX models, run through ``kernelnet.runtime.load`` with both CPU
backends (the native stencil, load()'s default, and onnxruntime), equal the numpy reference filter on random sizes,
batches, layouts and dtypes; forced tiles equal the whole-image result bit for bit.

Exporting takes about a second, so a fixed set of real exports (random uniform kernels, k ∈ {1, 3, 5}, each model
kind with each border) is made once per module and hypothesis draws everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime import load
from kernelnet.runtime.model import Model
from kernelnet.runtime.reference import apply_filter


@dataclass(frozen=True)
class Spec:
    model: str
    normalize: bool
    k: int
    padding: str
    kernel: str = "random"


SPECS = {  # every kind meets every k and every border; each (k, border) pair once per kind
    "raw-k1-zeros": Spec("single", False, 1, "zeros"),
    "raw-k3-reflect": Spec("single", False, 3, "reflect"),
    "raw-k5-replicate": Spec("single", False, 5, "replicate"),
    "raw-sobel-zeros": Spec("single", False, 3, "zeros", kernel="sobel"),  # rank 1: the separable graph form
    "abs-k1-reflect": Spec("single", True, 1, "reflect"),
    "abs-k3-replicate": Spec("single", True, 3, "replicate"),
    "abs-k5-zeros": Spec("single", True, 5, "zeros"),
    "double-k1-replicate": Spec("double", False, 1, "replicate"),
    "double-k3-zeros": Spec("double", False, 3, "zeros"),
    "double-k5-reflect": Spec("double", False, 5, "reflect"),
}


@dataclass
class Exported:
    path: Path
    spec: Spec
    kernel: np.ndarray  # float64 values of the float32 weights actually in the graph
    whole: Model  # load(path, tile=0): never tiles (the native stencil)
    graph: Model  # the same with onnxruntime

    @property
    def gain(self) -> float:
        """The largest possible |output| for inputs in [0, 1]."""
        g = float(np.abs(self.kernel).sum())
        return g * np.sqrt(2) if self.spec.model == "double" else g

    def reference(self, x: np.ndarray) -> np.ndarray:
        return apply_filter(x, self.kernel, self.spec.model, self.spec.normalize, self.spec.padding)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Exported]:
    from kernelnet.filters import resolve_filter
    from tests.helpers import export_exact

    root = tmp_path_factory.mktemp("property-exports")
    rng = np.random.default_rng(20240608)
    out = {}
    for name, spec in SPECS.items():
        kernel = resolve_filter(spec.kernel).kernel if spec.kernel != "random" else rng.uniform(-2, 2, (spec.k,) * 2)
        path = export_exact(root / name, kernel=kernel, model=spec.model, normalize=spec.normalize,
                            padding=spec.padding)  # parity is what this module checks
        weights = kernel.astype(np.float32).astype(np.float64)
        out[name] = Exported(path, spec, weights, load(path, tile=0), load(path, backend="onnxruntime", tile=0))
    return out


inputs = st.fixed_dictionaries({
    "h": st.integers(1, 70), "w": st.integers(1, 70), "n": st.integers(1, 3),
    "layout": st.sampled_from(["HW", "NHW", "N1HW"]), "dtype": st.sampled_from(["float32", "uint8"]),
    "pattern": st.sampled_from(["uniform", "binary", "constant", "ramp"]), "seed": st.integers(0, 2**32 - 1),
})


def make_input(h: int, w: int, n: int, layout: str, dtype: str, pattern: str, seed: int) -> np.ndarray:
    """A batch in the runtime's accepted layouts and dtypes; ``HW`` takes the first image only."""
    rng = np.random.default_rng(seed)
    if pattern == "uniform":
        x = rng.random((n, h, w))
    elif pattern == "binary":  # hard edges: the largest responses
        x = (rng.random((n, h, w)) > 0.5).astype(np.float64)
    elif pattern == "constant":  # flat: the magnitude's sqrt sits at (or near) zero
        x = np.full((n, h, w), rng.random())
    else:
        x = np.add.outer(np.linspace(0, 1, h), np.linspace(0, 1, w))[None].repeat(n, 0) / 2
    x = np.round(x * 255).astype(np.uint8) if dtype == "uint8" else x.astype(np.float32)
    return {"HW": x[0], "NHW": x, "N1HW": x[:, None]}[layout]


def colour_like(case: dict) -> bool:
    """An N×H×W input whose last side is 3 or 4: indistinguishable from an H×W×3|4 colour frame."""
    return case["layout"] == "NHW" and case["w"] in (3, 4)


def as_unit_float64(x: np.ndarray) -> np.ndarray:
    """What the graph computes on: uint8 / 255, float32 as is."""
    return x / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SPECS)), case=inputs)
def test_export_matches_numpy_reference(exports, name, case):
    model = exports[name]
    x = make_input(**case)
    if colour_like(case):
        for backend in (model.whole, model.graph):
            with pytest.raises(KernelnetError, match="colour image"):
                backend(x)  # an N×H×3 batch reads as an H×W×3 colour frame: refused (N×1×H×W runs it)
        return
    if model.spec.padding == "reflect" and min(case["h"], case["w"]) <= model.spec.k // 2:
        for backend in (model.whole, model.graph):
            with pytest.raises(KernelnetError, match="reflect border needs"):
                backend(x)  # undefined border: refused, never a wrong answer
        return
    want = model.reference(as_unit_float64(x))
    tolerance = 4e-6 * model.gain + 1e-5 * np.abs(want)
    for backend in (model.whole, model.graph):
        y = backend(x)
        assert y.shape == x.shape and y.dtype == np.float32
        err = np.abs(y.astype(np.float64) - want)
        assert (err <= tolerance).all(), (f"{backend.runner.name}: max error {err.max():.3g} at "
                                          f"{np.unravel_index(err.argmax(), err.shape)}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SPECS)), case=inputs, rows=st.integers(0, 72), cols=st.integers(0, 72))
def test_forced_tiles_equal_whole_image(exports, name, case, rows, cols):
    model = exports[name]
    if colour_like(case) or model.spec.padding == "reflect" and min(case["h"], case["w"]) <= model.spec.k // 2:
        return  # refused either way (checked above)
    x = make_input(**case)
    for backend, whole in (("native", model.whole), ("onnxruntime", model.graph)):
        tiled = load(model.path, backend=backend, tile=(rows, cols))
        assert np.array_equal(tiled(x), whole(x)), (backend, rows, cols, tiled.plan(case["h"], case["w"])[:3])
