"""Input files: the regular-file checks (from the engine) and the TIFF pixel budget.

:func:`check_input_file` and :func:`open_input` are
:mod:`napari_ecc_align.engine.input_files`' (regular files only, opened
non-blocking, the true reason when a file cannot be reached); every reader of
this subpackage opens its input through them. :func:`check_tiff_series` holds a
TIFF's declared size against the pixel budget
(:mod:`napari_ecc_align.engine.limits`) before tifffile allocates anything.
"""

from __future__ import annotations

from ..engine import PathLike, check_input_file, check_pixels, open_input

__all__ = ["PathLike", "check_input_file", "check_tiff_series", "open_input", "tiff_pixel_shape"]


def tiff_pixel_shape(shape, axes: str) -> tuple[int, ...]:
    """The axes of a TIFF series that count against the budget: all but samples (``S``).

    Parameters
    ----------
    shape : tuple of int
        A tifffile series' ``shape``.
    axes : str
        The series' ``axes``, one character per entry of ``shape`` (``"ZYXS"``);
        ``shape`` and ``axes`` are paired in order, as far as the shorter goes.

    Returns
    -------
    tuple of int
        The lengths of every axis but ``S``: pages, planes and pixels count, RGB(A)
        samples do not.

    Examples
    --------
    >>> from napari_ecc_align.io.files import tiff_pixel_shape
    >>> tiff_pixel_shape((10, 512, 512, 3), "ZYXS")
    (10, 512, 512)
    """
    return tuple(n for n, axis in zip(shape, axes, strict=False) if axis != "S")


def check_tiff_series(series, name: str, limit=None) -> None:
    """Refuse a tifffile series whose declared size is over the pixel budget, before reading.

    The pages of a multi-page series count (a ``(z, y, x)`` stack holds
    ``z × y × x`` pixels); RGB(A) samples do not. A tiled file is also refused
    when one tile declares more than the budget: tifffile decodes a whole tile
    at a time, however small the image.

    Raises
    ------
    PixelBudgetError
        Naming the declared size and how to raise the limit.
    ValueError
        If the series has no numeric dtype tifffile can decode.
    """
    check_pixels(tiff_pixel_shape(series.shape, series.axes), name, limit)
    if series.dtype is None:
        raise ValueError("its sample format has no numeric dtype")
    page = series.keyframe
    if getattr(page, "is_tiled", False):
        tile = (page.tilelength, page.tilewidth)
        tile = (page.tiledepth, *tile) if page.tiledepth > 1 else tile
        check_pixels(tile, f"{name} (one tile)", limit)
