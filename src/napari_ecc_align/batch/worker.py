"""One pair on one worker: read, align, warp and write its outputs, never raising."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import cv2
import numpy as np

from ..engine import Alignment, write_text_atomic
from ..io import is_zarr_path
from ..io.images import atomic_output, check_writable, write_image
from ..io.inputs import read_pair
from ..io.volumes import write_volume
from .pairs import DIFFERENCE_SUFFIXES, PairJob

# PNG encoder settings for the outputs (lossless either way). zlib level 1 with the RLE
# strategy writes an 8 MP grayscale page in ~0.27 s instead of Pillow's ~1-2 s at level 6,
# and the file is smaller; for colour, level 3 with the default strategy is the better trade.
_PNG_GRAY = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
_PNG_COLOUR = [cv2.IMWRITE_PNG_COMPRESSION, 3]


# ------------------------------------------------------------------------ one pair, on a worker
def align_pair(job: PairJob) -> dict[str, Any]:
    """Align one pair of files and write its outputs; return its CSV row.

    Runs on a Dask worker (or anywhere). Never raises for a pair that cannot be
    read, aligned or written: the row says ``failed`` and why.
    """
    from ..stack import single_threaded

    start = time.perf_counter()
    if job.problem:
        return job.row("failed", job.problem, 0.0)
    try:
        # The workers are the parallelism: OpenCV and BLAS on one thread each.
        with single_threaded():
            alignment = _align_files(job)
    except Exception as exc:  # recorded in the CSV, never swallowed
        return job.row("failed", describe_failure(exc), time.perf_counter() - start)
    return job.result_row(alignment, "ok")


def _align_files(job: PairJob) -> Alignment:
    from ..engine import align, default_difference_mode, difference, warp
    from ..io.images import difference_for_file

    if job.is_store or any(is_zarr_path(p) for p in (job.reference, job.moving)):
        import dask

        # The stores' chunks are read and written on this worker's own threads: on the
        # cluster's default scheduler the task would wait for tasks queued behind itself.
        with dask.config.set(scheduler="threads"):
            return _align_stores(job)

    pair = read_pair(
        job.reference, job.moving, ndim=job.ndim, spacing=job.spacing, max_pixels=job.max_pixels
    )
    pair.check_output(job.aligned)
    init = np.asarray(job.init, dtype=np.float64) if not isinstance(job.init, str) else job.init
    alignment = align(pair.reference, pair.moving, motion=job.motion, init=init,
                      **pair.align_keywords)  # fmt: skip
    aligned = warp(pair.moving, alignment)

    def save(path: str, array: np.ndarray) -> None:
        if pair.ndim == 2:
            save_image(path, array, owner=job.owner)
        else:  # volumes carry the voxel size
            with atomic_output(path, owner=job.owner) as tmp:
                write_volume(tmp, array, spacing=pair.spacing, unit=pair.unit, atomic=False)

    # The JSON marks a complete pair: take it away before replacing any output (not sooner:
    # a pair that cannot be read or aligned keeps its earlier, complete result).
    with contextlib.suppress(FileNotFoundError):
        os.remove(job.transform)
    save(job.aligned, aligned)
    if job.difference:
        mode = default_difference_mode(pair.reference, pair.moving, ndim=pair.ndim)
        floating = any(a.dtype.kind == "f" for a in (pair.reference, pair.moving))
        path = job.stem + DIFFERENCE_SUFFIXES[1 if floating or pair.ndim == 3 else 0]
        diff = difference(pair.reference, aligned, mode=mode, alignment=alignment)
        save(path, difference_for_file(diff, path, mode, pair.reference, pair.moving))
    if job.transform_out:
        spacing = pair.spacing if pair.ndim == 3 else None
        save_transform_file(job, alignment, {"reference_spacing": spacing})
    # Last: now the pair is complete (the same text as alignment.to_json(path) writes).
    write_text_atomic(job.transform, alignment.to_json() + "\n", owner=job.owner)
    return alignment


def save_transform_file(job: PairJob, alignment: Alignment, geometry: dict) -> None:
    """The pair's transform in the format ``job.transform_out`` names, with the images'
    geometry (``save_transform``'s keywords) for the physical formats."""
    from ..io.transform_files import write_transform

    with atomic_output(job.extra_transform, owner=job.owner) as tmp:
        write_transform(alignment, tmp, job.extra_transform, geometry)


def _align_stores(job: PairJob) -> Alignment:
    """A pair with an OME-Zarr store among its inputs or outputs: read lazily, each store
    output written chunk by chunk on this worker's threads."""
    from ..engine import align, default_difference_mode, difference, warp
    from ..io.sources import difference_for_output, open_pair, save_output, transform_geometry

    reference, moving, geometry = open_pair(
        job.reference, job.moving, ndim=job.ndim, spacing=job.spacing, max_pixels=job.max_pixels
    )
    init = np.asarray(job.init, dtype=np.float64) if not isinstance(job.init, str) else job.init
    alignment = align(reference, moving, motion=job.motion, init=init, ndim=geometry.ndim,
                      spacing=geometry.volume_spacing)  # fmt: skip
    aligned = warp(moving.image, alignment)
    with contextlib.suppress(FileNotFoundError):  # as for files: the JSON marks a complete pair
        os.remove(job.transform)
    with contextlib.ExitStack() as outputs:
        save_output(job.aligned, aligned, geometry, outputs=outputs, owner=job.owner,
                    max_pixels=job.max_pixels)  # fmt: skip
    if job.difference:
        mode = default_difference_mode(reference.image, moving.image, ndim=geometry.ndim)
        diff = difference(reference.image, aligned, mode=mode, alignment=alignment)
        if job.is_store:
            path = job.stem + DIFFERENCE_SUFFIXES[2]
        else:
            floating = any(s.dtype.kind == "f" for s in (reference, moving))
            path = job.stem + DIFFERENCE_SUFFIXES[1 if floating or geometry.ndim == 3 else 0]
        diff = difference_for_output(diff, path, mode, reference, moving, job.max_pixels)
        with contextlib.ExitStack() as outputs:
            save_output(path, diff, geometry, outputs=outputs, owner=job.owner,
                        max_pixels=job.max_pixels, what="difference")  # fmt: skip
    if job.transform_out:
        save_transform_file(job, alignment, transform_geometry(geometry, reference, moving))
    write_text_atomic(job.transform, alignment.to_json() + "\n", owner=job.owner)
    return alignment


def save_image(path: str, array: np.ndarray, *, owner: str | None = None) -> None:
    """:func:`~napari_ecc_align.io.write_image`, with faster lossless PNG settings.

    PNGs with 1, 3 or 4 channels are encoded by OpenCV (see ``_PNG_GRAY``) and
    renamed into place like every other write; anything else goes through
    ``write_image``. ``owner`` names the temporary file (see
    :func:`~napari_ecc_align.io.images.atomic_output`).
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    fmt = check_writable(path, arr.dtype, arr.shape)
    channels = 0 if arr.ndim == 2 else arr.shape[-1]
    if fmt != "PNG" or channels not in (0, 3, 4):
        with atomic_output(path, owner=owner) as tmp:
            write_image(tmp, arr, atomic=False)
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
    with atomic_output(path, owner=owner) as tmp:
        buffer.tofile(tmp)


def describe_failure(exc: BaseException) -> str:
    """One line for the CSV. Expected failures speak for themselves; others name their type."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc) or type(exc).__name__
        from ..engine import AlignmentError

        if not isinstance(exc, (AlignmentError, ValueError, TypeError, OSError, MemoryError)):
            message = f"{type(exc).__name__}: {message}"
    return " ".join(message.split())
