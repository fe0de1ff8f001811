"""Every input on the pairs path gets a right answer or one line (exit 2, nothing written, nothing replaced):
mixed encodings, 16-bit colour PNGs, floats float32 cannot hold, constant inputs, crafted .npy headers, odd file
names and folders, bad options, edited or swapped run files."""

from __future__ import annotations

import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from tests.helpers import kn

cv2 = pytest.importorskip("cv2")

SOBEL = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)


def crops(count: int = 6, side: int = 40) -> list[np.ndarray]:
    from tests.black_boxes import photos

    return photos(count, side)


def folders(tmp_path, make_target, suffix=".png", inputs=None, count=6):
    """in/ and out/ with ``make_target(crop)`` saved as ``suffix`` (PNG by OpenCV, .npy by numpy)."""
    data, targets = tmp_path / "in", tmp_path / "out"
    data.mkdir()
    targets.mkdir()
    for i, img in enumerate(inputs or crops(count)):
        cv2.imwrite(str(data / f"{i}.png"), img)
        out = make_target(img)
        np.save(targets / f"{i}.npy", out) if suffix == ".npy" else cv2.imwrite(str(targets / f"{i}{suffix}"), out)
    return data, targets


def snapshot(root):
    """Every file below ``root`` with its bytes (walked without recursion: one test nests 1100 folders)."""
    found, stack = {}, [str(root)]
    while stack:
        for entry in os.scandir(stack.pop()):
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif entry.is_file():
                with open(entry.path, "rb") as fh:
                    found[os.path.relpath(entry.path, root)] = fh.read()
    return found


def one_line_refusal(tmp_path, args, needle):
    before = snapshot(tmp_path)
    res = kn(*args)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and needle in res.output, res.output
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("case,needle", [
    ("mixed-input-depths", "inputs mix encodings"),
    ("float-beyond-float32", "beyond float32"),
    ("float-below-float32", "below float32's precision"),
    ("constant-inputs", "no filter can be identified"),
    ("npy-header-200000", "cannot read"),
    ("lr-nan", "--lr must be"),
    ("lr-negative", "--lr must be"),
    ("clip-nan", "invalid --clip"),
    ("clip-reversed", "invalid --clip"),
    ("clip-empty", "invalid --clip"),
    ("epochs-negative", "--epochs must be"),
])
def test_bad_pairs_are_one_line_and_write_nothing(tmp_path, case, needle):
    make, suffix, inputs, extra = (lambda c: cv2.filter2D(c, -1, SOBEL / 8)), ".png", None, []
    if case == "mixed-input-depths":
        inputs = [c if i % 2 else c.astype(np.uint16) * 257 for i, c in enumerate(crops())]
        make = lambda c: (c // 257).astype(np.uint8) if c.dtype == np.uint16 else c  # noqa: E731
    elif case == "float-beyond-float32":
        make, suffix = (lambda c: c.astype(np.float64) * 1e300), ".npy"
    elif case == "float-below-float32":
        make, suffix = (lambda c: c.astype(np.float64) * 1e-310), ".npy"
    elif case == "constant-inputs":
        inputs, make = [np.full((40, 40), 77, np.uint8)] * 6, (lambda c: cv2.blur(c, (3, 3)))
    else:
        extra = {"lr-nan": ["--solver", "adam", "--lr", "nan"], "lr-negative": ["--solver", "adam", "--lr", "-1"],
                 "clip-nan": ["--clip", "nan,255"], "clip-reversed": ["--clip", "255,0"],
                 "clip-empty": ["--clip", "5,5"], "epochs-negative": ["--epochs", "-5"]}.get(case, [])
    data, targets = folders(tmp_path, make, suffix, inputs)
    if case == "npy-header-200000":
        shutil.rmtree(targets)
        targets.mkdir()
        for i in range(6):  # a header that declares 200000² float64 values in a file of a few bytes
            header = "{'descr': '<f8', 'fortran_order': False, 'shape': (200000, 200000), }"
            (targets / f"{i}.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header.ljust(117) + "\n").to_bytes(2, "little")
                                               + (header.ljust(117) + "\n").encode() + b"\0" * 64)
    one_line_refusal(tmp_path, ["train", "--data", data, "--targets", targets, "--out", tmp_path / "run", *extra],
                     needle)


def test_16_bit_colour_png_targets_keep_their_16_bits(tmp_path):
    """Pillow reads 16-bit colour PNGs as 8-bit; the pairs reader decodes them whole (OpenCV) and the model writes
    16-bit files back."""
    rgb = [np.dstack([c, c[::-1], c[:, ::-1]]) for c in crops()]
    data, targets = folders(tmp_path, lambda c: (cv2.blur(c, (3, 3)).astype(np.uint16) * 257), inputs=rgb)
    res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots")
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["target_encoding"]["dtype"] == "uint16" and metrics["target_encoding"]["channels"] == 3
    assert kn("export", tmp_path / "run").exit_code == 0
    assert kn("apply", tmp_path / "run", data / "0.png", "--out", tmp_path / "y.png").exit_code == 0
    written = cv2.imread(str(tmp_path / "y.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint16 and written.shape[2] == 3


def test_odd_names_and_deep_folders(tmp_path):
    data, targets = folders(tmp_path, lambda c: cv2.filter2D(c, -1, SOBEL / 8))
    deep_in, deep_out = data, targets
    for _ in range(1100):  # deeper than Python's recursion limit (made one level at a time: mkdir -p recurses)
        deep_in, deep_out = deep_in / "d", deep_out / "d"
        deep_in.mkdir()
        deep_out.mkdir()
    shutil.copy(data / "0.png", deep_in / "x.png")
    shutil.copy(targets / "0.png", deep_out / "x.png")
    try:
        res = kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots")
        assert res.exit_code == 0, res.output
    finally:  # pytest's own clean-up (shutil.rmtree) recurses: take the tower down from the top
        for deep in (deep_in, deep_out):
            (deep / "x.png").unlink()
            while deep.name == "d":
                deep.rmdir()
                deep = deep.parent
    if sys.platform.startswith("linux"):
        bad = os.fsencode(str(data)) + b"/\xff\xfe.png"
        with open(bad, "wb") as fh:
            fh.write((data / "0.png").read_bytes())
        with open(os.fsencode(str(targets)) + b"/\xff\xfe.png", "wb") as fh:
            fh.write((targets / "0.png").read_bytes())
        one_line_refusal(tmp_path, ["train", "--data", data, "--targets", targets, "--out", tmp_path / "r2"],
                         "must be UTF-8")


def test_apply_takes_long_names_and_refuses_a_fifo(tmp_path):
    data, targets = folders(tmp_path, lambda c: cv2.filter2D(c, -1, SOBEL / 8), count=4)
    assert kn("train", "--data", data, "--targets", targets, "--out", tmp_path / "run", "--no-plots").exit_code == 0
    assert kn("export", tmp_path / "run").exit_code == 0
    long_name = "n" * 240 + ".png"
    shutil.copy(data / "0.png", tmp_path / long_name)
    out = tmp_path / "long"
    for _ in range(2):  # the second run replaces the first's file: its parked name must fit too
        res = kn("apply", tmp_path / "run", tmp_path / long_name, "--out", out / long_name)
        assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [long_name]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.png")
        res = kn("apply", tmp_path / "run", tmp_path / "pipe.png", "--out", tmp_path / "p.png")
        assert res.exit_code == 2 and "not a regular file" in res.output


def test_edited_or_swapped_run_files_are_refused(tmp_path):
    data, targets = folders(tmp_path, lambda c: cv2.filter2D(c, -1, SOBEL / 8), count=4)
    run = tmp_path / "run"
    assert kn("train", "--data", data, "--targets", targets, "--out", run, "--no-plots").exit_code == 0
    config = json.loads((run / "config.json").read_text())
    for field, value, needle in (("target_dtype", "uint32", "target dtype"), ("target_channels", 7, "channels"),
                                 ("target_format", "bmp", "target format")):
        (run / "config.json").write_text(json.dumps({**config, field: value}))
        one_line_refusal(tmp_path, ["export", run], needle)
    (run / "config.json").write_text(json.dumps({**config, "padding": "zeros" if config["padding"] != "zeros"
                                                  else "reflect"}))
    one_line_refusal(tmp_path, ["export", run], "another config")
