"""Gradient descent on random crops of pairs (``kernelnet train --targets OUT --solver adam|sgd``).

For the filters an exact least-squares fit cannot express — a saturating or non-linear black box that no kernel
reproduces — the identified model (or a random start of the given kind and size) is refined by minimising the
squared error of its clipped output against the targets on random crops, so saturated pixels count as what they
are. Crops come from the training pairs, a few per file per epoch (one file pair in memory at a time); the
loss ignores each crop's outer k//2 ring, which depends on pixels outside the crop. Targets are scaled to about
[0, 1] while training, so one learning rate suits 8-bit, 16-bit and float targets.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kernelnet.runtime.io.pairs import PairSet
from kernelnet.runtime.spec import FilterSpec

CROPS_PER_PLANE = 8
CROP = 48


def _crops(pairs: PairSet, rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _, x, y in pairs.iter_planes(pairs.train):
        side = min(CROP, x.shape[0], x.shape[1])
        if side <= 2 * (k // 2):
            continue
        for _ in range(CROPS_PER_PLANE):
            i, j = rng.integers(0, x.shape[0] - side + 1), rng.integers(0, x.shape[1] - side + 1)
            xs.append(x[i:i + side, j:j + side])
            ys.append(y[i:i + side, j:j + side])
    side = min(a.shape[0] for a in xs)
    return (np.stack([a[:side, :side] for a in xs])[:, None].astype(np.float32),
            np.stack([a[:side, :side] for a in ys])[:, None].astype(np.float32))


def refine(spec: FilterSpec, pairs: PairSet, *, solver: str = "adam", epochs: int = 60, lr: float = 0.01,
           seed: int = 0, start: str = "exact") -> tuple[FilterSpec, list[dict[str, Any]]]:
    """``spec``'s kernels and bias refined by gradient descent on crops of ``pairs``; returns the new spec and
    the per-epoch history (``epoch``, ``train_loss``)."""
    import torch

    from kernelnet.learn.models import build_model, set_kernels

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scale = float(pairs.encoding.levels or 1.0)
    model = build_model(spec.model, spec.kernel_size, True, spec.normalize,
                        "zeros" if spec.border == "copy" else spec.border)
    if start == "exact":
        set_kernels(model, (spec.kernels / scale).astype(np.float32), (spec.bias / scale).astype(np.float32))
    lo, hi = spec.output.clip if spec.output.clip else (-np.inf, np.inf)
    opt = (torch.optim.Adam if solver == "adam" else torch.optim.SGD)(model.parameters(), lr=lr)
    r = spec.halo
    history = []
    for epoch in range(epochs):
        x, y = (torch.from_numpy(a) for a in _crops(pairs, rng, spec.kernel_size))
        opt.zero_grad()
        pred = torch.clamp(model(x), lo / scale, hi / scale)
        inner = (slice(None), slice(None), slice(r, pred.shape[2] - r), slice(r, pred.shape[3] - r))
        loss = torch.mean((pred[inner] - y[inner] / scale) ** 2)
        loss.backward()
        opt.step()
        history.append({"epoch": epoch + 1, "train_loss": float(loss.detach()) * scale * scale})
    with torch.no_grad():
        kernels = model.conv.weight.detach().double().numpy()[:, 0] * scale
        bias = model.conv.bias.detach().double().numpy() * scale
    return spec.replace(kernels=kernels, bias=bias), history
