"""``align`` when an input or an output is an OME-Zarr store: the stores are opened
lazily, the aligned image and the difference are computed chunk by chunk as they are
written (on local threads, or on ``--scheduler``), and every output is renamed into
place only when all of them are complete.

A file input (PNG, JPEG, TIFF) beside a store is read as :func:`read_image` or, for a
volume, :func:`read_volume` reads it; an output that is a file is computed in memory
(within the pixel budget) and written as today.
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import dataclass

import numpy as np

from ..engine import align, check_pixels, default_difference_mode, difference, max_pixels, warp
from ..io import is_zarr_path, read_image, read_ome_zarr, read_volume
from ..io.images import atomic_output, check_writable, difference_for_file, write_image
from ..io.ome_zarr import atomic_store, write_ome_zarr
from ..io.volumes import write_volume


@dataclass(frozen=True)
class FileImage:
    """An image or volume read from a file, as an engine source."""

    image: np.ndarray
    ndim: int
    voxel_spacing: tuple[float, ...] | None = None
    unit: str | None = None

    @property
    def origin(self) -> None:
        return None


def uses_stores(args: argparse.Namespace) -> bool:
    """Whether any input or output of ``align`` is an OME-Zarr store."""
    names = (args.reference, args.moving, args.output, args.difference)
    return any(is_zarr_path(name) for name in names if name)


def align_stores(args: argparse.Namespace, estimate_options: dict):
    """Align, then write every output; returns the alignment."""
    limit = max_pixels(args.max_pixels)
    for path in (args.output, args.difference):
        if path and not is_zarr_path(path):
            check_writable(path, np.uint8, volume=args.ndim == 3)
    stores = [read_ome_zarr(p) if is_zarr_path(p) else None for p in (args.reference, args.moving)]
    ndim = args.ndim or (3 if any(s is not None and s.ndim == 3 for s in stores) else 2)
    reference, moving = (
        store if store is not None else _read_file(path, ndim, limit)
        for store, path in zip(stores, (args.reference, args.moving), strict=True)
    )
    alignment = align(reference, moving, ndim=ndim, spacing=args.spacing, **estimate_options)
    aligned = warp(moving.image, alignment, interpolation=args.interpolation)
    diff = None
    if args.difference:
        mode = args.difference_mode or default_difference_mode(
            reference.image, moving.image, ndim=ndim
        )
        diff = difference(reference.image, aligned, mode=mode, alignment=alignment)
    spacing = args.spacing or reference.voxel_spacing or moving.voxel_spacing
    geometry = {
        "ndim": ndim,
        "spacing": spacing,
        "unit": getattr(reference, "unit", None),
        "origin": reference.origin,
    }
    with contextlib.ExitStack() as outputs:
        for path, image, what in ((args.output, aligned, "aligned"), (args.difference, diff, "")):
            if not path:
                continue
            if is_zarr_path(path):
                folder = outputs.enter_context(atomic_store(path))
                write_ome_zarr(folder, image, atomic=False, scheduler=args.scheduler,
                               progress=not args.quiet, **geometry)  # fmt: skip
                continue
            check_pixels(image.shape, f"the {what or 'difference'} image", limit)
            data = np.asarray(image)
            if not what:
                data = difference_for_file(data, path, mode, _sample(reference), _sample(moving))
            target = outputs.enter_context(atomic_output(path))
            if ndim == 3:
                write_volume(target, data, spacing=spacing, unit=geometry["unit"], atomic=False)
            else:
                write_image(target, data, atomic=False)
        if args.transform:
            alignment.to_json(outputs.enter_context(atomic_output(args.transform)))
    return alignment


def _sample(source) -> np.ndarray:
    """An array with the source's dtype and value range: a store's coarsest level."""
    if isinstance(source, FileImage):
        return source.image
    return np.asarray(source.levels[-1])


def _read_file(path, ndim: int, limit) -> FileImage:
    if ndim == 3:
        volume, voxels = read_volume(path, max_pixels=limit)
        return FileImage(volume, 3, voxels.spacing, voxels.unit)
    return FileImage(read_image(path, max_pixels=limit), 2)
