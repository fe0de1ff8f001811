"""``kernelnet apply`` on folders: files run on several worker processes (the native stencil) with the results of
one process, the first bad file ends the run with its one line and nothing written, an interrupt leaves nothing
behind; and the PNG writer's files decode to the very levels with Pillow (and OpenCV where installed)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kernelnet.runtime.io.png_encode import write_png
from kernelnet.runtime.spec import FilterSpec, OutputStage
from tests.helpers import SOBEL, kn, spec_onnx


def frames(folder: Path, count: int, rng: np.random.Generator, size: tuple[int, int] = (40, 56)) -> None:
    """``count`` gray PNGs, 8-bit and 16-bit mixed, in two subfolders."""
    for i in range(count):
        sub = folder / ("a" if i % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        if i % 3 == 0:
            Image.fromarray(rng.integers(0, 65536, size, dtype=np.uint16)).save(sub / f"{i:03d}.png")
        else:
            Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(sub / f"{i:03d}.png")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stage", [False, True])
def test_worker_processes_write_what_one_process_writes(tmp_path, rng, stage):
    spec = FilterSpec.from_kind(SOBEL, "single")
    if stage:  # levels written by the stencil itself
        spec = spec.replace(kernels=SOBEL[None] * 255 / 4, combine="abs",
                            output=OutputStage(clip=(0.0, 255.0), rounding="half_up", bits=8, grid=4))
    model = spec_onnx(tmp_path / "m.onnx", spec)
    frames(tmp_path / "in", 30, rng)
    serial = kn("apply", model, tmp_path / "in", "--out", tmp_path / "one", "--threads", "1", "-q")
    forked = kn("apply", model, tmp_path / "in", "--out", tmp_path / "two", "--threads", "2")
    assert serial.exit_code == forked.exit_code == 0, forked.output
    assert "wrote 30 files" in forked.output and forked.output.count("->") == 30
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert len(one) == 30 and one == two  # byte for byte, names and relative paths kept


def test_the_first_bad_file_ends_a_parallel_run_with_one_line_and_writes_nothing(tmp_path, rng):
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 24, rng)
    (tmp_path / "in" / "a" / "017.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    res = kn("apply", model, tmp_path / "in", "--out", out, "--threads", "2")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "017.png" in res.output, res.output
    assert tree(out) == {"keep.txt": b"old"}


def unnamed_files(pid: int, folder: Path) -> int:
    """How many unnamed files (``O_TMPFILE``: /proc shows them as ``folder/#INODE (deleted)``) under ``folder``
    the process ``pid`` and its children hold open."""
    pids, count = [pid], 0
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(p) for p in task.read_text().split()]
        except OSError:  # that thread has just ended
            continue
    for one in pids:
        try:
            fds = list(Path(f"/proc/{one}/fd").iterdir())
        except OSError:  # that process has just ended
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            count += target.startswith(str(folder)) and target.endswith("(deleted)")
    return count


def start_apply(tmp_path: Path, rng, count: int = 400) -> tuple[subprocess.Popen, Path]:
    """A slow parallel ``kernelnet apply`` (15×15 on 400 frames) into a folder that holds an old output."""
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(np.ones((15, 15)) / 225, "single"))
    frames(tmp_path / "in", count, rng, size=(160, 200))
    out = tmp_path / "out"
    (out / "b").mkdir(parents=True)
    (out / "b" / "000.png").write_bytes(b"old")
    proc = subprocess.Popen([sys.executable, "-m", "kernelnet", "apply", str(model), str(tmp_path / "in"),
                             "--out", str(out), "--threads", "2"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    return proc, out


def wait_for(proc: subprocess.Popen, out: Path, files: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and unnamed_files(proc.pid, out) < files:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be interrupted"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="unnamed files (O_TMPFILE) and /proc are Linux's")
def test_sigint_during_a_parallel_run_leaves_nothing(tmp_path, rng):
    proc, out = start_apply(tmp_path, rng)
    wait_for(proc, out, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.startswith("error: interrupted by SIGINT") and err.count("\n") == 1, err
    assert tree(out) == {"b/000.png": b"old"}
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="unnamed files (O_TMPFILE) and /proc are Linux's")
@pytest.mark.parametrize("files", [1, 40, 300])
def test_sigkill_while_files_are_written_leaves_only_the_old_outputs(tmp_path, rng, files):
    """Killed (the whole process group, at once) after the first result, a tenth of them and most of them: the
    results are unnamed files until they are all placed, so nothing is left, not even a hidden file."""
    proc, out = start_apply(tmp_path, rng)
    wait_for(proc, out, files)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert tree(out) == {"b/000.png": b"old"}
    assert sorted(p.name for p in out.rglob("*")) == ["000.png", "b"]


def test_sigkill_while_results_are_placed_is_rolled_back_by_the_next_run(tmp_path, rng):
    """Killed inside the last step (after 5 of 40 results were named): the next apply into the folder puts the old
    files back and removes the new ones before it does anything else — here it then fails on a bad input."""
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 40, rng)
    out = tmp_path / "out"
    assert kn("apply", model, tmp_path / "in", "--out", out, "-q").exit_code == 0
    old = tree(out)
    script = ("import os, signal, sys\nfrom kernelnet.runtime.io import commit\nreal, count = commit.name_unnamed, [0]\n"
              "def dying(fd, target):\n    count[0] += 1\n    if count[0] > 5:\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n    real(fd, target)\n"
              "commit.name_unnamed = dying\nfrom kernelnet.cli import main\nmain(sys.argv[1:])")
    other = spec_onnx(tmp_path / "other.onnx", FilterSpec.from_kind(SOBEL.T, "single"))
    killed = subprocess.run([sys.executable, "-c", script, "apply", str(other), str(tmp_path / "in"), "--out", str(out)],
                            capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    left = tree(out)
    assert left != old and any(name.startswith((".kernelnet-partial-commit", "a/.kernelnet-partial-commit",
                                                "b/.kernelnet-partial-commit")) for name in left)
    for sub in ("a", "b"):  # the next write into those folders
        (tmp_path / "bad" / sub).mkdir(parents=True)
        (tmp_path / "bad" / sub / "x.png").write_bytes(b"not a png")
    res = kn("apply", model, tmp_path / "bad", "--out", out)
    assert res.exit_code == 2 and "x.png" in res.output
    assert tree(out) == old


def _levels(dtype, channels: int) -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(channels)
    shape = (301, 7) if channels == 1 else (23, 301, channels)
    levels = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    buf = io.BytesIO()
    write_png(buf, levels)
    return levels, buf.getvalue()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_files_decode_to_their_levels_in_pillow(dtype, channels):
    levels, data = _levels(dtype, channels)
    image = Image.open(io.BytesIO(data))
    image.load()
    if dtype == np.uint16 and channels > 1:  # Pillow reads 16-bit colour PNGs as 8-bit (the high bytes), and
        back = np.asarray(image)                # 16-bit gray + alpha as RGBA
        back = back[..., [0, 3]] if channels == 2 else back
        assert back.shape == levels.shape and np.array_equal(back, levels >> 8)
    else:
        back = np.asarray(image)
        assert back.dtype == dtype and np.array_equal(back, levels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_files_decode_to_their_levels_in_opencv(dtype, channels):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (the [dev] extra) decodes the files a second way")
    levels, data = _levels(dtype, channels)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if channels >= 2:  # OpenCV gives BGR(A), and gray + alpha as BGRA
        decoded = decoded[..., {2: [0, 3], 3: [2, 1, 0], 4: [2, 1, 0, 3]}[channels]]
    assert decoded.dtype == dtype and np.array_equal(decoded, levels)


def test_png_strips_and_bad_arrays(tmp_path, monkeypatch):
    from kernelnet.runtime.io import png_encode
    from kernelnet.runtime.errors import KernelnetError

    monkeypatch.setattr(png_encode, "STRIP_BYTES", 100)  # many IDAT chunks
    levels = np.random.default_rng(0).integers(0, 256, (97, 33), dtype=np.uint8)
    write_png(tmp_path / "s.png", levels)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "s.png")), levels)
    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros((0, 4), np.uint8)):
        with pytest.raises(KernelnetError):
            write_png(io.BytesIO(), bad)


def test_the_console_script_flushes_everything_before_its_quick_exit(tmp_path, rng):
    from tests.helpers import run_cli

    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 12, rng)
    res = run_cli("apply", str(model), str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert res.returncode == 0 and res.stdout.count(" -> ") == 12 and res.stdout.endswith(f"wrote 12 files to "
                                                                                           f"{tmp_path / 'out'}\n")
    res = run_cli("apply", str(model), str(tmp_path / "missing"), "--out", str(tmp_path / "o2"))
    assert res.returncode == 2 and res.stderr == f"error: input {tmp_path / 'missing'} not found\n"


def _failing_writer(monkeypatch, on: str, action):
    """Make every worker process ``action()`` when it writes the file whose output name holds ``on``."""
    from kernelnet.runtime import apply_jobs

    real = apply_jobs.run_job

    def job(model, one, *args, **kwargs):
        if on in str(one.target):
            action()
        return real(model, one, *args, **kwargs)

    monkeypatch.setattr(apply_jobs, "run_job", job)


def test_a_disk_error_in_a_worker_is_one_line_and_stops_the_others(tmp_path, rng, monkeypatch):
    import errno

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    _failing_writer(monkeypatch, "003", full)
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 40, rng)
    res = kn("apply", model, tmp_path / "in", "--out", tmp_path / "out", "--threads", "2")
    assert res.exit_code == 2 and res.output == "error: cannot write the outputs: No space left on device (nothing " \
                                                "was replaced)\n", res.output
    assert not (tmp_path / "out").exists()


def test_a_killed_worker_ends_the_run_with_one_line(tmp_path, rng, monkeypatch):
    _failing_writer(monkeypatch, "005", lambda: os.kill(os.getpid(), signal.SIGKILL))
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 40, rng)
    res = kn("apply", model, tmp_path / "in", "--out", tmp_path / "out", "--threads", "2")
    assert res.exit_code == 2 and "ended by SIGKILL" in res.output and res.output.count("\n") == 1, res.output
    assert not (tmp_path / "out").exists()


def test_warnings_raised_in_workers_are_printed(tmp_path, rng, monkeypatch):
    import warnings

    _failing_writer(monkeypatch, "002", lambda: warnings.warn("odd frame", UserWarning))
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 10, rng)
    res = kn("apply", model, tmp_path / "in", "--out", tmp_path / "out", "--threads", "2", "-q")
    assert res.exit_code == 0 and "odd frame" in res.output, res.output


def test_where_there_are_no_unnamed_files_staging_names_do_the_same(tmp_path, rng, monkeypatch):
    """Without O_TMPFILE (another OS, a file system without it) results wait under pid-named staging names:
    the same files, and nothing left once placed or on a failure."""
    from kernelnet.runtime.io import commit

    monkeypatch.setattr(commit, "unnamed_file", lambda folder: None)
    model = spec_onnx(tmp_path / "m.onnx", FilterSpec.from_kind(SOBEL, "single"))
    frames(tmp_path / "in", 12, rng)
    assert kn("apply", model, tmp_path / "in", "--out", tmp_path / "named", "--threads", "2").exit_code == 0
    monkeypatch.undo()
    assert kn("apply", model, tmp_path / "in", "--out", tmp_path / "unnamed", "--threads", "2").exit_code == 0
    assert tree(tmp_path / "named") == tree(tmp_path / "unnamed")
    assert not [p for p in (tmp_path / "named").rglob(".*")]


def test_the_rollback_touches_only_the_dead_writers_files(tmp_path):
    """A dead writer's journal puts back what it parked and removes what it created — unless someone else has
    put another file at that name since. A user's own "x.p123.png" is not taken for a writer's tag."""
    import json

    from kernelnet.runtime.io.atomic import file_identity, owner_of, sweep_dead

    assert owner_of(".kernelnet-partial-img.p99999.p1234.old.png") == 1234
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a pid that has just ended
    for name in ("new.png", "theirs.png", "kept.png"):
        (tmp_path / name).write_bytes(name.encode())
    parked = f".kernelnet-partial-kept.p{dead}.old.png"
    (tmp_path / parked).write_bytes(b"old kept")
    journal = {"created": [["new.png", *file_identity(tmp_path / "new.png")], ["theirs.png", 0, 0]],
               "replaced": [["kept.png", parked, *file_identity(tmp_path / "kept.png")]]}
    (tmp_path / f".kernelnet-partial-commit.p{dead}.json").write_text(json.dumps(journal))
    sweep_dead(tmp_path)
    assert tree(tmp_path) == {"theirs.png": b"theirs.png", "kept.png": b"old kept"}

