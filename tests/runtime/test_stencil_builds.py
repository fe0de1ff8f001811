"""The stencil's builds against each other: every instruction set this CPU runs gives the same answer.

The avx2 and avx512 builds (and the avx512 build's register-blocked rows for kernels above 7×7) compute each pixel
with the same fused multiply-adds in the same order: the same bits. The x86-64 baseline build multiplies and adds
apart, so it agrees within the float32 bound of the computation. ``KERNELNET_STENCIL_ISA`` picks a build in a
fresh process.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from kernelnet.runtime import load
from kernelnet.runtime.backends import native_backend
from kernelnet.runtime.checks.float_bounds import combined_error_bound
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.backends.stencil_isa import available
from tests.helpers import spec_onnx

pytestmark = pytest.mark.skipif(not native_backend.available(),
                                reason="the C stencil extension is not built (no C compiler at install)")


def cases(tmp_path, rng) -> list[tuple[FilterSpec, object]]:
    """Kernel sizes on both sides of the unrolled 7×7, every combine, borders, one output stage."""
    from kernelnet.runtime.spec import OutputStage

    found = []
    for k, kind, border in ((1, "single", "zeros"), (3, "double", "reflect"), (5, "abs", "symmetric"),
                            (7, "single", "replicate"), (9, "single", "replicate"), (15, "double", "zeros"),
                            (31, "single", "symmetric"), (11, "abs", "reflect")):
        kernels = rng.uniform(-1, 1, (k, k))
        spec = (FilterSpec(kernels=kernels[None], combine="abs", border=border) if kind == "abs"
                else FilterSpec.from_kind(kernels, kind, padding=border))
        found.append((spec, spec_onnx(tmp_path / f"{k}{kind}.onnx", spec)))
    staged = FilterSpec.from_kind(np.round(rng.uniform(-8, 8, (5, 5))) / 16, padding="reflect",
                                  output=OutputStage(scale=255.0, clip=(0.0, 255.0), rounding="half_even", bits=8,
                                                     grid=16))
    found.append((staged, spec_onnx(tmp_path / "staged.onnx", staged)))
    return found


def run_in(isa: str, paths: list, x_path, env: dict[str, str] | None = None) -> list[np.ndarray]:
    """Each model run natively on x in a fresh process with ``KERNELNET_STENCIL_ISA=isa``."""
    script = ("import sys, numpy as np; from kernelnet.runtime import load; from kernelnet.runtime.backends import native_backend as n; "
              "assert n.ISA == sys.argv[1], n.ISA; x = np.load(sys.argv[2]); "
              "[np.save(p + '.' + sys.argv[1] + '.npy', load(p, backend='native')(x)) for p in sys.argv[3:]]")
    subprocess.run([sys.executable, "-c", script, isa, str(x_path), *map(str, paths)], check=True,
                   env={**os.environ, "KERNELNET_STENCIL_ISA": isa, **(env or {})}, timeout=120)
    return [np.load(f"{p}.{isa}.npy") for p in paths]


def test_every_build_gives_the_answer_of_the_others(tmp_path):
    builds = list(available())
    rng = np.random.default_rng(9)
    x = rng.random((2, 1, 75, 333), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    specs, paths = zip(*cases(tmp_path, rng))
    got = {isa: run_in(isa, paths, tmp_path / "x.npy") for isa in builds}
    fma_builds = [isa for isa in builds if isa != "baseline"]
    for isa in fma_builds[1:]:  # avx2 and avx512: the same fused multiply-adds in the same order
        for path, a, b in zip(paths, got[fma_builds[0]], got[isa]):
            assert np.array_equal(a, b), (isa, path.name)
    if "baseline" in got and fma_builds:
        for spec, path, a, b in zip(specs, paths, got["baseline"], got[fma_builds[-1]]):
            if spec.output.identity:
                assert np.abs(a - b).max() <= 2 * combined_error_bound(spec), path.name
            else:  # levels: a float32 sum on either side of a tie moves one level, rarely
                assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3, path.name


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_blocked_rows_give_the_bits_of_the_row_at_a_time_path(tmp_path, isa):
    """Kernels from 5×5 up run several rows at a time in the optimised builds; KERNELNET_STENCIL_ROWWISE=1 turns
    that off."""
    if isa not in available():
        pytest.skip(f"this CPU does not run the {isa} build")
    rng = np.random.default_rng(3)
    x = rng.random((2, 1, 75, 333), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    paths = [path for spec, path in cases(tmp_path, rng) if spec.kernel_size >= 5]
    blocked = run_in(isa, paths, tmp_path / "x.npy")
    rowwise = run_in(isa, paths, tmp_path / "x.npy", {"KERNELNET_STENCIL_ROWWISE": "1"})
    for path, a, b in zip(paths, blocked, rowwise):
        assert np.array_equal(a, b), path.name


def test_the_build_is_chosen_by_the_cpu_or_the_environment():
    builds = list(available())
    assert native_backend.ISA == builds[-1] or os.environ.get("KERNELNET_STENCIL_ISA")
    script = "from kernelnet.runtime.backends import native_backend as n; print(n.ISA); print(n.BUILD_PROBLEM)"
    for asked, want in (("baseline", builds[0]), ("avx512", builds[-1])):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={**os.environ, "KERNELNET_STENCIL_ISA": asked}).stdout.split("\n")
        assert out[0] == want, (asked, out)  # capped by what this CPU runs
    bad = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "KERNELNET_STENCIL_ISA": "sse9"}).stdout
    assert "KERNELNET_STENCIL_ISA='sse9' is not one of baseline, avx2, avx512" in bad


def test_the_chosen_build_is_named_where_the_model_runs(tmp_path):
    spec = FilterSpec.from_kind(np.ones((3, 3)) / 9)
    model = load(spec_onnx(tmp_path / "box.onnx", spec))
    assert model.runner.name == "native" and model.describe()["isa"] == native_backend.ISA
