"""The comparator, kept apart from the runners: tolerances and the error statistics of one comparison.

A comparison passes when every pixel satisfies ``|got − want| ≤ atol + rtol × |want| + slack`` (numpy's
``allclose`` rule plus a fixed ``slack``, used for the learned-vs-target kernel allowance). Example::

    >>> import numpy as np
    >>> compare(np.array([1.0, 2.0]), np.array([1.0, 2.001]), Tolerance(atol=1e-2), "a ~ b", "2").ok
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """Allowed ``|got − want| ≤ atol + rtol × |want| + slack``."""

    atol: float
    rtol: float = 0.0
    slack: float = 0.0

    def allowed(self, want: np.ndarray) -> np.ndarray | float:
        base = self.atol + self.slack
        return base + self.rtol * np.abs(want) if self.rtol else base

    def loosest(self, other: Tolerance) -> Tolerance:
        return Tolerance(max(self.atol, other.atol), max(self.rtol, other.rtol), max(self.slack, other.slack))

    def label(self) -> str:
        parts = [f"atol {self.atol:.2g}"]
        if self.rtol:
            parts.append(f"rtol {self.rtol:.2g}")
        if self.slack:
            parts.append(f"+ {self.slack:.2g}")
        return " ".join(parts)


@dataclass(frozen=True)
class Comparison:
    """One check on one case: the largest error, how many pixels broke the tolerance, pass/fail."""

    check: str
    case: str
    max_abs_error: float
    mismatches: int
    pixels: int
    tolerance: str
    ok: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(got: np.ndarray, want: np.ndarray, tol: Tolerance, check: str, case: str) -> Comparison:
    """Compare ``got`` with ``want`` (same shape; computed in float64). Shapes that differ fail outright."""
    if got.shape != want.shape:
        return Comparison(check, case, float("inf"), int(want.size), int(want.size),
                          f"shape {got.shape} != {want.shape}", False)
    diff = np.abs(got.astype(np.float64) - want)
    bad = ~(diff <= tol.allowed(want))  # NaN counts as a mismatch
    mismatches = int(np.count_nonzero(bad))
    max_err = float(np.max(diff)) if diff.size and not np.isnan(diff).any() else float("nan")
    return Comparison(check, case, max_err, mismatches, int(diff.size), tol.label(), mismatches == 0)


def summarize(comparisons: list[Comparison]) -> list[dict[str, Any]]:
    """One row per check: cases, worst error and where, mismatching pixels, tolerance, ok (all cases pass)."""
    rows: dict[str, dict[str, Any]] = {}
    worst: dict[str, float] = {}
    for c in comparisons:
        row = rows.setdefault(c.check, {"check": c.check, "cases": 0, "max_abs_error": 0.0, "worst_case": c.case,
                                        "mismatches": 0, "tolerance": c.tolerance, "ok": True})
        row["cases"] += 1
        row["mismatches"] += c.mismatches
        row["ok"] = row["ok"] and c.ok
        key = float("inf") if np.isnan(c.max_abs_error) else c.max_abs_error
        if key > worst.get(c.check, -1.0):
            worst[c.check] = key
            row.update(max_abs_error=c.max_abs_error, worst_case=c.case, tolerance=c.tolerance)
    return list(rows.values())
