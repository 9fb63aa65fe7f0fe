"""The ``napari-ecc-align`` command line: ``align`` two image files, ``batch``-align two
folders on Dask, ``apply`` a saved transform, or open the ``demo``.

Errors a user can fix (missing or unreadable files, bad options, a format that
cannot hold the result) print one line ``napari-ecc-align: error: ...`` and
exit with 2; an alignment that fails exits with 1. Any other exception is also
one line and exit 2, never a traceback, unless ``--debug`` asks for it. Only
``demo`` imports napari, and only when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import sys
import traceback
from collections.abc import Sequence
from functools import partial

import numpy as np

from .. import __version__
from ..engine import (
    INTENSITY_MODES,
    MOTIONS,
    NORMALIZED_FULL_SCALE,
    Alignment,
    AlignmentError,
    align,
    default_difference_mode,
    difference,
    warp,
)
from ..io import is_zarr_path
from ..io.images import atomic_output, check_writable, difference_for_file
from ..io.inputs import read_pair
from ..io.transform_files import load_transform, transform_format, write_transform
from .apply import add_apply_parser
from .demo import run_demo
from .messages import PROG, in_cli_terms, print_error, say, summarize
from .options import add_budget_option, add_debug_option, add_volume_options, same_file
from .stores import align_stores, transform_in_store, uses_stores

# Engine defaults, shown in --help and passed through unchanged: one source of truth.
_DEFAULTS = {k: p.default for k, p in inspect.signature(align).parameters.items()}


_EPILOG = f"""\
examples:
  {PROG} align page1.png scan1.jpg -o scan1_aligned.png --difference diff.png
  {PROG} align ref.tif moving.tif -o aligned.tif --motion euclidean --transform t.json
  {PROG} align ref_stack.tif mov_stack.tif -o aligned.tif --ndim 3 --spacing 3,1,1
  {PROG} align ref.ome.zarr mov.ome.zarr aligned.ome.zarr --difference diff.ome.zarr
  {PROG} batch references/ scans/ aligned/ --workers 2 --difference
  {PROG} batch references/ scans/ aligned/ --transform-out .tfm
  {PROG} apply t.tfm moving.tif aligned.tif --reference ref.tif
  {PROG} demo
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 on success, 1 when the images could not be aligned, 2 for usage,
        input and output errors (one line on stderr, no traceback).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: return, don't exit
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print_error("choose a command: align, batch, apply or demo (see --help)")
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130
    except Exception as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        return _report(exc)


def _report(exc: Exception) -> int:
    """Print ``exc`` as one line and return the exit code: 1 for a failed alignment, else 2."""
    if isinstance(exc, AlignmentError):
        print_error(in_cli_terms(str(exc)))
        return 1
    if isinstance(exc, (ValueError, TypeError)):
        print_error(in_cli_terms(str(exc)))
    elif isinstance(exc, OSError):  # FileNotFoundError, PermissionError, a full disk...
        print_error(exc)
    elif isinstance(exc, MemoryError):
        print_error(
            f"out of memory ({exc or 'MemoryError'}); try smaller images, fewer --workers, "
            "or --pyramid-levels"
        )
    else:  # a bug or a library's own error: still one line; --debug shows where
        detail = " ".join(str(exc).split())[:300]
        print_error(
            f"unexpected {type(exc).__name__}: {detail or 'no message'} "
            "(run again with --debug for the traceback, and please report it)"
        )
    return 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-ecc-align`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Align images with OpenCV's ECC algorithm (enhanced correlation coefficient).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_debug_option(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = commands.add_parser(
        "align",
        help="align MOVING onto REFERENCE and save the result",
        description="Estimate the transform that maps REFERENCE onto MOVING, resample MOVING "
        "onto the REFERENCE grid and save it. Formats: PNG, JPEG, TIFF (by extension) and "
        "OME-Zarr (.zarr folders, NGFF 0.4 or 0.5), read lazily with their pyramid and voxel "
        "size; an OME-Zarr output is written chunk by chunk, with its pyramid.",
    )
    # fmt: off
    p.add_argument("reference", metavar="REFERENCE", help="image that stays fixed")
    p.add_argument("moving", metavar="MOVING", help="image to align onto REFERENCE")
    p.add_argument("aligned", metavar="ALIGNED", nargs="?",
                   help="aligned MOVING, same dtype as MOVING, on the REFERENCE grid (or -o)")
    p.add_argument("-o", "--output", metavar="ALIGNED",
                   help="the same as ALIGNED, as an option")
    p.add_argument("--difference", metavar="DIFF",
                   help="also save |REFERENCE - ALIGNED|, zero outside the overlap. Floating-point "
                   "differences are saved as float32 in TIFF; in PNG/JPEG they are scaled so "
                   f"{NORMALIZED_FULL_SCALE:g} standard deviations (normalized mode) or the full "
                   "input range (absolute mode) is white: 255, or 65535 in a PNG when an input "
                   "has more than 8 bits")
    p.add_argument("--difference-mode", choices=("absolute", "normalized"),
                   help="'normalized' compares z-scores (for images of different dtype, gain or "
                   "contrast, e.g. binarised vs. grayscale); default: 'absolute' if both images "
                   "have the same dtype, channels and value range, else 'normalized'")
    p.add_argument("--transform", "--transform-out", dest="transform", metavar="T.json",
                   help="also save the alignment, format from the name: .json (ours: matrix, "
                   "correlation, parameters), ITK (.tfm, .txt; .mat/.h5 with SimpleITK), elastix "
                   "(TransformParameters*.txt), OME-NGFF (.ngff.json), BigWarp landmarks (.csv) "
                   "or TransformJ (.transformj.txt); physical formats carry the voxel size and "
                   "a store's origin (see `apply`)")
    p.add_argument("--init", metavar="T.json",
                   help="start from a saved transform of any --transform format (e.g. to "
                   "refine it with another motion model, or another tool's result) instead of "
                   "the automatic start")
    p.add_argument("--motion", choices=MOTIONS, default=_DEFAULTS["motion"],
                   help="motion model (default: %(default)s)")
    p.add_argument("--max-iterations", type=int, metavar="N", default=_DEFAULTS["max_iterations"],
                   help="ECC iterations per pyramid level (default: %(default)s)")
    p.add_argument("--eps", type=float, metavar="E", default=_DEFAULTS["eps"],
                   help="stop a level when the correlation gains < E (default: %(default)g)")
    p.add_argument("--pyramid-levels", type=int, metavar="N", default=_DEFAULTS["pyramid_levels"],
                   help="pyramid levels, 1 = full resolution only (default: from the image size)")
    p.add_argument("--gauss-filter-size", type=int, metavar="N",
                   default=_DEFAULTS["gauss_filter_size"],
                   help="Gaussian blur before ECC, odd, 0 = off, on every level (default: 5 on "
                   "coarse levels, 3 at full resolution)")
    p.add_argument("--intensity", choices=INTENSITY_MODES, default="auto",
                   help="'mapped' maps one image's intensities onto the other's before ECC "
                   "(multimodal pairs: T1 vs PD MRI, binarised vs grayscale), 'linear' is plain "
                   "ECC, 'auto' maps when that explains the pair markedly better "
                   "(default: %(default)s)")
    p.add_argument("--interpolation", choices=("linear", "nearest", "cubic"), default="linear",
                   help="resampling of the aligned image (default: %(default)s)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="compute and write OME-Zarr outputs on this running dask.distributed "
                   "scheduler (default: local threads)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    # fmt: on
    add_volume_options(p)
    add_budget_option(p)
    add_debug_option(p)
    p.set_defaults(func=_cmd_align)
    _add_batch_parser(commands)
    add_apply_parser(commands)

    d = commands.add_parser(
        "demo",
        help="open napari with a misaligned sample pair",
        description="Open napari with a misaligned sample pair (binarised score vs. grayscale\n"
        "scan) and the alignment widget. Needs napari with a Qt binding:\n"
        '  pip install "napari-ecc-align[all]"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument(
        "--screenshot",
        metavar="PATH",
        help="align the pair without showing a "
        "window, save a screenshot of the viewer to PATH and exit",
    )
    sample = d.add_mutually_exclusive_group()
    sample.add_argument(
        "--stack",
        action="store_true",
        help="use the drifting time-lapse sample (stack alignment and its drift plot) instead",
    )
    sample.add_argument(
        "--volume",
        action="store_true",
        help="use the two-channel volume pair instead, shown in 3D (the screenshot is of the "
        "canvas)",
    )
    add_debug_option(d)
    d.set_defaults(func=run_demo)
    return parser


# ------------------------------------------------------------------------------------- batch
def _add_batch_parser(commands) -> None:
    from ..engine import SEARCHES

    b = commands.add_parser(
        "batch",
        help="align every image of a folder onto its partner in another, on Dask",
        description="Align every image under MOVING_DIR onto the file with the same relative "
        "path under REFERENCE_DIR (or the pairs listed by --pairs) and write, per pair, the "
        "aligned image, <stem>.transform.json (written last: it marks a complete pair) and "
        "with --difference <stem>.difference.png, then OUTPUT_DIR/alignment.csv. Runs one "
        "Dask task per pair on a local cluster, or on --scheduler. Pairs already complete are "
        "skipped (resume after an interruption); pairs that fail are listed in the CSV and "
        "the others go on. Exit status: 0 if every pair is aligned, 1 if any failed, 2 for "
        "bad arguments (nothing written).",
    )
    # fmt: off
    b.add_argument("reference_dir", metavar="REFERENCE_DIR", help="folder of reference images")
    b.add_argument("moving_dir", metavar="MOVING_DIR", help="folder of images to align")
    b.add_argument("output_dir", metavar="OUTPUT_DIR",
                   help="where results go (sub-folders kept); not inside an input folder")
    b.add_argument("--pattern", metavar="GLOB",
                   help="moving files to take, e.g. '*.tif' (file name) or 'day1/*.png' (relative "
                   "path), case-insensitive (default: every .png .jpg .jpeg .tif .tiff, recursive)")
    b.add_argument("--pairs", metavar="PAIRS.csv",
                   help="CSV with a header reference,moving[,output] listing the pairs instead; "
                   "paths relative to REFERENCE_DIR, MOVING_DIR and OUTPUT_DIR, or absolute")
    b.add_argument("--motion", choices=MOTIONS, default=_DEFAULTS["motion"],
                   help="motion model (default: %(default)s)")
    b.add_argument("--init", metavar="I", default=_DEFAULTS["init"],
                   help=f"initialisation: {', '.join(('identity', *SEARCHES))}, or a T.json "
                   "transform whose matrix starts every pair (default: %(default)s)")
    b.add_argument("--difference", action="store_true",
                   help="also save <stem>.difference.png (.tif if an input is floating point)")
    b.add_argument("--transform-out", metavar="SUFFIX",
                   help="also save each transform as <stem>SUFFIX, format from the suffix: .tfm "
                   "(ITK), .TransformParameters.txt (elastix), .ngff.json, .csv (BigWarp) or "
                   ".transformj.txt")
    b.add_argument("--workers", type=int, metavar="N",
                   help="worker processes of the local cluster (default: one per CPU)")
    b.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786; its workers "
                   "must see the same paths")
    b.add_argument("--overwrite", action="store_true",
                   help="align every pair again, even those whose outputs are complete")
    b.add_argument("--fail-fast", action="store_true",
                   help="stop at the first failed pair and cancel the rest")
    b.add_argument("--keep-jpeg", action="store_true",
                   help="save aligned JPEGs as JPEG (lossy) instead of lossless PNG")
    b.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar; print only failures")
    # fmt: on
    add_volume_options(b)
    add_budget_option(b)
    add_debug_option(b)
    b.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import batch_align

    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {args.workers}")
    if args.workers is not None and args.scheduler:
        raise ValueError("--workers and --scheduler exclude each other: a cluster has its workers")
    if args.pattern is not None and args.pairs is not None:
        raise ValueError("--pattern and --pairs exclude each other: the CSV lists the pairs")
    report = batch_align(
        args.reference_dir,
        args.moving_dir,
        args.output_dir,
        pattern=args.pattern,
        pairs_csv=args.pairs,
        motion=args.motion,
        init=args.init,
        difference=args.difference,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
        fail_fast=args.fail_fast,
        keep_jpeg=args.keep_jpeg,
        ndim=args.ndim,
        spacing=args.spacing,
        max_pixels=args.max_pixels,
        progress=not args.quiet,
        transform_out=args.transform_out,
    )
    if report.ok:
        if not args.quiet:
            say(report.summary())
        return 0
    first = report.failed[0] if report.failed else None
    if report.stopped and first is not None:
        print_error(
            f"stopped at the first failure ({first['pair']}: {first['error']}); {report.summary()}"
        )
    else:
        print_error(report.summary())
    return 1


# ------------------------------------------------------------------------------------- align
def _cmd_align(args: argparse.Namespace) -> int:
    _output_name(args)
    _check_paths(args)
    if args.transform:  # a name of no known format fails before any work
        kind = transform_format(args.transform)
        if args.motion == "homography" and kind not in ("json", "bigwarp"):
            raise ValueError(f"--transform: {kind} files hold no homography; use .json or .csv")
        if is_zarr_path(args.transform) and not transform_in_store(args):
            raise ValueError(
                f"--transform {args.transform}: a store gets the OME-NGFF document inside; "
                "name the aligned store (ALIGNED) or a .ngff.json file"
            )
    if uses_stores(args):
        if args.init:
            transform_format(args.init)  # a name of no known format fails before any work
        reader = partial(_read_init, args.init, budget=args.max_pixels) if args.init else None
        alignment = align_stores(args, _estimate_options(args), reader)
        if not args.quiet:
            say(summarize(alignment))
        return 0
    _check_extensions(args, volume=args.ndim == 3)  # before reading anything
    pair = read_pair(
        args.reference, args.moving, ndim=args.ndim, spacing=args.spacing,
        max_pixels=args.max_pixels,
    )  # fmt: skip
    if pair.ndim == 3:  # perhaps found to be volumes by their metadata
        _check_extensions(args, volume=True)
    # The aligned image has MOVING's dtype and channels on REFERENCE's grid: make sure the
    # output format can hold it before spending time on the alignment.
    pair.check_output(args.output)
    mode = args.difference_mode or default_difference_mode(
        pair.reference, pair.moving, ndim=pair.ndim
    )
    if args.difference and mode == "absolute" and not pair.same_channels:
        raise ValueError(
            f"--difference-mode absolute needs images with the same channels, got "
            f"{pair.reference.shape} and {pair.moving.shape}; use --difference-mode normalized"
        )

    init = None
    if args.init:
        shapes = (pair.reference.shape[: pair.ndim], pair.moving.shape[: pair.ndim])
        geometry = {"reference_spacing": pair.spacing} if pair.ndim == 3 else {}
        init = _read_init(args.init, pair.ndim, shapes, geometry, budget=args.max_pixels)
    alignment = align(
        pair.reference, pair.moving, init=init, **_estimate_options(args), **pair.align_keywords
    )
    aligned = warp(pair.moving, alignment, interpolation=args.interpolation)
    diff = None
    if args.difference:  # computed before anything is written: a failure writes nothing
        diff = difference(pair.reference, aligned, mode=mode, alignment=alignment)
        diff = difference_for_file(diff, args.difference, mode, pair.reference, pair.moving)
    # Every output goes to its temporary file first; they are renamed into place together
    # only when all are written, so a failure leaves the old files and no partial result.
    with contextlib.ExitStack() as outputs:
        names = [path for path in (args.output, args.difference, args.transform) if path]
        temporary = {path: outputs.enter_context(atomic_output(path)) for path in names}
        pair.write(temporary[args.output], aligned, atomic=False)
        if diff is not None:
            pair.write(temporary[args.difference], diff, atomic=False)
        if args.transform:
            spacing = {"reference_spacing": pair.spacing} if pair.ndim == 3 else {}
            write_transform(alignment, temporary[args.transform], args.transform, spacing)
    if not args.quiet:
        say(summarize(alignment))
    return 0


def _output_name(args: argparse.Namespace) -> None:
    """ALIGNED given as the third argument or as -o, once."""
    if args.aligned and args.output and args.aligned != args.output:
        raise ValueError(f"ALIGNED {args.aligned} and -o {args.output} differ; give one of them")
    args.output = args.output or args.aligned
    if not args.output:
        raise ValueError("give the aligned image's name: align REFERENCE MOVING ALIGNED (or -o)")


def _estimate_options(args: argparse.Namespace) -> dict:
    return {
        "motion": args.motion,
        "max_iterations": args.max_iterations,
        "eps": args.eps,
        "pyramid_levels": args.pyramid_levels,
        "gauss_filter_size": args.gauss_filter_size,
        "intensity": args.intensity,
    }


def _check_extensions(args: argparse.Namespace, *, volume: bool) -> None:
    """The output names' formats (any format takes uint8 images; only TIFF volumes)."""
    for path in (args.output, args.difference):
        if path:
            check_writable(path, np.uint8, volume=volume)


def _read_init(path: str, ndim: int | None, shapes, geometry: dict, budget=None) -> np.ndarray:
    """The start matrix of ``--init``: a transform file of any format, fitted to the
    images' ``shapes`` and ``geometry`` (ours holds its own), of their dimensionality."""
    try:
        if transform_format(path) == "json":  # refuses folders, FIFOs and hostile JSON
            init = Alignment.from_json(path, max_pixels=budget)
        else:
            init = load_transform(path, reference_shape=shapes[0], moving_shape=shapes[1],
                                  max_pixels=budget, **geometry)  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise type(exc)(
            f"--init must be a transform file (any format of --transform): {exc}"
        ) from None
    except OSError as exc:  # say which option named the file
        raise OSError(exc.errno, f"--init: {exc.strerror}", exc.filename) from None
    if ndim is not None and init.ndim != ndim:
        kinds = {2: "2D images", 3: "volumes"}
        raise ValueError(
            f"--init {path} holds a transform of {kinds[init.ndim]} "
            f"({init.matrix.shape[0]}x{init.matrix.shape[1]}) but the inputs are {kinds[ndim]}; "
            f"give one saved by --transform from {kinds[ndim]}"
        )
    return init.matrix


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse outputs that would overwrite an input or each other."""
    inputs = {"REFERENCE": args.reference, "MOVING": args.moving}
    if args.init:
        inputs["--init"] = args.init
    transform = None if transform_in_store(args) else args.transform  # inside ALIGNED: allowed
    outputs = {"-o": args.output, "--difference": args.difference, "--transform": transform}
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        if not path:
            continue
        for name, source in inputs.items():
            if same_file(path, source):
                raise ValueError(
                    f"{option} {path} would overwrite the input {name}; choose another output name"
                )
        for other, other_path in seen.items():
            if same_file(path, other_path):
                raise ValueError(f"{option} and {other} both name {path}; choose two names")
        seen[option] = path


if __name__ == "__main__":
    sys.exit(main())
