"""Build the optional C stencil of the native CPU backend (metadata lives in pyproject.toml).

The extension is optional: without a C compiler the package still installs and ``kernelnet.runtime`` runs every
model with onnxruntime instead.
"""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3", "-fno-math-errno", "-pthread"]

setup(ext_modules=[Extension("kernelnet.runtime._stencil", ["runtime/_stencil.c"], extra_compile_args=FLAGS,
                             depends=["runtime/stencil_convert.h", "runtime/stencil_stage.h", "runtime/stencil_levels.h",
                                      "runtime/stencil_blocked.h"],
                             extra_link_args=[] if sys.platform == "win32" else ["-pthread"], optional=True)])
