"""Hostile inputs to a batch: a corrupt transform JSON met on resume is aligned again (and
the CSV still written), a pairs CSV that is not UTF-8 CSV text is refused with its line,
and a sub-folder that cannot be listed is a failed row, not a silent gap."""

import csv
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.batch import find_pairs
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair
from napari_ecc_align.io.images import read_image, write_image

SHAPE = (120, 160)
# What a transform JSON may hold after a crash, a bad copy or a hostile edit: functions of
# the real file's text (each breaks one thing) and of its parsed content.
CORRUPT = {
    "truncated": lambda text, data: text[: len(text) // 2],
    "empty": lambda text, data: "",
    "a-list": lambda text, data: "[]",
    "matrix-is-a-number": lambda text, data: json.dumps({**data, "matrix": 5}),
    "deep-nesting": lambda text, data: json.dumps({**data, "matrix": [0]}).replace(
        "[0]", "[" * 100_000 + "]" * 100_000
    ),
    "huge-entry": lambda text, data: json.dumps(
        {**data, "matrix": [[10**400, 0, 0], [0, 1, 0], [0, 0, 1]]}
    ),
    "negative-shape": lambda text, data: json.dumps({**data, "reference_shape": [-5, 10]}),
    "strings-for-numbers": lambda text, data: json.dumps({**data, "levels": "3", "elapsed": "x"}),
    "huge-shape": lambda text, data: json.dumps({**data, "reference_shape": [1.5, 160]}).replace(
        "1.5", "1e400"
    ),
}


def _write(root: Path, names) -> None:
    for k, name in enumerate(names):
        reference, moving, _ = natural_pair(SHAPE, seed=k, shift=(1.5, -1.0), scale=1.0)
        write_image(root / "ref" / name, np.rint(reference * 255).astype(np.uint8))
        write_image(root / "mov" / name, np.rint(moving * 255).astype(np.uint8))


def _rows(out: Path) -> dict:
    with open(out / "alignment.csv", newline="", encoding="utf-8") as fh:
        return {row["pair"]: row for row in csv.DictReader(fh)}


def test_a_corrupt_transform_json_on_resume_is_aligned_again(tmp_path):
    names = [f"{case}.png" for case in CORRUPT] + ["intact.png"]
    _write(tmp_path, names)
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1"]
    assert main([*args, "-q"]) == 0
    first = _rows(out)
    for case, corrupt in CORRUPT.items():
        path = out / f"{case}.transform.json"
        text = path.read_text(encoding="utf-8")
        path.write_text(corrupt(text, json.loads(text)), encoding="utf-8")

    assert main([*args, "-q"]) == 0
    rows = _rows(out)
    assert {p: r["status"] for p, r in rows.items()} == {
        **{f"{case}.png": "ok" for case in CORRUPT},
        "intact.png": "skipped",
    }
    for name in names:  # aligned again, to the same result
        alignment = Alignment.from_json(out / name.replace(".png", ".transform.json"))
        assert alignment.correlation == pytest.approx(float(first[name]["correlation_after"]))
        assert read_image(out / name).shape == SHAPE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"reference,moving\na.png,a.png\ncaf\xe9.png,b.png\n",
            "{csv}, line 3: not UTF-8 text (byte 0xe9); save the pairs CSV as UTF-8",
        ),
        (
            b"reference,moving\na.png,a\x00.png\n",
            "{csv}, line 2: a NUL character; a pairs CSV is plain text",
        ),
        (
            b"reference,moving\na.png,a.png\n\nb.png," + b"x" * 200_000 + b"\n",
            "{csv}, line 4: a cell is longer than 131072 characters; is this a pairs CSV",
        ),
        (
            b'reference,moving\na.png,a.png\nb.png,"b\n\n' + b"y" * 200_000 + b'"\n',
            "{csv}, line 5: a cell is longer than 131072 characters",
        ),
    ],
    ids=["latin-1", "nul", "long-cell", "long-quoted-cell"],
)
def test_a_pairs_csv_that_is_not_utf8_csv_text_is_refused_with_its_line(
    tmp_path, capsys, data, message
):
    _write(tmp_path, ["a.png", "b.png"])
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(data)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        find_pairs(tmp_path / "ref", tmp_path / "mov", out, pairs_csv=pairs)
    assert str(info.value).startswith(message.format(csv=pairs))
    assert main(["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out),
                 "--pairs", str(pairs), "-q"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("napari-ecc-align: error: " + str(pairs)), err
    assert not out.exists()


def _in_a_child_as_nobody(run, log: Path) -> int:
    """``run()`` in a forked child that is not root (root lists every folder, whatever its
    permissions): as 'nobody' when the tests run as root, else as the tests' user. Its
    output goes to ``log``; returns its exit code."""
    import pwd

    nobody = pwd.getpwnam("nobody") if os.geteuid() == 0 else None
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            sys.stdout = sys.stderr = open(log, "w", encoding="utf-8")
            if nobody is not None:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            code = run()
        except BaseException as exc:  # reported to the parent through the log
            print(f"child failed: {exc!r}", file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.fixture
def shared_folder():
    """A folder 'nobody' can reach (tmp_path's parents are private to root)."""
    root = Path(tempfile.mkdtemp(prefix="ecc-unreadable-"))
    os.chmod(root, 0o755)
    yield root
    for folder, dirs, _ in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o755)
    shutil.rmtree(root)


def _give_away(root: Path) -> None:
    """Make ``root`` and everything in it belong to 'nobody' (when the tests run as root)."""
    if os.geteuid() != 0:
        return
    import pwd

    nobody = pwd.getpwnam("nobody")
    for folder, dirs, files in os.walk(root):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, nobody.pw_uid, nobody.pw_gid)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX permissions and fork")
def test_an_unreadable_sub_folder_is_a_failed_row_and_fails_the_batch(shared_folder):
    root = shared_folder
    _write(root, ["a.png", "sub/b.png", "z.png"])
    out = root / "out"
    args = ["batch", str(root / "ref"), str(root / "mov"), str(out), "--workers", "1", "-q"]
    assert main(args) == 0  # the pairs are aligned (Dask workers cannot start as 'nobody')
    _write(root, ["sub/locked/c.png"])
    _give_away(root)
    (root / "mov" / "sub" / "locked").chmod(0)  # its owner cannot list it either

    code = _in_a_child_as_nobody(lambda: main(args), root / "child.log")
    log = (root / "child.log").read_text(encoding="utf-8")
    assert code == 1, log
    assert log.strip().endswith(f"4 pairs: 0 ok, 3 skipped, 1 failed — see {out}/alignment.csv"), (
        log
    )
    rows = _rows(out)
    assert list(rows) == ["a.png", "sub/b.png", "sub/locked", "z.png"]  # in its sorted place
    locked = rows["sub/locked"]
    assert locked["status"] == "failed"
    assert locked["error"] == f"cannot list folder {root / 'mov' / 'sub' / 'locked'}: " + (
        "Permission denied"
    )
    assert locked["output"] == locked["reference"] == ""
    assert {rows[p]["status"] for p in ("a.png", "sub/b.png", "z.png")} == {"skipped"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX permissions and fork")
def test_an_unreadable_moving_folder_itself_is_refused(shared_folder):
    root = shared_folder
    _write(root, ["a.png"])
    _give_away(root)
    (root / "mov").chmod(0)
    out = root / "out"
    args = ["batch", str(root / "ref"), str(root / "mov"), str(out), "-q"]
    code = _in_a_child_as_nobody(lambda: main(args), root / "child.log")
    log = (root / "child.log").read_text(encoding="utf-8")
    assert code == 2, log
    assert log == f"napari-ecc-align: error: Permission denied: {root / 'mov'}\n"
    assert not out.exists()


@pytest.mark.parametrize("case", ["deep-nesting", "huge-entry", "negative-shape"])
def test_a_hostile_init_json_is_refused_before_anything_runs(tmp_path, capsys, case):
    _write(tmp_path, ["a.png"])
    valid = Alignment.from_json(
        '{"matrix": [[1, 0, 0], [0, 1, 0]], "motion": "affine", '
        '"reference_shape": [10, 10], "moving_shape": [10, 10]}'
    ).to_dict()
    init = tmp_path / "init.json"
    init.write_text(CORRUPT[case](json.dumps(valid), valid), encoding="utf-8")
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out),
                 "--init", str(init), "-q"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("napari-ecc-align: error: init must be")
    assert str(init) in err and "Traceback" not in err
    assert not out.exists()


def test_the_pixel_budget_option_reaches_every_pair(tmp_path, capsys):
    _write(tmp_path, ["a.png", "b.png"])
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1"]
    assert main([*args, "-q", "--max-pixels", "1000"]) == 1
    rows = _rows(out)
    assert {r["status"] for r in rows.values()} == {"failed"}
    assert all("more than the pixel budget of 1,000" in r["error"] for r in rows.values())
    assert not (out / "a.png").exists()
    capsys.readouterr()
    assert main([*args, "-q", "--max-pixels", "inf"]) == 0  # the same files, a raised limit
    assert {r["status"] for r in _rows(out).values()} == {"ok"}


def test_a_lower_budget_on_resume_keeps_the_finished_pairs(tmp_path, capsys):
    # This program wrote the transforms: a budget lowered for the resume must not make
    # them look corrupt, and a pair that cannot be read keeps its earlier result.
    _write(tmp_path, ["a.png", "b.png"])
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1", "-q"]
    assert main(args) == 0
    finished = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "alignment.csv"}
    assert main([*args, "--max-pixels", "1000"]) == 0
    assert {r["status"] for r in _rows(out).values()} == {"skipped"}
    assert main([*args, "--max-pixels", "1000", "--overwrite"]) == 1
    rows = _rows(out)
    assert {r["status"] for r in rows.values()} == {"failed"}
    assert all("pixel budget" in r["error"] for r in rows.values())
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "alignment.csv"}
    assert after == finished  # images and transform JSON of the earlier run, untouched
    capsys.readouterr()


def test_a_link_named_like_the_run_record_is_refused_and_left_alone(tmp_path, capsys):
    _write(tmp_path, ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("keep me\n")
    (out / ".napari-ecc-align.runs").symlink_to(elsewhere)
    code = main(["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out),
                 "--workers", "1", "-q"])  # fmt: skip
    assert code == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert elsewhere.read_text() == "keep me\n"
    assert (out / ".napari-ecc-align.runs").is_symlink()
    assert not (out / "a.png").exists()
