"""Model metadata written into exported artifacts (ONNX ``metadata_props``, engine side-car JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kernelnet import __version__
from kernelnet.config import RunConfig
from kernelnet.runtime.metadata import PREFIX

METRIC_KEYS = ("kernel_max_abs_error", "test_psnr_db", "test_mse", "solver", "sparsity")


def _compact(values: np.ndarray) -> str:
    """JSON of float32 values in their shortest round-trip form (keeps a 3×3 model under 1 KB)."""
    arr = np.asarray(values, dtype=np.float32)
    text = np.array2string(arr, separator=",", threshold=1 << 30, max_line_width=1 << 30,
                           formatter={"float_kind": lambda v: np.format_float_positional(v, unique=True, trim="-")
                                      if 1e-4 <= abs(v) < 1e6 or v == 0 else np.format_float_scientific(v, unique=True, trim="-")})
    return text.replace(" ", "").replace("\n", "")


def _short(value: Any) -> Any:
    return float(f"{value:.6g}") if isinstance(value, float) else value


def build_metadata(config: RunConfig, weights: dict[str, np.ndarray], metrics: dict[str, Any], input_dtype: str,
                   precision: str) -> dict[str, str]:
    """String key/values describing the model: version, kind, target, kernels, border, dtype, metrics."""
    kernels = weights["conv.weight"][:, 0]
    bias = weights.get("conv.bias")
    kept = {k: _short(metrics[k]) for k in METRIC_KEYS if k in metrics}
    meta = {
        "version": __version__,
        "model": config.model,
        "normalize": "true" if config.normalize else "false",
        "filter": config.filter,
        "target_kernel": _compact(np.array(config.target_kernel)),
        "kernels": _compact(kernels),
        "bias": _compact(bias) if bias is not None else "[]",
        "padding": config.padding,
        "kernel_size": str(config.kernel_size),
        "input_dtype": input_dtype,
        "precision": precision,
        "metrics": json.dumps(kept, separators=(",", ":")),
    }
    return {PREFIX + k: v for k, v in meta.items()}
