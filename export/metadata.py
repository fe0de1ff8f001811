"""The metadata a run's artifacts carry (ONNX ``metadata_props``, engine side-car): the run's
:class:`~kernelnet.runtime.spec.FilterSpec` through :mod:`kernelnet.runtime.spec_codec`, plus provenance."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from kernelnet import __version__
from kernelnet.config import RunConfig
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.spec_codec import encode_spec

METRIC_KEYS = ("kernel_max_abs_error", "test_psnr_db", "test_mse", "solver", "sparsity")


def _short(value: Any) -> Any:
    return float(f"{value:.6g}") if isinstance(value, float) else value


def run_spec(config: RunConfig, weights: dict[str, np.ndarray], input_dtype: str = "float32") -> FilterSpec:
    """The filter a run's weights (``conv.weight`` (C, 1, k, k), ``conv.bias``; a rank model's ``footprint``
    (1, 1, k, k)) deploy."""
    if config.model == "rank":
        return config.filter_spec(weights["footprint"][:, 0], None, input_dtype)
    return config.filter_spec(weights["conv.weight"][:, 0], weights.get("conv.bias"), input_dtype)


def build_metadata(config: RunConfig, weights: dict[str, np.ndarray], metrics: dict[str, Any], input_dtype: str,
                   precision: str, graph_form: str | None = None, weights_sha256: str | None = None) -> dict[str, str]:
    """String key/values describing the model: version, spec, target, provenance (``weights_sha256``: the digest
    of the run's model.safetensors, so a stale export is refused), headline metrics."""
    kept = {k: _short(metrics[k]) for k in METRIC_KEYS if k in metrics}
    extra = {"version": __version__, "filter": config.filter, "metrics": json.dumps(kept, separators=(",", ":"))}
    if weights_sha256 is not None:
        extra["weights_sha256"] = weights_sha256
    if graph_form is not None:
        extra["graph_form"] = graph_form
    if config.is_pairs:  # how the black box's files hold their values: apply writes the same by default
        extra["target_encoding"] = json.dumps({"format": config.target_format, "dtype": config.target_dtype,
                                               "channels": config.target_channels}, separators=(",", ":"))
    return encode_spec(run_spec(config, weights, input_dtype), precision=precision, target=config.target_spec(),
                       extra=extra)
