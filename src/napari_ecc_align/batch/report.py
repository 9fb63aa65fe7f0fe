"""The outcome of a batch: :class:`BatchReport` and the ``alignment.csv`` it is written to."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.alignment import write_text_atomic
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


def write_csv(path: PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Write the rows as ``alignment.csv`` (atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(key, row.get(key)) for key in CSV_COLUMNS})
    write_text_atomic(path, buffer.getvalue(), ".csv.tmp")


def _cell(key: str, value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if not np.isfinite(value):
            return ""
        return f"{value:.3f}" if key == "elapsed" else f"{value:.6f}"
    return str(value)
