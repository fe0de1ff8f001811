"""``kernelnet pipeline``: train → prune (auto, lossless) → export ONNX → quantize int8 → verify → bench → report.

Everything lands in one directory::

    OUT/train/     the trained run (model.safetensors, config.json, metrics.json, history.csv, plots/)
    OUT/pruned/    the deployed run: pruned weights + model.onnx + model.int8.onnx + quantize.json
    OUT/verify.json, OUT/bench.json, OUT/bench.png, OUT/pipeline.json, OUT/report.html, OUT/report.md
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernelnet.runtime.io.atomic import write_json
from kernelnet.config import RunConfig
from kernelnet.runtime.errors import CheckFailed

STAGES = ("train", "prune", "export", "quantize", "verify", "bench", "report")


@dataclass
class PipelineResult:
    """The pipeline's directory, per-stage wall seconds, the report paths and whether verification passed."""

    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    report_html: Path | None = None
    report_md: Path | None = None
    verified: bool = False

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def verify_stage(model: Path, run: Path, json_path: Path, sizes: str | None = None) -> bool:
    """Verify every backend of ``model`` plus the run's PyTorch checkpoint; write the report; True if it passed."""
    import json

    from kernelnet.runtime.io.atomic import write_text
    from kernelnet.runtime.backends import open_backends
    from kernelnet.runtime.sizes import parse_sizes
    from kernelnet.runtime.checks.verify import DEFAULT_SIZES, build_cases, verify
    from kernelnet.learn.torch_runner import pytorch_backend

    from kernelnet.rundir import load_config

    backends, skipped = open_backends(model)
    config = load_config(run)
    if not config.is_pairs:  # the PyTorch model of a pairs run has no output stage: the graph is checked on pairs
        # (a chain is always a pairs run)
        backends.append(pytorch_backend(run))
    info = backends[0].model.info
    min_side = info.spec.min_side if info.spec is not None else 1
    report = verify(backends, build_cases(parse_sizes(sizes) if sizes else DEFAULT_SIZES, min_side=min_side),
                    skipped=skipped)
    doc = report.to_dict()
    ok = report.ok
    if config.is_pairs:
        from kernelnet.runtime.io.pairs import load_pairs
        from kernelnet.runtime.checks.verify_pairs import verify_pairs

        held = load_pairs(config.data, config.targets).held_out()
        doc["pairs"] = [r.to_dict() for r in verify_pairs(backends, held)]
        ok = ok and all(r["ok"] is not False for r in doc["pairs"])
        doc["ok"] = ok
    write_text(json_path, json.dumps(doc, indent=2, default=str) + "\n")
    return ok


def bench_stage(model: Path, run: Path, out: Path, sizes: str, min_time: float, threads: int = 2) -> None:
    """Time every backend of ``model`` beside OpenCV and the run's PyTorch checkpoint; write JSON and a chart."""
    import json

    from kernelnet.runtime.io.atomic import write_text
    from kernelnet.runtime.bench import bench_document, open_contenders, plot_timings, run_bench
    from kernelnet.runtime.sizes import parse_sizes
    from kernelnet.learn.torch_runner import pytorch_contender

    from kernelnet.rundir import load_config

    contenders, skipped, nets = open_contenders(model, threads)
    config = load_config(run)
    if not config.after and not config.decode and not config.encode:
        contenders.append(pytorch_contender(run, nets[0].info, threads))
    else:
        skipped.append("pytorch: a chain or curves; its checkpoint holds the (first) kernel only")
    timings = run_bench(contenders, parse_sizes(sizes), 1, nets[0].input_dtype, min_seconds=min_time)
    write_text(out / "bench.json", json.dumps(bench_document(model, threads, 1, timings, skipped), indent=2) + "\n")
    plot_timings(timings, out / "bench.png")


def _prune_or_keep(train_dir: Path, pruned_dir: Path, progress: bool, say: Callable[[str], None]) -> None:
    """Lossless automatic pruning; a kernel with no weight to spare goes on unpruned (said, not failed)."""
    import shutil

    from kernelnet.compress.prune import prune_run
    from kernelnet.rundir import load_config
    from kernelnet.runtime.errors import KernelnetError

    config = load_config(train_dir)
    if config.model == "rank" or config.after or config.decode:
        what = ("a rank filter" if config.model == "rank" else "a chain of passes rounded in between" if config.after
                else "a kernel wrapped in curves")
        say(f"      nothing to prune ({what}): the trained model goes on as it is")
        shutil.copytree(train_dir, pruned_dir)
        return
    try:
        prune_run(train_dir, pruned_dir, amount="auto", progress=progress)
    except KernelnetError as exc:
        if "pruning even" not in str(exc):
            raise
        say(f"      nothing to prune losslessly ({exc}): the trained model goes on as it is")
        shutil.copytree(train_dir, pruned_dir)


def run_pipeline(config: RunConfig, out: str | os.PathLike[str], *, bench_sizes: str = "256x256,1080x1920,2160x3840",
                 bench_min_time: float = 1.0, verify_sizes: str | None = None, progress: bool = True,
                 say: Callable[[str], None] = print) -> PipelineResult:
    """Run every stage for ``config`` into ``out`` and write the report; raises :class:`CheckFailed` (after the
    report is written) when verification fails. Bad input raises :class:`KernelnetError` and leaves no ``out``
    behind that this call created; size lists are checked before anything is written."""
    from kernelnet.runtime.sizes import parse_sizes

    parse_sizes(bench_sizes)
    if verify_sizes:
        parse_sizes(verify_sizes)
    from kernelnet.rundir import built_in_place, check_run_dir, recover_parked

    inputs = tuple(p for p in (config.data, config.targets) if p and p != "builtin")
    recover_parked(out, _finished)  # a killed build's parked output first: then out is judged as it is
    check_run_dir(out, inputs, marker="pipeline.json")
    with built_in_place(out, _finished) as out_dir:  # an earlier output stays until this one is complete
        return _run_stages(config, out_dir, bench_sizes, bench_min_time, verify_sizes, progress, say)


def _finished(out: Path) -> bool:
    """True when ``out`` holds a pipeline that ran to its end (its pipeline.json has the total)."""
    from kernelnet.runtime.io.atomic import read_json_or_empty

    return "total_seconds" in read_json_or_empty(out / "pipeline.json")


def _quantize_or_skip(run: Path, say: Callable[[str], None]) -> None:
    """int8 siblings of the run's graph; a rank filter or a chain has no weights int8 could hold (said, not failed)."""
    from kernelnet.export.quantize import quantize_run
    from kernelnet.rundir import load_config

    config = load_config(run)
    if config.model == "rank" or config.after or config.decode:
        say("      no int8 model: " + ("a rank filter only picks input values" if config.model == "rank" else
                                       "a chain's exact fractions between its rounded passes need float"
                                       if config.after else "its curves need float"))
        return
    quantize_run(run)


def _run_stages(config: RunConfig, out: Path, bench_sizes: str, bench_min_time: float, verify_sizes: str | None,
                progress: bool, say: Callable[[str], None]) -> PipelineResult:
    """The body of :func:`run_pipeline` once ``out`` exists."""
    from kernelnet.export.onnx_export import export_onnx
    from kernelnet.export.quantize import quantize_run
    from kernelnet.learn.training import train

    result = PipelineResult(out)
    train_dir, pruned_dir = out / "train", out / "pruned"

    def stage(name: str, fn: Callable[[], Any]) -> Any:
        say(f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name} ...")
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            result.seconds[name] = round(time.perf_counter() - t0, 2)
            write_json(out / "pipeline.json", {"config": config.to_dict(), "seconds": result.seconds})

    if config.is_pairs:
        from kernelnet.learn.pairs_train import train_pairs

        stage("train", lambda: train_pairs(config.data, config.targets, train_dir, seed=config.seed))
    else:
        stage("train", lambda: train(config, train_dir, progress=progress))
    stage("prune", lambda: _prune_or_keep(train_dir, pruned_dir, progress, say))
    stage("export", lambda: export_onnx(pruned_dir))
    stage("quantize", lambda: _quantize_or_skip(pruned_dir, say))
    model = pruned_dir / "model.onnx"
    result.verified = stage("verify", lambda: verify_stage(model, pruned_dir, out / "verify.json", verify_sizes))
    stage("bench", lambda: bench_stage(model, pruned_dir, out, bench_sizes, bench_min_time))
    from kernelnet.pipeline_report import build_report

    html_path, md_path = stage("report", lambda: build_report(out, result.seconds))
    result.report_html, result.report_md = html_path, md_path
    write_json(out / "pipeline.json", {"config": config.to_dict(), "seconds": result.seconds,
                                       "total_seconds": round(result.total_seconds, 2), "verified": result.verified})
    if not result.verified:
        raise CheckFailed(f"verification failed: see {out / 'verify.json'} and {html_path}")
    return result
