import json

import numpy as np
import pytest
import torch
from PIL import Image

from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError
from kernelnet.rundir import load_model
from kernelnet.learn.training import train


@pytest.fixture
def photo_dir(tmp_path, rng):
    """Three small smooth-ish synthetic 'photos' in a folder (no download)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        base = rng.random((24, 24))
        img = np.kron(base, np.ones((4, 4)))  # blocky texture with edges
        img = (img + rng.random(img.shape) * 0.2) / 1.2
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def small_config(data, **kw):
    base = dict(filter="sobel", data=str(data), crop=32, batch_size=8, steps_per_epoch=10, epochs=4, lr=0.05,
                patience=10)
    base.update(kw)
    return RunConfig(**base)


def test_train_writes_run_directory(tmp_path, photo_dir):
    result = train(small_config(photo_dir), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("model.safetensors", "config.json", "metrics.json", "history.csv", "plots/loss.png",
                 "plots/kernels.png", "plots/samples.png"):
        assert (run / name).is_file(), name
    assert not (run / "checkpoint.safetensors").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("kernel_max_abs_error", "test_mse", "test_psnr_db", "train_seconds", "epochs_run", "solver"):
        assert key in metrics
    assert metrics["epochs_run"] == 4 and len((run / "history.csv").read_text().splitlines()) == 5
    config, model = load_model(run)
    assert config == result.config
    x = torch.rand(1, 1, 9, 9)
    assert torch.equal(model(x), result.model(x))


def test_config_round_trip(tmp_path):
    c = RunConfig(filter="random:3", target_kernel=((1.0,),), kernel_size=5, model="double", padding="reflect")
    c.save(tmp_path / "c.json")
    assert RunConfig.load(tmp_path / "c.json") == c


def test_resume_after_interruption_matches_uninterrupted(tmp_path, photo_dir, monkeypatch):
    import kernelnet.learn.training as training

    full = train(small_config(photo_dir), tmp_path / "full", progress=False, plots=False)
    real_save, saves = training.save_state, []

    def crash_after_two(path, state):
        real_save(path, state)
        saves.append(path)
        if len(saves) == 2:
            raise KeyboardInterrupt  # killed right after the epoch-2 checkpoint

    monkeypatch.setattr(training, "save_state", crash_after_two)
    (tmp_path / "cut").mkdir()  # an earlier run there stays as it was until the new one is complete
    (tmp_path / "cut" / "config.json").write_text("{}")
    with pytest.raises(KeyboardInterrupt) as interrupted:
        train(small_config(photo_dir), tmp_path / "cut", progress=False, plots=False)
    assert "the partial run waits in" in interrupted.value.kernelnet_note
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["config.json"]
    partial = tmp_path / ".cut.kernelnet-partial"
    assert (partial / "checkpoint.safetensors").is_file() and not (partial / "model.safetensors").exists()
    monkeypatch.setattr(training, "save_state", real_save)
    resumed = train(small_config(photo_dir), tmp_path / "cut", resume=True, progress=False, plots=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert resumed.metrics["epochs_run"] == 4
    assert not partial.exists() and (tmp_path / "cut" / "model.safetensors").is_file()


def test_resume_without_checkpoint_is_error(tmp_path):
    with pytest.raises(KernelnetError, match="nothing to resume"):
        train(small_config("builtin"), tmp_path / "none", resume=True)


@pytest.mark.parametrize("bad", [dict(model="triple"), dict(solver="lbfgs"), dict(kernel_size=4),
                                 dict(padding="wrap"), dict(lr=0.0), dict(crop=0)])
def test_bad_config_rejected(bad):
    with pytest.raises(KernelnetError):
        RunConfig(**bad)


@pytest.mark.slow
def test_cli_train_end_to_end(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("train", "--epochs", "3", "--steps-per-epoch", "20", "--out", str(out), "-q")
    assert res.returncode == 0, res.stderr
    assert "kernel_max_abs_error" in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kernel_max_abs_error"] < 0.5  # 3 short epochs from random init on the built-in photos


@pytest.mark.parametrize("args,needle", [
    (["--filter", "1,2;3,4"], "odd"),
    (["--filter", "nope"], "unknown filter"),
    (["--model", "triple"], "triple"),
    (["--data", "/nonexistent/folder"], "does not exist"),
    (["--kernel-size", "4"], "odd"),
    (["--normalize", "--model", "double"], "single only"),
])
def test_cli_bad_input_exit_2_one_line(tmp_path, cli, args, needle):
    out = tmp_path / "run"
    res = cli("train", *args, "--out", str(out), "-q")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert not out.exists()


def test_cli_unwritable_out(tmp_path, cli):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cli("train", "--out", str(blocker / "run"), "-q", "--epochs", "1")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
