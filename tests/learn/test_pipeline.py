import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError
from kernelnet.pipeline import run_pipeline

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


SOBEL = RunConfig(filter="sobel", target_kernel=((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0)),
                  epochs=45, steps_per_epoch=20)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    result = run_pipeline(SOBEL, out, bench_sizes="64x64,128x96", bench_min_time=0.05,
                          verify_sizes="1x1,13x7,64x97", progress=False, say=lambda s: None)
    assert result.verified
    return out


@pytest.mark.slow
def test_pipeline_writes_everything(pipeline_dir):
    for name in ("train/model.safetensors", "train/plots/loss.png", "pruned/model.safetensors", "pruned/model.onnx",
                 "pruned/model.int8.onnx", "pruned/quantize.json", "verify.json", "bench.json", "bench.png",
                 "pipeline.json", "report.html", "report.md"):
        assert (pipeline_dir / name).is_file(), name
    stages = json.loads((pipeline_dir / "pipeline.json").read_text())
    assert stages["verified"] and set(stages["seconds"]) >= {"train", "prune", "export", "quantize", "verify", "bench"}
    pruned = json.loads((pipeline_dir / "pruned" / "metrics.json").read_text())
    assert pruned["sparsity"] >= 1 / 3 and pruned["lossless"]


@pytest.mark.slow
def test_report_is_self_contained_with_every_section(pipeline_dir):
    html = (pipeline_dir / "report.html").read_text()
    for title in ("Training", "Pruning", "Export and int8", "Parity", "Latency", "Stages"):
        assert title in html
    assert html.count("data:image/png;base64,") >= 6  # loss, kernels, samples, pruned, int8 error, bench chart
    assert not re.search(r'src="(?!data:)', html), "the HTML must not reference external files"
    md = (pipeline_dir / "report.md").read_text()
    size_bytes = json.loads((pipeline_dir / "pruned" / "quantize.json").read_text())["size_bytes"]
    assert f"| model.int8.onnx bytes | {size_bytes['int8']} |" in md
    bar = json.loads((pipeline_dir / "pruned" / "metrics.json").read_text())["lossless_psnr_db"]
    assert f"PSNR after ≥ {bar:g} dB" in md
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (pipeline_dir / link).is_file(), link


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(pipeline_dir, tmp_path):
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000", f"--screenshot={shot}",
                    (pipeline_dir / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (3000, 1200)
    assert pixels.std() > 20  # text, tables and plots, not a blank page


@pytest.mark.parametrize("sizes", [{"bench_sizes": "0x8"}, {"verify_sizes": "1x1,64x"}])
def test_bad_sizes_fail_before_any_stage_and_leave_no_folder(tmp_path, sizes):
    said: list[str] = []
    with pytest.raises(KernelnetError, match="invalid size"):
        run_pipeline(SOBEL, tmp_path / "p", progress=False, say=said.append, **sizes)
    assert said == [] and not (tmp_path / "p").exists()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "artifacts" / "runs" / "api-demo" / "model.onnx").is_file()


def test_readme_starts_with_the_two_setup_commands():
    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line for line in first.splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith("kernelnet pipeline") and "torch==2.13.0" in commands[0]
    assert commands[1] == "python3 -m pytest -q"
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_pairs_pipeline_report_shows_what_people_read(tmp_path):
    """A pipeline over pairs: its verdict and verify agree, and the report has no absolute local paths, PSNRs to
    two decimals, the identified kernels alone (no "learned − target" of a kernel with itself) and int8's speed
    as "faster" (green only when it is)."""
    from PIL import ImageFilter

    from tests.black_boxes import make_pairs, pil

    data, targets = make_pairs(tmp_path, pil(ImageFilter.SHARPEN), count=8, side=48)
    config = RunConfig(filter="pairs", data=str(data.resolve()), targets=str(targets.resolve()), solver="exact",
                       name="pairs-sharpen")
    out = tmp_path / "pipe"
    result = run_pipeline(config, out, bench_sizes="32x32", bench_min_time=0.02, verify_sizes="13x7",
                          progress=False, say=lambda s: None)
    verdict = json.loads((out / "train" / "metrics.json").read_text())["verdict"]
    assert result.verified == (verdict == "reproduced") and verdict == "reproduced"
    for report in (out / "report.html", out / "report.md"):
        text = report.read_text()
        assert str(tmp_path) not in text, f"{report.name} shows an absolute local path"
        assert not re.search(r"\d\.\d{5,} / ", text), "PSNRs with many decimals"
    md = (out / "report.md").read_text()
    assert "int8 faster than fp32 on this CPU" in md and "slower_on_this_cpu" not in md
    assert "../in / ../out" in md  # inputs / targets relative to the report


def test_pipeline_with_targets_refuses_the_options_it_identifies(tmp_path):
    from tests.helpers import kn

    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    res = kn("pipeline", "--data", tmp_path / "in", "--targets", tmp_path / "out", "--model", "double",
             "--solver", "adam", "--out", tmp_path / "p")
    assert res.exit_code == 2 and "drop --model, --solver" in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_pairs_pipeline_of_an_integer_magnitude_verifies_int8_too(tmp_path):
    """A truncated Sobel magnitude of 8-bit levels (ffmpeg's sobel computes so): identified exactly, with an
    output grid after the square root; its int8 model must stay within int8's tolerance (the quantizer once took
    the grid as folded into the Convs and gave every output 0)."""
    from tests.black_boxes import BOXES, make_pairs

    data, targets = make_pairs(tmp_path, BOXES["opencv-sobel-magnitude-truncated"][0], count=8, side=48)
    config = RunConfig(filter="pairs", data=str(data.resolve()), targets=str(targets.resolve()), solver="exact",
                       name="pairs-magnitude")
    out = tmp_path / "pipe"
    result = run_pipeline(config, out, bench_sizes="32x32", bench_min_time=0.02, verify_sizes="13x7",
                          progress=False, say=lambda s: None)
    verify = json.loads((out / "verify.json").read_text())
    int8 = [r for r in verify["summary"] if r["check"] == "onnxruntime-int8 ~ onnxruntime"]
    assert int8 and int8[0]["ok"], int8
    assert result.verified
