"""The pixel budget: the largest image or volume that is read, loaded or allocated.

A 150-byte TIFF can declare 100 000 × 100 000 pixels, and a transform JSON a
reference shape of a million by a million; without a limit the first allocation
is the error. Every reader and loader checks the *declared* size against the
budget before it allocates anything:

* the ``max_pixels`` argument, when given;
* else the environment variable ``NAPARI_ECC_ALIGN_MAX_PIXELS`` (read at each
  call, so it also reaches Dask worker processes started after it is set);
* else :data:`DEFAULT_MAX_PIXELS`.

The budget counts pixels (voxels) of one image, not bytes and not colour
channels: an RGB image of 16384 × 16384 and a 256 × 1024 × 1024 volume are both
at the default limit. Files meant to be bigger can be read with a larger budget,
or memory-mapped and opened lazily (tifffile, zarr), which no check stands in
front of.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

ENV_VAR = "NAPARI_ECC_ALIGN_MAX_PIXELS"
# 2**28 = 268 435 456 pixels: a 16384² image, a 256 × 1024 × 1024 volume (512 MiB of uint16).
DEFAULT_MAX_PIXELS = 2**28
HOW_TO_RAISE = (
    f"if the image is meant to be this big, raise the limit with max_pixels=N, "
    f"the environment variable {ENV_VAR}=N or the command-line option --max-pixels N"
)


class PixelBudgetError(ValueError):
    """An image, volume or shape declares more pixels than the budget allows.

    A :class:`ValueError`, so code that catches bad input catches it too; its
    message names the declared size, the limit and how to raise it.
    """


def max_pixels(value=None) -> int | float:
    """The pixel budget in force: ``value``, else the environment variable, else the default.

    Parameters
    ----------
    value : int or float, optional
        A positive whole number, or ``math.inf`` for no limit.

    Returns
    -------
    int or float
        The limit (``math.inf`` when switched off).

    Raises
    ------
    ValueError
        If ``value`` (or the environment variable) is not a positive whole number or inf.
    """
    if value is None:
        text = os.environ.get(ENV_VAR, "").strip()
        if not text:
            return DEFAULT_MAX_PIXELS
        return _parse(text, f"the environment variable {ENV_VAR}")
    return _parse(value, "max_pixels")


def _parse(value, name: str) -> int | float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive whole number or inf, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{name} must be a positive whole number or inf, got {value!r}") from None
    if number == math.inf:
        return math.inf
    if not (number >= 1 and number.is_integer()):
        raise ValueError(f"{name} must be a positive whole number or inf, got {value!r}")
    return int(number)


def pixel_count(shape: Iterable[int]) -> int:
    """The product of ``shape`` as an exact Python integer (no overflow).

    Parameters
    ----------
    shape : iterable of int
        Axis lengths; Python or numpy integers, or anything ``int()`` accepts.

    Returns
    -------
    int
        The number of pixels (voxels); 1 for an empty shape. Unlike
        ``numpy.prod``, a declared 100 000 × 100 000 × 100 000 does not wrap around.

    Raises
    ------
    TypeError, ValueError
        If an entry cannot be made an ``int``.

    Examples
    --------
    >>> from napari_ecc_align.engine.limits import pixel_count
    >>> pixel_count((100_000, 100_000, 100_000))
    1000000000000000
    """
    return math.prod(int(n) for n in shape)


def check_pixels(shape: Iterable[int], what: str, limit=None) -> None:
    """Refuse ``shape`` if it holds more pixels than the budget, before anything is allocated.

    Parameters
    ----------
    shape : iterable of int
        The pixel (voxel) axes only: ``(rows, cols)`` or ``(z, y, x)``, without
        colour channels.
    what : str
        What declares the shape, for the message (``"scan.tif"``, ``"reference_shape"``).
    limit : int or float, optional
        The budget; see :func:`max_pixels`.

    Raises
    ------
    PixelBudgetError
        Naming the declared shape and pixel count, the limit and how to raise it.
    """
    shape = tuple(int(n) for n in shape)
    budget = max_pixels(limit)
    count = pixel_count(shape)
    if count > budget:
        dims = " × ".join(str(n) for n in shape)
        raise PixelBudgetError(
            f"{what} declares {dims} = {count:,} pixels, more than the pixel budget of "
            f"{budget:,}; {HOW_TO_RAISE}"
        )
