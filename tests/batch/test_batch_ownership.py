"""A batch owns only what it writes: its clean-up removes its own temporary files (named
with its run's token, recorded in OUTPUT_DIR) and nothing else, whatever other files
are called, through a batch, a resume and a kill -9; pairs-CSV outputs that would collide
with its temporary files or with each other are refused before anything runs."""

import csv
import hashlib
import os
from pathlib import Path

import pytest

from napari_ecc_align.batch.run import RUNS_NAME, recorded_runs
from napari_ecc_align.cli import main
from napari_ecc_align.engine.temporary import new_owner, temporary_name, temporary_owner
from napari_ecc_align.io.images import atomic_output

PAIRS = 16
# Hidden files of the user's, at several depths, named like every temporary file the
# batch ever made (old-style names, and this scheme's with a token no run recorded).
FOREIGN = (
    ".draft.tmp.png",
    ".report.tmp",
    "unrelated/deep/.report.tmp",
    "day0/.x.json.tmp",
    "day1/.p03.1f2e3d4c.tmp.png",
    "day1/.abc123_x.csv.tmp",
    ".hidden/.a.tmp.tif",
    "unrelated/notes.txt",
)


def _foreign_files(out: Path) -> dict:
    names = [*FOREIGN, "day0/" + temporary_name("p00.png", new_owner())]
    for k, name in enumerate(names):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(f"the user's file {k}".encode())
    return _hashes(out, names)


def _hashes(out: Path, names) -> dict:
    return {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        if (out / name).exists()
        else None
        for name in names
    }


def _hidden(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob(".*") if p.is_file())


def _rows(out: Path) -> list[dict]:
    with open(out / "alignment.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_foreign_hidden_files_survive_a_kill_the_resume_and_another_resume(
    tmp_path, kill_batch_midway, batch_dataset
):
    batch_dataset(tmp_path, PAIRS)
    out = tmp_path / "out"
    foreign = _foreign_files(out)
    hidden_before = _hidden(out)
    args = [str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--workers", "1", "-q"]

    kill_batch_midway(args, out)
    assert len(list(out.rglob("*.transform.json"))) < PAIRS
    assert _hashes(out, foreign) == foreign
    (killed,) = recorded_runs(out)  # the killed run had recorded its token first

    # What the killed run may have left between writing and renaming: its own files.
    leftovers = [
        out / "day1" / temporary_name("p05.png", killed),
        out / "day0" / temporary_name("p04.transform.json", killed),
    ]
    for path in leftovers:
        path.write_bytes(b"half a file")

    assert main(["batch", *args]) == 0  # the resume: runs the remaining pairs
    rows = _rows(out)
    assert len(rows) == PAIRS and {r["status"] for r in rows} == {"ok", "skipped"}
    assert _hashes(out, foreign) == foreign
    assert not any(path.exists() for path in leftovers)
    assert _hidden(out) == hidden_before  # no record of runs, no temporary file of ours

    assert main(["batch", *args]) == 0  # a resume with nothing left to do
    assert {r["status"] for r in _rows(out)} == {"skipped"}
    assert _hashes(out, foreign) == foreign
    assert _hidden(out) == hidden_before


def test_a_pairs_csv_output_named_like_an_old_temporary_is_aligned_and_kept(
    tmp_path, batch_dataset
):
    batch_dataset(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".draft.tmp.png").write_bytes(b"the user's draft")
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "reference,moving,output\nday0/p00.png,day0/p00.png,.x.tmp.png\n"
        "day1/p01.png,day1/p01.png,sub/.y.json.tmp.tif\n",
        encoding="utf-8",
    )
    args = [str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--pairs", str(pairs), "-q"]
    assert main(["batch", *args, "--workers", "1"]) == 0
    assert [r["status"] for r in _rows(out)] == ["ok", "ok"]
    assert (out / ".x.tmp.png").stat().st_size > 0 and (out / ".x.tmp.transform.json").is_file()
    assert (out / "sub" / ".y.json.tmp.tif").stat().st_size > 0
    assert main(["batch", *args]) == 0  # resume: both complete, still there
    assert [r["status"] for r in _rows(out)] == ["skipped", "skipped"]
    assert (out / ".x.tmp.png").is_file() and (out / "sub" / ".y.json.tmp.tif").is_file()
    assert (out / ".draft.tmp.png").read_bytes() == b"the user's draft"


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            ["day0/p00.png,day0/p00.png,a.png", "day1/p01.png,day1/p01.png,a.png"],
            "{csv}, lines 2 and 3 would write the same file {out}/a.png; give each row its "
            "own output (the output column)",
        ),
        (  # two images, one transform JSON
            ["day0/p00.png,day0/p00.png,a.png", "", "day1/p01.png,day1/p01.png,a.tif"],
            "{csv}, lines 2 and 4 would write the same file {out}/a.transform.json",
        ),
        (  # no output column cell: the default names clash (the same moving file twice)
            ["day0/p00.png,day0/p00.png,", "day1/p01.png,day0/p00.png,", "x.png,day0/p00.png,"],
            "{csv}, lines 2, 3 and 4 would write the same file {out}/day0/p00.png",
        ),
        (
            ["day0/p00.png,day0/p00.png,ok.png", "day1/p01.png,day1/p01.png,sub/{temp}"],
            "{csv}, line 3: output sub/{temp} is named like a temporary file of napari-ecc-align",
        ),
    ],
    ids=["same-image", "same-transform", "same-default", "temporary-name"],
)
def test_pairs_csv_collisions_are_refused_before_anything_runs(
    tmp_path, capsys, rows, message, batch_dataset
):
    batch_dataset(tmp_path, 2)
    temp = temporary_name("p.png", new_owner())
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "\n".join(["reference,moving,output", *rows]).format(temp=temp) + "\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    code = main(["batch", str(tmp_path / "ref"), str(tmp_path / "mov"), str(out), "--pairs",
                 str(pairs), "-q"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    expected = message.format(csv=pairs, out=out, temp=temp)
    assert err.startswith(f"napari-ecc-align: error: {expected}"), err
    assert not out.exists()  # nothing written


def test_owner_tokens_name_the_temporary_files_and_are_checked(tmp_path):
    owner = new_owner()
    seen = []
    with atomic_output(tmp_path / "a.png", owner=owner) as tmp:
        seen.append(os.path.basename(tmp))
        Path(tmp).write_bytes(b"x")
    assert temporary_owner(seen[0]) == owner and seen[0].endswith(".tmp.png")
    assert (tmp_path / "a.png").read_bytes() == b"x"
    with atomic_output(tmp_path / "b.png") as tmp:  # not a batch: no owner, as before
        assert temporary_owner(os.path.basename(tmp)) is None
    long_name = "é" * 250 + ".tif"  # the stem is cut: the name still fits 255 bytes
    assert len(os.fsencode(temporary_name(long_name, owner))) < 160
    with pytest.raises(ValueError, match="owner must be a token from new_owner"):
        with atomic_output(tmp_path / "c.png", owner="ecc-not-a-token"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]
    assert RUNS_NAME.startswith(".")  # the record of runs is hidden, like the temporaries
