"""Resampling onto the reference grid.

``warp`` keeps the input's dtype (no overflow, no silent float promotion),
channels and leading axes; OpenCV does the interpolation wherever it supports
the dtype, and images beyond OpenCV's 32767-pixel remap limit are warped in
tiles.
"""

from __future__ import annotations

import cv2
import numpy as np

from .alignment import Alignment, is_affine
from .preprocess import as_array

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
}
# dtypes OpenCV's remap interpolates natively (linear and cubic).
_CV_NATIVE = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}
_CV_LIMIT = 32767  # SHRT_MAX: OpenCV's remap refuses larger source or output sides
_TILE = 8192


def warp(image, alignment, output_shape=None, *, interpolation="linear", fill_value=0):
    """Resample the moving image onto the reference grid.

    Parameters
    ----------
    image : array_like
        The moving image, or anything on the moving image's pixel grid:
        ``(..., rows, cols)`` or channel-last ``(..., rows, cols, 3|4)``. Every
        2D plane of the leading axes gets the same transform.
    alignment : Alignment or array_like (3, 3)
        The result of :func:`align`, or a reference→moving matrix in the same
        convention.
    output_shape : tuple (rows, cols), optional
        Size of the output grid; defaults to the alignment's reference shape
        (the image's own shape when a bare matrix is given).
    interpolation : {"linear", "nearest", "cubic"}
        Boolean images always use nearest neighbour; use "nearest" for label
        images so no new label values appear. OpenCV's cubic kernel (a = -0.75)
        is sharper but not exactly interpolating at sub-pixel shifts: it can
        displace smooth ramps by a few hundredths of a pixel.
    fill_value : scalar
        Value of output pixels that fall outside the moving image. Must be
        representable in the image's dtype.

    Returns
    -------
    ndarray
        Same dtype as ``image``; shape with the spatial axes replaced by
        ``output_shape``. Integer results are rounded and clipped, never wrapped.

    Examples
    --------
    >>> aligned = warp(moving, alignment)                           # doctest: +SKIP
    >>> labels_on_ref = warp(labels, alignment, interpolation="nearest")  # doctest: +SKIP
    """
    arr = as_array(image, "image")
    matrix, default_shape, moving_shape = _matrix_and_shapes(alignment)
    if not isinstance(interpolation, str) or interpolation not in _INTERPOLATION:
        raise ValueError(
            f"interpolation must be one of {tuple(_INTERPOLATION)}, got {interpolation!r}"
        )
    channel_last = _has_channel_axis(arr, moving_shape)
    spatial_end = arr.ndim - 1 if channel_last else arr.ndim
    if spatial_end < 2:
        raise ValueError(f"image must have at least two spatial axes, got shape {arr.shape}")
    src_rows, src_cols = arr.shape[spatial_end - 2 : spatial_end]
    if output_shape is None:
        output_shape = default_shape or (src_rows, src_cols)
    out_rows, out_cols = _check_output_shape(output_shape)
    fill = _check_fill(fill_value, arr.dtype)
    if arr.dtype == np.bool_:
        interpolation = "nearest"

    leading = arr.shape[: spatial_end - 2]
    tail = arr.shape[spatial_end:]
    planes = arr.reshape((-1, src_rows, src_cols) + tail)
    out = np.empty((planes.shape[0], out_rows, out_cols) + tail, dtype=arr.dtype)
    for i, plane in enumerate(planes):
        out[i] = _warp_one(plane, matrix, (out_rows, out_cols), interpolation, fill)
    return out.reshape(leading + (out_rows, out_cols) + tail)


def _matrix_and_shapes(alignment):
    if isinstance(alignment, Alignment):
        return alignment.matrix, alignment.reference_shape, alignment.moving_shape
    try:
        matrix = np.array(alignment, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"alignment must be an Alignment or a 3x3 matrix, got {type(alignment).__name__}"
        ) from None
    if matrix.shape == (2, 3):
        matrix = np.vstack([matrix, [0, 0, 1]])
    if matrix.shape != (3, 3) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"alignment matrix must be a finite 3x3 array, got shape {matrix.shape}")
    return matrix, None, None


def _has_channel_axis(arr, moving_shape) -> bool:
    if arr.ndim < 3 or arr.shape[-1] not in (3, 4):
        return False
    if moving_shape is not None:
        if tuple(arr.shape[-2:]) == tuple(moving_shape):
            return False
        return tuple(arr.shape[-3:-1]) == tuple(moving_shape) or arr.ndim == 3
    return True


def _check_output_shape(output_shape):
    try:
        rows, cols = (int(n) for n in tuple(output_shape)[-2:])
    except (TypeError, ValueError):
        raise TypeError(f"output_shape must be (rows, cols), got {output_shape!r}") from None
    if len(tuple(output_shape)) != 2 or rows < 1 or cols < 1:
        raise ValueError(
            f"output_shape must be (rows, cols) of positive ints, got {output_shape!r}"
        )
    return rows, cols


def _check_fill(fill_value, dtype):
    if dtype == np.bool_:
        return bool(fill_value)
    try:
        value = float(fill_value)
    except (TypeError, ValueError):
        raise TypeError(f"fill_value must be a number, got {fill_value!r}") from None
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if not np.isfinite(value) or not info.min <= value <= info.max:
            raise ValueError(f"fill_value {fill_value!r} does not fit the image dtype {dtype}")
        return int(fill_value)
    if np.isfinite(value) and abs(value) > float(np.finfo(dtype).max):  # would become inf
        raise ValueError(f"fill_value {fill_value!r} does not fit the image dtype {dtype}")
    return value


def _warp_one(plane, matrix, out_shape, interpolation, fill):
    """Warp one (rows, cols[, channels]) plane; any dtype."""
    dtype = plane.dtype
    flag = _INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP
    if interpolation == "nearest" and dtype not in _CV_NATIVE:
        return _warp_nearest_gather(plane, matrix, out_shape, fill)
    if dtype in _CV_NATIVE:
        work = plane
    elif dtype == np.float16:
        work = plane.astype(np.float32)
    else:  # int8, (u)int32, (u)int64: interpolate in float64, then round and clip
        work = plane.astype(np.float64)
    channels = work.shape[2] if work.ndim == 3 else 0
    border = (float(fill),) * 4
    if channels > 4:
        result = np.stack(
            [warp_plane(work[..., c], matrix, out_shape, flag, border) for c in range(channels)],
            axis=-1,
        )
    else:
        result = warp_plane(np.ascontiguousarray(work), matrix, out_shape, flag, border)
        if channels and result.ndim == 2:  # OpenCV drops a length-1 channel axis
            result = result[..., None]
    if result.dtype == dtype:
        return result
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        top = np.float64(info.max)
        if int(top) > info.max:  # 2**63 - 1 rounds up to 2**63 in float64
            top = np.nextafter(top, 0)
        result = np.clip(np.rint(result), info.min, top)
    return result.astype(dtype)


def warp_plane(src, matrix, out_shape, flags, border_value):
    """``cv2.warpAffine``/``warpPerspective`` with WARP_INVERSE_MAP semantics, tiled
    when the source or the output is beyond OpenCV's 32767-pixel limit."""
    rows, cols = out_shape
    affine = is_affine(matrix)
    if max(rows, cols, src.shape[0], src.shape[1]) < _CV_LIMIT:
        return _cv_warp(src, matrix, (rows, cols), flags, border_value, affine)
    out = np.empty((rows, cols) + src.shape[2:], dtype=src.dtype)
    for y0 in range(0, rows, _TILE):
        for x0 in range(0, cols, _TILE):
            y1, x1 = min(rows, y0 + _TILE), min(cols, x0 + _TILE)
            out[y0:y1, x0:x1] = _warp_tile(
                src, matrix, (y0, y1, x0, x1), flags, border_value, affine
            )
    return out


def _warp_tile(src, matrix, box, flags, border_value, affine):
    y0, y1, x0, x1 = box
    corners = np.array([[x0, x1 - 1, x0, x1 - 1], [y0, y0, y1 - 1, y1 - 1], [1, 1, 1, 1]], float)
    mapped = matrix @ corners
    tile_shape = (y1 - y0, x1 - x0)
    if np.any(mapped[2] <= 0):
        raise ValueError(
            "this homography maps part of the output behind the camera and the image is "
            f"beyond OpenCV's {_CV_LIMIT}-pixel limit; crop or downsample the image first"
        )
    mapped = mapped[:2] / mapped[2]
    margin = 3  # bilinear and cubic kernels reach 2 pixels beyond a sample
    sx0 = int(max(0, np.floor(mapped[0].min()) - margin))
    sy0 = int(max(0, np.floor(mapped[1].min()) - margin))
    sx1 = int(min(src.shape[1], np.ceil(mapped[0].max()) + margin + 1))
    sy1 = int(min(src.shape[0], np.ceil(mapped[1].max()) + margin + 1))
    if sx1 <= sx0 or sy1 <= sy0:
        tile = np.empty(tile_shape + src.shape[2:], dtype=src.dtype)
        tile[...] = border_value[0]
        return tile
    if max(sx1 - sx0, sy1 - sy0) >= _CV_LIMIT:
        raise ValueError(
            f"a {_TILE}-pixel output tile needs a {sy1 - sy0}x{sx1 - sx0} source region, beyond "
            f"OpenCV's {_CV_LIMIT}-pixel limit (the transform shrinks the image a lot); "
            "downsample the moving image first"
        )
    shift_out = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], float)
    shift_src = np.array([[1, 0, -sx0], [0, 1, -sy0], [0, 0, 1]], float)
    tile_matrix = shift_src @ matrix @ shift_out
    roi = np.ascontiguousarray(src[sy0:sy1, sx0:sx1])
    return _cv_warp(roi, tile_matrix, tile_shape, flags, border_value, affine)


def _cv_warp(src, matrix, out_shape, flags, border_value, affine):
    rows, cols = out_shape
    if affine:
        return cv2.warpAffine(
            src,
            matrix[:2],
            (cols, rows),
            flags=flags,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=border_value,
        )
    return cv2.warpPerspective(
        src,
        matrix,
        (cols, rows),
        flags=flags,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def _warp_nearest_gather(plane, matrix, out_shape, fill):
    """Nearest-neighbour warp by index gathering: exact for every dtype (int64 labels)."""
    rows, cols = out_shape
    src_rows, src_cols = plane.shape[:2]
    ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float64)
    den = matrix[2, 0] * xs + matrix[2, 1] * ys + matrix[2, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        mx = np.rint((matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]) / den)
        my = np.rint((matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]) / den)
    inside = (den > 0) & (mx >= 0) & (mx < src_cols) & (my >= 0) & (my < src_rows)
    out = np.empty((rows, cols) + plane.shape[2:], dtype=plane.dtype)
    out[...] = fill
    out[inside] = plane[my[inside].astype(np.intp), mx[inside].astype(np.intp)]
    return out


def overlap(alignment: Alignment, output_shape=None) -> np.ndarray:
    """Boolean mask of the reference-grid pixels that the moving image fully covers."""
    rows, cols = output_shape or alignment.reference_shape
    ones = np.ones(alignment.moving_shape, np.float32)
    covered = warp_plane(
        ones, alignment.matrix, (rows, cols), cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, (0.0,) * 4
    )
    return covered > 0.999
