"""Assemble the pipeline's report sections from the files its stages wrote (JSON + PNG), then render them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kernelnet import __version__
from kernelnet.runtime.io.atomic import read_json_or_empty
from kernelnet.report import Section, write_report


def shown_path(path: Any, base: Path) -> str:
    """``path`` as the report shows it: an absolute path relative to the report's folder (no absolute local paths
    in a report that is passed around); a relative one (as the user gave it) or ``builtin`` as it is."""
    if not path or not os.path.isabs(str(path)):  # "builtin", or already relative
        return str(path)
    try:
        return os.path.relpath(str(path), base)
    except ValueError:  # another drive (Windows)
        return Path(str(path)).name


def _db(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else str(value)


def _pairs_section(run: Path) -> Section:
    m, c = read_json_or_empty(run / "metrics.json"), read_json_or_empty(run / "config.json")
    ident = m.get("identified", {})
    base = run.parent
    return Section("1. Identification from pairs", facts=[
        ("verdict", m.get("verdict")),
        ("inputs / targets", f"{shown_path(c.get('data'), base)} / {shown_path(c.get('targets'), base)}"),
        ("targets", json.dumps(m.get("target_encoding"))), ("pairs (held out)", f"{m.get('pairs')} "
                                                                               f"({m.get('heldout_pairs')})"),
        ("kind", "double (magnitude)" if ident.get("model") == "double" else
         "single abs" if ident.get("normalize") else "single raw"),
        ("kernel size", ident.get("kernel_size")), ("border", ident.get("padding")), ("clip", ident.get("clip")),
        ("rounding", ident.get("rounding")), ("grid (values are multiples of 1/grid)", m.get("grid")),
        ("held-out PSNR / noise floor (dB)", f"{_db(m.get('heldout_psnr_db'))} / {_db(m.get('noise_floor_psnr_db'))}"),
        ("held-out exact share", m.get("heldout_exact_fraction")), ("equals named filter", m.get("nearest_named_filter")),
        ("seconds", m.get("train_seconds"))],
        tables=[("Border candidates: mean squared error on the outer ring", [
            {"border": b, "ring_mse": e} for b, e in (m.get("border_errors") or {}).items()]),
            ("Kind and size candidates: interior residual RMS", m.get("candidates") or [])],
        images=[("Identified kernels", run / "plots" / "kernels.png"),
                ("Held-out pairs: input / target / prediction / |error| (the ring included)",
                 run / "plots" / "samples.png")])


def _train_section(run: Path) -> Section:
    m, c = read_json_or_empty(run / "metrics.json"), read_json_or_empty(run / "config.json")
    if c.get("targets"):
        return _pairs_section(run)
    kind = f"{c.get('model')}{' (abs)' if c.get('normalize') else ''} {c.get('kernel_size')}x{c.get('kernel_size')}"
    return Section("1. Training", facts=[
        ("target filter", c.get("filter")), ("model", kind), ("border", c.get("padding")), ("data", shown_path(c.get("data"), run.parent)),
        ("solver", m.get("solver")), ("epochs run", m.get("epochs_run")), ("train seconds", m.get("train_seconds")),
        ("kernel max abs error (after symmetry alignment)", m.get("kernel_max_abs_error")),
        ("test PSNR vs true filter (dB)", m.get("test_psnr_db")), ("test MSE", m.get("test_mse")),
        ("test photos", ", ".join(m.get("split", {}).get("test", []))),
    ], images=[("Loss curves", run / "plots" / "loss.png"), ("Learned vs target kernels", run / "plots" / "kernels.png"),
               ("Test photos: input / target / prediction / |error|", run / "plots" / "samples.png")])


def _prune_section(run: Path) -> Section:
    m = read_json_or_empty(run / "metrics.json")
    if "sparsity" not in m:
        return Section("2. Pruning", notes=["Not pruned: no weight could go without changing the results "
                                            "(the trained model went on as it is)."])
    if "score_before" in m:  # a pairs run, scored on its held-out pairs
        return Section("2. Pruning", facts=[
            ("method", m.get("method")), ("sparsity", m.get("sparsity")),
            ("pruned positions [c, i, j]", json.dumps(m.get("pruned_positions"))),
            ("held-out score before / after (exact share, or PSNR dB for float targets)",
             f"{m.get('score_before')} / {m.get('score_after')}"),
            ("lossless (held-out pairs unchanged)", bool(m.get("lossless")))],
            images=[("Pruned kernel (crosses: removed weights)", run / "plots" / "pruned_kernels.png")])
    return Section("2. Pruning", facts=[
        ("method", m.get("method")), ("amount", m.get("amount")), ("sparsity", m.get("sparsity")),
        ("pruned positions [c, i, j]", json.dumps(m.get("pruned_positions"))),
        ("test PSNR before / after (dB)", f"{m.get('psnr_before_db', float('nan')):.2f} / "
                                          f"{m.get('psnr_after_db', float('nan')):.2f}"),
        (f"lossless (PSNR after ≥ {m.get('lossless_psnr_db', float('nan')):g} dB vs true filter)",
         bool(m.get("lossless"))),
    ], images=[("Pruned kernel (crosses: removed weights)", run / "plots" / "pruned_kernels.png")])


def _export_section(run: Path) -> Section:
    q = read_json_or_empty(run / "quantize.json")
    sizes = q.get("size_bytes", {})
    facts: list[tuple[str, Any]] = [("model.onnx bytes", sizes.get("fp32")),
                                    ("model.int8.onnx bytes", sizes.get("int8"))]
    facts += [(f"int8 {key}", q[key]) for key in ("psnr_vs_fp32_db", "max_abs_error", "int8_over_fp32") if key in q]
    if "int8_slower_on_this_cpu" in q:  # green when int8 pays off here, red when it does not
        facts.append(("int8 faster than fp32 on this CPU", not q["int8_slower_on_this_cpu"]))
    return Section("3. Export and int8 quantization", facts=facts,
                   images=[("|int8 − fp32| on a held-out photo", run / "plots" / "int8_error.png")],
                   notes=["The ONNX graph has symbolic batch, height and width; export verified onnxruntime against "
                          "PyTorch before writing it."])


def _verify_section(doc: dict[str, Any]) -> Section:
    rows = [{k: r.get(k) for k in ("check", "cases", "max_abs_error", "worst_case", "tolerance", "ok")}
            for r in doc.get("summary", [])]
    tables = [("Backends vs each other, the model's own weights and the true filter (numpy float64)", rows)]
    if doc.get("pairs"):
        tables.append(("Backends vs the black box's held-out files (at the target's bit depth)", doc["pairs"]))
    return Section("4. Parity (kernelnet verify)", facts=[
        ("all checks pass", bool(doc.get("ok"))), ("cases", ", ".join(doc.get("cases", []))),
        ("kernel gap bound", doc.get("kernel_gap")), ("seconds", doc.get("seconds"))], tables=tables)


def _bench_section(doc: dict[str, Any], chart: Path) -> Section:
    rows = [{k: t.get(k) for k in ("contender", "size", "p50_ms", "p90_ms", "p99_ms", "mpix_per_s", "vs_opencv",
                                   "max_abs_diff", "settings")} for t in doc.get("timings", [])]
    return Section("5. Latency (kernelnet bench)", facts=[("threads", doc.get("threads")), ("batch", doc.get("batch"))],
                   tables=[("p50/p90/p99 latency and throughput; vs_opencv > 1 means faster than OpenCV", rows)],
                   images=[("Latency by size and contender", chart)])


def build_report(out: Path, seconds: dict[str, float]) -> tuple[Path, Path]:
    """Write ``out/report.html`` and ``out/report.md`` from the stage outputs under ``out``."""
    verify, bench = read_json_or_empty(out / "verify.json"), read_json_or_empty(out / "bench.json")
    timing = Section("Stages", tables=[("Wall seconds per stage", [{"stage": k, "seconds": v} for k, v in seconds.items()]
                                        + [{"stage": "total", "seconds": round(sum(seconds.values()), 2)}])])
    sections = [_train_section(out / "train"), _prune_section(out / "pruned"), _export_section(out / "pruned"),
                _verify_section(verify), _bench_section(bench, out / "bench.png"), timing]
    verdict = "verified" if verify.get("ok") else "VERIFICATION FAILED"
    return write_report(out, f"kernelnet pipeline report — {verdict}", sections,
                        subtitle=f"kernelnet {__version__}; directory {out.name}")
