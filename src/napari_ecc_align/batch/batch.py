"""Batch alignment of whole datasets on Dask: pairs of files in, files and a CSV out.

:func:`batch_align` pairs every image under ``moving_dir`` with the file of the
same relative path under ``reference_dir`` (or reads the pairs from a CSV),
runs one Dask task per pair and writes, per pair, the aligned image, an
optional difference image and the transform JSON, then ``alignment.csv``.

What travels to the workers are paths, never arrays: each task reads its two
files, aligns, and writes its outputs itself. Every file is written to a hidden
temporary name and renamed, and the transform JSON comes last, so its presence
marks a complete pair: a run that is killed can be started again and skips the
pairs already done. A pair that cannot be read or aligned is recorded in the
CSV and the others go on.

``distributed`` and ``tqdm`` are imported inside the functions that use them,
so ``import napari_ecc_align`` stays light. No Qt or napari here.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fnmatch
import io
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from ..engine.alignment import MOTIONS, Alignment, write_text_atomic
from ..engine.initialisation import SEARCHES
from ..io.images import atomic_output, check_writable, image_format, read_image, write_image

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
# Hidden temporary files of interrupted writes: _io.atomic_output names them
# ".<stem>.<hex>.tmp.<ext>", tempfile.mkstemp (Alignment.to_json, the CSV) ".<random>.<ext>.tmp".
_TEMPORARY = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")
# PNG encoder settings for the outputs (lossless either way). zlib level 1 with the RLE
# strategy writes an 8 MP grayscale page in ~0.27 s instead of Pillow's ~1-2 s at level 6,
# and the file is smaller; for colour, level 3 with the default strategy is the better trade.
_PNG_GRAY = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_PNG_COLOUR = [cv2.IMWRITE_PNG_COMPRESSION, 3]


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
    init: Any = "auto"  # an init name or a 3x3 matrix as nested lists
    difference: bool = False
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
        if path in inputs or any(_inside(path, root) for root in roots):
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


def _inside(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both already resolved)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


# ------------------------------------------------------------------------ one pair, on a worker
def align_pair(job: PairJob) -> dict[str, Any]:
    """Align one pair of files and write its outputs; return its CSV row.

    Runs on a Dask worker (or anywhere). Never raises for a pair that cannot be
    read, aligned or written: the row says ``failed`` and why.
    """
    from ..stack.stack import single_threaded

    start = time.perf_counter()
    if job.problem:
        return job.row("failed", job.problem, 0.0)
    try:
        # The workers are the parallelism: OpenCV and BLAS on one thread each.
        with single_threaded():
            alignment = _align_files(job)
    except Exception as exc:  # recorded in the CSV, never swallowed
        return job.row("failed", _describe(exc), time.perf_counter() - start)
    return job.result_row(alignment, "ok")


def _align_files(job: PairJob) -> Alignment:
    from ..engine.estimate import align
    from ..engine.warping import default_difference_mode, difference, warp
    from ..io.images import difference_for_file

    # The JSON marks a complete pair: take it away before replacing any output.
    with contextlib.suppress(FileNotFoundError):
        os.remove(job.transform)
    reference = read_image(job.reference)
    moving = read_image(job.moving)
    check_writable(job.aligned, moving.dtype, reference.shape[:2] + moving.shape[2:])
    init = np.asarray(job.init, dtype=np.float64) if not isinstance(job.init, str) else job.init
    alignment = align(reference, moving, motion=job.motion, init=init)
    aligned = warp(moving, alignment)
    save_image(job.aligned, aligned)
    if job.difference:
        mode = default_difference_mode(reference, moving)
        floating = reference.dtype.kind == "f" or moving.dtype.kind == "f"
        path = job.stem + DIFFERENCE_SUFFIXES[1 if floating else 0]
        diff = difference(reference, aligned, mode=mode, alignment=alignment)
        save_image(path, difference_for_file(diff, path, mode, reference, moving))
    alignment.to_json(job.transform)  # last: now the pair is complete
    return alignment


def save_image(path: str, array: np.ndarray) -> None:
    """:func:`~napari_ecc_align.io.write_image`, with faster lossless PNG settings.

    PNGs with 1, 3 or 4 channels are encoded by OpenCV (see ``_PNG_GRAY``) and
    renamed into place like every other write; anything else goes through
    ``write_image``.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    fmt = check_writable(path, arr.dtype, arr.shape)
    channels = 0 if arr.ndim == 2 else arr.shape[-1]
    if fmt != "PNG" or channels not in (0, 3, 4):
        write_image(path, arr)
        return
    if arr.dtype == np.bool_:
        arr = np.where(arr, np.uint8(255), np.uint8(0))
    if channels:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    ok, buffer = cv2.imencode(
        ".png", np.ascontiguousarray(arr), _PNG_GRAY if not channels else _PNG_COLOUR
    )
    if not ok:
        raise OSError(f"OpenCV could not encode {path} as PNG")
    with atomic_output(path) as tmp:
        buffer.tofile(tmp)


def _describe(exc: BaseException) -> str:
    """One line for the CSV. Expected failures speak for themselves; others name their type."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc) or type(exc).__name__
        from ..engine.alignment import AlignmentError

        if not isinstance(exc, (AlignmentError, ValueError, TypeError, OSError, MemoryError)):
            message = f"{type(exc).__name__}: {message}"
    return " ".join(message.split())


# ------------------------------------------------------------------------------------- the batch
def batch_align(
    reference_dir: PathLike,
    moving_dir: PathLike,
    output_dir: PathLike,
    *,
    pattern: str | None = None,
    pairs_csv: PathLike | None = None,
    motion: str = "affine",
    init: Any = "auto",
    difference: bool = False,
    workers: int | None = None,
    scheduler: Any = None,
    overwrite: bool = False,
    fail_fast: bool = False,
    keep_jpeg: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Align every image of ``moving_dir`` onto its partner in ``reference_dir`` on Dask.

    Parameters
    ----------
    reference_dir, moving_dir : str or os.PathLike
        Input folders; never modified. A moving file is paired with the file of
        the same relative path under ``reference_dir``.
    output_dir : str or os.PathLike
        Where the results go (created if missing), with the sub-folders of
        ``moving_dir``; it must not be inside (or equal to) an input folder.
        Per pair: the aligned image (the moving file's name, format and dtype;
        JPEG becomes PNG unless ``keep_jpeg``), ``<stem>.difference.png``
        (``.tif`` if an input is floating point) when ``difference`` is True,
        and ``<stem>.transform.json``, written last. Then ``alignment.csv``.
    pattern : str, optional
        Glob selecting the moving files, e.g. ``"*.tif"`` (matched against the
        file name) or ``"scans/*.png"`` (against the relative path);
        case-insensitive. Default: every .png, .jpg, .jpeg, .tif and .tiff,
        recursively. Hidden files and folders are ignored.
    pairs_csv : str or os.PathLike, optional
        Instead of matching names: a CSV with the header
        ``reference,moving[,output]``. Paths are relative to the reference,
        moving and output folders, or absolute (outputs must stay inside
        ``output_dir``).
    motion : {"translation", "euclidean", "affine", "homography"}
    init : str or array_like
        ``"auto"``, ``"identity"``, ``"phase"``, ``"fourier-mellin"``,
        ``"features"``, a 3×3 matrix used for every pair, or the path of a
        transform JSON whose matrix is used.
    difference : bool
        Also write the difference image of each pair.
    workers : int, optional
        Worker processes of the embedded ``distributed.LocalCluster`` (one
        thread each; default ``os.cpu_count()``). Not with ``scheduler``.
    scheduler : str or distributed.Client, optional
        Address of a running Dask scheduler (``"tcp://host:port"``), or a
        connected client, to run on instead. Its workers must see the same
        paths (shared file system) and have napari-ecc-align installed.
    overwrite : bool
        Align every pair again. By default pairs whose outputs are complete
        (transform JSON, aligned image, and the difference if asked for) are
        skipped and their CSV rows filled from the JSON.
    fail_fast : bool
        Stop at the first failed pair and cancel the rest (rows ``cancelled``).
    keep_jpeg : bool
        Save aligned JPEG inputs as JPEG (lossy) instead of lossless PNG.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    BatchReport
        The rows of ``alignment.csv`` and the counts; ``report.ok`` is False
        if any pair failed.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If an input folder (or ``pairs_csv``) does not exist.
    ValueError
        If ``output_dir`` is inside an input folder, nothing matches, an
        argument is invalid, or another batch is writing to ``output_dir``.
        Nothing is written in these cases.
    ConnectionError
        If the scheduler cannot be reached.

    Notes
    -----
    The local cluster starts its workers with multiprocessing's spawn, which
    imports the calling script again: in a script, call this under
    ``if __name__ == "__main__":``.

    Examples
    --------
    >>> report = batch_align("references", "scans", "aligned", workers=2)  # doctest: +SKIP
    >>> report.counts  # doctest: +SKIP
    {'ok': 198, 'skipped': 0, 'failed': 2, 'cancelled': 0}
    """
    start = time.perf_counter()
    _check_folders(reference_dir, moving_dir, output_dir)
    options = _check_options(motion, init, workers, scheduler, pattern, pairs_csv)
    jobs = find_pairs(
        reference_dir,
        moving_dir,
        output_dir,
        pattern=pattern,
        pairs_csv=pairs_csv,
        keep_jpeg=keep_jpeg,
    )
    csv_path = os.path.join(os.fspath(output_dir), CSV_NAME)
    if pairs_csv is not None and _same_file(pairs_csv, csv_path):
        raise ValueError(f"--pairs {os.fspath(pairs_csv)} would be overwritten by the results")
    jobs = [replace(job, difference=difference, **options) for job in jobs]

    rows, todo = _triage(jobs, overwrite, difference)
    stopped = fail_fast and any(row["status"] == "failed" for row in rows.values())
    bar = _ProgressBar(len(jobs), rows.values(), enabled=progress)
    cluster = contextlib.ExitStack()
    with cluster:
        # The cluster first: an unreachable scheduler fails before anything is written.
        n_workers = min(workers or os.cpu_count() or 1, len(todo))
        needed = todo and not stopped
        client = cluster.enter_context(_client(scheduler, n_workers, bar)) if needed else None
        os.makedirs(output_dir, exist_ok=True)
        with _locked(os.fspath(output_dir)):
            remove_temporary_files(output_dir)
            started, error = time.time(), None
            try:
                if client is not None:
                    stopped = _run(client, jobs, todo, rows, bar, fail_fast)
            except BaseException as exc:  # Ctrl-C, a lost cluster: list the pairs, re-raise
                error = exc
                raise
            finally:
                bar.close()
                cluster.close()  # our own workers stop before the tidy-up below
                why_not = _why_not_run(rows, stopped, error)
                for i in todo:
                    if i not in rows:  # fail-fast or an error: what did not finish is listed
                        rows[i] = _unfinished_row(jobs[i], difference, started, why_not)
                if scheduler is None:
                    remove_temporary_files(output_dir)
                report = BatchReport(
                    rows=[rows[i] for i in range(len(jobs))],
                    output_dir=os.fspath(output_dir),
                    csv_path=csv_path,
                    elapsed=time.perf_counter() - start,
                    stopped=bool(stopped),
                )
                write_csv(csv_path, report.rows)
    return report


def _triage(jobs, overwrite: bool, difference: bool):
    """Rows of the pairs decided without running (complete, or failed before starting)
    and the indices of those to run. Reads only."""
    rows: dict[int, dict[str, Any]] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        done = None if overwrite or job.problem else _complete(job, difference)
        if done is not None:
            rows[i] = job.result_row(done, "skipped")
        elif job.problem:
            rows[i] = align_pair(job)
        else:
            todo.append(i)
    return rows, todo


def _why_not_run(rows, stopped: bool, error: BaseException | None) -> str:
    first = next((row for row in rows.values() if row["status"] == "failed"), None)
    if stopped and first is not None:
        return f"not run: fail-fast stopped the batch after {first['pair']} failed"
    if error is None or isinstance(error, KeyboardInterrupt):
        return "not run: the batch was interrupted"
    return f"not run: {_describe(error)}"


def _unfinished_row(job: PairJob, difference: bool, started: float, why_not: str):
    """A pair whose result never came back: ok if this run completed it anyway (its task
    finished after the stop), else cancelled."""
    done = _complete(job, difference)
    with contextlib.suppress(OSError):
        if done is not None and os.stat(job.transform).st_mtime >= started - 1.0:
            return job.result_row(done, "ok")
    return job.row("cancelled", why_not)


def _check_folders(reference_dir, moving_dir, output_dir) -> None:
    folders = {"REFERENCE_DIR": reference_dir, "MOVING_DIR": moving_dir}
    for name, folder in folders.items():
        path = os.fspath(folder)
        if not os.path.exists(path):
            raise FileNotFoundError(errno.ENOENT, f"{name} does not exist", path)
        if not os.path.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, f"{name} is not a folder", path)
    out = os.path.realpath(output_dir)
    for name, folder in folders.items():
        if _inside(out, os.path.realpath(folder)):
            raise ValueError(
                f"OUTPUT_DIR {os.fspath(output_dir)} is inside {name} {os.fspath(folder)}; "
                "choose an output folder outside both input folders (inputs are never modified)"
            )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(errno.ENOTDIR, "OUTPUT_DIR is not a folder", os.fspath(output_dir))


def _check_options(motion, init, workers, scheduler, pattern, pairs_csv) -> dict[str, Any]:
    if not isinstance(motion, str) or motion.lower() not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    if isinstance(init, (str, os.PathLike)) and os.fspath(init).lower().endswith(".json"):
        path = os.fspath(init)
        if not os.path.isfile(path):
            raise FileNotFoundError(errno.ENOENT, "no such transform file (--init)", path)
        try:
            init = Alignment.from_json(path).matrix
        except (ValueError, TypeError) as exc:
            raise ValueError(f"init {path} is not a transform JSON file: {exc}") from None
    if isinstance(init, str):
        if init not in INIT_CHOICES:
            raise ValueError(
                f"init must be one of {INIT_CHOICES} or a transform JSON, got {init!r}"
            )
    elif init is None:
        init = "identity"
    else:
        matrix = np.asarray(init, dtype=np.float64)
        if matrix.shape not in ((3, 3), (2, 3)) or not np.all(np.isfinite(matrix)):
            raise ValueError(f"init must be a finite 3x3 matrix, got shape {matrix.shape}")
        init = matrix.tolist()
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
        if scheduler is not None:
            raise ValueError(
                "workers and scheduler exclude each other: a running cluster has its own workers"
            )
    if pattern is not None and pairs_csv is not None:
        raise ValueError("pattern and pairs_csv exclude each other: the CSV lists the pairs")
    return {"motion": motion.lower(), "init": init}


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _complete(job: PairJob, difference: bool) -> Alignment | None:
    """The pair's alignment if all its outputs are there, else None."""
    if not (os.path.isfile(job.transform) and os.path.isfile(job.aligned)):
        return None
    if difference and not any(os.path.isfile(job.stem + s) for s in DIFFERENCE_SUFFIXES):
        return None
    try:
        return Alignment.from_json(job.transform)
    except (OSError, ValueError, TypeError):
        return None


def remove_temporary_files(output_dir: PathLike) -> list[str]:
    """Delete the hidden temporary files that interrupted writes left under ``output_dir``."""
    removed = []
    for folder, dirs, files in os.walk(output_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if _TEMPORARY.match(name):
                path = os.path.join(folder, name)
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                    removed.append(path)
    return removed


@contextlib.contextmanager
def _locked(folder: str) -> Iterator[None]:
    """Hold an exclusive lock on the output folder (POSIX); released even on SIGKILL."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)  # not inherited by worker processes (PEP 446)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"another batch is writing to {folder}; wait for it or choose another OUTPUT_DIR"
            ) from None
        except OSError:
            pass  # a file system without locks: go on
        yield
    finally:
        os.close(fd)


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


# ------------------------------------------------------------------------------------ on Dask
def _run(client, jobs, todo, rows, bar, fail_fast) -> bool:
    """Run the pairs ``todo`` as Dask tasks; fill ``rows``. True if stopped by ``fail_fast``."""
    from distributed import as_completed

    token = secrets.token_hex(4)
    futures = {
        client.submit(align_pair, jobs[i], key=f"ecc-align-{token}-{i}", pure=False): i
        for i in todo
    }
    bar.start()
    try:
        for future in as_completed(list(futures), loop=client.loop):
            i = futures[future]
            rows[i] = _result(future, jobs[i])
            bar.update(rows[i])
            if fail_fast and rows[i]["status"] == "failed":
                return True
    finally:
        client.cancel([f for f in futures if not f.done()])
    return False


def _result(future, job: PairJob) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # the task itself died: a killed worker, a lost scheduler
        return job.row("failed", f"the task failed on the cluster: {_describe(exc)}")


@contextlib.contextmanager
def _client(scheduler, n_workers: int, bar):
    import distributed

    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, set_as_default=False)
        except (OSError, ValueError) as exc:
            raise ConnectionError(
                f"cannot connect to the Dask scheduler at {scheduler}: {_describe(exc)}"
            ) from None
        try:
            if not client.scheduler_info(n_workers=-1).get("workers"):
                bar.write(f"waiting for workers to join the scheduler at {scheduler} ...")
            yield client
        finally:
            client.close()
        return
    # One single-threaded process per worker, loopback only, no dashboard (so no bokeh).
    # The scheduler and workers start an HTTP server even then: give it no routes and a
    # random loopback port (not 8787, which a user's own dashboard may hold).
    import dask

    no_http = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
    with dask.config.set(no_http):
        cluster = distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            worker_dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


class _ProgressBar:
    """tqdm on stderr: all pairs, with done / failed / remaining and pairs per minute.

    The bar appears when the tasks are submitted (nothing to show while the cluster starts);
    pairs already decided (complete or failed before running) count from the start.
    """

    def __init__(self, total: int, finished, *, enabled: bool):
        self.counts = dict.fromkeys(STATUSES, 0)
        for row in finished:
            self.counts[row["status"]] += 1
        self.total, self.enabled, self.bar = total, enabled, None
        self.started, self.new = time.perf_counter(), 0

    @property
    def remaining(self) -> int:
        return self.total - sum(self.counts.values())

    def start(self) -> None:
        self.started = time.perf_counter()
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.total - self.remaining,
                unit="pair",
                desc="aligning",
                file=sys.stderr,
                dynamic_ncols=True,
                mininterval=0.2,
            )
            self._postfix()

    def update(self, row: dict[str, Any]) -> None:
        self.counts[row["status"]] += 1
        self.new += 1
        if self.bar is not None:
            self._postfix(refresh=False)
            self.bar.update(1)

    def write(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr)

    def _postfix(self, refresh: bool = True) -> None:
        minutes = (time.perf_counter() - self.started) / 60
        rate = f", {self.new / minutes:.1f} pairs/min" if self.new and minutes > 0 else ""
        c = self.counts
        self.bar.set_postfix_str(
            f"done={c['ok'] + c['skipped']} failed={c['failed']} remaining={self.remaining}{rate}",
            refresh=refresh,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
