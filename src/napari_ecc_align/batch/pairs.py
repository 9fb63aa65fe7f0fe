"""The pairs of a batch: :class:`PairJob`, and finding pairs in two folders or in a pairs CSV."""

from __future__ import annotations

import csv
import errno
import fnmatch
import io
import os
from dataclasses import dataclass, replace
from typing import Any

from ..engine import SEARCHES, Alignment, temporary_owner
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
DIFFERENCE_SUFFIXES = (".difference.png", ".difference.tif", ".difference.ome.zarr")
STORE_SUFFIXES = (".ome.zarr", ".zarr")  # OME-Zarr images: folders, aligned as stores


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
    max_pixels: int | float | None = None  # pixel budget of the files (None: the default)
    problem: str | None = None  # known before running: the pair fails without a task
    owner: str | None = None  # the run's token: its temporary files carry it (engine.temporary)
    transform_out: str | None = None  # a suffix: also save <stem><suffix> in that format

    @property
    def extra_transform(self) -> str | None:
        """The transform file in another format asked for (``transform_out``), or None."""
        return self.stem + self.transform_out if self.transform_out else None

    @property
    def stem(self) -> str:
        return split_name(self.aligned)[0]

    @property
    def is_store(self) -> bool:
        """Whether the outputs are OME-Zarr stores (the moving image is one)."""
        return split_name(self.aligned)[1] in STORE_SUFFIXES

    @property
    def transform(self) -> str:
        return self.stem + TRANSFORM_SUFFIX

    def outputs(self) -> list[str]:
        """Every path the pair may write (both possible difference names)."""
        extra = [self.extra_transform] if self.transform_out else []
        return [self.aligned, self.transform, *extra] + [self.stem + s for s in DIFFERENCE_SUFFIXES]

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

    Pairs whose outputs would land inside an input folder or on an input file,
    or (matching folders) collide with another pair's, come back with
    ``problem`` set (they fail; the others run). A sub-folder of
    ``moving_dir`` that cannot be listed comes back as a job with ``problem``
    set too (its ``pair`` is the folder's relative path), in its sorted place.

    Raises
    ------
    ValueError
        If nothing matches, or ``pairs_csv`` is malformed: not UTF-8 text, a
        NUL character, a cell over the CSV reader's limit, an output outside
        ``output_dir``, named like a temporary file of this program
        (:mod:`~napari_ecc_align.engine.temporary`), or shared by two rows.
        The message names the file and line(s).
    OSError
        If ``moving_dir`` itself cannot be listed.
    """
    if pairs_csv is not None:
        jobs = _pairs_from_csv(pairs_csv, reference_dir, moving_dir, output_dir, keep_jpeg)
        return _flag_conflicts(jobs, reference_dir, moving_dir)
    jobs, unlisted = _pairs_from_folders(reference_dir, moving_dir, output_dir, pattern, keep_jpeg)
    jobs = _flag_conflicts(jobs, reference_dir, moving_dir)
    return sorted(jobs + unlisted, key=lambda job: job.pair)


def _pairs_from_folders(reference_dir, moving_dir, output_dir, pattern, keep_jpeg):
    ref_root, mov_root, out_root = (
        os.path.abspath(p) for p in (reference_dir, moving_dir, output_dir)
    )
    names, unreadable = _image_files(mov_root, pattern)
    unlisted = [
        PairJob(
            pair=rel,
            reference=None,
            moving=os.path.join(mov_root, rel),
            aligned=os.path.join(out_root, rel),
            reference_label="",
            output_label="",
            problem=f"cannot list folder {os.path.join(os.fspath(moving_dir), rel)}: {why}",
        )
        for rel, why in unreadable
    ]
    if not names and not unlisted:
        what = f"matching {pattern!r}" if pattern else "(.png, .jpg, .jpeg, .tif, .tiff, .zarr)"
        raise ValueError(f"no image files {what} under MOVING_DIR {os.fspath(moving_dir)}")
    jobs = []
    for rel in names:
        native = rel.replace("/", os.sep)
        reference = os.path.join(ref_root, native)
        out_rel = _default_output(rel, keep_jpeg)
        problem = None
        if not is_image(reference):
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
    return jobs, unlisted


def split_name(path: str) -> tuple[str, str]:
    """``(stem, extension)``, where an OME-Zarr store's extension is ``.ome.zarr``."""
    lower = path.lower()
    for suffix in STORE_SUFFIXES:
        if lower.endswith(suffix):
            return path[: -len(suffix)], suffix
    return os.path.splitext(path)


def is_image(path: str) -> bool:
    """A regular file, or a folder that is a zarr store."""
    if os.path.isfile(path):
        return True
    return os.path.isdir(path) and split_name(path)[1] in STORE_SUFFIXES


def _image_files(root: str, pattern: str | None) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative POSIX paths of the PNG/JPEG/TIFF files under ``root``, sorted, and the
    sub-folders that could not be listed (relative path, reason).

    Hidden files and folders (name starting with '.') are left out, and links to
    folders are not followed. ``pattern``
    is matched, case-insensitively, against the file name when it contains no
    '/', else against the relative path.
    """
    found, unreadable = [], []

    def cannot_list(exc: OSError) -> None:
        if os.path.abspath(exc.filename) == root:
            raise exc  # MOVING_DIR itself
        rel = os.path.relpath(exc.filename, root).replace(os.sep, "/")
        unreadable.append((rel, exc.strerror or str(exc)))

    for folder, dirs, files in os.walk(root, onerror=cannot_list):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        stores = [d for d in dirs if split_name(d)[1] in STORE_SUFFIXES]
        dirs[:] = [d for d in dirs if d not in stores]  # an OME-Zarr store is one image
        rel_folder = os.path.relpath(folder, root)
        for name in files + stores:
            if name.startswith("."):
                continue
            if name not in stores and os.path.splitext(name)[1].lower() not in IMAGE_SUFFIXES:
                continue
            rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            if pattern is None or fnmatch.fnmatch(
                (rel if "/" in pattern else name).lower(), pattern.lower()
            ):
                found.append(rel)
    return sorted(found), sorted(unreadable)


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
    header, lines = _read_pairs_csv(name)
    if "reference" not in header or "moving" not in header:
        raise ValueError(
            f"{name}: the first row must name the columns reference,moving[,output]; "
            f"found {','.join(header) or 'nothing'}"
        )
    if not lines:
        raise ValueError(f"{name}: lists no pairs")
    column = {key: header.index(key) for key in ("reference", "moving", "output") if key in header}
    jobs, outputs = [], []
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
            try:
                image_format(target)  # a bad extension fails now, not in every task
            except ValueError as exc:
                raise ValueError(f"{name}, line {line}: {exc}") from None
            out_rel = out_rel.replace(os.sep, "/")
        else:
            base = pair if not os.path.isabs(pair) else os.path.basename(moving)
            out_rel = _default_output(base, keep_jpeg)
        outputs.append((line, cells.get("output") or out_rel))
        problem = reference = None
        if not cells["reference"]:
            problem = f"no reference partner ({name}, line {line}: empty reference cell)"
        else:
            reference = os.path.join(ref_root, cells["reference"])
            if not is_image(reference):
                problem = f"no reference partner: {reference} does not exist"
        if problem is None and not is_image(moving):
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
    _refuse_shared_outputs(name, jobs, outputs)
    return jobs


def _read_pairs_csv(name: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The lower-cased header and the non-blank rows (with their line numbers) of a pairs
    CSV; ValueError naming the line for anything that is not UTF-8 CSV text."""
    with open(name, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{name}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x}); "
            "save the pairs CSV as UTF-8"
        ) from None
    if "\0" in text:
        line = text.count("\n", 0, text.index("\0")) + 1
        raise ValueError(f"{name}, line {line}: a NUL character; a pairs CSV is plain text")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader, [])]
        lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        if "field limit" in str(exc):  # no path is that long: refuse, keep the limit
            limit = csv.field_size_limit()
            raise ValueError(
                f"{name}, line {reader.line_num}: a cell is longer than {limit} characters; "
                "is this a pairs CSV (reference,moving[,output])?"
            ) from None
        raise ValueError(f"{name}, line {reader.line_num}: not a valid CSV row ({exc})") from None
    return header, lines


def _refuse_shared_outputs(name: str, jobs: list[PairJob], outputs) -> None:
    """ValueError naming the lines of a pairs CSV whose outputs are named like this
    program's temporary files, or that would write the same file as another line."""
    lines: dict[str, list[int]] = {}
    for job, (line, cell) in zip(jobs, outputs, strict=True):
        for path in job.outputs():
            if temporary_owner(os.path.basename(path)) is not None:
                raise ValueError(
                    f"{name}, line {line}: output {cell} is named like a temporary file of "
                    "napari-ecc-align (.<name>.ecc<16 hex>-<8 hex>.tmp.<ext>); choose another name"
                )
            lines.setdefault(os.path.realpath(path), []).append(line)
    for path, users in lines.items():
        if len(users) > 1:
            numbers = ", ".join(map(str, users[:-1])) + f" and {users[-1]}"
            raise ValueError(
                f"{name}, lines {numbers} would write the same file {path}; "
                "give each row its own output (the output column)"
            )


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
