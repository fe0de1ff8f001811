"""The exact closed-form fit (kernelnet.learn.exact): recovery, canonical form, diagnostics, training hooks."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from kernelnet.config import RunConfig
from kernelnet.runtime.errors import KernelnetError
from kernelnet.learn.exact import ExactFitWarning, canonical_factors, canonicalise, fit_exact
from kernelnet.filters import random_kernel, resolve_filter
from kernelnet.runtime.io.images import to_gray
from kernelnet.metrics import kernel_error, target_kernels
from kernelnet.learn.models import build_model
from kernelnet.runtime.reference import apply_filter

SOBEL = resolve_filter("sobel").kernel
KINDS = {"raw": ("single", False), "abs": ("single", True), "double": ("double", False)}


def synthetic_images(rng: np.random.Generator, count: int = 3, side: int = 48) -> dict[str, np.ndarray]:
    """Blocky textures with noise: edges in every direction, values in [0, 1]."""
    out = {}
    for i in range(count):
        img = np.kron(rng.random((side // 4, side // 4)), np.ones((4, 4)))
        out[f"s{i}"] = ((img + 0.2 * rng.random(img.shape)) / 1.2).astype(np.float32)
    return out


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Crops of real photos shipped with scikit-image (no download)."""
    import skimage.data

    return {name: to_gray(getattr(skimage.data, name)())[100:196, 100:196]
            for name in ("camera", "coins", "astronaut")}


def fit(kind: str, kernel: np.ndarray, images: dict[str, np.ndarray], size: int | None = None,
        padding: str = "zeros", bias: bool = True, targets=None, target_known: bool = True):
    """Fit a fresh model of ``kind``; returns (ExactFit, model, config). Fails on any ExactFitWarning."""
    model_name, normalize = KINDS[kind]
    size = size or kernel.shape[0]
    config = RunConfig(model=model_name, normalize=normalize, kernel_size=size, bias=bias, padding=padding,
                       target_kernel=tuple(map(tuple, kernel)) if target_known else ())
    model = build_model(model_name, size, bias, normalize, padding)
    with warnings.catch_warnings():
        if targets is None:
            warnings.simplefilter("error", ExactFitWarning)
        result = fit_exact(config, images, model, targets=targets)
    return result, model, config


def model_error(model, kernel: np.ndarray, kind: str) -> float:
    model_name, normalize = KINDS[kind]
    return kernel_error(model.kernels.double().numpy(), kernel, model_name, normalize)


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("kind", list(KINDS))
def test_recovers_random_kernel_on_synthetic_images(kind, k, rng):
    kernel = random_kernel(k, seed=k)
    result, model, _ = fit(kind, kernel, synthetic_images(rng))
    assert model_error(model, kernel, kind) < 1e-6  # float32 weights: ~1e-7
    assert result.rank == result.unknowns and result.relative_residual < 1e-6 and result.warning is None
    assert np.abs(model.conv.bias.detach().numpy()).max() < 1e-6


@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("kind", list(KINDS))
def test_recovers_kernel_on_real_photos(kind, k, photos):
    kernel = SOBEL if k == 3 else random_kernel(5, seed=11)
    result, model, _ = fit(kind, kernel, photos)
    assert model_error(model, kernel, kind) < 1e-6
    if kind != "raw":
        c = 2 if kind == "double" else 1
        assert result.explained > 1 - 1e-8 and np.all(np.abs(result.spectrum[c:]) < 1e-8)


@pytest.mark.parametrize("padding", ["zeros", "reflect", "replicate"])
def test_every_border(padding, photos):
    kernel = random_kernel(3, seed=2)
    for kind in ("raw", "double"):
        _, model, _ = fit(kind, kernel, photos, padding=padding)
        assert model_error(model, kernel, kind) < 1e-6, kind


def test_learned_kernel_larger_than_target_and_no_bias(photos):
    _, model, _ = fit("abs", SOBEL, photos, size=5)
    assert model.conv.weight.shape == (1, 1, 5, 5) and model_error(model, SOBEL, "abs") < 1e-6
    assert np.abs(model.kernels[0, [0, -1]].numpy()).max() < 1e-6  # the outer ring is zero
    _, model, _ = fit("double", SOBEL, photos, bias=False)
    assert model.conv.bias is None and model_error(model, SOBEL, "double") < 1e-6


def test_written_model_reproduces_the_target(photos):
    kernel = random_kernel(3, seed=5)
    _, model, _ = fit("double", kernel, photos)
    x = torch.from_numpy(photos["coins"])[None, None]
    with torch.no_grad():
        y = model(x)[0, 0].double().numpy()
    ref = apply_filter(photos["coins"], kernel, "double")
    assert np.max(np.abs(y - ref)) < 1e-4 * np.max(ref)


def test_canonicalise_maps_any_symmetric_copy_onto_the_target():
    config = RunConfig(model="double", target_kernel=tuple(map(tuple, random_kernel(3, seed=4))))
    truth = target_kernels(np.array(config.target_kernel), "double")
    bias = np.array([0.3, -0.1])
    c, s = np.cos(0.9), np.sin(0.9)
    for rot in (np.array([[c, -s], [s, c]]), np.array([[c, s], [s, -c]]), -np.eye(2)):
        moved = (rot @ truth.reshape(2, -1)).reshape(2, 3, 3)
        aligned, aligned_bias = canonicalise(moved, rot @ bias, config)
        assert np.allclose(aligned, truth, atol=1e-12) and np.allclose(aligned_bias, bias, atol=1e-12)
    abs_config = RunConfig(model="single", normalize=True, target_kernel=config.target_kernel)
    aligned, aligned_bias = canonicalise(-truth[:1], np.array([-0.3]), abs_config)
    assert np.allclose(aligned, truth[:1]) and np.allclose(aligned_bias, [0.3])


def test_convention_without_target_is_deterministic_and_symmetry_free():
    pair = target_kernels(SOBEL, "double").reshape(2, -1)  # equal norms: the eigenvalues tie
    ref = canonical_factors(pair, np.array([12.0, 12.0]))
    for theta in (0.4, 2.0, -1.1):
        c, s = np.cos(theta), np.sin(theta)
        for rot in (np.array([[c, -s], [s, c]]), np.array([[c, s], [s, -c]])):
            assert np.allclose(canonical_factors(rot @ pair, np.array([12.0, 12.0])), ref, atol=1e-12)
    single = random_kernel(3, seed=9).reshape(1, -1)
    assert np.array_equal(canonical_factors(-single, np.ones(1)), canonical_factors(single, np.ones(1)))


@pytest.mark.parametrize("kind", ["abs", "double"])
def test_fit_without_known_target(kind, rng):
    kernel = random_kernel(3, seed=6)
    images = synthetic_images(rng)
    targets = {n: apply_filter(im, kernel, *KINDS[kind], "zeros") for n, im in images.items()}
    first, model, _ = fit(kind, kernel, images, targets=targets, target_known=False)
    second, _, _ = fit(kind, kernel, images, targets=targets, target_known=False)
    assert first.warning is None and np.array_equal(first.kernels, second.kernels)
    assert model_error(model, kernel, kind) < 1e-6
    lead = first.kernels.reshape(len(first.kernels), -1)
    assert all(row[np.argmax(np.abs(row))] > 0 for row in lead)  # the sign convention


def test_median_filter_target_is_flagged(photos):
    from scipy.ndimage import median_filter

    targets = {n: median_filter(im.astype(np.float64), size=3, mode="constant") for n, im in photos.items()}
    for kind in ("raw", "double"):
        with pytest.warns(ExactFitWarning, match="not explained"):
            result, _, _ = fit(kind, SOBEL, photos, targets=targets)
        assert result.relative_residual > 1e-2 and "exact_warning" in result.report()
    assert result.explained < 0.9


def test_wrong_model_kind_is_flagged(photos):
    targets = {n: apply_filter(im, SOBEL, "double") for n, im in photos.items()}
    with pytest.warns(ExactFitWarning, match="top 1 eigenvalue"):
        result, _, _ = fit("abs", SOBEL, photos, targets=targets)
    assert abs(result.explained - 0.5) < 1e-3 and result.spectrum[1] > 0.99  # two equal eigenvalues


def test_flat_images_are_rank_deficient():
    flat = {"flat": np.full((32, 32), 0.5, np.float32)}
    with pytest.warns(ExactFitWarning, match="rank-deficient"):
        result, _, _ = fit("raw", SOBEL, flat, padding="replicate", targets={"flat": np.zeros((32, 32))})
    assert result.rank < result.unknowns


def test_report_is_json_and_targets_are_checked(photos):
    result, _, config = fit("double", SOBEL, photos)
    report = json.loads(json.dumps(result.report()))
    assert report["exact_rank"] == report["exact_unknowns"] == 55 and report["exact_pixels"] == 3 * 96 * 96
    assert report["exact_spectrum"][0] == 1.0 and "exact_warning" not in report
    with pytest.raises(KernelnetError, match="no target image"):
        fit_exact(config, photos, build_model("double"), targets={})


@pytest.fixture
def photo_dir(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, im in photos.items():
        Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / f"{name}.png")
    Image.fromarray((photos["camera"].T * 255).round().astype(np.uint8)).save(folder / "camera_t.png")
    return folder


@pytest.mark.parametrize("extra", [dict(solver="exact"), dict(init="exact", epochs=3)])
def test_train_exact_and_init_exact(tmp_path, photo_dir, extra):
    from kernelnet.learn.training import train

    config = RunConfig(filter="random", model="double", data=str(photo_dir), crop=32, **extra)
    result = train(config, tmp_path / "run", progress=False, plots=False)
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["kernel_max_abs_error"] < 1e-5 and m["epochs_run"] == 0 and m["exact_rank"] == 55
    assert (tmp_path / "run" / "model.safetensors").is_file() and result.metrics["solver"] == config.solver


def test_init_exact_fine_tunes_an_imperfect_fit(tmp_path, photo_dir, monkeypatch):
    """Noisy paired targets make the closed form imperfect: the warm-started fine-tuning runs and ends no worse
    (here: better) on the validation crops than the exact init it started from."""
    import kernelnet.learn.exact as exact
    from kernelnet.learn.data import epoch_rng, load_source, sample_crops, split_images, usable_for_crops
    from kernelnet.learn.training import VAL_CROPS, _targets, resolve_config, train

    real_fit = exact.fit_exact

    def noisy_fit(config, images, model, targets=None):
        noise = np.random.default_rng(0)
        kernel = np.array(config.target_kernel)
        targets = {n: apply_filter(im.astype(np.float64), kernel, config.model, config.normalize, config.padding)
                   + 0.05 * noise.standard_normal(im.shape) for n, im in images.items()}
        return real_fit(config, images, model, targets=targets)

    monkeypatch.setattr(exact, "fit_exact", noisy_fit)
    config = resolve_config(RunConfig(filter="random", model="double", data=str(photo_dir), crop=32, batch_size=8,
                                      steps_per_epoch=10, epochs=3, lr=1e-3, init="exact"))
    with pytest.warns(ExactFitWarning):
        result = train(config, tmp_path / "run", progress=False, plots=False)
    assert "exact_warning" in result.metrics and result.metrics["epochs_run"] >= 1

    split = split_images(load_source(config.data))
    val_x = torch.from_numpy(sample_crops(usable_for_crops(split.val, config.crop), VAL_CROPS, config.crop,
                                          epoch_rng(config.seed, 0, 1)))  # the training's validation crops
    init = build_model(config.model, config.kernel_size, config.bias, config.normalize, config.padding)
    with pytest.warns(ExactFitWarning):
        noisy_fit(config, split.train, init)

    def val_loss(model) -> float:
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(model(val_x), _targets(val_x, config)))

    assert val_loss(result.model) < val_loss(init)


@pytest.mark.slow
def test_cli_exact_double_on_builtin_photos(tmp_path, cli):
    out = tmp_path / "run"
    res = cli("train", "--solver", "exact", "--model", "double", "--filter", "random", "--out", str(out), "-q",
              "--no-plots")
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["kernel_max_abs_error"] <= 1e-5 and m["solver"] == "exact" and m["epochs_run"] == 0
    assert m["train_seconds"] < 30  # the bar is 5 s on an idle 2-core machine (benchmarks/exact_vs_gradient.py)
