"""Build the optional C stencil of the native CPU backend and the PNG row unfilter of the gray PNG reader
(metadata lives in pyproject.toml).

The extension is optional: without a C compiler the package still installs, and ``kernelnet.runtime`` runs every
model with onnxruntime instead and says so (``kernelnet info``, ``bench`` and the first ``load``).

On x86-64 with GCC or Clang the stencil is built three times from the same source: ``_stencil`` for the
compiler's default target (any x86-64), ``_stencil_avx2`` for x86-64-v3 (AVX2 + FMA) and ``_stencil_avx512`` for
x86-64-v4 (AVX-512, where the register-blocked path for large kernels lives). ``kernelnet.runtime.backends.stencil_isa``
imports the best one the CPU runs, or the one ``KERNELNET_STENCIL_ISA`` names, so each path is tested on any
machine that runs it. Elsewhere (aarch64, Windows) one build for the default target.
"""

import platform
import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-pthread"]
LINK = [] if sys.platform == "win32" else ["-pthread"]
HEADERS = ["runtime/stencil_convert.h", "runtime/stencil_stage.h", "runtime/stencil_levels.h",
           "runtime/stencil_blocked.h", "runtime/stencil_rank.h",
           "runtime/stencil_rank_u8.h"]
X86_BUILDS = {"_stencil_avx2": "x86-64-v3", "_stencil_avx512": "x86-64-v4"}


def stencil(module: str, flags: list[str]) -> Extension:
    return Extension(f"kernelnet.runtime.{module}", ["runtime/_stencil.c"], extra_compile_args=FLAGS + flags,
                     define_macros=[("STENCIL_MODULE", module)], depends=HEADERS, extra_link_args=LINK,
                     optional=True)


extensions = [stencil("_stencil", []),
              Extension("kernelnet.runtime._png_filters", ["runtime/_png_filters.c"], extra_compile_args=FLAGS,
                        optional=True)]  # PNG rows unfiltered for runtime/io/png_decode.py
if sys.platform != "win32" and platform.machine().lower() in ("x86_64", "amd64"):
    extensions += [stencil(module, [f"-march={arch}", "-mtune=generic"]) for module, arch in X86_BUILDS.items()]

setup(ext_modules=extensions)
