"""Files that lie and runs that die: no data loss, one line instead of a traceback, nothing left behind. (Graphs
that lie: tests/test_hardening_graphs.py.)"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kernelnet.runtime import load
from kernelnet.runtime.errors import KernelnetError
from kernelnet.runtime.io.images import read_gray
from tests.helpers import SOBEL, copy_run, kn, make_onnx, one_line_exit_2


def test_apply_never_writes_onto_its_input(tmp_path, rng):
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    img = tmp_path / "a.png"
    Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8)).save(img)
    np.save(tmp_path / "b.npy", rng.random((20, 24), dtype=np.float32))
    (tmp_path / "out").mkdir()
    os.link(img, tmp_path / "out" / "a.png")  # the same file under another name: a hard link
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for args in ([img, "--out", img], [tmp_path / "b.npy", "--out", tmp_path / "b.npy"], [tmp_path, "--out", tmp_path],
                 [img, "--out", tmp_path / "." / "a.png"], [img, tmp_path / "b.npy", "--out", tmp_path / "out"]):
        res = kn("apply", model, *args)
        one_line_exit_2(res)
        assert "is an input" in res.output
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_apply_checks_every_target_first_and_restores_what_it_replaced(tmp_path, rng, monkeypatch):
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a", "b"):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(src / f"{name}.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"old a")
    (out / "b.png").mkdir()  # a folder where a file must go: refused before anything is replaced
    one_line_exit_2(kn("apply", model, src, "--out", out))
    assert (out / "a.png").read_bytes() == b"old a"
    (out / "b.png").rmdir()
    (out / "b.png").write_bytes(b"old b")
    from kernelnet.runtime.io import commit

    real = commit.name_unnamed

    def flaky(fd, target):  # the second result's placing fails: the first must be put back as it was
        if str(target).endswith("b.png"):
            raise OSError(28, "No space left on device")
        return real(fd, target)

    monkeypatch.setattr(commit, "name_unnamed", flaky)
    res = kn("apply", model, src, "--out", out)
    one_line_exit_2(res)
    assert "nothing was replaced" in res.output
    assert (out / "a.png").read_bytes() == b"old a" and (out / "b.png").read_bytes() == b"old b"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_leftovers_of_a_killed_writer_are_swept_by_the_next_write(tmp_path, rng):
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = [out / f".kernelnet-partial-x.p{dead.pid}.part.npy", out / f".tmp-model.onnx.p{dead.pid}.abc"]
    alive = out / f".kernelnet-partial-y.p{os.getpid()}.part.npy"  # a live writer's file is not touched
    for path in (*stale, alive):
        path.write_bytes(b"half")
    np.save(tmp_path / "x.npy", rng.random((8, 9), dtype=np.float32))
    assert kn("apply", model, tmp_path / "x.npy", "--out", out / "x.npy").exit_code == 0
    assert not any(p.exists() for p in stale) and alive.exists()


@pytest.mark.slow
def test_sigint_and_sigterm_are_one_line(tmp_path):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        out = tmp_path / f"run{code}"
        proc = subprocess.Popen([sys.executable, "-m", "kernelnet", "train", "--out", str(out), "-q", "--no-plots"],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        time.sleep(6)  # past torch's import, inside the training loop
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert err.strip().count("\n") == 0 and err.startswith("error: interrupted"), err
        # an interrupted training run stays resumable (kernelnet train --resume), with no half-written file
        assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_an_interrupted_apply_leaves_nothing_and_replaces_nothing(tmp_path, rng, monkeypatch):
    from kernelnet.cli import Interrupted
    from kernelnet.runtime import apply_jobs as apply_module

    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    for name in ("a", "b", "c"):
        np.save(src / f"{name}.npy", rng.random((12, 10), dtype=np.float32))
    (out / "a.npy").write_bytes(b"old a")
    real, seen = apply_module.run_job, []

    def interrupted(model, job, *args, **kwargs):
        seen.append(job)
        if len(seen) == 2:
            raise Interrupted(signal.SIGINT)
        return real(model, job, *args, **kwargs)

    monkeypatch.setattr(apply_module, "run_job", interrupted)
    res = kn("apply", model, src, "--out", out, "--threads", "1")  # one file after the other, in this process
    assert res.exit_code == 130 and res.output.startswith("error: interrupted by SIGINT") and res.output.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"] and (out / "a.npy").read_bytes() == b"old a"


def crafted_npy(path, shape: str) -> None:
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % shape
    header += " " * (118 - len(header)) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)


@pytest.mark.parametrize("shape", ["(4294967296, 4294967296)", "(3, 4611686018427387904)", "(-1, 16)",
                                   "(1, 2, 3, 4, 5, 6, 7, 8, 9)", "'abc'"])
def test_crafted_npy_headers_are_one_line(tmp_path, shape):
    crafted_npy(tmp_path / "x.npy", shape)
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    res = kn("apply", model, tmp_path / "x.npy", "--out", tmp_path / "y.npy")
    one_line_exit_2(res)
    assert not (tmp_path / "y.npy").exists()


def test_unaligned_npy_runs_natively_and_correctly(tmp_path, rng):
    from tests.helpers import exported

    x = rng.random((12, 14), dtype=np.float32)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (12, 14), }"
    header += " " * (121 - len(header)) + "\n"  # 10 + 122 = 132 bytes of header: data off a 8-byte boundary
    (tmp_path / "u.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
                                     + x.tobytes())
    assert np.array_equal(np.load(tmp_path / "u.npy"), x)
    res = kn("apply", exported("single"), tmp_path / "u.npy", "--out", tmp_path / "o.npy")
    assert res.exit_code == 0, res.output
    assert np.array_equal(np.load(tmp_path / "o.npy"), load(exported("single"))(x))


def png_claiming(path, width: int, height: int) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def test_decompression_bombs_meet_a_pixel_budget(tmp_path, monkeypatch):
    png_claiming(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(KernelnetError, match="over the budget"):
        read_gray(tmp_path / "bomb.png")
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    one_line_exit_2(kn("apply", model, tmp_path / "bomb.png", "--out", tmp_path / "o.png"))
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "small.png")
    monkeypatch.setenv("KERNELNET_MAX_PIXELS", "100")
    with pytest.raises(KernelnetError, match="KERNELNET_MAX_PIXELS or --max-pixels"):
        read_gray(tmp_path / "small.png")
    monkeypatch.delenv("KERNELNET_MAX_PIXELS")
    assert kn("apply", model, tmp_path / "small.png", "--out", tmp_path / "o.png", "--max-pixels", "1200").exit_code == 0
    one_line_exit_2(kn("apply", model, tmp_path / "small.png", "--out", tmp_path / "o.png", "--max-pixels", "1199"))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.tile(np.arange(160, dtype=np.uint8), (120, 1)))  # 160 wide, 120 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert read_gray(tmp_path / "r.jpg").shape == (160, 120)


def test_32_bit_integer_tiffs_are_16_bit_levels_or_refused(tmp_path):
    Image.fromarray(np.full((4, 5), 65535, np.int32), mode="I").save(tmp_path / "ok.tif")
    assert np.allclose(read_gray(tmp_path / "ok.tif"), 1.0)
    Image.fromarray(np.full((4, 5), 70000, np.int32), mode="I").save(tmp_path / "big.tif")
    with pytest.raises(KernelnetError, match="do not fit 16 bits"):
        read_gray(tmp_path / "big.tif")


def test_string_booleans_and_oversized_kernels_in_config_are_refused(tmp_path):
    run = copy_run("single", tmp_path)
    config = json.loads((run / "config.json").read_text())
    for field, value, needle in (("normalize", "false", "normalize must be of type bool"),
                                 ("kernel_size", 99999, "between 1 and 31"), ("epochs", "10", "epochs must be")):
        (run / "config.json").write_text(json.dumps({**config, field: value}))
        res = kn("export", run, "--out", tmp_path / "x.onnx")
        one_line_exit_2(res)
        assert needle in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_absurd_thread_counts_and_scales_are_one_line(tmp_path):
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    one_line_exit_2(kn("apply", model, tmp_path / "a.png", "--out", tmp_path / "o.png", "--threads", "99999999999"))
    for scale in ("nan", "inf"):
        one_line_exit_2(kn("apply", model, tmp_path / "a.png", "--out", tmp_path / "o.png", "--scale", scale))
    assert not (tmp_path / "o.png").exists()


def test_a_glob_over_a_symlink_loop_ends(tmp_path):
    from kernelnet.runtime.apply import expand_inputs

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.png").write_bytes(b"")
    os.symlink(tmp_path, tmp_path / "d" / "loop")
    os.symlink(tmp_path / "d", tmp_path / "d" / "loop2")
    assert [rel.name for _, rel in expand_inputs((str(tmp_path / "**" / "*.png"),))] == ["x.png"]


def test_the_private_stencil_refuses_sizes_that_overflow():
    from kernelnet.runtime.backends import native_backend

    if not native_backend.available():
        pytest.skip("the C stencil extension is not built")
    buf = np.zeros(16, np.float32)
    with pytest.raises(ValueError, match="overflow"):
        native_backend._stencil.correlate(buf, buf, 1 << 40, 1 << 20, 1 << 20, np.ones(1, np.float32),
                                          np.zeros(1, np.float32), 1, 1, 0, 0, 1, 0, 1)


def _checkpoint(tmp_path, **changes):
    import torch

    from kernelnet.learn.checkpoint import save_state
    from kernelnet.config import RunConfig
    from kernelnet.learn.models import build_model
    from kernelnet.learn.training import _checkpoint_state, _make_optimizer, _make_scheduler

    config = RunConfig(epochs=5, steps_per_epoch=2, target_kernel=tuple(map(tuple, SOBEL)))
    model = build_model("single")
    opt = _make_optimizer(model, config)
    sched = _make_scheduler(opt)
    history = [{"epoch": 1, "train_loss": 0.1, "val_loss": 0.1, "lr": 0.05, "seconds": 0.1}]
    best = {"val_loss": 0.1, "epoch": 1, "state": {k: v.clone() for k, v in model.state_dict().items()}}
    state = _checkpoint_state(model, opt, sched, history, best, 1, 0, config)
    state.update(changes)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    save_state(run / "checkpoint.safetensors", state)
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    return run, torch


@pytest.mark.parametrize("tamper", ["weights-shape", "weights-nan", "epoch-string", "epoch-negative", "history-dict",
                                    "history-strings", "best-missing-state", "optimizer-list", "scheduler-junk"])
def test_tampered_checkpoints_are_one_line(tmp_path, tamper):
    import torch

    changes = {
        "weights-shape": {"model": {"conv.weight": torch.zeros(1, 1, 5, 5), "conv.bias": torch.zeros(1)}},
        "weights-nan": {"model": {"conv.weight": torch.full((1, 1, 3, 3), float("nan")), "conv.bias": torch.zeros(1)}},
        "epoch-string": {"epoch": "3"}, "epoch-negative": {"epoch": -4},
        "history-dict": {"history": {"a": 1}}, "history-strings": {"history": [{"epoch": "1", "val_loss": "x"}]},
        "best-missing-state": {"best": {"val_loss": 0.1}}, "optimizer-list": {"optimizer": [1, 2]},
        "scheduler-junk": {"scheduler": {"_last_lr": "junk", "best": [1], "mode": 7}},
    }[tamper]
    run, _ = _checkpoint(tmp_path, **changes)
    res = kn("train", "--out", run, "--resume", "--no-plots", "-q")
    one_line_exit_2(res)


def test_nan_weights_in_a_run_are_one_line_through_export(tmp_path):
    from safetensors.numpy import load_file, save_file

    run = copy_run("single", tmp_path)
    weights = load_file(str(run / "model.safetensors"))
    weights["conv.weight"] = np.full_like(weights["conv.weight"], np.nan)
    save_file(weights, str(run / "model.safetensors"))
    res = kn("export", run, "--out", tmp_path / "x.onnx")
    one_line_exit_2(res)
    assert "NaN" in res.output and not (tmp_path / "x.onnx").exists()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_npy_and_png_headers_are_arrays_or_one_line(tmp_path_factory, data):
    from kernelnet.runtime.io.npyio import open_npy

    folder = tmp_path_factory.mktemp("fuzz")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(folder / "a.npy", arr)
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(6, 8)).save(folder / "a.png")
    for name, opener in (("a.npy", open_npy), ("a.png", read_gray)):
        raw = bytearray((folder / name).read_bytes())
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, min(len(raw), 140) - 1))] = data.draw(st.integers(0, 255))
        (folder / name).write_bytes(bytes(raw))
        try:
            result = opener(folder / name)
        except KernelnetError as exc:
            assert "\n" not in str(exc)
        else:
            got = result.array if hasattr(result, "array") else result
            assert isinstance(got, np.ndarray)


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["kernels", "bias", "kernel_size", "padding", "model", "normalize", "input_dtype",
                            "input_scale", "channels", "output_stage", "target_kernel", "precision"]),
       value=st.one_of(st.text(max_size=30), st.integers(-10 ** 12, 10 ** 12).map(str),
                       st.recursive(st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), st.integers(),
                                              st.text(max_size=5)),
                                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5),
                                                                                              inner, max_size=3),
                                    max_leaves=20).map(json.dumps)))
def test_fuzzed_metadata_decodes_or_is_one_line(key, value):
    from kernelnet.runtime.spec_codec import decode_info, encode_spec
    from kernelnet.runtime.spec import FilterSpec

    props = encode_spec(FilterSpec.from_kind(SOBEL), target=FilterSpec.from_kind(SOBEL))
    props[f"kernelnet.{key}"] = value
    try:
        info = decode_info(props)
    except KernelnetError as exc:
        assert "\n" not in str(exc)
    else:
        assert info.spec is not None and info.spec.kernel_size in (1, 3, 5) and np.isfinite(info.spec.kernels).all()


def test_huge_verify_sizes_and_nonpositive_scales_are_one_line(tmp_path):
    model = make_onnx(tmp_path / "m.onnx", SOBEL[None])
    one_line_exit_2(kn("verify", model, "--sizes", "100000x100000"))
    one_line_exit_2(kn("bench", model, "--sizes", "100000x100000"))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    for scale in ("0", "-1", "1e308"):
        one_line_exit_2(kn("apply", model, tmp_path / "a.png", "--out", tmp_path / "o.png", "--scale", scale))
