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

A batch owns only what it writes. Each run has a random owner token
(:func:`~napari_ecc_align.engine.new_owner`), recorded in
``OUTPUT_DIR/.napari-ecc-align.runs`` before anything else is written, and its
temporary files carry it in their names. Clean-up removes a file only when its name
has that form *and* its token is recorded there, so no other file under OUTPUT_DIR,
whatever its name, is ever removed; the record goes when the run has tidied up.

``distributed`` and ``tqdm`` are imported inside the functions that use them,
so ``import napari_ecc_align`` stays light. No Qt or napari here.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..engine import (
    Alignment,
    check_dimensions,
    check_volume_motion,
    new_owner,
    validate_params,
)
from ..engine import max_pixels as pixel_budget
from ..io.transform_files import transform_format
from .cluster import ProgressBar, dask_client, run_pairs
from .pairs import (
    CSV_NAME,
    DIFFERENCE_SUFFIXES,
    INIT_CHOICES,
    TRANSFORM_SUFFIX,
    PairJob,
    PathLike,
    find_pairs,
    is_inside,
)
from .records import (  # RUNS_NAME and recorded_runs: also importable from here, as before
    RUNS_NAME,  # noqa: F401
    forget_runs,
    locked_folder,
    recorded_runs,  # noqa: F401
    remove_temporary_files,
    start_run,
)
from .report import BatchReport, write_csv
from .worker import align_pair, describe_failure


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
    ndim: int | None = None,
    spacing=None,
    max_pixels=None,
    progress: bool = True,
    transform_out: str | None = None,
) -> BatchReport:
    """Align every image of ``moving_dir`` onto its partner in ``reference_dir`` on Dask.

    Parameters
    ----------
    reference_dir, moving_dir : str or os.PathLike
        Input folders; never modified. A moving file is paired with the file of
        the same relative path under ``reference_dir``.
    output_dir : str or os.PathLike
        Where the results go (created if missing), with the sub-folders of ``moving_dir``; it
        must not be inside (or equal to) an input folder. Per pair: the aligned image (the
        moving file's name, format and dtype; JPEG becomes PNG unless ``keep_jpeg``),
        ``<stem>.difference.png`` (``.tif`` if an input is floating point) when ``difference``
        is True, and ``<stem>.transform.json``, written last. Then ``alignment.csv``. Nothing
        else there is touched: only this run's temporary files (and those of earlier runs that
        were killed) are removed, see the module notes.
    pattern : str, optional
        Glob selecting the moving files, e.g. ``"*.tif"`` (matched against the
        file name) or ``"scans/*.png"`` (against the relative path);
        case-insensitive. Default: every .png, .jpg, .jpeg, .tif and .tiff,
        recursively. Hidden files and folders are ignored.
    pairs_csv : str or os.PathLike, optional
        Instead of matching names: a CSV with the header ``reference,moving[,output]``, UTF-8.
        Paths are relative to the reference, moving and output folders, or absolute (outputs
        must stay inside ``output_dir``). Rows whose outputs would write the same file, or that
        are named like this program's temporary files, are refused before anything runs
        (ValueError naming the lines).
    motion : {"translation", "euclidean", "affine", "homography"}
    init : str or array_like
        ``"auto"``, ``"identity"``, ``"phase"``, ``"fourier-mellin"``,
        ``"features"``, a 3×3 matrix (4×4 for volumes) used for every pair, or
        the path of a transform JSON whose matrix is used.
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
    ndim : {None, 2, 3}
        3: every pair is two multi-page TIFF volumes ``(z, y, x)``; 2: 2D
        images. None (default): a pair is volumes when either file's ImageJ or
        OME metadata says it is a z-stack (see :func:`~napari_ecc_align.io.read_pair`).
        Volume outputs are TIFFs carrying the reference's voxel size; the
        difference is ``<stem>.difference.tif``.
    spacing : (dz, dy, dx), optional
        Voxel size of every volume pair, instead of the one in the files'
        metadata (the reference's; a pair whose two files state different
        voxel sizes fails without it).
    max_pixels : int, optional
        Pixel budget of every input file and transform JSON: files declaring
        more pixels (voxels) fail before they are read. Default: the environment
        variable ``NAPARI_ECC_ALIGN_MAX_PIXELS``, else 2**28.
    progress : bool
        Show a tqdm progress bar on stderr.
    transform_out : str, optional
        Also save each pair's transform in another format as ``<stem><suffix>``, e.g.
        ``".tfm"`` (ITK), ``".TransformParameters.txt"`` (elastix), ``".ngff.json"``,
        ``".csv"`` (BigWarp) or ``".transformj.txt"``, with the volumes' voxel size (and a
        store's origin); written before the ``.transform.json`` that marks a complete pair.

    Returns
    -------
    BatchReport
        The rows of ``alignment.csv`` and the counts; ``report.ok`` is False
        if any pair failed. A sub-folder of ``moving_dir`` that cannot be
        listed is a failed row too (``pair`` is its relative path).
        ``alignment.csv`` is UTF-8; a file name that is not (POSIX file names
        are bytes) is written with its own bytes (Python's ``surrogateescape``),
        so read it with ``open(path, newline="", encoding="utf-8",
        errors="surrogateescape")`` to get the names as :func:`os.listdir` gives them.

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        If an input folder (or ``pairs_csv``) does not exist.
    ValueError
        If ``output_dir`` is inside an input folder, nothing matches, an
        argument is invalid, ``pairs_csv`` is malformed (the message names the
        line), or another batch is writing to ``output_dir``. Nothing is
        written in these cases.
    ConnectionError
        If the scheduler cannot be reached.
    OSError
        If ``alignment.csv`` cannot be written; the message says so, and the
        aligned pairs and their transform JSON files are kept.

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
    options = _check_options(
        motion, init, workers, scheduler, pattern, pairs_csv, ndim, spacing, max_pixels
    )
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
    run = new_owner()
    transform_out = _check_transform_out(transform_out, motion)
    jobs = [replace(job, difference=difference, owner=run, transform_out=transform_out, **options)
            for job in jobs]  # fmt: skip

    rows, todo = _triage(jobs, overwrite, difference)
    stopped = fail_fast and any(row["status"] == "failed" for row in rows.values())
    bar = ProgressBar(len(jobs), rows.values(), enabled=progress)
    cluster = contextlib.ExitStack()
    with cluster:
        # The cluster first: an unreachable scheduler fails before anything is written.
        n_workers = min(workers or os.cpu_count() or 1, len(todo))
        needed = todo and not stopped
        client = cluster.enter_context(dask_client(scheduler, n_workers, bar)) if needed else None
        os.makedirs(output_dir, exist_ok=True)
        with locked_folder(os.fspath(output_dir)):
            start_run(output_dir, run)
            started, error = time.time(), None
            try:
                if client is not None:
                    stopped = run_pairs(client, jobs, todo, rows, bar, fail_fast)
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
                report = BatchReport(
                    rows=[rows[i] for i in range(len(jobs))],
                    output_dir=os.fspath(output_dir),
                    csv_path=csv_path,
                    elapsed=time.perf_counter() - start,
                    stopped=bool(stopped),
                )
                # Cancelled tasks on someone else's cluster may still be writing: their
                # temporary files are left to the next run (the record keeps the token).
                tidy = scheduler is None or all(rows[i]["status"] != "cancelled" for i in todo)
                _write_report(report, run, tidy, error)
    return report


def _write_report(report: BatchReport, run: str, tidy: bool, error) -> None:
    """Write ``alignment.csv``, tidy up, and say so plainly if the CSV cannot be written."""
    try:
        write_csv(report.csv_path, report.rows, owner=run)
        failure = None
    except (OSError, ValueError) as exc:  # UnicodeError is a ValueError
        failure = exc
    finally:
        if tidy:
            remove_temporary_files(report.output_dir)
            forget_runs(report.output_dir)
    if failure is not None and error is None:  # never hide an interruption
        counts = report.counts
        done = counts["ok"] + counts["skipped"]
        kept = "pair and its .transform.json file are" if done == 1 else (
            "pairs and their .transform.json files are")  # fmt: skip
        # The message names the CSV; an OSError's own file name would be the temporary one.
        why = getattr(failure, "strerror", None) or describe_failure(failure)
        raise OSError(
            f"could not write the report {report.csv_path}: {why}; the {done} aligned {kept} kept"
        ) from failure


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
    return f"not run: {describe_failure(error)}"


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
        if is_inside(out, os.path.realpath(folder)):
            raise ValueError(
                f"OUTPUT_DIR {os.fspath(output_dir)} is inside {name} {os.fspath(folder)}; "
                "choose an output folder outside both input folders (inputs are never modified)"
            )
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise NotADirectoryError(errno.ENOTDIR, "OUTPUT_DIR is not a folder", os.fspath(output_dir))


def _check_options(
    motion, init, workers, scheduler, pattern, pairs_csv, ndim=None, spacing=None, budget=None
) -> dict[str, Any]:
    motion = validate_params(motion=motion)["motion"]  # the engine's words
    volume = _check_volume_options(motion, ndim, spacing)
    # Settled here, once: remote workers need not share this environment, and a bad
    # NAPARI_ECC_ALIGN_MAX_PIXELS fails before anything runs.
    budget = pixel_budget(budget)
    if isinstance(init, (str, os.PathLike)) and os.fspath(init).lower().endswith(".json"):
        try:  # refuses missing files, FIFOs and hostile JSON, naming the field
            init = Alignment.from_json(os.fspath(init), max_pixels=budget).matrix
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"init must be a transform JSON file: {exc}") from None
        except OSError as exc:  # say which option named the file
            raise OSError(exc.errno, f"init: {exc.strerror}", exc.filename) from None
    if isinstance(init, str):
        if init not in INIT_CHOICES:
            raise ValueError(
                f"init must be one of {INIT_CHOICES} or a transform JSON, got {init!r}"
            )
    elif init is None:
        init = "identity"
    else:
        init = _check_init_matrix(init, ndim)
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
            raise ValueError(f"workers must be a whole number >= 1, got {workers!r}")
        if scheduler is not None:
            raise ValueError(
                "workers and scheduler exclude each other: a running cluster has its own workers"
            )
    if pattern is not None and pairs_csv is not None:
        raise ValueError("pattern and pairs_csv exclude each other: the CSV lists the pairs")
    return {"motion": motion, "init": init, "max_pixels": budget, **volume}


def _check_volume_options(motion: str, ndim, spacing) -> dict[str, Any]:
    """``ndim`` and ``spacing`` for the jobs (plain values), or raise (the engine's words)."""
    ndim, spacing = check_dimensions(ndim, spacing, files_decide=True)
    if ndim == 3:
        check_volume_motion(motion)
    return {"ndim": ndim, "spacing": spacing}


def _check_init_matrix(init, ndim) -> list:
    # Without ndim the files decide per pair; the engine checks the matrix against them.
    shapes = {2: ((3, 3), (2, 3)), 3: ((4, 4), (3, 4))}
    allowed = shapes[ndim] if ndim else shapes[2] + shapes[3]
    matrix = np.asarray(init, dtype=np.float64)
    if matrix.shape not in allowed or not np.all(np.isfinite(matrix)):
        sizes = " or ".join(f"{r}x{c}" for r, c in allowed)
        raise ValueError(f"init must be a finite {sizes} matrix, got shape {matrix.shape}")
    return matrix.tolist()


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _check_transform_out(suffix: str | None, motion: str) -> str | None:
    """``transform_out``: a suffix of a known transform format that can hold ``motion``."""
    if suffix is None:
        return None
    if not isinstance(suffix, str) or not suffix.startswith(".") or "/" in suffix:
        raise ValueError(
            f"transform_out must be a file suffix such as .tfm, .ngff.json, .csv, "
            f".transformj.txt or .TransformParameters.txt, got {suffix!r}"
        )
    kind = transform_format("pair" + suffix)
    if suffix.lower().endswith(".zarr"):
        raise ValueError(f"transform_out {suffix}: name a file (.ngff.json), not a store")
    if kind == "json" or suffix.lower() == TRANSFORM_SUFFIX:
        raise ValueError(f"transform_out {suffix}: every pair has its {TRANSFORM_SUFFIX} already")
    if motion == "homography" and kind not in ("bigwarp",):
        raise ValueError(f"transform_out {suffix}: a {kind} file holds no homography; use .csv")
    return suffix


def _complete(job: PairJob, difference: bool) -> Alignment | None:
    """The pair's alignment if all its outputs are there, else None."""
    if not (os.path.isfile(job.transform) and os.path.exists(job.aligned)):
        return None
    if job.transform_out and not os.path.isfile(job.extra_transform):
        return None
    if difference and not any(os.path.exists(job.stem + s) for s in DIFFERENCE_SUFFIXES):
        return None
    try:  # the loader turns anything malformed into ValueError/TypeError. No budget: this
        # program wrote the file for images it has read, and a lower budget on a resume
        # must not make finished pairs look corrupt.
        return Alignment.from_json(job.transform, max_pixels=math.inf)
    except (OSError, ValueError, TypeError):  # unreadable or corrupt: align the pair again
        return None
