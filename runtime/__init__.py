"""kernelnet.runtime: run exported filters without torch (numpy + onnxruntime; TensorRT where present).

    >>> from kernelnet.runtime import load                        # doctest: +SKIP
    >>> model = load("artifacts/runs/sobel-single")               # doctest: +SKIP
    >>> y = model(image)                                          # doctest: +SKIP

``load`` takes a model file or a run directory (→ ``model.onnx``); ``image`` is H×W, N×H×W or N×1×H×W,
float32 in [0, 1] or uint8 (an H×W×3|4 colour frame is refused, not read as a batch); ``y`` is float32 in the
same layout.

Modules: ``spec`` (FilterSpec, the one description of a deployed filter) and ``spec_codec`` (its metadata),
``base`` (Runner interface), ``onnxruntime_backend`` / ``tensorrt_backend`` (one per backend),
``model`` (layouts, checks, tiling), ``tiling``, ``session`` (session options + tune file), ``reference`` (numpy
ground truth), ``compare`` / ``verify`` / ``bench`` / ``autotune`` (written once over the Runner interface).
Nothing here imports torch; backends are imported on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kernelnet.runtime.model import Model, TileArg
    from kernelnet.runtime.backends.session import SessionConfig

__all__ = ["load"]


def load(path: str | os.PathLike[str], backend: str = "auto", threads: int | None = None,
         tile: TileArg = None, check_finite: bool = True, session: SessionConfig | None = None) -> Model:
    """Load an exported filter as a callable :class:`~kernelnet.runtime.model.Model`.

    Args:
        path: ``.onnx`` / ``.engine`` file, or a run directory (→ ``model.onnx``).
        backend: ``auto`` (engine → ``tensorrt``, else ``onnxruntime`` CPU), ``onnxruntime``,
            ``onnxruntime-cuda``, ``onnxruntime-tensorrt`` or ``tensorrt``.
        threads: onnxruntime intra-op threads (default: the tune file's choice, else onnxruntime's default).
        tile: ``None`` automatic, ``0`` never, ``N`` N×N tiles, ``(rows, cols)`` (0 = full axis); default: the
            tune file's choice, else automatic.
        check_finite: refuse float inputs containing NaN/Inf.
        session: onnxruntime session settings (graph optimization level, threads, execution mode, spinning);
            default: the tune file beside the model (``kernelnet tune``; not read when ``session`` is given),
            else ``SessionConfig()`` (ORT_ENABLE_BASIC).

    Raises:
        KernelnetError: missing, corrupt or unsupported model file; backend not available here.
    """
    from kernelnet.runtime.backends import open_runner
    from kernelnet.runtime.describe import resolve_model_path
    from kernelnet.runtime.model import Model
    from kernelnet.runtime.backends.session import SessionConfig, resolve_session

    resolved = resolve_model_path(path)
    config, tuned = (resolve_session(resolved, session) if resolved.suffix == ".onnx"
                     else (session or SessionConfig(), None))  # only .onnx models are tuned
    runner = open_runner(resolved, backend, threads, config=config)
    if tile is None and tuned is not None:
        tile = tuned.tile
    return Model(runner, tile=tile, check_finite=check_finite)
