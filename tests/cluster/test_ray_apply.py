"""``kernelnet apply --engine ray`` on a real local Ray cluster (no mocks): the same bytes as the local apply,
resumable from its manifest, bad files listed, file system URLs; skipped, saying why, where Ray cannot start."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kernelnet.runtime.errors import KernelnetError
from tests.helpers import run_cli

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'kernelnet[ray]')")

from kernelnet.runtime.cluster.locations import PARTIAL  # noqa: E402
from kernelnet.runtime.cluster.manifest import MANIFEST_NAME  # noqa: E402
from kernelnet.runtime.cluster.ray_apply import apply_on_ray  # noqa: E402


def write_photos(folder: Path, count: int, side: int = 48, seed: int = 0) -> list[Path]:
    """``count`` gray PNGs (8-bit, some 16-bit) in ``folder`` and a nested subfolder, textured noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        sub = folder / ("nested/deeper" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        levels = rng.integers(0, 256, (side + i % 5, side), dtype=np.uint8)
        image = Image.fromarray(levels.astype(np.uint16) * 257) if i % 7 == 0 else Image.fromarray(levels)
        paths.append(sub / f"frame{i:03d}.png")
        image.save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def sobel(tmp_path_factory) -> Path:
    from kernelnet.export.onnx_graph import write_graph
    from kernelnet.runtime.spec import FilterSpec

    path = tmp_path_factory.mktemp("model") / "sobel.onnx"
    write_graph(path, FilterSpec.from_kind(np.array([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]), "single"))
    return path


def local_apply(model: Path, inputs: Path, out: Path, *options: str) -> dict[str, bytes]:
    """The local engine's outputs (a fresh process: this one has Ray threads, and the local apply forks)."""
    result = run_cli("apply", str(model), str(inputs), "--out", str(out), "-q", *options)
    assert result.returncode == 0, result.stderr
    return tree(out)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` but the manifest, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST_NAME}


def test_outputs_are_the_local_apply_bytes_and_a_rerun_does_only_what_is_missing(cluster, sobel, tmp_path):
    write_photos(tmp_path / "in", 30)
    expected = local_apply(sobel, tmp_path / "in", tmp_path / "local")
    summary = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "ray"), chunk=4)
    assert (summary.total, summary.written, summary.done_before, summary.failed) == (30, 30, 0, [])
    assert summary.backend == "native" and summary.workers == 2
    assert tree(tmp_path / "ray") == expected  # nested folders, 8- and 16-bit inputs, stems kept
    records = (tmp_path / "ray" / MANIFEST_NAME).read_text().splitlines()
    assert json.loads(records[0])["kernelnet_manifest"] == 1 and len(records) == 31
    assert summary.pixels == sum(np.asarray(Image.open(p)).size for p in (tmp_path / "in").rglob("*.png"))

    again = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "ray"))
    assert (again.written, again.done_before) == (0, 30) and again.workers == 0  # no cluster work at all
    (tmp_path / "ray" / "frame001.png").unlink()
    (tmp_path / "ray" / "nested" / "deeper" / "frame003.png").write_bytes(b"cut short")  # not the recorded size
    third = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "ray"))
    assert (third.written, third.done_before) == (2, 28)
    assert tree(tmp_path / "ray") == expected
    assert not list((tmp_path / "ray").rglob(f"{PARTIAL}*"))


def test_a_changed_input_is_redone_and_an_output_inside_the_inputs_is_not_an_input(cluster, sobel, tmp_path):
    paths = write_photos(tmp_path / "in", 6, seed=6)
    out = tmp_path / "in" / "edges"  # below the inputs: a rerun must not take the outputs for inputs
    first = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(out), workers=3)  # more workers than CPUs
    assert first.written == 6 and 1 <= first.workers <= 2  # at most one per free CPU: no actor left waiting
    Image.fromarray(np.full((48, 48), 200, np.uint8)).save(paths[1])  # edited in place: same name
    os.utime(paths[1], ns=(1, 1))
    again = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(out))
    assert (again.written, again.done_before) == (1, 5)
    expected = local_apply(sobel, tmp_path / "in", tmp_path / "local")
    assert tree(out) == {k: v for k, v in expected.items() if not k.startswith("edges/")}


def test_other_formats_and_file_system_urls(cluster, sobel, tmp_path):
    write_photos(tmp_path / "in", 8, seed=1)
    for options in (("--format", "npy"), ("--bits", "16", "--scale", "0.25")):
        name = options[1]
        expected = local_apply(sobel, tmp_path / "in", tmp_path / f"local{name}", *options)
        fmt = "npy" if "npy" in options else None
        bits, scale = (16, "0.25") if "16" in options else (None, None)
        url = f"file://{tmp_path / name}"
        summary = apply_on_ray(str(sobel), (f"file://{tmp_path / 'in'}",), url, fmt, bits, scale,
                               manifest=tmp_path / f"{name}.jsonl")
        assert summary.written == 8 and not summary.failed
        assert tree(tmp_path / name) == expected
    again = apply_on_ray(str(sobel), (f"file://{tmp_path / 'in'}/*.png",), url, fmt, bits, scale,
                         manifest=tmp_path / f"{name}.jsonl")  # a glob: the top folder's files, done already
    assert (again.written, again.done_before) == (0, again.total) and again.total > 0
    victim = sorted((tmp_path / name).glob("*.png"))[0]
    victim.unlink()
    third = apply_on_ray(str(sobel), (f"file://{tmp_path / 'in'}",), url, fmt, bits, scale,
                         manifest=tmp_path / f"{name}.jsonl")
    assert (third.written, third.done_before) == (1, 7) and tree(tmp_path / name) == expected


def test_bad_files_are_listed_and_fail_fast_stops(cluster, sobel, tmp_path):
    write_photos(tmp_path / "in", 12, seed=2)
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(tmp_path / "in" / "huge.png")
    summary = apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "out"), max_pixels=10_000, chunk=3)
    assert summary.written == 12 and len(summary.failed) == 2
    assert {Path(source).name for source, _ in summary.failed} == {"broken.png", "huge.png"}
    assert all("\n" not in text and Path(source).name in text for source, text in summary.failed)
    assert not (tmp_path / "out" / "broken.png").exists() and not (tmp_path / "out" / "huge.png").exists()
    lines = summary.lines()
    assert lines[0].startswith("ray: 14 files: 12 written") and sum(x.startswith("failed:") for x in lines) == 2

    good = sorted(str(p) for p in (tmp_path / "in").glob("frame*.png"))
    stopped = apply_on_ray(str(sobel), (str(tmp_path / "in" / "broken.png"), *good), str(tmp_path / "fast"),
                           fail_fast=True, workers=1)  # (with more, the others go on until the failure comes back)
    assert stopped.stopped and len(stopped.failed) == 1 and stopped.written == 0 < len(good)


def test_a_file_name_or_a_url_manifest_is_refused_for_the_output(cluster, sobel, tmp_path):
    write_photos(tmp_path / "in", 1, seed=9)
    with pytest.raises(KernelnetError, match="writes a folder"):
        apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "one.png"))
    with pytest.raises(KernelnetError, match="manifest is a local file"):
        apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "out"), manifest=f"file://{tmp_path}/m")
    assert not (tmp_path / "one.png").exists() and not (tmp_path / "out").exists()


def test_a_manifest_of_another_run_or_a_live_run_is_refused(cluster, sobel, tmp_path):
    write_photos(tmp_path / "in", 3, seed=3)
    apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "out"))
    with pytest.raises(KernelnetError, match="another bits"):
        apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "out"), bits=16)
    from kernelnet.runtime.cluster.manifest import RunManifest

    header = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text().splitlines()[0])
    header.pop("kernelnet_manifest")
    with RunManifest.open(tmp_path / "out" / MANIFEST_NAME, header):
        with pytest.raises(KernelnetError, match="locked"):
            apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "out"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / MANIFEST_NAME).write_text("not json\n")
    with pytest.raises(KernelnetError, match="not a kernelnet run manifest"):
        apply_on_ray(str(sobel), (str(tmp_path / "in"),), str(tmp_path / "junk"))


def test_a_torn_last_line_is_dropped(tmp_path):
    from kernelnet.runtime.cluster.manifest import RunManifest

    path = tmp_path / MANIFEST_NAME
    with RunManifest.open(path, {"model_sha256": "x"}) as manifest:
        manifest.record([{"out": "a.png", "bytes": 3, "sha256": "y"}])
    with open(path, "a") as handle:
        handle.write('{"out": "b.png", "by')  # killed mid-line
    with RunManifest.open(path, {"model_sha256": "x"}) as manifest:
        assert set(manifest.done) == {"a.png"}
        manifest.record([{"out": "c.png", "bytes": 1, "sha256": "z"}])
    with RunManifest.open(path, {"model_sha256": "x"}) as manifest:
        assert set(manifest.done) == {"a.png", "c.png"}


def test_without_ray_the_cli_names_the_extra(sobel, tmp_path):
    write_photos(tmp_path / "in", 2, seed=4)
    code = ("import sys; sys.modules['ray'] = None; from kernelnet.cli import main; "
            f"sys.argv = ['kernelnet', 'apply', {str(sobel)!r}, {str(tmp_path / 'in')!r}, '--out', "
            f"{str(tmp_path / 'out')!r}, '--engine', 'ray']; main()")
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --engine ray needs Ray: pip install 'kernelnet[ray]'"]
    assert not list((tmp_path / "out").glob("*.png"))
    wrong = run_cli("apply", str(sobel), str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--fail-fast")
    assert wrong.returncode == 2 and "--engine ray" in wrong.stderr
    assert os.environ.get("KERNELNET_CACHE_DIR") == ""


def test_an_unreachable_address_is_one_line_and_writes_nothing(sobel, tmp_path):
    write_photos(tmp_path / "in", 2, seed=8)
    with __import__("socket").socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = run_cli("apply", str(sobel), str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--engine", "ray",
                     "--address", f"127.0.0.1:{port}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no Ray cluster answers at 127.0.0.1:{port}")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
