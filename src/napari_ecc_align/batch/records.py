"""What a batch run owns in OUTPUT_DIR: the record of runs (``.napari-ecc-align.runs``),
the clean-up of their temporary files and stores, and the lock on the folder.

A file or folder is removed only when its name is that of a temporary file of this
program (``.<stem>.<owner>-<hex>.tmp<ext>``, see :mod:`~napari_ecc_align.engine.temporary`)
*and* its owner token is recorded there; nothing else under OUTPUT_DIR is ever removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator

from ..engine import PathLike, is_owner, temporary_owner, write_text_atomic

# The owner tokens of the runs that may have left temporary files in OUTPUT_DIR.
RUNS_NAME = ".napari-ecc-align.runs"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def forget_runs(output_dir: PathLike) -> None:
    """Remove the record of runs: the regular file this program made, never a link."""
    path = os.path.join(os.fspath(output_dir), RUNS_NAME)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.remove(path)


def start_run(output_dir: PathLike, run: str) -> None:
    """Record ``run`` (before it writes anything), then remove what earlier, killed runs
    left and forget them."""
    path = os.path.join(os.fspath(output_dir), RUNS_NAME)
    earlier = recorded_runs(output_dir)
    # Appended, on a line of its own even after a line cut short by a kill. O_NOFOLLOW: a
    # link of that name must not lead the append outside OUTPUT_DIR.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o666)
    with os.fdopen(fd, "a", encoding="ascii") as fh:
        fh.write(f"\n{run}\n")
    if earlier:
        remove_temporary_files(output_dir, earlier)
        write_text_atomic(path, run + "\n", owner=run)


def recorded_runs(output_dir: PathLike) -> set[str]:
    """The owner tokens recorded in ``output_dir`` by batch runs that have not tidied up.

    Raises
    ------
    ValueError
        If ``.napari-ecc-align.runs`` is there but is no regular file (a link, a folder):
        not this program's record, so nothing is appended to it or removed.
    """
    path = os.path.join(os.fspath(output_dir), RUNS_NAME)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return set()
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{path} is not a regular file, so it is not this program's record of its runs; "
            "move it away, then run the batch again"
        )
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return {line.strip() for line in fh if is_owner(line.strip())}
    except FileNotFoundError:
        return set()


def remove_temporary_files(output_dir: PathLike, runs=None) -> list[str]:
    """Delete the temporary files that batch runs left under ``output_dir``, and nothing else.

    A file is removed only when it is a regular file named like a temporary file of
    this program (``.<stem>.<owner>-<hex>.tmp<ext>``, see
    :mod:`~napari_ecc_align.engine.temporary`) *and* its owner is one of ``runs``
    (default: the runs recorded in ``output_dir/.napari-ecc-align.runs``); a folder so
    named (an OME-Zarr store left half-written) likewise, never through a link.

    Parameters
    ----------
    output_dir : str or os.PathLike
        The batch's output folder; searched with its subfolders (links to folders
        are not followed, and links are never removed).
    runs : iterable of str, optional
        Owner tokens (:func:`~napari_ecc_align.engine.new_owner`) whose
        files may be removed. Default: :func:`recorded_runs` of ``output_dir``.

    Returns
    -------
    list of str
        The removed paths; empty when nothing qualifies (no runs recorded, no folder).

    Raises
    ------
    ValueError
        If ``runs`` is not given and the record is no regular file (:func:`recorded_runs`).
    OSError
        If the record cannot be read, or a file that qualifies cannot be removed.
    """
    runs = recorded_runs(output_dir) if runs is None else set(runs)
    removed: list[str] = []
    if not runs:
        return removed
    for folder, dirs, files in os.walk(output_dir):  # links to folders are not followed
        for name in [d for d in dirs if temporary_owner(d) in runs]:  # half-written stores
            dirs.remove(name)
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                shutil.rmtree(path)
                removed.append(path)
        for name in files:
            if temporary_owner(name) not in runs:
                continue
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISREG(os.lstat(path).st_mode):
                    os.remove(path)
                    removed.append(path)
    return removed


@contextlib.contextmanager
def locked_folder(folder: str) -> Iterator[None]:
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
