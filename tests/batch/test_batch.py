"""The `napari-ecc-align batch` command and `batch_align`: folders in, files and a CSV out.

Every test runs real Dask: an embedded LocalCluster, a CLI process killed with SIGKILL and
started again, and a scheduler plus worker started here on 127.0.0.1.
"""

import csv
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.batch import (
    BatchReport,
    PairJob,
    batch_align,
    find_pairs,
    remove_temporary_files,
    save_image,
)
from napari_ecc_align.batch.run import RUNS_NAME, recorded_runs
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine.alignment import corner_rms, write_text_atomic
from napari_ecc_align.engine.temporary import new_owner, temporary_name
from napari_ecc_align.io.images import read_image, write_image

SHAPE = (160, 200)
SHIFT = (2.5, -1.5)  # known small misalignment (dx, dy) of every pair


def _pair(seed, shape=SHAPE):
    reference, moving, matrix = natural_pair(shape, seed, angle_deg=0.3, shift=SHIFT, scale=1.0)
    return reference, moving, matrix


def _as(image, dtype):
    if np.dtype(dtype).kind == "f":
        return image.astype(dtype)
    return np.rint(image * np.iinfo(dtype).max).astype(dtype)


def _write_pair(root, rel, dtype, seed, shape=SHAPE):
    reference, moving, matrix = _pair(seed, shape)
    write_image(root / "ref" / rel, _as(reference, dtype))
    write_image(root / "mov" / rel, _as(moving, dtype))
    return matrix


def _hashes(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def _rows(output_dir):
    with open(Path(output_dir) / "alignment.csv", newline="", encoding="utf-8") as fh:
        return {row["pair"]: row for row in csv.DictReader(fh)}


def _hidden(folder):
    return [p for p in Path(folder).rglob(".*")]


@pytest.fixture
def dataset(tmp_path):
    """Sub-folders with 8-bit PNG, 16-bit PNG, float TIFF and JPEG pairs, a corrupt moving
    file (its reference is fine) and a moving file without a reference partner."""
    truth = {
        "a/page8.png": _write_pair(tmp_path, "a/page8.png", np.uint8, 1),
        "a/deep/page16.png": _write_pair(tmp_path, "a/deep/page16.png", np.uint16, 2),
        "b/float.tif": _write_pair(tmp_path, "b/float.tif", np.float32, 3),
        "b/photo.jpg": _write_pair(tmp_path, "b/photo.jpg", np.uint8, 4),
    }
    write_image(tmp_path / "ref" / "b" / "corrupt.png", _as(_pair(5)[0], np.uint8))
    rng = np.random.default_rng(0)
    (tmp_path / "mov" / "b" / "corrupt.png").write_bytes(rng.bytes(3000))
    write_image(tmp_path / "mov" / "orphan.png", _as(_pair(6)[1], np.uint8))
    return tmp_path, truth


def test_batch_local_cluster_outputs_csv_and_untouched_inputs(dataset, capsys):
    root, truth = dataset
    before = {name: _hashes(root / name) for name in ("ref", "mov")}
    out = root / "out"

    code = main(
        ["batch", str(root / "ref"), str(root / "mov"), str(out), "--workers", "2", "--difference"]
    )

    assert code == 1  # two pairs failed
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        err
        == f"napari-ecc-align: error: 6 pairs: 4 ok, 0 skipped, 2 failed — see {out}/alignment.csv"
    )
    assert {name: _hashes(root / name) for name in ("ref", "mov")} == before

    rows = _rows(out)
    assert sorted(rows) == sorted([*truth, "b/corrupt.png", "orphan.png"])
    assert {p: r["status"] for p, r in rows.items() if r["status"] != "ok"} == {
        "b/corrupt.png": "failed",
        "orphan.png": "failed",
    }
    assert "cannot read" in rows["b/corrupt.png"]["error"]
    assert "corrupt.png" in rows["b/corrupt.png"]["error"]
    assert rows["orphan.png"]["error"].startswith("no reference partner")

    expected = {  # aligned output, its dtype, its difference image
        "a/page8.png": ("a/page8.png", np.uint8, "a/page8.difference.png"),
        "a/deep/page16.png": ("a/deep/page16.png", np.uint16, "a/deep/page16.difference.png"),
        "b/float.tif": ("b/float.tif", np.float32, "b/float.difference.tif"),
        "b/photo.jpg": ("b/photo.png", np.uint8, "b/photo.difference.png"),  # lossless PNG
    }
    for pair, (aligned, dtype, diff) in expected.items():
        row = rows[pair]
        assert row["output"] == aligned
        assert row["motion"] == "affine" and row["init_method"]
        assert float(row["correlation_after"]) > float(row["correlation_before"])
        image = read_image(out / aligned)
        assert image.dtype == dtype and image.shape == SHAPE
        assert read_image(out / diff).shape == SHAPE
        alignment = Alignment.from_json(out / (aligned.rsplit(".", 1)[0] + ".transform.json"))
        assert float(row["correlation_after"]) == pytest.approx(alignment.correlation, abs=1e-6)
        assert corner_rms(alignment.matrix, truth[pair], SHAPE) < 0.3
    assert not (out / "b" / "photo.jpg").exists()
    assert not list(out.rglob("corrupt*")) and not list(out.rglob("orphan*"))
    assert _hidden(out) == []


def _cli(*args):
    return [sys.executable, "-m", "napari_ecc_align.cli.commands", "batch", *map(str, args)]


def test_batch_resumes_after_sigkill(tmp_path):
    n = 30
    for k in range(n):
        _write_pair(tmp_path, f"s{k % 3}/p{k:02d}.png", np.uint8, 100 + k, shape=(240, 320))
    ref, mov, out = tmp_path / "ref", tmp_path / "mov", tmp_path / "out"
    before = _hashes(mov)

    log = open(tmp_path / "first.log", "wb")
    proc = subprocess.Popen(
        _cli(ref, mov, out, "--workers", "1"),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the dask workers die with it
    )
    try:
        deadline = time.monotonic() + 300  # a hang guard only: slow machines take long
        while not list(out.rglob("*.transform.json")):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, "no pair finished within 300 s"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    done_at_kill = {p.relative_to(out) for p in out.rglob("*.transform.json")}
    assert 0 < len(done_at_kill) < n
    assert not (out / "alignment.csv").exists()

    # What a kill between writing and renaming leaves behind, made by the batch's own
    # writers with the killed run's token (recorded in the output folder).
    (killed,) = recorded_runs(out)
    real_replace = os.replace
    os.replace = lambda *args, **kwargs: None
    try:
        save_image(str(out / "s0" / "p00.png"), np.zeros((4, 4), np.uint8), owner=killed)
        text = Alignment.from_json(out / next(iter(done_at_kill))).to_json()
        write_text_atomic(out / "s1" / "x.json", text, owner=killed)
    finally:
        os.replace = real_replace
    assert len(_hidden(out)) == 3  # the two temporary files and the record of runs

    result = subprocess.run(_cli(ref, mov, out, "--workers", "1"), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert _hidden(out) == []
    rows = _rows(out)
    assert len(rows) == n
    statuses = [r["status"] for r in rows.values()]
    assert set(statuses) <= {"ok", "skipped"}
    skipped = {p for p, r in rows.items() if r["status"] == "skipped"}
    assert len(skipped) >= len(done_at_kill) > 0  # nothing finished before the kill ran again
    assert {Path(p.replace(".png", ".transform.json")) for p in skipped} >= done_at_kill
    for pair, row in rows.items():
        assert row["correlation_after"] and float(row["correlation_after"]) > 0.9
        assert read_image(out / row["output"]).shape == (240, 320)
        Alignment.from_json(out / pair.replace(".png", ".transform.json"))
    assert result.stdout.strip() == (
        f"{n} pairs: {n - len(skipped)} ok, {len(skipped)} skipped, 0 failed — see "
        f"{out}/alignment.csv"
    )
    assert _hashes(mov) == before


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_batch_on_a_running_scheduler(tmp_path, capsys):
    from distributed import Client

    truth = {f"p{k}.png": _write_pair(tmp_path, f"p{k}.png", np.uint8, 200 + k) for k in range(4)}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [open(tmp_path / f"{name}.log", "wb") for name in ("scheduler", "worker")]
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler"]
                + ["--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                stdout=logs[0],
                stderr=subprocess.STDOUT,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address]
                + ["--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
                + ["--host", "127.0.0.1"],
                stdout=logs[1],
                stderr=subprocess.STDOUT,
            )
        )
        with Client(address, timeout="300s") as client:  # hang guards: slow starts are fine
            client.wait_for_workers(1, timeout=300)

        out = tmp_path / "out"
        folders = [str(tmp_path / "ref"), str(tmp_path / "mov"), str(out)]
        code = main(["batch", *folders, "--scheduler", address, "--motion", "euclidean", "-q"])
        assert code == 0, capsys.readouterr().err
        rows = _rows(out)
        assert sorted(rows) == sorted(truth)
        for pair, row in rows.items():
            assert row["status"] == "ok" and row["motion"] == "euclidean"
            assert read_image(out / pair).shape == SHAPE
            alignment = Alignment.from_json(out / pair.replace(".png", ".transform.json"))
            assert corner_rms(alignment.matrix, truth[pair], SHAPE) < 0.3

        # The Python API on the same cluster, with pairs listed in a CSV (absolute and
        # relative paths, an output name, a row whose reference is missing).
        listed = tmp_path / "pairs.csv"
        listed.write_text(
            "reference,moving,output\n"
            f"p0.png,{tmp_path / 'mov' / 'p1.png'},renamed/one.tif\n"
            "p2.png,p2.png,\n"
            "missing.png,p3.png,\n",
            encoding="utf-8",
        )
        report = batch_align(
            tmp_path / "ref",
            tmp_path / "mov",
            tmp_path / "out2",
            pairs_csv=listed,
            scheduler=address,
            progress=False,
        )
        assert isinstance(report, BatchReport)
        assert report.counts == {"ok": 2, "skipped": 0, "failed": 1, "cancelled": 0}
        assert [r["output"] for r in report.rows] == ["renamed/one.tif", "p2.png", "p3.png"]
        assert report.rows[2]["error"].startswith("no reference partner")
        assert read_image(tmp_path / "out2" / "renamed" / "one.tif").dtype == np.uint8
        assert (tmp_path / "out2" / "renamed" / "one.transform.json").is_file()
        assert not (tmp_path / "out2" / "p3.png").exists()

        # --fail-fast: a corrupt moving file stops the batch; every pair is still listed.
        for side in ("ref", "mov"):
            shutil.copytree(tmp_path / side, tmp_path / f"{side}3")
        write_image(tmp_path / "ref3" / "a.png", _as(_pair(9)[0], np.uint8))
        (tmp_path / "mov3" / "a.png").write_bytes(np.random.default_rng(1).bytes(500))
        folders = [str(tmp_path / name) for name in ("ref3", "mov3", "out3")]
        code = main(["batch", *folders, "--scheduler", address, "--fail-fast", "-q"])
        assert code == 1
        assert "stopped at the first failure (a.png: cannot read" in capsys.readouterr().err
        rows = _rows(tmp_path / "out3")
        assert sorted(rows) == ["a.png", *sorted(truth)]
        assert rows.pop("a.png")["status"] == "failed"
        assert {r["status"] for r in rows.values()} <= {"ok", "cancelled"}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()


def test_refuses_output_inside_an_input_folder(dataset, capsys):
    root, _ = dataset
    before = _hashes(root / "mov")
    for out in (root / "mov" / "results", root / "ref", root / "mov"):
        assert main(["batch", str(root / "ref"), str(root / "mov"), str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is inside" in err and "napari-ecc-align: error:" in err
    assert not (root / "mov" / "results").exists()
    assert _hashes(root / "mov") == before
    # ... also through a symbolic link to the moving folder
    (root / "link").symlink_to(root / "mov", target_is_directory=True)
    assert main(["batch", str(root / "ref"), str(root / "mov"), str(root / "link" / "x")]) == 2
    assert "is inside MOVING_DIR" in capsys.readouterr().err
    assert not (root / "mov" / "x").exists()


def test_missing_folder_and_bad_options_exit_2(dataset, capsys):
    root, _ = dataset
    ref, mov, out = (str(root / n) for n in ("ref", "mov", "out"))
    cases = [
        ([ref, str(root / "nope"), out], "MOVING_DIR does not exist"),
        ([ref, mov, out, "--workers", "0"], "--workers must be at least 1"),
        ([ref, mov, out, "--init", "sideways"], "init must be one of"),
        ([ref, mov, out, "--pattern", "*.bmp"], "no image files matching '*.bmp'"),
        ([ref, mov, out, "--pairs", str(root / "none.csv")], "no such pairs file"),
    ]
    for args, message in cases:
        assert main(["batch", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (root / "out").exists()


def test_fail_fast_stops_before_running_when_a_partner_is_missing(dataset, capsys):
    root, _ = dataset
    out = root / "out"
    assert main(["batch", str(root / "ref"), str(root / "mov"), str(out), "--fail-fast"]) == 1
    err = capsys.readouterr().err
    assert "stopped at the first failure (orphan.png: no reference partner" in err
    rows = _rows(out)
    assert rows["orphan.png"]["status"] == "failed"
    assert {r["status"] for p, r in rows.items() if p != "orphan.png"} == {"cancelled"}
    assert sorted(p.name for p in out.rglob("*")) == ["alignment.csv"]


def test_remove_temporary_files_keeps_everything_else(tmp_path):
    # Only files named by a recorded run's owner token go; a stranger's file with the
    # same form of name but another token, and every old-style "*.tmp*" name, stay.
    ours, stranger = new_owner(), new_owner()
    (tmp_path / RUNS_NAME).write_text(f"{ours}\n")
    mine = [temporary_name("a.png", ours), "sub/" + temporary_name("x.json", ours)]
    others = [
        temporary_name("a.png", stranger), ".a.1f2e3d4c.tmp.png", "sub/.x1y2z3_a.json.tmp",
        ".keep", "a.png", "a.tmp",
    ]  # fmt: skip
    for name in mine + others:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    removed = remove_temporary_files(tmp_path)
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in removed) == sorted(mine)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == sorted([RUNS_NAME, *others])
    assert remove_temporary_files(tmp_path, [stranger]) == [str(tmp_path / others[0])]


def test_find_pairs_pattern_jpeg_names_and_clashes(tmp_path):
    for side in ("ref", "mov"):
        for rel in ("x/a.png", "x/a.tif", "y/b.jpg", "y/b.png", "y/c.JPEG", "z/d.tif", ".hid.png"):
            (tmp_path / side / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / side / rel).write_bytes(b"")
    (tmp_path / "mov" / "notes.txt").write_bytes(b"")
    ref, mov, out = tmp_path / "ref", tmp_path / "mov", tmp_path / "out"

    jobs = {job.pair: job for job in find_pairs(ref, mov, out)}
    assert sorted(jobs) == ["x/a.png", "x/a.tif", "y/b.jpg", "y/b.png", "y/c.JPEG", "z/d.tif"]
    assert jobs["y/c.JPEG"].output_label == "y/c.png" and jobs["y/c.JPEG"].problem is None
    assert jobs["z/d.tif"].transform == str(out / "z" / "d.transform.json")
    # x/a.png and x/a.tif share x/a.transform.json; y/b.jpg becomes y/b.png
    for pair in ("x/a.png", "x/a.tif", "y/b.jpg", "y/b.png"):
        assert jobs[pair].problem.startswith("output name clash"), pair
    kept = {job.pair: job for job in find_pairs(ref, mov, out, keep_jpeg=True)}
    assert kept["y/b.jpg"].output_label == "y/b.jpg"  # still one y/b.transform.json for two
    assert "b.transform.json" in kept["y/b.jpg"].problem

    assert [j.pair for j in find_pairs(ref, mov, out, pattern="*.TIF")] == ["x/a.tif", "z/d.tif"]
    assert [j.pair for j in find_pairs(ref, mov, out, pattern="y/*.png")] == ["y/b.png"]
    (tmp_path / "ref" / "z" / "d.tif").unlink()
    (orphan,) = find_pairs(ref, mov, out, pattern="d.*")
    assert orphan.reference is None and orphan.problem.startswith("no reference partner")


def test_rows_warn_when_the_correlation_fell():
    job = PairJob("p.png", "/r/p.png", "/m/p.png", "/o/p.png", "p.png", "p.png")
    common = dict(matrix=np.eye(3), motion="affine", reference_shape=SHAPE, moving_shape=SHAPE)
    fell = job.result_row(Alignment(correlation=0.438, correlation_before=0.467, **common), "ok")
    assert fell["error"] == "warning: the correlation fell (0.467 -> 0.438); check this pair"
    rose = job.result_row(Alignment(correlation=0.97, correlation_before=0.6, **common), "ok")
    assert rose["error"] == "" and rose["correlation_after"] == 0.97
