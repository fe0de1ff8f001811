"""Which build of the C stencil runs: the best instruction set this CPU has, or the one the environment names.

``setup.py`` builds the stencil once per instruction set on x86-64 — ``_stencil`` (any x86-64; the one build on
other machines), ``_stencil_avx2`` (x86-64-v3: AVX2, FMA) and ``_stencil_avx512`` (x86-64-v4: AVX-512, with the
register-blocked rows for kernels above 7×7). The baseline build says which ones the CPU runs (``cpu_isas``), so
a build is imported only where its instructions exist. ``KERNELNET_STENCIL_ISA=baseline|avx2|avx512`` picks one
(capped by the CPU): the test suite and CI run the portable paths that way on machines that have more.

Float results: the optimised builds contract ``a + k·x`` into fused multiply-adds (so do aarch64 compilers), the
x86-64 baseline build does not, so its float32 outputs may differ from theirs in the last bit; the avx2 and
avx512 builds give the same bits.

    >>> from kernelnet.runtime.backends.stencil_isa import load_stencil           # doctest: +SKIP
    >>> load_stencil()[1]                                                # doctest: +SKIP
    'avx512'
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

ISA_ENV = "KERNELNET_STENCIL_ISA"
OPTIMISED = ("avx2", "avx512")
"""The optimised x86-64 builds, from the least to the most demanding."""
FIX = ("install a C compiler and the Python headers (Debian: apt-get install gcc python3-dev), then reinstall "
       "kernelnet (pip install --force-reinstall --no-deps kernelnet, or pip install -e . in a checkout)")


def _import(name: str) -> ModuleType:
    return importlib.import_module(f"kernelnet.runtime.{name}")


def available() -> dict[str, ModuleType]:
    """The stencil builds installed that this CPU runs, by instruction-set name, from the most portable up
    (empty when the extension is not built)."""
    try:
        base = _import("_stencil")
        runs = base.cpu_isas()
    except (ImportError, AttributeError):  # not built, or built by an older kernelnet (load_stencil says so)
        return {}
    found = {base.isa: base}
    for isa in OPTIMISED:
        if isa in runs:
            try:
                found[isa] = _import(f"_stencil_{isa}")
            except ImportError:  # that build failed (an old compiler): the others still run
                continue
    return found


def load_stencil() -> tuple[ModuleType | None, str, str]:
    """(module, its instruction set, problem): the build to run, or ``None`` and one line that says why not and
    how to fix it."""
    try:
        base = _import("_stencil")
    except ImportError as exc:
        return None, "", (f"the C stencil extension is not built ({exc}), so every model runs on onnxruntime, "
                          f"5-10x slower: {FIX}")
    if not hasattr(base, "cpu_isas"):
        return None, "", ("the C stencil extension was built by an older kernelnet, so every model runs on "
                          f"onnxruntime: {FIX}")
    builds = available()
    wanted = os.environ.get(ISA_ENV, "").strip().lower()
    if not wanted:
        isa = list(builds)[-1]
        return builds[isa], isa, ""
    if wanted in builds:  # a build this machine has by name (an aarch64 machine's one build is "aarch64")
        return builds[wanted], wanted, ""
    rank = {name: i for i, name in enumerate(("baseline", *OPTIMISED))}
    if wanted not in rank:
        return None, "", f"{ISA_ENV}={wanted!r} is not one of {', '.join(rank)} (unset it for the best build)"
    # the most demanding build up to the one asked for (the default build of a non-x86 machine counts as baseline)
    isa = [name for name in builds if rank.get(name, 0) <= rank[wanted]][-1]
    return builds[isa], isa, ""
