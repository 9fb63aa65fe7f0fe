"""The command line under hostile input: one line on stderr, exit 2, nothing written, and a
traceback only when --debug asks for it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_ecc_align import Alignment
from napari_ecc_align.cli import commands, main, messages
from napari_ecc_align.data import natural_pair
from napari_ecc_align.io.images import write_image

PREFIX = "napari-ecc-align: error: "


@pytest.fixture
def pair_dir(tmp_path):
    reference, moving, _ = natural_pair((160, 200), seed=3)
    write_image(tmp_path / "ref.png", (reference * 255).round().astype(np.uint8))
    write_image(tmp_path / "mov.png", (np.clip(moving, 0, 1) * 255).round().astype(np.uint8))
    return tmp_path


def _one_line_error(capsys, words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith(PREFIX), err
    assert "Traceback" not in err, err
    assert words in lines[-1], lines[-1]
    return lines[-1]


def _valid_transform() -> dict:
    return Alignment(np.eye(3), "affine", 0.9, 0.5, (160, 200), (160, 200)).to_dict()


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("nested", "[" * 100_000 + "]" * 100_000, "nested 100000 levels deep"),
        ("huge entry", json.dumps(_valid_transform()).replace("[[1.0", "[[1" + "0" * 400),
         "matrix must be finite"),
        ("huge shape", json.dumps(_valid_transform()).replace('"reference_shape": [160',
                                                              '"reference_shape": [1e400'),
         "reference_shape[0] must be a whole number"),
        ("wrong types", json.dumps({**_valid_transform(), "levels": "many"}),
         "levels must be a whole number"),
    ],
)  # fmt: skip
def test_hostile_init_json_is_one_line_and_writes_nothing(pair_dir, capsys, name, text, words):
    init = pair_dir / "init.json"
    init.write_text(text, encoding="utf-8")
    out = pair_dir / "out.png"
    code = main(["align", str(pair_dir / "ref.png"), str(pair_dir / "mov.png"),
                 "-o", str(out), "--init", str(init), "-q"])  # fmt: skip
    assert code == 2
    line = _one_line_error(capsys, words)
    assert "--init" in line and str(init) in line
    assert not out.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_init_that_is_a_fifo_is_refused_not_waited_on(pair_dir, capsys):
    fifo = pair_dir / "init.json"
    os.mkfifo(fifo)
    code = main(["align", str(pair_dir / "ref.png"), str(pair_dir / "mov.png"),
                 "-o", str(pair_dir / "out.png"), "--init", str(fifo)])  # fmt: skip
    assert code == 2
    _one_line_error(capsys, "not a regular file")


@pytest.mark.parametrize(
    ("spacing", "words"),
    [
        ("1e308,1e308,1e308", "must lie between 1e-12 and 1e+12"),
        ("1e-308,1,1", "must lie between"),
        ("3000,1,1", "more than 1000:1 anisotropic"),
        ("inf,1,1", "expected three positive numbers"),
        ("1,1", "expected three positive numbers"),
    ],
)
def test_absurd_spacing_is_refused_by_the_option(tmp_path, capsys, spacing, words):
    volume = (np.random.default_rng(0).random((8, 32, 32)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "ref.tif", volume)
    tifffile.imwrite(tmp_path / "mov.tif", volume)
    code = main(["align", str(tmp_path / "ref.tif"), str(tmp_path / "mov.tif"),
                 "-o", str(tmp_path / "out.tif"), "--ndim", "3", "--spacing", spacing])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "--spacing" in err and words in err and "Traceback" not in err
    assert not (tmp_path / "out.tif").exists()


def test_a_failed_save_leaves_no_partial_result_and_the_old_files(pair_dir, capsys):
    # The aligned image can be written, the difference cannot (its folder is a file):
    # the command fails, writes nothing, and an earlier result under the same name stays.
    (pair_dir / "blocker").write_text("a file where a folder is needed")
    out = pair_dir / "out.png"
    args = ["align", str(pair_dir / "ref.png"), str(pair_dir / "mov.png"), "-o", str(out), "-q"]
    code = main([*args, "--difference", str(pair_dir / "blocker" / "diff.png")])
    assert code == 2
    _one_line_error(capsys, "blocker")
    assert sorted(p.name for p in pair_dir.iterdir()) == ["blocker", "mov.png", "ref.png"]

    assert main([*args, "--transform", str(pair_dir / "t.json")]) == 0  # a good first run
    before = {p.name: p.read_bytes() for p in pair_dir.iterdir()}
    code = main([*args, "--transform", str(pair_dir / "t.json"), "--motion", "translation",
                 "--difference", str(pair_dir / "blocker" / "diff.png")])  # fmt: skip
    assert code == 2
    _one_line_error(capsys, "blocker")
    after = {p.name: p.read_bytes() for p in pair_dir.iterdir()}
    assert after == before  # old out.png and t.json untouched, no temporary left


def test_debug_shows_the_traceback_before_or_after_the_command(pair_dir):
    missing = str(pair_dir / "missing.png")
    args = ["align", str(pair_dir / "ref.png"), missing, "-o", str(pair_dir / "out.png")]
    code = "import sys; from napari_ecc_align.cli import main; sys.exit(main(sys.argv[1:]))"
    for argv in (args, ["--debug", *args], [*args, "--debug"]):
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1].startswith(PREFIX)
        assert ("Traceback" in done.stderr) == ("--debug" in argv), done.stderr


@pytest.mark.parametrize(
    ("exc", "code", "words"),
    [
        (RuntimeError("a library broke\nover two lines"), 2,
         "unexpected RuntimeError: a library broke over two lines (run again with --debug"),
        (MemoryError(), 2, "out of memory"),
        (RecursionError("maximum recursion depth exceeded"), 2, "unexpected RecursionError"),
        (PermissionError(13, "Permission denied", "/x/y.png"), 2, "Permission denied: /x/y.png"),
        (ValueError("spacing=(dz, dy, dx) is wrong"), 2, "--spacing dz,dy,dx is wrong"),
    ],
)  # fmt: skip
def test_every_exception_becomes_one_line(capsys, exc, code, words):
    assert commands._report(exc) == code
    _one_line_error(capsys, words)


def test_max_pixels_option_sets_the_budget_of_the_inputs_and_init(pair_dir, capsys):
    args = ["align", str(pair_dir / "ref.png"), str(pair_dir / "mov.png"), "-q"]
    out = pair_dir / "out.png"
    assert main([*args, "-o", str(out), "--max-pixels", "10000"]) == 2
    line = _one_line_error(capsys, "160 × 200 = 32,000 pixels, more than the pixel budget of 10,0")
    assert "--max-pixels N" in line and not out.exists()
    transform = ["--transform", str(pair_dir / "t.json")]
    assert main([*args, "-o", str(out), "--max-pixels", "1e5", *transform]) == 0
    assert out.exists()
    # The same budget guards the shapes an --init file declares.
    big = {**_valid_transform(), "reference_shape": [160, 20_000]}
    (pair_dir / "big.json").write_text(json.dumps(big), encoding="utf-8")
    init = ["--init", str(pair_dir / "big.json")]
    assert main([*args, "-o", str(pair_dir / "o2.png"), *init, "--max-pixels", "1e6"]) == 2
    _one_line_error(capsys, "reference_shape declares 160 × 20000")
    for bad in ("0", "-5", "2.5", "lots"):
        assert main([*args, "-o", str(out), "--max-pixels", bad]) == 2
        assert "expected a positive whole number of pixels" in capsys.readouterr().err


def test_a_missing_init_file_names_the_option(pair_dir, capsys):
    missing = str(pair_dir / "none.json")
    code = main(["align", str(pair_dir / "ref.png"), str(pair_dir / "mov.png"),
                 "-o", str(pair_dir / "out.png"), "--init", missing])  # fmt: skip
    assert code == 2
    _one_line_error(capsys, f"--init: no such file: {pair_dir / 'none.json'}")


def test_names_the_terminal_cannot_encode_are_escaped_not_fatal(monkeypatch):
    # A POSIX file name that is not UTF-8 reaches Python as lone surrogates; a strict
    # UTF-8 stdout would fail on it after the work was done.
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    messages.say("12 pairs: see out/bad\udcff\udcfename/alignment.csv")
    stdout.flush()
    assert stdout.buffer.getvalue() == b"12 pairs: see out/bad\\udcff\\udcfename/alignment.csv\n"
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stderr", stderr)
    messages.print_error("cannot read caf\u00e9\udcff.png")
    stderr.flush()
    assert stderr.buffer.getvalue() == b"napari-ecc-align: error: cannot read caf\\xe9\\udcff.png\n"
