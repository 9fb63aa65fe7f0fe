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
    """``fill_value`` as the dtype holds it (int for integers), or a ValueError naming it."""
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
    """``result`` in ``dtype``: integers rounded and clipped, never wrapped."""
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
    """Nearest-neighbour warp by index gathering: exact for every dtype (int64 labels)."""
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
    """Overwrite, in the warped 2D ``out``, the pixels whose kernel weights are 0 and 1
    with the exact source pixel or ``fill`` (see the module notes)."""
    rows, cols = out.shape[:2]
    for y0, mx, my in _source_positions(matrix, rows, cols):
        keep_exact(out[y0 : y0 + len(mx)], (mx, my), plane, fill, interpolation)


def keep_exact(out, coords, source, fill, interpolation) -> None:
    """``out[...]`` (leading axes matching the arrays of ``coords``, the source positions
    ``(x, y[, z])`` of its pixels; NaN for none) gets ``source[z, y, x]`` exactly where
    every coordinate is a whole pixel inside ``source``, and ``fill`` where the kernel
    reaches no pixel of it."""
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
