"""Exact closed-form fit (``--solver exact`` / ``--init exact``): one streaming pass, no gradient descent.

Every model kind is a least-squares problem in disguise. With ``z = [patch, 1]`` (the k×k patch under each
output pixel, flattened row-major, with the model's border, plus a constant when the model has a bias):

* single, raw: ``y = w·z`` is linear in ``w = [kernel, bias]``: solve the normal equations.
* single, abs and double: ``y² = zᵀ M z`` with M symmetric positive semi-definite of rank 1 (abs) or
  2 (double), ``M = Σ_c w_c w_cᵀ``. ``y²`` is linear in the upper triangle of M (the "lifted" features
  ``z_i z_j``, i ≤ j), so M is a least-squares fit too; its top eigenpairs give the kernels,
  ``w_c = v_c √λ_c``, up to the model's symmetry (sign for abs, any orthogonal 2×2 map for double).

The normal equations are accumulated in float64 over whole images (deterministic; a fixed random subset of
pixels when the lifted problem is large, k ≥ 5), solved with a rank check, and the result is judged: the
relative residual of the written model over the training images and, for the quadratic kinds, the spectrum of M (mass beyond
rank 1/2 means the data are not of the chosen kind). A fit that does not explain the data says so
(:class:`ExactFitWarning`, ``exact_warning`` in ``metrics.json``) instead of returning a confident kernel.

Example::

    >>> from kernelnet.config import RunConfig
    >>> from kernelnet.learn.models import build_model
    >>> from kernelnet.learn.data import load_builtin
    >>> images = {"camera": load_builtin()["camera"][:128, :128]}
    >>> cfg = RunConfig(model="double", target_kernel=((-1, 0, 1), (-2, 0, 2), (-1, 0, 1)))
    >>> fit = fit_exact(cfg, images, build_model("double"))
    >>> bool(fit.relative_residual < 1e-6), fit.rank == fit.unknowns
    (True, True)
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError
from kernelnet.metrics import align_kernels, target_kernels
from kernelnet.learn.exact_algebra import canonical_factors, lift, patch_matrix, quadratic_form, solve_normal
from kernelnet.runtime.reference import apply_filter, apply_kernels, pad_image

RESIDUAL_TOL = 1e-4
"""Relative residual ‖pred − y‖ / ‖y‖ above which the data are "not explained" (exact data: ~1e-7,
the float32 rounding of the weights)."""
SPECTRUM_TOL = 1e-4
"""Fraction of the fitted quadratic form's spectral mass beyond rank 1/2 above which the kind is wrong."""
FLOP_BUDGET = 1.2e10
"""Rows × unknowns² spent on the normal matrix: every built-in training pixel (3.1 M) for k = 3, lifted;
beyond it a fixed-seed uniform subset of pixels (k = 5 lifted: ~97 000)."""
MIN_ROWS_PER_UNKNOWN = 40
"""Never fewer sampled pixels than this many per unknown (k = 7 lifted: 51 000 pixels)."""
RESIDUAL_PIXELS = 16_000_000
"""About how many pixels (whole images, evenly spread) the residual check reads."""
CHUNK_BYTES = 8 * 2**20
"""Memory bound of one chunk of (lifted) feature rows."""
SPECTRUM_REPORTED = 6


class ExactFitWarning(UserWarning):
    """The data are not (exactly) explained by a model of the chosen kind."""


@dataclass
class ExactFit:
    """The closed-form fit: canonical kernels (C, k, k) and bias (C,) or None, with its diagnostics."""

    kernels: np.ndarray
    bias: np.ndarray | None
    kind: str
    """``linear`` (single raw), ``abs`` (single abs, rank 1) or ``double`` (rank 2)."""
    rank: int
    """Numerical rank of the normal equations; ``unknowns`` when the data determine every coefficient."""
    unknowns: int
    pixels: int
    """Pixels (equations) accumulated into the normal equations."""
    spectrum: np.ndarray | None
    """The largest-|λ| eigenvalues of the fitted M (signed, by |λ| descending) over max |λ| (quadratic kinds)."""
    explained: float | None
    """Share of M's spectral mass Σ|λ| in its top 1 (abs) / 2 (double) positive eigenvalues."""
    relative_residual: float
    """‖pred − y‖ / ‖y‖ of the written (float32) model over the training images (≤ RESIDUAL_PIXELS)."""
    seconds: float
    warning: str | None = None

    def report(self) -> dict[str, Any]:
        """JSON-able ``exact_*`` entries for ``metrics.json``."""
        out: dict[str, Any] = {
            "exact_kind": self.kind,
            "exact_rank": self.rank,
            "exact_unknowns": self.unknowns,
            "exact_pixels": self.pixels,
            "exact_spectrum": None if self.spectrum is None else [float(v) for v in self.spectrum],
            "exact_explained": self.explained,
            "exact_relative_residual": self.relative_residual,
            "exact_fit_seconds": round(self.seconds, 4),
        }
        if self.warning:
            out["exact_warning"] = self.warning
        return out


def canonicalise(kernels: np.ndarray, bias: np.ndarray | None, config: RunConfig,
                 eigvals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Map kernels (C, k, k) and bias (C,) to one representative of their symmetry class.

    Aligned to ``config.target_kernel`` (sign / orthogonal Procrustes, :func:`metrics.align_kernels`) when it
    is known, otherwise :func:`canonical_factors`. The raw single model has no symmetry: unchanged.
    """
    if config.model == "single" and not config.normalize:
        return kernels, bias
    if config.target_kernel:
        target = target_kernels(np.array(config.target_kernel, dtype=np.float64), config.model)
        return align_kernels(kernels, target, config.model, config.normalize, bias)
    c, k = kernels.shape[0], kernels.shape[-1]
    stacked = kernels.reshape(c, -1) if bias is None else np.concatenate([kernels.reshape(c, -1), bias[:, None]], 1)
    stacked = canonical_factors(stacked, np.ones(c) if eigvals is None else eigvals)
    return stacked[:, :k * k].reshape(c, k, k), None if bias is None else stacked[:, k * k]


# ------------------------------------------------------------------------------------------------- the fit


def _kind(config: RunConfig) -> str:
    if config.model == "double":
        return "double"
    return "abs" if config.normalize else "linear"


class _Pairs:
    """(image, target) pairs produced one image at a time, so memory stays bounded by the largest image."""

    def __init__(self, config: RunConfig, images: dict[str, np.ndarray], targets: dict[str, np.ndarray] | None,
                 radius: int) -> None:
        for name, im in images.items():
            if np.ndim(im) != 2:
                raise KernelnetError(f"exact fit: image {name!r} must be (H, W), got shape {np.shape(im)}")
        if targets is None and not config.target_kernel:
            raise KernelnetError("exact fit needs a target kernel (config.target_kernel) or paired target images")
        if targets is not None:
            for name, im in images.items():
                if name not in targets:
                    raise KernelnetError(f"exact fit: no target image for {name!r}")
                if np.shape(targets[name]) != im.shape:
                    raise KernelnetError(f"exact fit: target {name!r} has shape {np.shape(targets[name])}, "
                                         f"image has {im.shape}")
        # torch's reflect border needs H, W > radius: such images cannot be used by the model either
        self.names = [n for n, im in images.items() if config.padding != "reflect" or min(im.shape) > radius]
        if not self.names:
            raise KernelnetError("exact fit: no usable training image (reflect needs images larger than the kernel)")
        self.images, self.targets, self.config = images, targets, config
        self.shapes = [tuple(images[n].shape) for n in self.names]

    def pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image ``index`` (H, W) and its target (H, W), both float64."""
        name, c = self.names[index], self.config
        image = np.asarray(self.images[name], dtype=np.float64)
        if self.targets is not None:
            return image, np.asarray(self.targets[name], dtype=np.float64)
        kernel = np.array(c.target_kernel, dtype=np.float64)
        return image, apply_filter(image, kernel, c.model, c.normalize, c.padding)


def _pixel_sets(shapes: list[tuple[int, ...]], rows_cap: int) -> list[np.ndarray]:
    """Flat pixel indices per image: all of them, or a fixed-seed uniform subset of about ``rows_cap``."""
    total = sum(h * w for h, w in shapes)
    if total <= rows_cap:
        return [np.arange(h * w) for h, w in shapes]
    rng = np.random.default_rng(0)
    frac = rows_cap / total
    return [np.flatnonzero(rng.random(h * w) < frac) for h, w in shapes]


def _accumulate(pairs: _Pairs, pixel_sets: list[np.ndarray], k: int, with_bias: bool, center: float,
                lifted: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Stream chunks of feature rows into the float64 normal equations (G, b) and count the rows."""
    n = k * k + int(with_bias)
    u = n * (n + 1) // 2 if lifted else n
    gram, rhs, rows = np.zeros((u, u)), np.zeros(u), 0
    chunk = max(1024, CHUNK_BYTES // (8 * u))
    for index, pixels in enumerate(pixel_sets):
        if not len(pixels):
            continue
        im, y = pairs.pair(index)
        # pad first, then shift: a zero border stays 0 in the original coordinates
        padded = pad_image(im, k // 2, pairs.config.padding) - center
        yflat = y.ravel()
        for start in range(0, len(pixels), chunk):
            sel = pixels[start:start + chunk]
            z = patch_matrix(padded, im.shape[1], k, sel)  # (k², P)
            if with_bias:
                z = np.concatenate([z, np.ones((1, len(sel)))], axis=0)
            t = yflat[sel]
            if lifted:
                z, t = lift(z), t * t
            gram += z @ z.T
            rhs += z @ t
            rows += len(sel)
    return gram, rhs, rows


def _relative_residual(pairs: _Pairs, kernels: np.ndarray, bias: np.ndarray | None) -> float:
    """‖pred − y‖ / ‖y‖ over whole images (every one, or an even spread of about RESIDUAL_PIXELS pixels)."""
    total = sum(h * w for h, w in pairs.shapes)
    step = max(1, int(np.ceil(total / RESIDUAL_PIXELS)))
    num = den = 0.0
    for index in range(0, len(pairs.names), step):
        im, y = pairs.pair(index)
        pred = apply_kernels(im, kernels, bias, pairs.config.normalize, pairs.config.padding)
        num += float(np.sum((pred - y) ** 2))
        den += float(np.sum(y * y))
    return float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))


def fit_exact(config: RunConfig, images: dict[str, np.ndarray], model: Any,
              targets: dict[str, np.ndarray] | None = None) -> ExactFit:
    """Fit ``model`` (SingleFilter/DoubleFilter, written in place) in closed form to ``images``.

    ``images``: name → (H, W) float32 in [0, 1]. ``targets``: optional name → (H, W) paired outputs (any
    filter at all); by default the target is ``config.target_kernel`` applied in float64 with the model's
    kind, normalize and border. The learned side is ``model.kernel_size`` (≥ the target's).
    Warns with :class:`ExactFitWarning` when the data are not explained by the chosen kind.
    """
    from kernelnet.learn.models import set_kernels

    t0 = time.perf_counter()
    kind = _kind(config)
    k = int(model.conv.weight.shape[-1])
    with_bias = model.conv.bias is not None
    channels = int(model.conv.weight.shape[0])
    if channels != (2 if kind == "double" else 1):
        raise KernelnetError(f"exact fit: model has {channels} kernel(s), config says {config.model}")
    pairs = _Pairs(config, images, targets, k // 2)

    n = k * k + int(with_bias)
    lifted = kind != "linear"
    unknowns = n * (n + 1) // 2 if lifted else n
    rows_cap = max(int(FLOP_BUDGET // unknowns**2), MIN_ROWS_PER_UNKNOWN * unknowns)
    pixel_sets = _pixel_sets(pairs.shapes, rows_cap)
    # Centring the pixels (only possible with the constant column) conditions the lifted problem better.
    center = 0.5 if with_bias else 0.0
    gram, rhs, rows = _accumulate(pairs, pixel_sets, k, with_bias, center, lifted)
    coef, rank = solve_normal(gram, rhs)
    shift = np.eye(n)
    if with_bias:
        shift[:-1, -1] = -center  # z_centred = shift @ z
    spectrum = explained = None
    eigvals = None
    if lifted:
        m = shift.T @ quadratic_form(coef, n) @ shift
        w, v = np.linalg.eigh(m)
        w, v = w[::-1], v[:, ::-1]
        c = 2 if kind == "double" else 1
        scale = float(np.max(np.abs(w))) or 1.0
        spectrum = w[np.argsort(-np.abs(w), kind="stable")][:SPECTRUM_REPORTED] / scale
        mass = float(np.sum(np.abs(w)))
        explained = float(np.sum(np.clip(w[:c], 0, None)) / mass) if mass > 0 else 0.0
        factors = (v[:, :c] * np.sqrt(np.clip(w[:c], 0, None))).T  # (C, n)
        eigvals = w[:c]
    else:
        factors = (shift.T @ coef)[None]  # y = coef·z_c = (shiftᵀ coef)·z
    kernels = factors[:, :k * k].reshape(-1, k, k)
    bias = factors[:, k * k] if with_bias else None
    kernels, bias = canonicalise(kernels, bias, config, eigvals)
    set_kernels(model, kernels, bias)  # then judge what the model holds (float32), as float64
    held_k = model.kernels.cpu().double().numpy()
    held_b = None if model.conv.bias is None else model.conv.bias.detach().cpu().double().numpy()

    residual = _relative_residual(pairs, held_k, held_b)

    problems = []
    if rank < unknowns:
        problems.append(f"the data determine only {rank} of {unknowns} coefficients (rank-deficient)")
    if residual > RESIDUAL_TOL:
        problems.append(f"relative residual {residual:.2e}")
    if explained is not None and 1.0 - explained > SPECTRUM_TOL:
        c = 2 if kind == "double" else 1
        problems.append(f"only {100 * explained:.2f}% of the fitted quadratic form lies in its top {c} "
                        f"eigenvalue{'s' if c > 1 else ''} (spectrum {np.array2string(spectrum, precision=3)})")
    message = None
    if problems:
        label = {"linear": "single raw", "abs": "single abs", "double": "double"}[kind]
        message = (f"exact fit: the data are not explained by a {label} {k}x{k} model: " + "; ".join(problems)
                   + ". The kernels are an approximation, not a recovery of the filter.")
        warnings.warn(message, ExactFitWarning, stacklevel=2)
    return ExactFit(kernels=held_k, bias=held_b, kind=kind, rank=rank, unknowns=unknowns, pixels=rows,
                    spectrum=spectrum, explained=explained, relative_residual=residual,
                    seconds=time.perf_counter() - t0, warning=message)
