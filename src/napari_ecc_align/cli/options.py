"""Options the commands share: the pixel budget, volumes' ``--ndim``/``--spacing`` and
``--debug``, with their argparse types."""

from __future__ import annotations

import argparse
import math
import os

from ..engine import DEFAULT_MAX_PIXELS, ENV_VAR, check_spacing, max_pixels


def add_budget_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-pixels",
        type=max_pixels_option,
        metavar="N",
        help="refuse images or volumes declaring more than N pixels (voxels) before reading "
        f"them, e.g. 1e9 or inf (default: ${ENV_VAR} if set, else {DEFAULT_MAX_PIXELS:,})",
    )


def max_pixels_option(text: str) -> int | float:
    """argparse type of --max-pixels: a positive whole number (1e9 is fine) or inf."""
    try:
        return max_pixels(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number of pixels (e.g. 1e9) or inf, got {text!r}"
        ) from None


def add_debug_option(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    # Commands default to SUPPRESS so that `--debug align ...` is not undone by the command.
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="on an error, also print the Python traceback (for bug reports)",
    )


def add_volume_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ndim",
        type=int,
        choices=(2, 3),
        help="3: the inputs are multi-page TIFF volumes (z, y, x); 2: 2D images. Default: "
        "volumes when a file's ImageJ or OME metadata says it is a z-stack, else 2D images",
    )
    parser.add_argument(
        "--spacing",
        type=spacing_option,
        metavar="DZ,DY,DX",
        help="voxel size of the volumes, e.g. 3,1,1, in the reference's unit if its metadata "
        "names one (default: the reference's ImageJ or OME metadata; isotropic without)",
    )


def spacing_option(text: str) -> tuple[float, float, float]:
    """argparse type of --spacing: three positive numbers separated by commas."""
    expected = f"expected three positive numbers dz,dy,dx (e.g. 3,1,1), got {text!r}"
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(expected) from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(expected)
    try:
        return check_spacing(values)
    except ValueError as exc:  # out of range or too anisotropic: say so
        raise argparse.ArgumentTypeError(str(exc)) from None


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (links, case-insensitive file systems too)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, case-insensitive file systems
    except OSError:
        return False
