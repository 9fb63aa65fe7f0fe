"""The report always lands: any file name the file system allows (bytes that are not UTF-8,
line breaks, commas, quotes, leading dashes) round-trips through alignment.csv and through
a resume; a report that cannot be written says so and keeps every aligned pair."""

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair
from napari_ecc_align.io.images import read_image, write_image

SHAPE = (120, 160)
NAMES = [
    os.fsdecode(b"bad\xff\xfename.png"),  # not UTF-8: a lone surrogate per byte in Python
    "new\nline.png",
    "carriage\rreturn.png",
    'comma, and "quotes".png',
    "-leading-dash.png",
    "ünïcödé ☃ 名前.png",
    " spaces .png",
]


def _write(root: Path, names, seed0: int = 0) -> None:
    for k, name in enumerate(names):
        reference, moving, _ = natural_pair(SHAPE, seed=seed0 + k, shift=(1.5, -1.0), scale=1.0)
        write_image(root / "ref" / name, np.rint(reference * 255).astype(np.uint8))
        write_image(root / "mov" / name, np.rint(moving * 255).astype(np.uint8))


def _rows(out: Path) -> list[dict]:
    # The documented way to read the report back (batch_align's docstring).
    with open(out / "alignment.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(os.name == "nt", reason="POSIX file names are bytes; Windows' are not")
def test_any_file_name_round_trips_through_the_report_and_the_resume(tmp_path, capsys):
    _write(tmp_path, NAMES)
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1"]

    assert main([*args, "-q"]) == 0, capsys.readouterr().err
    rows = _rows(out)
    assert sorted(r["pair"] for r in rows) == sorted(NAMES)
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["output"] == r["pair"] == r["reference"] for r in rows)
    raw = (out / "alignment.csv").read_bytes()
    assert b"bad\xff\xfename.png" in raw  # the name's own bytes, not an escape
    for row in rows:  # the names in the CSV open the files they name
        assert read_image(out / row["output"]).shape == SHAPE
        Alignment.from_json(out / (os.path.splitext(row["output"])[0] + ".transform.json"))

    assert main([*args, "-q"]) == 0  # the resume finds every pair complete by those names
    again = _rows(out)
    assert [r["status"] for r in again] == ["skipped"] * len(NAMES)
    keep = ("pair", "reference", "output", "correlation_after")
    assert [{k: r[k] for k in keep} for r in again] == [{k: r[k] for k in keep} for r in rows]
    assert not [p for p in out.rglob(".*")]


def test_a_report_that_cannot_be_written_says_so_and_keeps_the_pairs(tmp_path, capsys):
    names = ["a.png", "b.png", "c.png"]
    _write(tmp_path, names)
    out = tmp_path / "out"
    (out / "alignment.csv").mkdir(parents=True)  # os.replace cannot put the CSV there
    args = ["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1"]

    assert main([*args, "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        f"napari-ecc-align: error: could not write the report {out / 'alignment.csv'}: "
    ), err
    assert "alignment.csv: Is a directory; the 3 aligned" in err
    assert err.endswith("; the 3 aligned pairs and their .transform.json files are kept\n"), err
    for name in names:
        assert read_image(out / name).shape == SHAPE
        Alignment.from_json(out / name.replace(".png", ".transform.json"))
    assert not [p for p in out.rglob(".*")]  # no temporary file, no record of the run

    (out / "alignment.csv").rmdir()  # once the way is clear, a resume writes the report
    assert main([*args, "-q"]) == 0
    assert [r["status"] for r in _rows(out)] == ["skipped"] * 3
