"""Pruning masks for ``kernelnet prune``: the amount (count or fraction), the torch mask, holding and removing it.

This is the part of pruning that only needs a conv weight ``(C, 1, k, k)``: which weights an amount means for a
method and scope (:func:`resolve_count`, :func:`count_step`), the 0/1 mask torch's pruning methods give
(:func:`compute_mask`), and putting that mask on a model and making it permanent. Kept apart from the search,
scoring and run-directory writing (:mod:`kernelnet.compress.prune_search`, :mod:`kernelnet.compress.prune`) because it
is pure tensor logic and is what the tests compare with ``torch.nn.utils.prune`` directly.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from kernelnet.runtime.errors import KernelnetError

if TYPE_CHECKING:
    import torch

METHODS = ("l1", "random", "structured")
SCOPES = ("global", "per-kernel")
STRUCTURES = ("columns", "rows")
Amount = Union[int, float, str]
"""An integer count of weights, a fraction in (0, 1), or ``"auto"``."""


def parse_amount(text: str | int | float) -> Amount:
    """``"auto"``, an integer count (``"3"``) or a fraction (``"0.33"``); checks the fraction is in (0, 1)."""
    if isinstance(text, bool):
        raise KernelnetError(f"invalid amount {text!r}")
    if isinstance(text, (int, float)):
        value: Amount = text
    else:
        s = str(text).strip().lower()
        if s == "auto":
            return "auto"
        try:
            value = int(s)
        except ValueError:
            try:
                value = float(s)
            except ValueError:
                raise KernelnetError(
                    f"invalid amount {text!r}: use a fraction in (0, 1), a weight count or 'auto'") from None
    if isinstance(value, float) and not 0.0 < value < 1.0:
        raise KernelnetError(f"amount {value!r} is outside (0, 1): a fraction must be strictly between 0 and 1 "
                             "(write a weight count as an integer)")
    if isinstance(value, int) and value < 1:
        raise KernelnetError(f"amount {value} is not a valid weight count (must be >= 1)")
    return value


def _layout(shape: tuple[int, ...], method: str, scope: str) -> tuple[int, int, int]:
    """(ranked groups, candidates per group, weights per candidate) for a conv weight (C, 1, k, k)."""
    c, k = int(shape[0]), int(shape[-1])
    groups = c if scope == "per-kernel" else 1
    unit = k if method == "structured" else 1
    return groups, c * k * k // (groups * unit), unit


def count_step(shape: tuple[int, ...], method: str, scope: str) -> int:
    """The smallest number of weights the method can prune (counts must be multiples of it)."""
    groups, _, unit = _layout(shape, method, scope)
    return groups * unit


def resolve_count(amount: int | float, shape: tuple[int, ...], method: str = "l1", scope: str = "global") -> int:
    """Weights to prune in a conv weight of ``shape`` for a count or fraction ``amount`` (validated)."""
    total = int(np.prod(shape))
    groups, units, unit = _layout(shape, method, scope)
    if isinstance(amount, float):
        amount = parse_amount(amount)  # range check
        per_group = round(amount * units)
        if per_group < 1:
            what = "columns/rows" if method == "structured" else "weights"
            raise KernelnetError(f"amount {amount} prunes nothing ({units} {what} per group): use a larger amount")
        return groups * per_group * unit
    if not isinstance(amount, int) or amount < 1:
        raise KernelnetError(f"amount {amount!r} is not a valid weight count (must be >= 1)")
    if amount > total:
        raise KernelnetError(f"amount {amount} is more than the model's {total} weights")
    step = groups * unit
    if amount % step:
        why = []
        if unit > 1:
            why.append(f"structured pruning removes whole columns/rows of {unit}")
        if groups > 1:
            why.append(f"--per-kernel splits it equally over {groups} kernels")
        raise KernelnetError(f"amount {amount} must be a multiple of {step} ({' and '.join(why)})")
    return amount


def compute_mask(weight: torch.Tensor, method: str = "l1", count: int = 1, scope: str = "global",
                 structure: str = "columns", seed: int = 0) -> torch.Tensor:
    """The 0/1 mask (same shape as ``weight`` (C, 1, k, k)) that prunes ``count`` weights.

    Uses torch's pruning methods: for ``l1``/``random`` with ``global`` scope this is exactly the mask of
    ``prune.global_unstructured`` over the weight; for a single kernel, ``structured`` columns equal
    ``prune.ln_structured(conv, "weight", n, n=1, dim=3)`` (rows: ``dim=2``).
    """
    import torch
    from torch.nn.utils import prune

    if method not in METHODS:
        raise KernelnetError(f"unknown pruning method {method!r}: use one of {', '.join(METHODS)}")
    groups, _, unit = _layout(tuple(weight.shape), method, scope)
    per_group = count // (groups * unit)
    c, k = weight.shape[0], weight.shape[-1]
    index = torch.arange(weight.numel()).reshape(c, k, k)
    flat = weight.detach().reshape(-1).float().cpu()
    mask = torch.ones_like(flat)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for g in range(groups):
            sel = index if groups == 1 else index[g:g + 1]
            if method == "structured":
                # one row of `slots` per candidate: a column (or row) of one kernel
                slots = (sel.transpose(1, 2) if structure == "columns" else sel).reshape(-1, k)
                pm = prune.LnStructured(per_group, n=1, dim=0)
            else:
                slots = sel.reshape(-1)
                pm = (prune.L1Unstructured if method == "l1" else prune.RandomUnstructured)(per_group)
            values = flat[slots]
            mask[slots.reshape(-1)] = pm.compute_mask(values, torch.ones_like(values)).reshape(-1)
    return mask.reshape(weight.shape).to(weight.dtype)


def _refresh_mask(model: torch.nn.Module, args: Any) -> None:
    """Model forward pre-hook: recompute ``conv.weight = weight_orig * weight_mask``.

    The models read ``conv.weight`` directly (``F.conv2d`` after their own padding) instead of calling
    ``conv(...)``, so torch's pruning hook on the conv would never run; this runs it before every forward.
    """
    from torch.nn.utils import prune

    for hook in list(model.conv._forward_pre_hooks.values()):
        if isinstance(hook, prune.BasePruningMethod):
            hook(model.conv, args)


def apply_mask(model: torch.nn.Module, mask: torch.Tensor) -> None:
    """Hold ``mask`` on ``model.conv.weight`` with ``prune.custom_from_mask`` (reparametrised, trainable)."""
    from torch.nn.utils import prune

    prune.custom_from_mask(model.conv, "weight", mask.to(model.conv.weight.device))
    model.register_forward_pre_hook(_refresh_mask)


def make_permanent(model: torch.nn.Module) -> None:
    """``prune.remove``: fold the mask into an ordinary ``conv.weight`` (zeros where pruned)."""
    from torch.nn.utils import prune

    prune.remove(model.conv, "weight")
    for key in [k for k, fn in model._forward_pre_hooks.items() if fn is _refresh_mask]:
        del model._forward_pre_hooks[key]


def pruned_copy(model: torch.nn.Module, mask: torch.Tensor) -> torch.nn.Module:
    """A copy of ``model`` with ``mask`` applied permanently."""
    out = copy.deepcopy(model)
    apply_mask(out, mask)
    make_permanent(out)
    return out
