"""``apply``: resample an image or volume with a saved transform of any format.

The output lies on the reference grid: ``--reference``'s (its shape, voxel size and
origin), else the one the transform file stores (ours, elastix), else the moving
image's own. A transform that does not fit is refused with the reason before anything
is written: another dimensionality, or (for our JSON) a moving image of another shape
than the one it was estimated for.
"""

from __future__ import annotations

import argparse
import contextlib

import numpy as np

from ..engine import MOTIONS, max_pixels, warp
from ..io import is_zarr_path
from ..io.images import check_writable
from ..io.sources import Geometry, open_source, save_output, stated_geometry
from ..io.transform_files import FORMATS, file_format, load_transform
from .messages import say
from .options import add_budget_option, add_debug_option, add_volume_options, same_file

_STORED_GRID = ("json", "elastix")  # formats that carry the reference's shape


def add_apply_parser(commands) -> None:
    """The ``apply`` subcommand's parser, on ``commands`` (argparse sub-parsers)."""
    a = commands.add_parser(
        "apply",
        help="resample an image or volume with a saved transform (any format)",
        description="Resample MOVING onto the reference grid with TRANSFORM: ours (.json), "
        "ITK (.tfm, .txt, .mat, .h5), elastix (TransformParameters*.txt), OME-NGFF "
        "(.ngff.json, or an OME-Zarr store holding transform.ngff.json), BigWarp landmarks "
        "(.csv) or TransformJ (.transformj.txt). The grid is --reference's, else the one the "
        "transform stores (ours, elastix), else MOVING's own. Physical formats use the "
        "images' voxel size and origin from their metadata (or --spacing).",
    )
    # fmt: off
    a.add_argument("transform", metavar="TRANSFORM", help="the saved transform")
    a.add_argument("moving", metavar="MOVING", help="image or volume to resample")
    a.add_argument("output", metavar="OUTPUT",
                   help="the resampled image (PNG, JPEG, TIFF or an OME-Zarr store)")
    a.add_argument("--reference", metavar="REF",
                   help="an image on the grid to resample onto (read for its shape, voxel size "
                   "and origin; a store is not loaded)")
    a.add_argument("--format", choices=FORMATS,
                   help="TRANSFORM's format (default: from its name and contents)")
    a.add_argument("--motion", choices=MOTIONS,
                   help="for BigWarp landmarks: the motion fitted to them (default: affine)")
    a.add_argument("--interpolation", choices=("linear", "nearest", "cubic"), default="linear",
                   help="resampling (default: %(default)s)")
    a.add_argument("--scheduler", metavar="ADDRESS",
                   help="compute and write an OME-Zarr output on this dask.distributed scheduler")
    a.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    # fmt: on
    add_volume_options(a)
    add_budget_option(a)
    add_debug_option(a)
    a.set_defaults(func=run_apply)


def run_apply(args: argparse.Namespace) -> int:
    """Run ``apply``; returns the exit code (errors raise, as the other commands')."""
    kind = file_format(args.transform, args.format)  # name and contents; unknown: fails first
    _check_names(args)
    limit = max_pixels(args.max_pixels)
    if not is_zarr_path(args.output):
        check_writable(args.output, np.uint8, volume=args.ndim == 3)
    moving = open_source(args.moving, ndim=args.ndim, max_pixels=limit)
    reference = None
    if args.reference:
        reference = open_source(args.reference, ndim=moving.ndim, max_pixels=limit)
    alignment = _load(args, kind, moving, reference)
    geometry = _output_geometry(alignment, reference, args.spacing)
    aligned = warp(moving.image, alignment, interpolation=args.interpolation)
    with contextlib.ExitStack() as outputs:
        save_output(args.output, aligned, geometry, outputs=outputs, scheduler=args.scheduler,
                    progress=not args.quiet, max_pixels=limit)  # fmt: skip
    if not args.quiet:
        shape = "x".join(str(n) for n in alignment.reference_shape)
        say(f"applied {alignment.motion} transform ({kind}) to {args.moving}: {args.output} "
            f"({shape})")  # fmt: skip
    return 0


def _check_names(args: argparse.Namespace) -> None:
    for name, path in (("TRANSFORM", args.transform), ("MOVING", args.moving),
                       ("--reference", args.reference)):  # fmt: skip
        if path and same_file(args.output, path):
            raise ValueError(f"OUTPUT {args.output} would overwrite {name}; choose another name")


def _space_shape(source) -> tuple[int, ...]:
    return tuple(int(n) for n in source.shape[: source.ndim])


def _stated(source, spacing):
    """``(spacing, origin)`` of a source in array order: ``--spacing`` for volumes, else
    what its metadata states (None where it states nothing)."""
    if source is None:
        return None, None
    stated, origin = stated_geometry(source)
    if spacing is not None and source.ndim == 3:
        stated = tuple(spacing)
    return stated, origin


def _load(args, kind: str, moving, reference):
    """The transform, fitted to the images, or a ValueError saying why it does not fit."""
    moving_shape = _space_shape(moving)
    reference_shape = _space_shape(reference) if reference is not None else None
    moving_spacing, moving_origin = _stated(moving, args.spacing)
    reference_spacing, reference_origin = _stated(reference, args.spacing)
    if reference is None and kind != "elastix":  # else the file's grid says
        reference_spacing = moving_spacing
    # The grid: ours and elastix files store theirs (checked against --reference below),
    # else --reference's, else MOVING's.
    given_shape = None if kind in _STORED_GRID else reference_shape or moving_shape
    alignment = load_transform(
        args.transform, format=kind, motion=args.motion, max_pixels=args.max_pixels,
        reference_shape=given_shape, moving_shape=moving_shape,
        reference_spacing=reference_spacing, reference_origin=reference_origin,
        moving_spacing=moving_spacing, moving_origin=moving_origin,
    )  # fmt: skip
    kinds = {2: "2D image", 3: "volume"}
    if alignment.ndim != moving.ndim:
        hint = " (pass --ndim 3 to read a TIFF as a volume)" if alignment.ndim == 3 else ""
        raise ValueError(f"{args.transform} holds a transform of {kinds[alignment.ndim]}s, but "
                         f"MOVING is a {kinds[moving.ndim]}{hint}")  # fmt: skip
    if tuple(alignment.moving_shape[: moving.ndim]) != moving_shape:
        raise ValueError(
            f"{args.transform} was estimated for a moving image of {alignment.moving_shape}; "
            f"MOVING is {moving_shape}: apply it to the image it was made for"
        )
    if reference_shape is not None and tuple(alignment.reference_shape) != reference_shape:
        raise ValueError(
            f"{args.transform} resamples onto a grid of {alignment.reference_shape}, but "
            f"--reference is {reference_shape}"
        )
    return alignment


def _output_geometry(alignment, reference, spacing) -> Geometry:
    """What the output carries: the reference's voxel size, unit and origin; without
    ``--reference``, the grid the file states (elastix), else a volume's voxel size."""
    ndim = alignment.ndim
    if reference is not None:
        stated, origin = _stated(reference, spacing)
        voxels = getattr(reference, "voxels", None)
        unit = getattr(reference, "unit", None) or getattr(voxels, "unit", None)
        return Geometry(ndim, stated, unit, origin)
    grid = alignment.parameters.get("grid") or {}
    stated = grid.get("spacing") or (alignment.parameters.get("spacing") if ndim == 3 else None)
    return Geometry(ndim, tuple(stated) if stated else None, None,
                    tuple(grid["origin"]) if "origin" in grid else None)  # fmt: skip
