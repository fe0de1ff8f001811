"""The rungs above one kernel, for integer targets the identified kernel writes fewer than ``TRIGGER`` of the levels
of: the chain rung (:mod:`kernelnet.identify.chain`: a refined kernel, or 1-D passes rounded in between) for a raw
kernel, the split rung (:mod:`kernelnet.identify.chain_split`: a blur then |derivative|) for a 5×5 |kernel| or
magnitude, then the curve rung (:mod:`kernelnet.identify.curve`: the kernel in linear light). The first that writes
the levels wins, in that order (shorter programs first)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import FilterSpec

TRIGGER = 0.999
"""The share of training levels below which a longer program is looked for (the verdict's own bar)."""
REFINE_FROM, REFINE_MAX = 0.9, 9
"""The one kernel is refined against the levels (an LP) when it already writes this share and is at most 9×9."""


def longer_program(pairs: PairSet, spec: FilterSpec, fixed_combine: str | None, clip: tuple[float, float] | None,
                   in_levels: float, candidates: list[dict[str, Any]]) -> tuple[FilterSpec, bool] | None:
    """(the program, whether it writes ``TRIGGER`` of the training levels), or None where ``spec`` already does
    or no longer program beats it."""
    from kernelnet.identify.chain import CHAIN_BORDERS, exact_share, identify_chain, training_planes

    share = exact_share(spec, training_planes(pairs))  # the planes every longer program is scored on
    if share >= TRIGGER or spec.is_rank:
        return None
    if spec.combine == "raw" and spec.border in CHAIN_BORDERS:  # the ring chose the border: the passes use it too
        kernel = spec.kernels[0] if share >= REFINE_FROM and spec.kernel_size <= REFINE_MAX else None
        chained = identify_chain(pairs, clip, in_levels, [spec.border], kernel, candidates)
        if chained is not None:
            return chained[0], True
    if spec.combine in ("abs", "magnitude") and spec.kernel_size == 5 and fixed_combine is None:
        from kernelnet.identify.chain_split import identify_split

        strongest = spec.kernels[int(np.argmax(np.abs(spec.kernels).sum(axis=(1, 2))))]
        split = identify_split(pairs, strongest, spec.border, in_levels, candidates)
        if split is not None:
            return split[0], True
    if fixed_combine is None:
        from kernelnet.identify.curve import identify_curve

        curved = identify_curve(pairs, clip, spec.border, share, candidates)
        if curved is not None:
            return curved[0], curved[1] >= TRIGGER
    return None
