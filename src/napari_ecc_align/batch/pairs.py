"""The pairs of a batch: :class:`PairJob`, and finding pairs in two folders or in a pairs CSV."""

from __future__ import annotations

import csv
import errno
import fnmatch
import os
from dataclasses import dataclass, replace
from typing import Any

from ..engine.alignment import Alignment
from ..engine.initialisation import SEARCHES
from ..io.images import image_format

PathLike = str | os.PathLike


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
CSV_NAME = "alignment.csv"
CSV_COLUMNS = (
    "pair",
    "status",
    "motion",
    "correlation_before",
    "correlation_after",
    "init_method",
    "elapsed",
    "error",
    "reference",
    "output",
)
STATUSES = ("ok", "skipped", "failed", "cancelled")
INIT_CHOICES = ("identity", *SEARCHES)
TRANSFORM_SUFFIX = ".transform.json"
DIFFERENCE_SUFFIXES = (".difference.png", ".difference.tif")


# ------------------------------------------------------------------------------------- the pairs
@dataclass(frozen=True)
class PairJob:
    """One pair: everything a worker needs, as paths and plain values (cheap to send)."""

    pair: str  # the row's id: the moving file relative to moving_dir (or as listed)
    reference: str | None  # absolute path; None when the moving file has no partner
    moving: str  # absolute path
    aligned: str  # absolute path of the aligned image
    reference_label: str  # for the CSV: relative to reference_dir when inside it
    output_label: str  # for the CSV: the aligned image relative to output_dir
    motion: str = "affine"
    init: Any = "auto"  # an init name or a 3x3 (4x4) matrix as nested lists
    difference: bool = False
    ndim: int | None = None  # 2, 3, or None: the files' metadata decide
    spacing: tuple[float, float, float] | None = None  # overrides the files' voxel size
    problem: str | None = None  # known before running: the pair fails without a task

    @property
    def stem(self) -> str:
        return os.path.splitext(self.aligned)[0]

    @property
    def transform(self) -> str:
        return self.stem + TRANSFORM_SUFFIX

    def outputs(self) -> list[str]:
        """Every path the pair may write (both possible difference names)."""
        return [self.aligned, self.transform] + [self.stem + s for s in DIFFERENCE_SUFFIXES]

    def row(self, status: str, error: str = "", elapsed: float | None = None) -> dict[str, Any]:
        return {
            "pair": self.pair,
            "status": status,
            "motion": self.motion,
            "correlation_before": None,
            "correlation_after": None,
            "init_method": "",
            "elapsed": elapsed,
            "error": error,
            "reference": self.reference_label,
            "output": self.output_label,
        }

    def result_row(self, alignment: Alignment, status: str) -> dict[str, Any]:
        before, after = float(alignment.correlation_before), float(alignment.correlation)
        # align() accepts a small drop; a correct alignment from the identity (or from
        # "auto") virtually always raises the correlation, a wrong one may not.
        warning = f"warning: the correlation fell ({before:.3f} -> {after:.3f}); check this pair"
        row = self.row(status, warning if after < before else "", float(alignment.elapsed))
        row.update(
            motion=alignment.motion,
            correlation_before=before,
            correlation_after=after,
            init_method=alignment.init_method,
        )
        return row


def find_pairs(
    reference_dir: PathLike,
    moving_dir: PathLike,
    output_dir: PathLike,
    *,
    pattern: str | None = None,
    pairs_csv: PathLike | None = None,
    keep_jpeg: bool = False,
) -> list[PairJob]:
    """The pairs of a batch, in a stable order, without touching any file.

    Pairs whose outputs would collide with another pair's, or land inside an
    input folder or on an input file, come back with ``problem`` set (they
    fail; the others run).

    Raises
    ------
    ValueError
        If nothing matches, or ``pairs_csv`` is malformed.
    """
    if pairs_csv is not None:
        jobs = _pairs_from_csv(pairs_csv, reference_dir, moving_dir, output_dir, keep_jpeg)
    else:
        jobs = _pairs_from_folders(reference_dir, moving_dir, output_dir, pattern, keep_jpeg)
    return _flag_conflicts(jobs, reference_dir, moving_dir)


def _pairs_from_folders(reference_dir, moving_dir, output_dir, pattern, keep_jpeg):
    ref_root, mov_root, out_root = (
        os.path.abspath(p) for p in (reference_dir, moving_dir, output_dir)
    )
    names = _image_files(mov_root, pattern)
    if not names:
        what = f"matching {pattern!r}" if pattern else "(.png, .jpg, .jpeg, .tif, .tiff)"
        raise ValueError(f"no image files {what} under MOVING_DIR {os.fspath(moving_dir)}")
    jobs = []
    for rel in names:
        native = rel.replace("/", os.sep)
        reference = os.path.join(ref_root, native)
        out_rel = _default_output(rel, keep_jpeg)
        problem = None
        if not os.path.isfile(reference):
            problem = f"no reference partner: {os.path.join(os.fspath(reference_dir), native)} "
            problem += "does not exist"
            reference = None
        jobs.append(
            PairJob(
                pair=rel,
                reference=reference,
                moving=os.path.join(mov_root, native),
                aligned=os.path.join(out_root, out_rel.replace("/", os.sep)),
                reference_label=rel if reference else "",
                output_label=out_rel,
                problem=problem,
            )
        )
    return jobs


def _image_files(root: str, pattern: str | None) -> list[str]:
    """Relative POSIX paths of the PNG/JPEG/TIFF files under ``root``, sorted.

    Hidden files and folders (name starting with '.') are left out, and links to
    folders are not followed. ``pattern``
    is matched, case-insensitively, against the file name when it contains no
    '/', else against the relative path.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel_folder = os.path.relpath(folder, root)
        for name in files:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            if pattern is None or fnmatch.fnmatch(
                (rel if "/" in pattern else name).lower(), pattern.lower()
            ):
                found.append(rel)
    return sorted(found)


def _default_output(rel: str, keep_jpeg: bool) -> str:
    """The aligned image's path relative to the output folder: JPEG becomes PNG."""
    stem, ext = os.path.splitext(rel)
    if ext.lower() in (".jpg", ".jpeg") and not keep_jpeg:
        return stem + ".png"
    return rel


def _pairs_from_csv(pairs_csv, reference_dir, moving_dir, output_dir, keep_jpeg):
    ref_root, mov_root, out_root = (
        os.path.abspath(p) for p in (reference_dir, moving_dir, output_dir)
    )
    name = os.fspath(pairs_csv)
    if not os.path.isfile(name):
        raise FileNotFoundError(errno.ENOENT, "no such pairs file (--pairs)", name)
    with open(name, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [cell.strip().lower() for cell in next(reader, [])]
        if "reference" not in header or "moving" not in header:
            raise ValueError(
                f"{name}: the first row must name the columns reference,moving[,output]; "
                f"found {','.join(header) or 'nothing'}"
            )
        lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    if not lines:
        raise ValueError(f"{name}: lists no pairs")
    column = {key: header.index(key) for key in ("reference", "moving", "output") if key in header}
    jobs = []
    for line, row in lines:
        cells = {k: (row[i].strip() if i < len(row) else "") for k, i in column.items()}
        if not cells["moving"]:
            raise ValueError(f"{name}, line {line}: the moving cell is empty")
        moving = os.path.join(mov_root, cells["moving"])  # an absolute cell stays absolute
        pair = _relative_label(moving, mov_root)
        if cells.get("output"):
            target = os.path.abspath(os.path.join(out_root, cells["output"]))
            out_rel = os.path.relpath(target, out_root)
            if out_rel == os.pardir or out_rel.startswith(os.pardir + os.sep):
                raise ValueError(
                    f"{name}, line {line}: output {cells['output']} is outside OUTPUT_DIR "
                    f"{os.fspath(output_dir)}; give a path relative to it"
                )
            image_format(target)  # a bad extension fails now, not in every task
            out_rel = out_rel.replace(os.sep, "/")
        else:
            base = pair if not os.path.isabs(pair) else os.path.basename(moving)
            out_rel = _default_output(base, keep_jpeg)
        problem = reference = None
        if not cells["reference"]:
            problem = f"no reference partner ({name}, line {line}: empty reference cell)"
        else:
            reference = os.path.join(ref_root, cells["reference"])
            if not os.path.isfile(reference):
                problem = f"no reference partner: {reference} does not exist"
        if problem is None and not os.path.isfile(moving):
            problem = f"the moving image {moving} does not exist"
        jobs.append(
            PairJob(
                pair=pair,
                reference=None if reference is None or problem else reference,
                moving=moving,
                aligned=os.path.join(out_root, out_rel.replace("/", os.sep)),
                reference_label=_relative_label(reference, ref_root) if reference else "",
                output_label=out_rel,
                problem=problem,
            )
        )
    return jobs


def _relative_label(path: str, root: str) -> str:
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return os.path.abspath(path)
    return rel.replace(os.sep, "/")


def _flag_conflicts(jobs: list[PairJob], reference_dir, moving_dir) -> list[PairJob]:
    """Fail pairs that would overwrite an input or share an output with another pair."""
    roots = [os.path.realpath(p) for p in (reference_dir, moving_dir)]
    inputs = {os.path.realpath(p) for job in jobs for p in (job.reference, job.moving) if p}
    owners: dict[str, list[int]] = {}
    for i, job in enumerate(jobs):
        for path in job.outputs():
            owners.setdefault(os.path.realpath(path), []).append(i)
    problems: dict[int, str] = {}
    for path, users in owners.items():
        if path in inputs or any(is_inside(path, root) for root in roots):
            for i in users:
                problems.setdefault(
                    i, f"its output {path} would land in an input folder or on an input file"
                )
        if len(set(users)) > 1:
            names = ", ".join(jobs[i].pair for i in sorted(set(users)))
            for i in users:
                problems.setdefault(
                    i,
                    f"output name clash: {names} would all write {path}; rename one, "
                    "or list the pairs with an output column (--pairs)",
                )
    return [
        job if i not in problems or job.problem else replace(job, problem=problems[i])
        for i, job in enumerate(jobs)
    ]


def is_inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both already resolved)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False
