"""``align`` when an input or an output is an OME-Zarr store: the stores are opened
lazily, the aligned image and the difference are computed chunk by chunk as they are
written (on local threads, or on ``--scheduler``), and every output is renamed into
place only when all of them are complete.

A file input (PNG, JPEG, TIFF) beside a store is read whole; an output that is a file
is computed in memory (within the pixel budget) and written as today.
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np

from ..engine import (
    align,
    default_difference_mode,
    difference,
    max_pixels,
    warp,
)
from ..io import is_zarr_path
from ..io.images import atomic_output, check_writable
from ..io.sources import difference_for_output, open_pair, save_output, transform_geometry
from ..io.transform_files import save_transform, write_transform


def transform_in_store(args: argparse.Namespace) -> bool:
    """Whether ``--transform`` names the aligned store itself: the OME-NGFF document then
    goes inside it, once it is written."""
    if not (args.transform and args.output and is_zarr_path(args.transform)):
        return False
    return os.path.realpath(args.transform) == os.path.realpath(args.output)


def uses_stores(args: argparse.Namespace) -> bool:
    """Whether any input or output of ``align`` is an OME-Zarr store."""
    names = (args.reference, args.moving, args.output, args.difference)
    return any(is_zarr_path(name) for name in names if name)


def align_stores(args: argparse.Namespace, estimate_options: dict, read_init=None):
    """Align, then write every output; returns the alignment. ``read_init(ndim, shapes,
    geometry)``: the start matrix from ``--init``, given the opened images."""
    limit = max_pixels(args.max_pixels)
    for path in (args.output, args.difference):
        if path and not is_zarr_path(path):
            check_writable(path, np.uint8, volume=args.ndim == 3)
    reference, moving, geometry = open_pair(
        args.reference, args.moving, ndim=args.ndim, spacing=args.spacing, max_pixels=limit
    )
    physical = transform_geometry(geometry, reference, moving)
    if read_init is not None:
        shapes = tuple(tuple(source.shape[: geometry.ndim]) for source in (reference, moving))
        estimate_options = estimate_options | {"init": read_init(geometry.ndim, shapes, physical)}
    alignment = align(reference, moving, ndim=geometry.ndim, spacing=geometry.volume_spacing,
                      **estimate_options)  # fmt: skip
    aligned = warp(moving.image, alignment, interpolation=args.interpolation)
    diff = None
    if args.difference:
        mode = args.difference_mode or default_difference_mode(
            reference.image, moving.image, ndim=geometry.ndim
        )
        diff = difference(reference.image, aligned, mode=mode, alignment=alignment)
        diff = difference_for_output(diff, args.difference, mode, reference, moving, limit)
    written = {"scheduler": args.scheduler, "progress": not args.quiet, "max_pixels": limit}
    with contextlib.ExitStack() as outputs:
        save_output(args.output, aligned, geometry, outputs=outputs, **written)
        if diff is not None:
            save_output(args.difference, diff, geometry, outputs=outputs, what="difference",
                        **written)  # fmt: skip
        if args.transform and not transform_in_store(args):
            target = outputs.enter_context(atomic_output(args.transform))
            write_transform(alignment, target, args.transform, physical)
    if transform_in_store(args):  # the store is in place now: its document goes inside
        save_transform(alignment, args.output, "ngff", **physical)
    return alignment
