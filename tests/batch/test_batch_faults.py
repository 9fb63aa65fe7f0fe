"""Batch faults: kill -9 then resume gives exactly a clean run's outputs; a write failure
is reported with no partial file left; inputs stay byte-identical."""

import csv
import hashlib
from pathlib import Path

import numpy as np

from napari_ecc_align import Alignment
from napari_ecc_align.cli import main
from napari_ecc_align.io.images import read_image

PAIRS = 16


def _hashes(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _rows(out: Path) -> list[dict]:
    with open(out / "alignment.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_kill_then_resume_equals_a_clean_run(tmp_path, kill_batch_midway, batch_dataset):
    batch_dataset(tmp_path, PAIRS)
    inputs = _hashes(tmp_path / "ref") | {"m/" + k: v for k, v in _hashes(tmp_path / "mov").items()}
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    args = [str(tmp_path / "ref"), str(tmp_path / "mov")]
    assert main(["batch", *args, str(clean), "--workers", "1", "-q"]) == 0

    kill_batch_midway([*args, resumed, "--workers", "1", "-q"], resumed)
    done_before = len(list(resumed.rglob("*.transform.json")))
    assert done_before < PAIRS
    assert main(["batch", *args, str(resumed), "--workers", "1", "-q"]) == 0

    rows = _rows(resumed)
    assert len(rows) == PAIRS and {r["status"] for r in rows} <= {"ok", "skipped"}
    assert sum(r["status"] == "skipped" for r in rows) >= 2
    assert not [p for p in resumed.rglob(".*")], "temporary files left behind"
    for image in sorted(clean.rglob("p*.png")):
        twin = resumed / image.relative_to(clean)
        np.testing.assert_array_equal(read_image(twin), read_image(image))
    for transform in sorted(clean.rglob("*.transform.json")):
        twin = resumed / transform.relative_to(clean)
        a, b = Alignment.from_json(str(transform)), Alignment.from_json(str(twin))
        np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-9)
    after = _hashes(tmp_path / "ref") | {"m/" + k: v for k, v in _hashes(tmp_path / "mov").items()}
    assert after == inputs


def test_write_failure_is_reported_and_leaves_no_partial_file(tmp_path, batch_dataset):
    batch_dataset(tmp_path, PAIRS)
    out = tmp_path / "out"
    out.mkdir()
    (out / "day1").write_text("a file where the batch needs a folder")  # writes there fail
    code = main(["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "-q"])
    assert code == 1
    rows = _rows(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == PAIRS // 2 and all("day1" in r["pair"] for r in failed)
    assert all(r["error"] for r in failed)
    assert sum(r["status"] == "ok" for r in rows) == PAIRS // 2
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    assert (out / "day1").read_text().startswith("a file")
