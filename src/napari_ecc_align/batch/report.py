"""The outcome of a batch: :class:`BatchReport` and the ``alignment.csv`` it is written to."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import write_text_atomic
from .pairs import CSV_COLUMNS, STATUSES, PathLike


# ------------------------------------------------------------------------------------ the report
@dataclass
class BatchReport:
    """What :func:`batch_align` did, one row per pair (the rows of ``alignment.csv``).

    Attributes
    ----------
    rows : list of dict
        Keys :data:`CSV_COLUMNS`. ``status`` is ``"ok"`` (aligned in this run),
        ``"skipped"`` (complete from an earlier run; the values come from its
        JSON), ``"failed"`` (``error`` says why) or ``"cancelled"`` (not run
        because ``fail_fast`` stopped the batch, or it was interrupted). For an
        aligned pair whose correlation fell, ``error`` holds a warning: check it.
    output_dir : str
        The output folder, as given.
    csv_path : str
        Path of the written ``alignment.csv``.
    elapsed : float
        Wall-clock seconds of the whole batch, cluster start-up included.
    stopped : bool
        True when the batch stopped early (``fail_fast``).
    """

    rows: list[dict[str, Any]]
    output_dir: str
    csv_path: str
    elapsed: float = 0.0
    stopped: bool = False

    @property
    def counts(self) -> dict[str, int]:
        """Number of pairs per status (every status present, zero if none)."""
        counts = dict.fromkeys(STATUSES, 0)
        for row in self.rows:
            counts[row["status"]] += 1
        return counts

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The rows of the pairs that failed."""
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def ok(self) -> bool:
        """True when no pair failed or was cancelled."""
        counts = self.counts
        return counts["failed"] == 0 and counts["cancelled"] == 0

    def summary(self) -> str:
        """One line, e.g. ``12 pairs: 10 ok, 1 skipped, 1 failed — see out/alignment.csv``."""
        counts = self.counts
        parts = [f"{counts[s]} {s}" for s in ("ok", "skipped", "failed")]
        if counts["cancelled"]:
            parts.append(f"{counts['cancelled']} cancelled")
        n = len(self.rows)
        return f"{n} pair{'s' if n != 1 else ''}: {', '.join(parts)} — see {self.csv_path}"


# Characters that cannot be written as UTF-8 even with surrogateescape (lone surrogates
# that do not stand for a byte: Windows file names may hold them) and NUL (Python 3.10's
# csv reader refuses it): written as \uXXXX escapes instead.
_UNWRITABLE = re.compile("[\x00\ud800-\udc7f\udd00-\udfff]")
# A cell is quoted when it holds one of these (RFC 4180); csv.writer leaves a lone "\r"
# unquoted, which splits the row when read back.
_NEEDS_QUOTES = re.compile('[,"\r\n]')


def write_csv(path: PathLike, rows: Sequence[dict[str, Any]], *, owner: str | None = None) -> None:
    """Write the rows as ``alignment.csv`` (atomically; ``owner`` names the temporary
    file, see :func:`~napari_ecc_align.engine.write_text_atomic`).

    The file is UTF-8, one row per line, cells quoted as in RFC 4180 when they hold a
    comma, a quote or a line break, so any file name round-trips through
    :mod:`csv` (read it with ``newline=""``). A file name that is not UTF-8 (a
    POSIX name is bytes) is written with its own bytes: Python's ``surrogateescape``,
    which ``open(path, newline="", encoding="utf-8", errors="surrogateescape")``
    reads back to the very name :func:`os.listdir` gives. NUL and lone surrogates that
    stand for no byte are written as ``\\uXXXX``.
    """
    lines = [",".join(_quoted(key) for key in CSV_COLUMNS)]
    for row in rows:
        lines.append(",".join(_quoted(_cell(key, row.get(key))) for key in CSV_COLUMNS))
    write_text_atomic(path, "\n".join(lines) + "\n", owner=owner, errors="surrogateescape")


def _quoted(cell: str) -> str:
    if _NEEDS_QUOTES.search(cell):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not np.isfinite(value):
            return ""
        return f"{value:.3f}" if key == "elapsed" else f"{value:.6f}"
    return _UNWRITABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(value))
