"""`napari-ecc-align batch` options: --overwrite, --keep-jpeg, a malformed --pairs CSV and
the output-folder lock, on real files and a real Dask LocalCluster."""

import csv
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.io.images import read_image, write_image

SHAPE = (160, 200)


def _write_pair(root, rel, seed, shift=(2.5, -1.5), ext_moving=None):
    reference, moving, matrix = natural_pair(SHAPE, seed, angle_deg=0.3, shift=shift, scale=1.0)
    write_image(root / "ref" / rel, np.rint(reference * 255).astype(np.uint8))
    write_image(root / "mov" / (ext_moving or rel), np.rint(moving * 255).astype(np.uint8))
    return matrix


def _rows(out):
    with open(Path(out) / "alignment.csv", newline="", encoding="utf-8") as fh:
        return {row["pair"]: row for row in csv.DictReader(fh)}


def _hashes(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def _batch(root, *options):
    return main(["batch", str(root / "ref"), str(root / "mov"), str(root / "out"), *options])


def test_rerun_skips_complete_pairs_and_overwrite_aligns_them_again(tmp_path, capsys):
    truth = {rel: _write_pair(tmp_path, rel, seed) for seed, rel in enumerate(["a.png", "b.png"])}
    out = tmp_path / "out"
    assert _batch(tmp_path, "--workers", "1", "-q") == 0
    first = _hashes(out)

    # b's moving image changes: a plain re-run keeps b's (now stale) complete outputs ...
    truth["b.png"] = _write_pair(tmp_path, "b.png", 1, shift=(-4.0, 3.5))
    assert _batch(tmp_path, "--workers", "1") == 0
    assert capsys.readouterr().out.strip().startswith("2 pairs: 0 ok, 2 skipped, 0 failed")
    assert {r["status"] for r in _rows(out).values()} == {"skipped"}
    assert {k: v for k, v in _hashes(out).items() if k != "alignment.csv"} == {
        k: v for k, v in first.items() if k != "alignment.csv"
    }
    stale = Alignment.from_json(out / "b.transform.json")
    assert corner_rms(stale.matrix, truth["b.png"], SHAPE) > 5

    # ... and --overwrite aligns every pair again.
    assert _batch(tmp_path, "--workers", "1", "--overwrite") == 0
    assert capsys.readouterr().out.strip().startswith("2 pairs: 2 ok, 0 skipped, 0 failed")
    assert {r["status"] for r in _rows(out).values()} == {"ok"}
    for rel, matrix in truth.items():
        alignment = Alignment.from_json(out / rel.replace(".png", ".transform.json"))
        assert corner_rms(alignment.matrix, matrix, SHAPE) < 0.3, rel
    rewritten = _hashes(out)
    assert rewritten["b.png"] != first["b.png"]  # the new b, resampled
    assert rewritten["a.transform.json"] != first["a.transform.json"]  # a ran again too


def test_keep_jpeg_writes_jpeg(tmp_path):
    truth = _write_pair(tmp_path, "photo.jpg", 4)
    out = tmp_path / "out"
    assert _batch(tmp_path, "--workers", "1", "-q", "--keep-jpeg") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "alignment.csv",
        "photo.jpg",
        "photo.transform.json",
    ]
    assert (out / "photo.jpg").read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG, not a PNG
    image = read_image(out / "photo.jpg")
    assert image.dtype == np.uint8 and image.shape == SHAPE
    assert _rows(out)["photo.jpg"]["output"] == "photo.jpg"
    alignment = Alignment.from_json(out / "photo.transform.json")
    assert corner_rms(alignment.matrix, truth, SHAPE) < 0.3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "{csv}: the first row must name the columns reference,moving[,output]; found nothing"),
        (
            "reference,output\na.png,x.png\n",
            "{csv}: the first row must name the columns reference,moving[,output]; "
            "found reference,output",
        ),
        ("reference,moving\n\n", "{csv}: lists no pairs"),
        ("reference,moving\na.png,a.png\nb.png,\n", "{csv}, line 3: the moving cell is empty"),
        (
            "reference,moving,output\na.png,a.png,../escape.png\n",
            "{csv}, line 2: output ../escape.png is outside OUTPUT_DIR {out}; give a path "
            "relative to it",
        ),
        (
            "reference,moving,output\na.png,a.png,a.bmp\n",
            "{csv}, line 2: {out}/a.bmp: unsupported file extension",
        ),
    ],
    ids=["empty", "no-moving-column", "no-rows", "empty-moving-cell", "outside", "extension"],
)
def test_malformed_pairs_csv_exits_2_before_writing(tmp_path, capsys, text, message):
    _write_pair(tmp_path, "a.png", 0)
    _write_pair(tmp_path, "b.png", 1)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(text, encoding="utf-8")
    assert _batch(tmp_path, "--pairs", str(pairs)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(
        "napari-ecc-align: error: " + message.format(csv=pairs, out=tmp_path / "out")
    )
    assert not (tmp_path / "out").exists()  # nothing written


def test_second_batch_on_a_locked_output_folder_fails_and_loses_nothing(tmp_path, capsys):
    n = 60  # pairs left when the first batch is paused: far more than one poll could miss
    truth = _write_pair(tmp_path, "p000.png", 7)
    for k in range(1, n):
        for side in ("ref", "mov"):
            shutil.copy(tmp_path / side / "p000.png", tmp_path / side / f"p{k:03d}.png")
    ref, mov, out = tmp_path / "ref", tmp_path / "mov", tmp_path / "out"
    inputs = _hashes(ref), _hashes(mov)

    cmd = [sys.executable, "-m", "napari_ecc_align.cli.commands", "batch"]
    log = open(tmp_path / "first.log", "wb")
    first = subprocess.Popen([*cmd, str(ref), str(mov), str(out), "--workers", "1", "-q"],
                             stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # a hang guard only: a slow machine may need long
        while not list(out.glob("*.transform.json")):  # pairs are written: the lock is held
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "the first batch wrote nothing within 300 s"
            time.sleep(0.005)
        # Paused (the CLI and its Dask workers) while still holding the lock: the second
        # batch meets the lock however fast the first one would otherwise have finished.
        os.killpg(first.pid, signal.SIGSTOP)
        assert first.poll() is None, "the first batch ended before it could be paused"

        code = main(["batch", str(ref), str(mov), str(out), "--workers", "1", "-q"])
        err = capsys.readouterr().err
        assert code == 2
        assert err == (
            f"napari-ecc-align: error: another batch is writing to {out}; wait for it or "
            "choose another OUTPUT_DIR\n"
        )
        assert not (out / "alignment.csv").exists()  # the refused batch wrote no CSV
        os.killpg(first.pid, signal.SIGCONT)
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)  # the CLI and its Dask worker processes
            first.wait()
        log.close()

    # Nothing is lost: every pair of the first batch is complete and correct.
    rows = _rows(out)
    assert len(rows) == n and {r["status"] for r in rows.values()} == {"ok"}
    assert not [p for p in out.rglob(".*")], "temporary files left behind"
    for k in (0, n // 2, n - 1):
        alignment = Alignment.from_json(out / f"p{k:03d}.transform.json")
        assert corner_rms(alignment.matrix, truth, SHAPE) < 0.3
        assert read_image(out / f"p{k:03d}.png").shape == SHAPE
    assert len(list(out.glob("*.transform.json"))) == n
    assert (_hashes(ref), _hashes(mov)) == inputs
