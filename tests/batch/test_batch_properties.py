"""Property-based tests of the batch's CSV files (no Dask): a pairs CSV with hostile but
legal cells gives jobs whose labels round-trip, or a ValueError naming the problem, never
another exception; and alignment.csv gives back every text written into it."""

import csv
import io
import os
import posixpath
from collections import Counter

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from napari_ecc_align.batch import CSV_COLUMNS, find_pairs, write_csv

SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run (seeded like every other RNG here)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Characters a file name may hold besides '/' and NUL; surrogates are drawn separately.
NAME_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
HOSTILE = st.sampled_from(['"', ",", "\n", "\r\n", "-", "--", " ", "'", ";", "\t", "☃", "é"])
EXTENSIONS = st.sampled_from([".png", ".tif", ".TIFF", ".jpg", ".jpeg", ".bmp", ""])


@st.composite
def path_cells(draw):
    """A relative path of 1-3 names with hostile characters, as a user would list it."""
    names = []
    for _ in range(draw(st.integers(1, 3))):
        parts = draw(
            st.lists(
                st.one_of(HOSTILE, st.text(NAME_CHARACTERS, min_size=1, max_size=8)),
                min_size=1,
                max_size=4,
            )
        )
        names.append("".join(parts))
    if draw(st.integers(0, 19)) == 0:
        names[-1] += "x" * draw(st.sampled_from([300, 140_000]))  # long, or over the limit
    return "/".join(names) + draw(EXTENSIONS)


@st.composite
def pairs_csvs(draw):
    """(bytes of a pairs CSV, its data rows as (reference, moving, output or None))."""
    with_output = draw(st.booleans())
    columns = ["reference", "moving", *(["output"] if with_output else [])]
    order = draw(st.permutations(columns))
    header = [draw(st.sampled_from([c, c.upper(), f" {c} ", c.title()])) for c in order]
    rows = []
    for _ in range(draw(st.integers(1, 5))):
        cells = {"reference": draw(path_cells()), "moving": draw(path_cells())}
        if draw(st.integers(0, 9)) == 0:
            cells[draw(st.sampled_from(["reference", "moving"]))] = ""
        if with_output:
            cells["output"] = draw(st.one_of(st.just(""), path_cells()))
        rows.append(cells)
    buffer = io.StringIO()
    # As a spreadsheet writes it: "\r\n" and quotes where needed, or "\n" and every cell
    # quoted (csv.writer leaves a lone "\r" unquoted when the line ends in "\n" alone).
    minimal = draw(st.booleans())
    writer = csv.writer(
        buffer,
        lineterminator="\r\n" if minimal else "\n",
        quoting=csv.QUOTE_MINIMAL if minimal else csv.QUOTE_ALL,
    )
    writer.writerow(header)
    blank_after = draw(st.sets(st.integers(0, len(rows) - 1), max_size=2))
    for i, cells in enumerate(rows):
        writer.writerow([cells[c] for c in order])
        if i in blank_after:
            writer.writerow([])  # a blank line
    text = buffer.getvalue()
    if draw(st.integers(0, 19)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + "\x00" + text[at:]
    data = text.encode("utf-8")
    if draw(st.booleans()):
        data = "\ufeff".encode() + data  # a byte order mark, as Excel writes
    return data, [(c["reference"], c["moving"], c.get("output") or None) for c in rows]


def _tidy(cell: str) -> str:
    return posixpath.normpath(cell.strip()) if cell.strip() else ""


def _same(root, label: str, cell: str) -> bool:
    if not cell.strip():
        return label == ""
    return os.path.abspath(os.path.join(root, label)) == os.path.abspath(
        os.path.join(root, cell.strip())
    )


def _default_output(moving: str) -> str:
    # An absolute moving file (outside MOVING_DIR) keeps only its name in OUTPUT_DIR.
    name = os.path.basename(moving) if os.path.isabs(moving) else moving
    stem, ext = os.path.splitext(name)
    return stem + ".png" if ext.lower() in (".jpg", ".jpeg") else name


def test_find_pairs_on_hostile_pairs_csvs_round_trips_the_labels_or_says_why(tmp_path):
    ref, mov, out = tmp_path / "ref", tmp_path / "mov", tmp_path / "out"
    pairs = tmp_path / "pairs.csv"
    outcomes = Counter()

    @SETTINGS
    @given(pairs_csvs())
    def check(case):
        data, rows = case
        pairs.write_bytes(data)
        try:
            jobs = find_pairs(ref, mov, out, pairs_csv=pairs)
        except ValueError as exc:
            assert str(exc).startswith(str(pairs)), exc  # names the file (and line)
            outcomes["refused"] += 1
            event("refused")
            return
        outcomes["jobs"] += 1
        event("jobs")
        listed = [(r, m, o) for r, m, o in rows if r.strip() or m.strip() or (o or "").strip()]
        assert len(jobs) == len(listed)
        for job, (reference, moving, output) in zip(jobs, listed, strict=True):
            # A label names the very file its cell names; a tidy cell comes back as it is.
            assert _same(mov, job.pair, moving) and _same(ref, job.reference_label, reference)
            assert _tidy(moving) != moving.strip() or job.pair == moving.strip()
            if output:
                assert _same(out, job.output_label, output)
            else:
                assert job.output_label == _default_output(job.pair)
        # ... and through alignment.csv, as the report writes them.
        write_csv(tmp_path / "alignment.csv", [job.row("failed", "not run") for job in jobs])
        with open(tmp_path / "alignment.csv", newline="", encoding="utf-8") as fh:
            back = list(csv.DictReader(fh))
        assert [(r["pair"], r["reference"], r["output"]) for r in back] == [
            (job.pair, job.reference_label, job.output_label) for job in jobs
        ]

    check()
    assert outcomes["jobs"] >= 0.3 * sum(outcomes.values()), outcomes
    assert outcomes["refused"] > 0, outcomes


# Any character, and the lone surrogates that stand for the bytes of a file name that is
# not UTF-8 (os.fsdecode(b"\xff") == "\udcff").
CELL_TEXT = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
    ),
    max_size=30,
)


@SETTINGS
@given(st.lists(st.fixed_dictionaries({key: CELL_TEXT for key in CSV_COLUMNS}), max_size=4))
def test_write_csv_round_trips_any_text(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("report") / "alignment.csv"
    write_csv(path, rows)
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        back = list(csv.DictReader(fh))
    escaped = [{k: v.replace("\x00", "\\u0000") for k, v in row.items()} for row in rows]
    assert back == escaped


def test_write_csv_escapes_what_no_byte_stands_for(tmp_path):
    # A lone surrogate that is no escaped byte (Windows file names may hold them), and NUL.
    write_csv(tmp_path / "a.csv", [{"pair": "a\ud800b\x00c.png", "error": "\udcff"}])
    with open(tmp_path / "a.csv", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        (row,) = csv.DictReader(fh)
    assert row["pair"] == "a\\ud800b\\u0000c.png" and row["error"] == "\udcff"
    assert (tmp_path / "a.csv").read_bytes().split(b"\n")[1].endswith(b",\xff,,")
