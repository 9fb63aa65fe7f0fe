"""Integer images through :func:`~.warping.warp`: exact where exactness is possible.

OpenCV interpolates 8- and 16-bit images natively; every other integer dtype is
interpolated in float64 and rounded back. float64 holds integers exactly only up to
2**53, so 64-bit images would lose their low bits even where nothing is interpolated
(``2**64 - 1`` came back as ``...549568``). Here:

* :func:`check_fill` accepts exactly the fill values the dtype can hold (compared as
  integers, not through float);
* :func:`cast` rounds and clips, and maps float64's ``2**64``/``2**63`` (what the
  largest uint64/int64 values round to) back to the dtype's maximum;
* :func:`keep_exact` gives 64-bit output pixels whose kernel weights are all 0 and 1
  the exact value: pixels whose source position is a whole pixel get that pixel
  (identity, whole-pixel shifts, flips, 90° turns), and pixels whose kernel lies
  wholly outside the image get the fill. Pixels between source pixels are weighted
  averages, rounded once to the nearest float64 (a relative error below 2**-52).
"""

from __future__ import annotations

import numbers

import numpy as np

# dtypes whose values float64 cannot all hold: interpolated pixels are not exact there
WIDE_INTEGERS = {np.dtype(np.int64), np.dtype(np.uint64)}
# How far outside the image (pixels beyond the first or last pixel centre) a kernel still
# reaches a pixel: linear 1, cubic 2 (its taps at -1 and +2).
_REACH = {"linear": 1, "cubic": 2}
_ROWS_PER_CHUNK = 1024  # coordinates are computed this many output rows at a time


def check_fill(fill_value, dtype):
    """``fill_value`` as the dtype holds it (int for integers), or a ValueError naming it.

    Integer fill values are compared with the dtype's range as Python integers, so
    ``2**64 - 1`` fits uint64 and is not rounded through float64.

    Parameters
    ----------
    fill_value : number
        The value for output pixels that no source pixel reaches. Python and numpy
        numbers are taken as they are; anything else (a bool, a numeric string) goes
        through ``float()`` first.
    dtype : numpy.dtype
        The image's dtype.

    Returns
    -------
    bool, int or float
        ``bool(fill_value)`` for a boolean dtype; an ``int`` for an integer dtype;
        a ``float`` (NaN and inf allowed) for a floating dtype.

    Raises
    ------
    TypeError
        If ``fill_value`` is no number and ``float()`` cannot make one of it.
    ValueError
        For an integer dtype, if the value is not whole, not finite or outside the
        dtype's range; for a floating dtype, if it is finite but larger in magnitude
        than the dtype's largest value (it would become inf). The message names it.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align.engine.exact import check_fill
    >>> check_fill(2.0, np.dtype(np.uint8)), check_fill(2**64 - 1, np.dtype(np.uint64))
    (2, 18446744073709551615)
    >>> check_fill(256, np.dtype(np.uint8))
    Traceback (most recent call last):
    ...
    ValueError: fill_value 256 does not fit the image dtype uint8 (integers from 0 to 255)
    """
    if dtype == np.bool_:
        return bool(fill_value)
    if isinstance(fill_value, (bool, np.bool_)) or not isinstance(
        fill_value, (numbers.Real, np.number)
    ):
        try:
            fill_value = float(fill_value)
        except (TypeError, ValueError):
            raise TypeError(f"fill_value must be a number, got {fill_value!r}") from None
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if isinstance(fill_value, (numbers.Integral, np.integer)):
            value = int(fill_value)  # exact: 2**64 - 1 is not rounded through float
        elif np.isfinite(fill_value) and float(fill_value).is_integer():
            value = int(float(fill_value))
        else:
            value = None
        if value is None or not info.min <= value <= info.max:
            raise ValueError(
                f"fill_value {fill_value!r} does not fit the image dtype {dtype} "
                f"(integers from {info.min} to {info.max})"
            )
        return value
    value = float(fill_value)
    if np.isfinite(value) and abs(value) > float(np.finfo(dtype).max):  # would become inf
        raise ValueError(
            f"fill_value {fill_value!r} does not fit the image dtype {dtype} "
            f"(at most {float(np.finfo(dtype).max):g} in magnitude)"
        )
    return value


def cast(result, dtype):
    """``result`` in ``dtype``: integers rounded and clipped, never wrapped.

    Parameters
    ----------
    result : numpy.ndarray
        Interpolated values, usually float32 or float64.
    dtype : numpy.dtype
        The dtype to return.

    Returns
    -------
    numpy.ndarray
        ``result`` itself when it already has ``dtype``. For an integer dtype, a new
        array rounded to the nearest integer (halves to even, :func:`numpy.rint`)
        and clipped to the dtype's range; float64's ``2**63`` and ``2**64``, what the
        largest int64 and uint64 values round to, become those largest values. For
        any other dtype, ``result.astype(dtype)``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align.engine.exact import cast
    >>> cast(np.array([-3.0, 1.5, 2.5, 300.0]), np.dtype(np.uint8))
    array([  0,   2,   2, 255], dtype=uint8)
    >>> cast(np.array([2.0**64]), np.dtype(np.uint64))
    array([18446744073709551615], dtype=uint64)
    """
    if result.dtype == dtype:
        return result
    if dtype.kind not in "iu":
        return result.astype(dtype)
    info = np.iinfo(dtype)
    top = np.float64(info.max)
    rounded = np.rint(result)
    if int(top) > info.max:  # 2**63 - 1 and 2**64 - 1 round up in float64
        over = rounded >= top
        out = np.clip(rounded, info.min, np.nextafter(top, 0)).astype(dtype)
        out[over] = info.max
        return out
    return np.clip(rounded, info.min, top).astype(dtype)


def warp_nearest_gather(plane, matrix, out_shape, fill):
    """Nearest-neighbour warp by index gathering: exact for every dtype (int64 labels).

    Parameters
    ----------
    plane : numpy.ndarray
        The moving image, ``(rows, cols)`` or ``(rows, cols, channels...)``, any dtype.
    matrix : numpy.ndarray
        3x3 float64 map from an output pixel ``(x, y, 1)`` to its position in
        ``plane`` (reference → moving: OpenCV's ``WARP_INVERSE_MAP`` sense).
    out_shape : tuple of int
        ``(rows, cols)`` of the output.
    fill : scalar
        The value of output pixels whose rounded source position falls outside
        ``plane`` or that lie behind a homography's horizon, as :func:`check_fill`
        returns it.

    Returns
    -------
    numpy.ndarray
        A new array of shape ``out_shape + plane.shape[2:]`` and ``plane``'s dtype:
        each pixel is the source pixel at the rounded position (:func:`numpy.rint`),
        copied, never interpolated.
    """
    rows, cols = out_shape
    src_rows, src_cols = plane.shape[:2]
    out = np.empty((rows, cols) + plane.shape[2:], dtype=plane.dtype)
    for y0, mx, my in _source_positions(matrix, rows, cols):
        mx, my = np.rint(mx), np.rint(my)
        inside = (mx >= 0) & (mx < src_cols) & (my >= 0) & (my < src_rows)  # NaN: False
        chunk = out[y0 : y0 + len(mx)]
        chunk[...] = fill
        chunk[inside] = plane[my[inside].astype(np.intp), mx[inside].astype(np.intp)]
    return out


def keep_exact_plane(out, plane, matrix, fill, interpolation) -> None:
    """Give the pixels of a warped 2D ``out`` whose kernel weights are 0 and 1 exact values.

    :func:`keep_exact` applied to every pixel of ``out``, a chunk of rows at a time
    (see the module notes).

    Parameters
    ----------
    out : numpy.ndarray
        The warped plane, ``(rows, cols[, channels])``, changed in place.
    plane : numpy.ndarray
        The moving image it was warped from, ``(rows, cols[, channels])``.
    matrix : numpy.ndarray
        3x3 float64 map from an output pixel ``(x, y, 1)`` to its position in
        ``plane``, as for :func:`warp_nearest_gather`.
    fill : scalar
        The fill value the warp used.
    interpolation : {"linear", "cubic"}
        The kernel the warp used; it sets how far outside ``plane`` a pixel still
        reaches it.

    Raises
    ------
    KeyError
        If ``interpolation`` is neither ``"linear"`` nor ``"cubic"``.
    """
    rows, cols = out.shape[:2]
    for y0, mx, my in _source_positions(matrix, rows, cols):
        keep_exact(out[y0 : y0 + len(mx)], (mx, my), plane, fill, interpolation)


def keep_exact(out, coords, source, fill, interpolation) -> None:
    """Set the pixels of ``out`` that interpolation did not mix: exact source pixels, or fill.

    A pixel whose every source coordinate is a whole number within ``source`` gets
    that source pixel; a pixel whose source position is NaN, or lies so far outside
    ``source`` along some axis that the kernel reaches none of its pixels, gets
    ``fill``. Every other pixel is left as it is.

    Parameters
    ----------
    out : numpy.ndarray
        The warped pixels, changed in place; its leading axes match the shape of
        the arrays in ``coords`` (further axes are channels).
    coords : sequence of numpy.ndarray
        ``(x, y)`` or ``(x, y, z)``: the position in ``source`` of each pixel of
        ``out``, float, NaN where a pixel has none.
    source : numpy.ndarray
        The moving image ``(y, x[, channels])`` or volume ``(z, y, x)``.
    fill : scalar
        The fill value the warp used.
    interpolation : {"linear", "cubic"}
        The kernel the warp used: it reaches 1 (linear) or 2 (cubic) pixels
        beyond the first and last pixel centres.

    Raises
    ------
    KeyError
        If ``interpolation`` is neither ``"linear"`` nor ``"cubic"``.
    """
    reach = _REACH[interpolation]
    sizes = source.shape[: len(coords)][::-1]  # (x, y[, z]) sizes
    whole = np.ones(coords[0].shape, bool)
    outside = np.zeros(coords[0].shape, bool)
    for c, n in zip(coords, sizes, strict=True):
        with np.errstate(invalid="ignore"):
            whole &= (c == np.floor(c)) & (c >= 0) & (c <= n - 1)
            outside |= ~((c > -reach) & (c < n - 1 + reach))  # NaN counts as outside
    index = tuple(coords[k][whole].astype(np.intp) for k in reversed(range(len(coords))))
    out[whole] = source[index]
    out[outside] = fill


def _source_positions(matrix, rows, cols):
    """``(y0, x, y)`` per chunk of output rows: the moving (x, y) of each output pixel
    under the inverse-map ``matrix`` (float64; NaN behind a homography's horizon)."""
    xs = np.arange(cols, dtype=np.float64)[None, :]
    for y0 in range(0, rows, _ROWS_PER_CHUNK):
        ys = np.arange(y0, min(rows, y0 + _ROWS_PER_CHUNK), dtype=np.float64)[:, None]
        den = matrix[2, 0] * xs + matrix[2, 1] * ys + matrix[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            mx = (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]) / den
            my = (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]) / den
        behind = ~(den > 0)
        mx[behind] = np.nan
        my[behind] = np.nan
        yield y0, mx, my
