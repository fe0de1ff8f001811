"""``kernelnet train --data IN --targets OUT``: learn a black-box filter from the user's own pairs.

Identification (:mod:`kernelnet.identify`) fixes kind, kernel size, border, clip, grid and rounding by exact
least squares; the held-out pairs (a split by source file) then say how well the model reproduces the black box's
own files: ``heldout_exact_fraction`` (integer targets), ``heldout_psnr_db`` against ``noise_floor_psnr_db``, and
the ``verdict`` — ``reproduced`` at the floor, else ``approximated`` (a median filter, a gamma curve), with the
best residual instead of a confident kernel. The run directory is an ordinary one (model.safetensors,
config.json with the output stage and the targets' encoding, metrics.json, history.csv, plots/), so export,
apply and verify take it like any other.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from kernelnet.config import RunConfig
from kernelnet.identify import Fixed, Identified, identify
from kernelnet.runtime.io.pairs import PairSet, load_pairs, planes
from kernelnet.runtime.align import align_kernels, embed_center
from kernelnet.runtime.reference import apply_spec
from kernelnet.runtime.program import footprint_name, program_line, program_stages
from kernelnet.runtime.spec import FilterSpec
from kernelnet.runtime.chain_codec import pass_fields
from kernelnet.runtime.checks.verify_pairs import floor_db, reproduces

PLOT_SIDE = 512
"""The sample plots show at most this corner of each image."""
NAMED_MATCH = 1e-3
RANK_NAMES = {"min": "erosion", "max": "dilation", "median": "median filter", "range": "morphological gradient"}


def heldout(pairs: PairSet, spec: FilterSpec, engine: str = "local", address: str | None = None) -> dict[str, Any]:
    """Held-out figures of ``spec`` (float64 reference; the exported graph is checked by ``kernelnet verify``);
    ``engine`` ``ray``: summed over shards of the held-out pairs by Ray tasks."""
    from kernelnet.runtime.checks.verify_pairs import score_pairs

    if engine == "ray":
        from kernelnet.identify.shards import score_over_shards

        score = score_over_shards(pairs, spec, "ray", address)
    else:
        score = score_pairs(pairs, pairs.test or pairs.train, lambda x: apply_spec(x, spec))
    return {"heldout_pairs": score.pairs, "heldout_psnr_db": score.psnr_db,
            "heldout_exact_fraction": score.exact_fraction, "heldout_max_error": score.max_error,
            "test_mse": score.mse, "test_psnr_db": score.psnr_db, "peak": score.peak}


def nearest_named_filter(spec: FilterSpec) -> str | None:
    """The named kernel ``spec`` equals up to scale, sign, transposition, flips (and the magnitude's rotation)."""
    from kernelnet.filters import NAMED_KERNELS

    learned = spec.kernels
    for name, kernel in NAMED_KERNELS.items():
        if kernel.shape[0] > spec.kernel_size:
            continue
        for variant in (kernel, kernel.T, kernel[::-1], kernel[:, ::-1], kernel[::-1, ::-1]):
            target = embed_center(np.stack([variant, variant.T]) if spec.combine == "magnitude" else variant[None],
                                  spec.kernel_size)
            scale = float(np.sum(learned * target) / max(np.sum(target * target), 1e-30))
            if spec.combine == "magnitude":
                aligned, _ = align_kernels(learned / (np.linalg.norm(learned) or 1), target / np.linalg.norm(target),
                                           "double", False)
                err = float(np.abs(aligned - target / np.linalg.norm(target)).max())
            else:
                if scale == 0:
                    continue
                err = float(np.abs(learned / scale - target).max() / np.abs(target).max())
            if err < NAMED_MATCH:
                return name
    return None


def rank_fields(spec: FilterSpec) -> dict[str, Any]:
    """``rank`` and ``footprint`` (square, cross, or its taps) of a rank filter, for ``identified``."""
    return {"rank": spec.combine, "footprint": footprint_name(spec)}


def _config(pairs: PairSet, found: Identified, data: str, targets: str, seed: int, name: str) -> RunConfig:
    spec, out = found.spec, found.spec.output
    return RunConfig(filter="pairs", model=spec.model, normalize=spec.normalize, kernel_size=spec.kernel_size,
                     bias=True, padding=spec.border, data=str(data), targets=str(targets), solver="exact",
                     seed=seed, name=name, clip=out.clip, rounding=out.rounding, output_bits=out.bits,
                     grid=out.grid, target_format=pairs.encoding.format, target_dtype=pairs.encoding.dtype,
                     target_channels=pairs.encoding.channels, output_scale=out.scale, output_offset=out.offset,
                     rank=spec.combine if spec.is_rank else "", after=tuple(pass_fields(p) for p in spec.after),
                     decode=spec.decode or "", encode=out.encode or "")


def _train_mse(pairs: PairSet, spec: FilterSpec, strips: int = 8) -> float:
    sq = count = 0.0
    for index, strip in enumerate(pairs.iter_strips(pairs.train)):
        if index >= strips:
            break
        y = strip.y[strip.own]
        sq += float(np.sum((apply_spec(strip.x, spec)[strip.own] - y) ** 2))
        count += y.size
    return sq / max(count, 1)


def train_pairs(data: str | os.PathLike[str], targets: str | os.PathLike[str], out: str | os.PathLike[str],
                fixed: Fixed | None = None, *, seed: int = 0, plots: bool = True, solver: str = "exact",
                epochs: int = 60, lr: float = 0.01, engine: str = "local", address: str | None = None) -> Any:
    """Identify the filter behind the pairs and write the run directory ``out``; returns a ``TrainResult``.

    A one-kernel linear program of float targets is then fitted again on every training pixel, its normal
    equations summed shard by shard (:func:`kernelnet.identify.shards.fit_over_shards`). ``engine`` ``ray`` sums
    the shards in Ray tasks on the cluster at ``address`` — the same sums, so the same kernels — and the held-out
    figures too; the program itself is identified here, from bounded samples of the pairs.

    ``solver`` ``adam`` / ``sgd`` then refines the identified kernels by gradient descent on random crops of the
    training pairs (:mod:`kernelnet.learn.pairs_gradient`), kept when it lowers the training error."""
    if engine == "ray":
        from kernelnet.rundir import check_run_dir
        from kernelnet.runtime.cluster.connection import ray_session

        check_run_dir(out, (data, targets))  # before a cluster is started
        with ray_session(address):  # one cluster for the fit and the held-out sums
            return _train(data, targets, out, fixed, seed, plots, solver, epochs, lr, address, on_ray=True)
    return _train(data, targets, out, fixed, seed, plots, solver, epochs, lr, address, on_ray=False)


def _train(data: str | os.PathLike[str], targets: str | os.PathLike[str], out: str | os.PathLike[str],
           fixed: Fixed | None, seed: int, plots: bool, solver: str, epochs: int, lr: float, address: str | None,
           on_ray: bool) -> Any:
    import torch

    from kernelnet.learn.models import build_model, set_kernels
    from kernelnet.rundir import check_run_dir, run_transaction, save_history, save_metrics, save_model
    from kernelnet.learn.training import TrainResult

    t0 = time.perf_counter()
    check_run_dir(out, (data, targets))  # before any work: not into the user's folders, not over a stranger
    pairs = load_pairs(data, targets)
    found = identify(pairs, fixed, pairs.input_levels)
    exact_fit = _fit_every_pixel(pairs, found, "ray" if on_ray else "local", address)
    history: list[dict[str, Any]] = []
    gradient_kept = None
    if solver != "exact" and not found.spec.is_rank and not found.spec.after and not found.spec.decode:  # nothing to descend on: an order
        # statistic, or passes rounded in between
        from kernelnet.learn.pairs_gradient import refine

        refined, history = refine(found.spec, pairs, solver=solver, epochs=epochs, lr=lr, seed=seed)
        gradient_kept = _train_mse(pairs, refined) < _train_mse(pairs, found.spec)
        if gradient_kept:
            found.spec = refined
    run_dir = Path(out)
    config = _config(pairs, found, os.path.abspath(data), os.path.abspath(targets), seed,
                     run_dir.name).replace(solver=solver)  # absolute: prune and quantize find them from anywhere
    figures = heldout(pairs, found.spec, "ray" if on_ray else "local", address)
    floor = floor_db(pairs)
    # the one verdict, on the held-out pairs: what ``kernelnet verify --data --targets`` and the pipeline ask too
    reproduced = reproduces(figures["heldout_exact_fraction"], figures["heldout_psnr_db"], floor)
    spec = found.spec
    metrics: dict[str, Any] = {
        "identified": {"model": spec.model, "normalize": spec.normalize, "kernel_size": spec.kernel_size,
                       "padding": spec.border, "clip": list(spec.output.clip) if spec.output.clip else None,
                       "rounding": spec.output.rounding, **(rank_fields(spec) if spec.is_rank else {}),
                       "program": program_stages(spec)},
        "program": program_line(spec),
        "verdict": "reproduced" if reproduced else "approximated",
        "nearest_named_filter": nearest_named_filter(spec) if reproduced and not spec.is_rank and not spec.after
        and not spec.decode else None,
        "noise_floor_psnr_db": floor,
        **{k: v for k, v in figures.items() if k != "peak"},
        "interior_rms": found.rms, "floor_rms": found.floor_rms, "grid": spec.output.grid,
        "candidates": found.candidates, "border_errors": found.border_errors,
        "pairs": len(pairs.pairs), "split": {"train": [p.name for p in pairs.train], "test": [p.name for p in pairs.test]},
        "heldout_is_training": not pairs.test,
        "target_encoding": pairs.encoding.to_dict(),
        "train_seconds": round(time.perf_counter() - t0, 3), "epochs_run": len(history), "solver": solver,
        "gradient_kept": gradient_kept, "exact_fit": exact_fit,
        "kernels": spec.kernels.tolist(), "bias": spec.bias.tolist(),
    }
    if spec.is_rank:
        from kernelnet.learn.models import RankFilter

        model = RankFilter(spec.kernel_size, spec.combine, spec.border, spec.footprint)
    else:
        model = build_model(spec.model, spec.kernel_size, True, spec.normalize, spec.border)
        set_kernels(model, spec.kernels.astype(np.float32), spec.bias.astype(np.float32))
    with run_transaction(run_dir) as staging:  # replaces run_dir whole once written
        save_model(staging, model, config)
        save_metrics(staging, metrics)
        save_history(staging, history)
        if plots:
            _plot(staging, spec, pairs)
    torch.set_grad_enabled(True)
    return TrainResult(run_dir, model, config, metrics)


def _fit_every_pixel(pairs: PairSet, found: Identified, engine: str, address: str | None) -> dict[str, Any]:
    """Refit ``found.spec`` on every training pixel from shard sums where it is one linear kernel of float
    targets (in this process, or on Ray); the facts for the metrics."""
    from kernelnet.identify.shards import applies, fit_over_shards

    why = applies(found.spec, pairs)
    if why is not None:
        return {"engine": engine, "shards": 0, "pixels": 0, "not_refitted": why}
    found.spec, facts = fit_over_shards(pairs, found.spec, engine, address)
    return facts


def _plot(run_dir: Path, spec: FilterSpec, pairs: PairSet) -> None:
    """The identified kernels, and input / target / prediction / |error| on up to three held-out pairs (the
    error map shows the border ring as clearly as the interior)."""
    from kernelnet.plots import plot_kernels, plot_samples

    (run_dir / "plots").mkdir(exist_ok=True)
    plot_kernels(spec.kernels, None, run_dir / "plots" / "kernels.png", title="Identified kernels", label="identified")
    samples = []
    for pair in (pairs.test or pairs.train)[:3]:
        source, target = (a[:PLOT_SIDE, :PLOT_SIDE] for a in pairs.raw(pair))  # a corner of large images
        samples += [(pair.name, x, y) for x, y in planes(source, target, pairs.encoding.channels)]
    samples = samples[:3]
    plot_samples([x for _, x, _ in samples], [y for _, _, y in samples], [apply_spec(x, spec) for _, x, _ in samples],
                 run_dir / "plots" / "samples.png", names=[n for n, _, _ in samples])


def summary_lines(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The short identification summary ``kernelnet train`` prints."""
    ident = metrics["identified"]
    kind = "double (magnitude)" if ident["model"] == "double" else "single abs" if ident["normalize"] else "single raw"
    if ident.get("rank"):
        kind = f"rank {ident['rank']} over a {ident['footprint']} ({RANK_NAMES[ident['rank']]})"
    program = [("program", metrics["program"])] if metrics.get("program") else []
    rows: list[tuple[str, Any]] = [
        ("verdict", metrics["verdict"]), *program, ("kind", kind), ("kernel size", ident["kernel_size"]),
        ("border", ident["padding"]), ("clip", ident["clip"]), ("rounding", ident["rounding"]),
        ("held-out PSNR dB", metrics["heldout_psnr_db"]), ("noise floor dB", metrics["noise_floor_psnr_db"])]
    if metrics["heldout_exact_fraction"] is not None:
        rows.append(("held-out exact", metrics["heldout_exact_fraction"]))
    if metrics["nearest_named_filter"]:
        rows.append(("equals", metrics["nearest_named_filter"]))
    if metrics.get("heldout_is_training"):
        rows.append(("warning", "one pair only: nothing held out, the held-out figures are on the training pair"))
    fit = metrics.get("exact_fit")
    if fit and (fit["engine"] == "ray" or not fit.get("not_refitted")):
        rows.append(("exact fit", f"{fit['pixels']} pixels in {fit['shards']} shards on {fit['engine']}"
                     if not fit.get("not_refitted") else f"not refitted on {fit['engine']}: {fit['not_refitted']}"))
    rows.append(("seconds", metrics["train_seconds"]))
    return rows
