"""Run directories are transactions and outputs never land on inputs: train refuses an --out that overlaps the
data or the targets or is a stranger's folder, a re-trained run replaces the old one whole, a stale export is
refused, and report files (--json, --plot) may not overwrite the model or an input, nor land among the inputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from tests.helpers import kn


@pytest.fixture
def pairs(tmp_path):
    """Eight 8-bit photos and their |Sobel| made by OpenCV."""
    cv2 = pytest.importorskip("cv2")
    from tests.black_boxes import photos

    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)
    for folder in ("in", "out"):
        (tmp_path / folder).mkdir()
    for i, img in enumerate(photos(8, 48)):
        Image.fromarray(img).save(tmp_path / "in" / f"{i}.png")
        Image.fromarray(cv2.convertScaleAbs(cv2.filter2D(img, cv2.CV_16S, sobel))).save(tmp_path / "out" / f"{i}.png")
    return tmp_path / "in", tmp_path / "out"


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["data", "inside-data", "targets", "inside-targets", "holds-both"])
def test_out_may_not_overlap_the_pairs(pairs, where):
    data, targets = pairs
    out = {"data": data, "inside-data": data / "run", "targets": targets, "inside-targets": targets / "plots" / "r",
           "holds-both": data.parent}[where]
    before = tree(data.parent)
    res = kn("train", "--data", data, "--targets", targets, "--out", out)
    assert res.exit_code == 2 and "overlaps the input folder" in res.output, res.output
    assert tree(data.parent) == before


def test_out_may_not_be_a_folder_that_is_not_a_run(pairs, tmp_path):
    data, targets = pairs
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").parent.joinpath("notes.txt").write_text("keep")
    res = kn("train", "--data", data, "--targets", targets, "--out", mine)
    assert res.exit_code == 2 and "not a kernelnet run" in res.output
    assert tree(mine) == {"notes.txt": b"keep"}


def test_a_retrained_run_replaces_the_old_one_whole_and_stale_exports_are_refused(pairs, tmp_path):
    data, targets = pairs
    run = tmp_path / "run"
    assert kn("train", "--data", data, "--targets", targets, "--out", run, "--no-plots").exit_code == 0
    assert kn("export", run).exit_code == 0
    assert kn("apply", run, data / "0.png", "--out", tmp_path / "a.png").exit_code == 0
    other = tmp_path / "other"
    assert kn("train", "--filter", "prewitt", "--solver", "exact", "--out", other, "--no-plots", "-q").exit_code == 0
    shutil.copy(other / "model.safetensors", run / "model.safetensors")  # the weights changed under the export
    res = kn("apply", run, data / "0.png", "--out", tmp_path / "b.png")
    assert res.exit_code == 2 and "exported from other weights" in res.output and "kernelnet export" in res.output
    assert not (tmp_path / "b.png").exists()
    assert kn("train", "--data", data, "--targets", targets, "--out", run, "--no-plots").exit_code == 0
    assert "model.onnx" not in tree(run)  # re-training replaced the run whole: its old export went with it
    res = kn("apply", run, data / "0.png", "--out", tmp_path / "c.png")
    assert res.exit_code == 2 and "not found" in res.output


def test_reports_may_not_overwrite_the_model_or_an_input(pairs, tmp_path):
    data, targets = pairs
    run = tmp_path / "run"
    assert kn("train", "--data", data, "--targets", targets, "--out", run, "--no-plots").exit_code == 0
    assert kn("export", run).exit_code == 0
    before = {**tree(data), **tree(run)}
    for args, needle in (
            (["verify", run / "model.onnx", "--sizes", "9x9", "--json", run / "model.onnx"], "is an input"),
            (["verify", run, "--sizes", "9x9", "--data", data, "--targets", targets, "--json", data / "0.png"],
             "inside the input folder"),
            (["verify", run, "--sizes", "9x9", "--data", data, "--targets", targets, "--json", targets / "r.json"],
             "inside the input folder"),
            (["bench", run, "--sizes", "9x9", "--json", run / "model.onnx"], "is an input"),
            (["bench", run, "--sizes", "9x9", "--plot", run], "is a directory")):
        res = kn(*args)
        assert res.exit_code == 2 and needle in res.output, (args, res.output)
    assert {**tree(data), **tree(run)} == before
    assert not (targets / "r.json").exists()
    assert kn("verify", run, "--sizes", "9x9", "--json", run / "verify.json").exit_code == 0  # beside the model: fine


@pytest.mark.slow
def test_an_interrupted_pipeline_puts_the_earlier_output_back(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "pipe"
    out.mkdir()
    (out / "pipeline.json").write_text('{"old": true}')
    (out / "report.md").write_text("old report")
    proc = subprocess.Popen([sys.executable, "-m", "kernelnet", "pipeline", "--out", str(out), "--bench-sizes", "32x32",
                             "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / ".train.kernelnet-partial").exists():  # training has started inside the new output
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.count("\n") == 1, err
    assert tree(out) == {"pipeline.json": b'{"old": true}', "report.md": b"old report"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_killed_pipeline_build_is_mended_first(tmp_path):
    from kernelnet.rundir import recover_parked

    def finished(out) -> bool:
        return (out / "done").exists()

    out, parked = tmp_path / "p", tmp_path / ".p.kernelnet-old"
    for new_one_finished in (False, True):
        out.mkdir()
        parked.mkdir()
        (parked / "report.md").write_text("old")
        (out / "done" if new_one_finished else out / "half").write_text("new")
        recover_parked(out, finished)
        assert tree(tmp_path) == ({"p/done": b"new"} if new_one_finished else {"p/report.md": b"old"})
        shutil.rmtree(out)
