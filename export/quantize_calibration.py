"""Calibration for ``kernelnet quantize``: random crops of the TRAIN split fed to onnxruntime's calibrators.

Kept apart from the graph surgery so that the data side (which crops, how many, in which batches) and the
calibrator settings per method (MinMax / Entropy / Percentile) can be read and changed in one place. The crops
come from the training data pipeline (:func:`kernelnet.learn.data.sample_crops`), so calibration sees the same kind of
patches the model was trained on, and never the TEST photos used to evaluate the int8 model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_CROP = 128
CALIBRATION_BATCH = 8


def calibration_side(images: dict[str, np.ndarray], crop: int = CALIBRATION_CROP) -> int:
    """The calibration crop side: ``crop``, or the largest square that fits in the biggest image."""
    return min(crop, max(min(im.shape) for im in images.values()))


def _reader(images: dict[str, np.ndarray], samples: int, side: int, seed: int) -> Any:
    """A CalibrationDataReader yielding ``samples`` random crops (n, 1, side, side) of ``images``, in batches of
    :data:`CALIBRATION_BATCH` made on demand (the batch dimension is dynamic)."""
    from onnxruntime.quantization import CalibrationDataReader

    from kernelnet.learn.data import sample_crops, usable_for_crops

    usable = usable_for_crops(images, side)

    class CropReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rng = np.random.default_rng([seed, 8])
            self._left = samples

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._left <= 0:
                return None
            n = min(CALIBRATION_BATCH, self._left)
            self._left -= n
            return {"input": sample_crops(usable, n, side, self._rng)}

    return CropReader()


def _calibration_method(method: str) -> Any:
    """onnxruntime's ``CalibrationMethod`` for a ``--calibration-method`` name."""
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[method]


def _calibrate(pre_path: Path, reader: Any, method: str, symmetric: bool, workdir: Path) -> tuple[Path, dict]:
    """Run onnxruntime's calibrator over the Conv tensors; write its cache (for quantize_static) and return ranges."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    options: dict[str, Any] = {"symmetric": symmetric}
    if method == "entropy":
        options.update(num_bins=1024, num_quantized_bins=255)
    elif method == "percentile":
        options.update(num_bins=2048, percentile=99.999)
    calibrator = create_calibrator(pre_path, ["Conv"], augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=_calibration_method(method), extra_options=options)
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    cache = workdir / "calibration.json"
    save_tensors_data(ranges, cache)
    out = {name: [float(np.asarray(v.range_value[0]).min()), float(np.asarray(v.range_value[1]).max())]
           for name, v in ranges.data.items()}
    return cache, out
