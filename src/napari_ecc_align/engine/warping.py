"""Resampling onto the reference grid.

``warp`` keeps the input's dtype (no overflow, no silent float promotion),
channels and leading axes; OpenCV does the interpolation wherever it supports
the dtype, and images beyond OpenCV's 32767-pixel remap limit are warped in
tiles. Volumes (a 4×4 alignment) are resampled one output plane at a time with
``cv2.remap`` on the few moving planes that plane reaches, blended in z with
the same kernel (see :func:`warp`).
"""

from __future__ import annotations

import cv2
import numpy as np

from .alignment import Alignment, is_affine
from .exact import (
    WIDE_INTEGERS,
    cast,
    check_fill,
    keep_exact,
    keep_exact_plane,
    warp_nearest_gather,
)
from .lazy import Multiscale, is_lazy
from .lazy_warp import source_region, warp_planes_lazily, warp_volume_lazily
from .preprocess import as_array, as_real_matrix, as_shape

_INTERPOLATION = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
}
# dtypes OpenCV's remap interpolates natively (linear and cubic).
_CV_NATIVE = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}
_CV_LIMIT = 32767  # SHRT_MAX: OpenCV's remap refuses larger source or output sides
_TILE = 8192
# Volumes: the z taps of each kernel (OpenCV's in y), and the fill planes/rows around a volume.
_TAPS = {"linear": (0, 1), "cubic": (-1, 0, 1, 2)}
_PAD = 3
_KEYS_A = -0.75  # OpenCV's cubic kernel (interpolateCubic), used in z too


def warp(image, alignment, output_shape=None, *, interpolation="linear", fill_value=0):
    """Resample the moving image onto the reference grid.

    Parameters
    ----------
    image : array_like
        The moving image, or anything on the moving image's pixel grid:
        ``(..., rows, cols)`` or channel-last ``(..., rows, cols, 3|4)``. Every
        2D plane of the leading axes gets the same transform. With a volume
        alignment: ``(..., z, y, x)`` (or channel-last ``(..., z, y, x, 3|4)``
        when the alignment's moving shape says so), every volume of the leading
        axes (channels, time) getting the same transform.
    alignment : Alignment or array_like (3, 3) or (4, 4)
        The result of :func:`align`, or a reference→moving matrix in the same
        convention (2×3 and 3×4 are padded; a 4×4 must be affine).
    output_shape : tuple (rows, cols) or (z, y, x), optional
        Size of the output grid; defaults to the alignment's reference shape
        (the image's own shape when a bare matrix is given). Positive whole numbers
        (ints, numpy integers or integral floats such as ``2.0``); ``1.5`` raises
        ValueError rather than being truncated.
    interpolation : {"linear", "nearest", "cubic"}
        Boolean images always use nearest neighbour; use "nearest" for label
        images so no new label values appear. OpenCV's cubic kernel (a = -0.75)
        is sharper but not exactly interpolating at sub-pixel shifts: it can
        displace smooth ramps by a few hundredths of a pixel. Volumes use the
        same kernels in z (trilinear, tricubic with a = -0.75), and samples near
        the border blend with ``fill_value`` as OpenCV's constant border does in
        2D; with a NaN fill, voxels mapped outside the moving volume are NaN and
        the others are not touched by it.
    fill_value : scalar
        Value of output pixels that fall outside the moving image. Must be
        representable in the image's dtype (any integer in its range, e.g.
        ``2**64 - 1`` for uint64; not ``2.5`` for an integer image).

    Returns
    -------
    ndarray or dask.array.Array
        Same dtype as ``image``; shape with the spatial axes replaced by
        ``output_shape``. A dask or zarr image, or a pyramid list (its finest level),
        of 2D planes gives a dask array, each chunk resampled from the region of the
        moving image it needs when computed. Integer results are rounded and clipped,
        never wrapped. int64/uint64 are interpolated in float64, which holds only 53 bits: pixels
        whose kernel weights are all 0 and 1 (nearest neighbour, the identity,
        whole-pixel shifts, flips, quarter turns, and the fill) keep their exact
        value; a pixel between source pixels is their weighted mean rounded once.

    Examples
    --------
    >>> aligned = warp(moving, alignment)                           # doctest: +SKIP
    >>> labels_on_ref = warp(labels, alignment, interpolation="nearest")  # doctest: +SKIP
    """
    arr = as_array(image, "image", lazy=True)  # dask, zarr, a pyramid: a lazy result
    matrix, default_shape, moving_shape = _matrix_and_shapes(alignment)
    if not isinstance(interpolation, str) or interpolation not in _INTERPOLATION:
        raise ValueError(
            f"interpolation must be one of {tuple(_INTERPOLATION)}, got {interpolation!r}"
        )
    if matrix.shape == (4, 4):
        if isinstance(arr, Multiscale):
            arr = arr.levels[0]  # a volume is warped from its finest level
        if is_lazy(arr) and arr.ndim == 3:
            shape = _check_volume_shape(output_shape or default_shape or arr.shape)
            fill = check_fill(fill_value, arr.dtype)
            method = "nearest" if arr.dtype == np.bool_ else interpolation
            return warp_volume_lazily(arr, matrix, shape, method, fill, _warp_volume)
        arr = as_array(arr, "image")  # numpy, or lazy with more axes: loaded
        return _warp_volumes(
            arr, matrix, default_shape, moving_shape, output_shape, interpolation, fill_value
        )
    channel_last = _has_channel_axis(arr, moving_shape)
    spatial_end = arr.ndim - 1 if channel_last else arr.ndim
    if spatial_end < 2:
        raise ValueError(f"image must have at least two spatial axes, got shape {arr.shape}")
    src_rows, src_cols = arr.shape[spatial_end - 2 : spatial_end]
    if output_shape is None:
        output_shape = default_shape or (src_rows, src_cols)
    out_rows, out_cols = _check_output_shape(output_shape)
    fill = check_fill(fill_value, arr.dtype)
    if arr.dtype == np.bool_:
        interpolation = "nearest"

    leading = arr.shape[: spatial_end - 2]
    if is_lazy(arr):
        return warp_planes_lazily(arr, len(leading), matrix, (out_rows, out_cols),
                                  interpolation, fill, warp_one)  # fmt: skip
    tail = arr.shape[spatial_end:]
    planes = arr.reshape((-1, src_rows, src_cols) + tail)
    out = np.empty((planes.shape[0], out_rows, out_cols) + tail, dtype=arr.dtype)
    for i, plane in enumerate(planes):
        out[i] = warp_one(plane, matrix, (out_rows, out_cols), interpolation, fill)
    return out.reshape(leading + (out_rows, out_cols) + tail)


def _matrix_and_shapes(alignment):
    if isinstance(alignment, Alignment):
        return alignment.matrix, alignment.reference_shape, alignment.moving_shape
    expected = "an Alignment or a 3x3 (image) or 4x4 (volume) matrix"
    matrix = as_real_matrix(alignment, "alignment", expected)
    if matrix.shape in ((2, 3), (3, 4)):
        matrix = np.vstack([matrix, np.eye(matrix.shape[1])[-1]])
    if matrix.shape not in ((3, 3), (4, 4)) or not np.all(np.isfinite(matrix)):
        raise ValueError(
            f"alignment matrix must be a finite 3x3 or 4x4 array, got shape {matrix.shape}"
        )
    if matrix.shape == (4, 4) and not is_affine(matrix):
        raise ValueError(
            f"a 4x4 (volume) matrix must end with the row [0, 0, 0, 1], got {matrix[3].tolist()}"
        )
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
    return as_shape(output_shape, "output_shape", "(rows, cols)")


def warp_one(plane, matrix, out_shape, interpolation, fill):
    """Warp one (rows, cols[, channels]) plane; any dtype."""
    dtype = plane.dtype
    flag = _INTERPOLATION[interpolation] | cv2.WARP_INVERSE_MAP
    if interpolation == "nearest" and dtype not in _CV_NATIVE:
        return warp_nearest_gather(plane, matrix, out_shape, fill)
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
    result = cast(result, dtype)
    if dtype in WIDE_INTEGERS:  # float64 rounded them: restore what is not interpolated
        keep_exact_plane(result, plane, matrix, fill, interpolation)
    return result


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
    tile_shape = (y1 - y0, x1 - x0)
    try:
        region = source_region(matrix, box, src.shape[:2])
    except ValueError:
        raise ValueError(
            "this homography maps part of the output behind the camera and the image is "
            f"beyond OpenCV's {_CV_LIMIT}-pixel limit; crop or downsample the image first"
        ) from None
    if region is None:
        tile = np.empty(tile_shape + src.shape[2:], dtype=src.dtype)
        tile[...] = border_value[0]
        return tile
    sy0, sy1, sx0, sx1 = region
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


def overlap(alignment: Alignment, output_shape=None) -> np.ndarray:
    """Boolean mask of the reference-grid pixels that the moving image fully covers.

    Parameters
    ----------
    alignment : Alignment
        An image or a volume alignment.
    output_shape : tuple (rows, cols) or (z, y, x), optional
        The grid; defaults to the alignment's reference shape.

    Returns
    -------
    ndarray of bool
        True where the pixel (voxel) maps between the first and last pixel centres
        of the moving image (volume) on every axis.
    """
    if alignment.ndim == 3:
        shape = _check_volume_shape(output_shape or alignment.reference_shape)
        return overlap_mask(alignment.matrix, shape, alignment.moving_shape)
    rows, cols = output_shape or alignment.reference_shape
    ones = np.ones(alignment.moving_shape, np.float32)
    covered = warp_plane(
        ones, alignment.matrix, (rows, cols), cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, (0.0,) * 4
    )
    return covered > 0.999


# -- volumes -------------------------------------------------------------------------------------
# 128x256x256 float32, 1 thread, best of 3: per-plane OpenCV 0.46 s (rigid) / 0.07 s (shift) linear,
# 1.44 / 0.38 s cubic; scipy.ndimage.affine_transform 0.81 / 0.74 s order 1, 3.3 / 3.9 s order 3.
def _warp_volumes(arr, matrix, default_shape, moving_shape, output_shape, interpolation, fill):
    """:func:`warp` for a 4×4 matrix: every ``(z, y, x)`` volume of ``arr`` gets it."""
    if moving_shape is not None and arr.ndim >= 4 and arr.shape[-1] in (3, 4):
        if arr.shape[-3:] != moving_shape and arr.shape[-4:-1] == moving_shape:  # channel-last
            out = _warp_volumes(np.moveaxis(arr, -1, 0), matrix, default_shape, None,
                                output_shape, interpolation, fill)  # fmt: skip
            return np.ascontiguousarray(np.moveaxis(out, 0, -1))
    if arr.ndim < 3:
        raise ValueError(f"a 4x4 (volume) alignment needs (z, y, x) axes, got shape {arr.shape}")
    src_shape = arr.shape[-3:]
    out_shape = _check_volume_shape(
        default_shape or src_shape if output_shape is None else output_shape
    )
    fill = check_fill(fill, arr.dtype)
    if arr.dtype == np.bool_:
        interpolation = "nearest"
    volumes = arr.reshape((-1,) + src_shape)
    out = np.empty((len(volumes),) + out_shape, dtype=arr.dtype)
    for volume, result in zip(volumes, out, strict=True):
        _warp_volume(volume, matrix, result, interpolation, fill)
    return out.reshape(arr.shape[:-3] + out_shape)


def _check_volume_shape(shape):
    return as_shape(shape, "output_shape", "(z, y, x)")


def _plane_coordinates(matrix, k, box, dtype=np.float64):
    """Moving ``(x, y, z)`` (three arrays) of the reference voxels ``[k, y0:y1, x0:x1]``."""
    y0, y1, x0, x1 = box
    xs = np.arange(x0, x1, dtype=dtype)[None, :]
    ys = np.arange(y0, y1, dtype=dtype)[:, None]
    return [dtype(r[0]) * xs + (dtype(r[1]) * ys + dtype(r[2] * k + r[3])) for r in matrix[:3]]


def overlap_mask(matrix, out_shape, src_shape, tol=1e-6):
    """Reference voxels that map within the first and last voxel centres of ``src_shape``."""
    mask = np.ones(out_shape, bool)
    for k in range(out_shape[0]):
        coords = _plane_coordinates(matrix, k, (0, out_shape[1], 0, out_shape[2]))
        for c, n in zip(coords, src_shape[::-1], strict=True):
            mask[k] &= (c >= -tol) & (c <= n - 1 + tol)
    return mask


def _warp_volume(volume, matrix, out, interpolation, fill):
    """Resample one (z, y, x) volume into ``out`` (same dtype)."""
    nz, ny, nx = volume.shape
    rows, cols = out.shape[1:]
    if interpolation == "nearest":  # index gathering: exact for every dtype (int64 labels)
        flat = volume.reshape(-1)
        for k in range(out.shape[0]):
            ix, iy, iz = (np.rint(c) for c in _plane_coordinates(matrix, k, (0, rows, 0, cols)))
            inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (iz >= 0) & (iz < nz)
            out[k] = fill
            index = ((iz * ny + iy) * nx + ix)[inside].astype(np.intp)
            out[k][inside] = flat[index]
        return
    small = volume.dtype.itemsize <= 2 or volume.dtype == np.float32
    work = volume.astype(np.float32 if small else np.float64, copy=False)
    taps = _TAPS[interpolation]
    if max(nx, rows, cols) >= _CV_LIMIT or len(taps) * (ny + 2 * _PAD) >= _CV_LIMIT:
        result = _warp_volume_scipy(work, matrix, out.shape, interpolation, fill)
        out[...] = cast(result, out.dtype)
        _keep_exact_volume(out, volume, matrix, fill, interpolation)
        return
    finite = bool(np.isfinite(fill))
    pad = ((_PAD, _PAD), (_PAD, _PAD), (0, 0))
    if finite:
        padded = np.pad(work, pad, mode="constant", constant_values=fill)
    else:  # the edge, so that no weight (not even 0) touches a NaN; outside is set below
        padded = np.pad(work, pad, mode="edge")
    border = {"borderMode": cv2.BORDER_CONSTANT if finite else cv2.BORDER_REPLICATE,
              "borderValue": (float(fill) if finite else 0.0,) * 4}  # fmt: skip
    direct = out.dtype == work.dtype
    plane = None if direct else np.empty((rows, cols), work.dtype)
    for k in range(out.shape[0]):
        target = out[k] if direct else plane
        _resample_box(padded, volume.shape, matrix, k, (0, rows, 0, cols), taps, border, target)
        if not direct:
            out[k] = cast(plane, out.dtype)
    if not finite:
        out[~overlap_mask(matrix, out.shape, volume.shape)] = fill
    _keep_exact_volume(out, volume, matrix, fill, interpolation)


def _keep_exact_volume(out, volume, matrix, fill, interpolation):
    """64-bit integers: voxels not interpolated get their exact value (see ``exact``)."""
    if out.dtype in WIDE_INTEGERS:
        box = (0, out.shape[1], 0, out.shape[2])
        for k in range(out.shape[0]):
            keep_exact(out[k], _plane_coordinates(matrix, k, box), volume, fill, interpolation)


def _resample_box(padded, shape, matrix, k, box, taps, border, plane):
    """Interpolate the reference voxels ``[k, y0:y1, x0:x1]`` into ``plane[y0:y1, x0:x1]``.

    OpenCV does the in-plane kernel; the z taps are blended here, each from one moving
    plane when z does not depend on (x, y), else by ``cv2.remap`` on the moving planes
    the box reaches stacked into one tall image (``padded`` keeps them ``_PAD`` fill
    rows apart); a box reaching too many planes is split.
    """
    nz, ny, nx = shape
    y0, y1, x0, x1 = box
    lo, hi = taps[0], taps[-1]
    height = ny + 2 * _PAD
    region = plane[y0:y1, x0:x1]
    flags = cv2.INTER_LINEAR if len(taps) == 2 else cv2.INTER_CUBIC
    corners = matrix[1:3] @ np.array([[x0, x1 - 1] * 2, [y0, y0, y1 - 1, y1 - 1], [k] * 4, [1] * 4])
    z_lo = max(np.floor(corners[1].min()), -_PAD - lo)  # the z0 whose taps are all in `padded`
    z_hi = min(np.floor(corners[1].max()), nz - 1 + _PAD - hi)
    region[...] = 0 if z_lo <= z_hi else border["borderValue"][0]
    if z_lo > z_hi:
        return
    if matrix[2, 0] == 0 and matrix[2, 1] == 0:  # one moving z for the whole plane
        in_plane = matrix[:2, [0, 1, 3]] + np.outer(matrix[:2, 2], [0, 0, k])
        in_plane[:, 2] += in_plane[:, :2] @ [x0, y0] + [0, _PAD]
        z0 = int(z_lo)
        for d, w in zip(taps, _z_weights(corners[1, 0] - z0, len(taps)), strict=True):
            if w:
                sample = cv2.warpAffine(padded[z0 + d + _PAD], in_plane, (x1 - x0, y1 - y0),
                                        flags=flags | cv2.WARP_INVERSE_MAP, **border)  # fmt: skip
                region += sample * plane.dtype.type(w)
        return
    count = int(z_hi - z_lo) + hi - lo + 1  # moving planes read
    if count * height >= _CV_LIMIT and (y1 - y0 > 1 or x1 - x0 > 1):
        ym, xm = (y0 + y1) // 2, (x0 + x1) // 2  # halve the longer side
        halves = [(y0, ym, x0, x1), (ym, y1, x0, x1)] if y1 - y0 >= x1 - x0 else [
            (y0, y1, x0, xm), (y0, y1, xm, x1)]  # fmt: skip
        for half in halves:
            _resample_box(padded, shape, matrix, k, half, taps, border, plane)
        return
    # float32 maps (cv2.remap's own); the tall rows stay below 2**15, so within 1/512 voxel
    mx, my, mz = _plane_coordinates(matrix, k, box, np.float32)
    z0 = np.floor(mz)
    weights = _z_weights(mz - z0, len(taps))
    valid = None  # None: every tap's moving rows are in `padded` (a convex test: the corners)
    if corners.min() < -_PAD - lo or np.any(corners.max(axis=1) >= np.add((ny, nz), _PAD - hi)):
        valid = (z0 >= z_lo) & (z0 <= z_hi) & (my >= -_PAD - lo) & (my < ny + _PAD - hi)
    first = int(z_lo) + lo + _PAD
    tall = padded[first : first + count].reshape(-1, nx)
    map_y = z0  # becomes the tall-image row of the tap d = lo, rounded once
    map_y -= z_lo
    map_y *= height
    map_y += my + _PAD
    for weight in weights:
        if weight.any():  # e.g. integer z shifts: half the work
            sample = cv2.remap(tall, mx, map_y, flags, **border)
            sample *= weight
            region += sample
        map_y += height
    if valid is not None:
        region[~valid] = border["borderValue"][0]


def _z_weights(f, taps):
    """Kernel weights of the z taps at the fractional positions ``f`` in [0, 1)."""
    if taps == 2:
        return [1.0 - f, f]
    a, g = _KEYS_A, 1.0 - f
    w0 = ((a * (f + 1) - 5 * a) * (f + 1) + 8 * a) * (f + 1) - 4 * a
    w1 = ((a + 2) * f - (a + 3)) * f * f + 1
    w2 = ((a + 2) * g - (a + 3)) * g * g + 1
    return [w0, w1, w2, 1.0 - w0 - w1 - w2]


def _warp_volume_scipy(work, matrix, out_shape, interpolation, fill):
    """Beyond ``cv2.remap``'s limit: ``scipy.ndimage.affine_transform`` in (z, y, x) order
    (order 1, or 3 for cubic: a B-spline, not the Keys kernel)."""
    from scipy import ndimage

    order = 1 if interpolation == "linear" else 3
    finite = bool(np.isfinite(fill))
    result = ndimage.affine_transform(  # the (x, y, z) matrix with its axes reversed
        work, matrix[2::-1, 2::-1], matrix[2::-1, 3], output_shape=out_shape, order=order,
        mode="grid-constant" if finite else "nearest", cval=float(fill) if finite else 0.0,
        prefilter=order > 1)  # fmt: skip
    if not finite:
        result[~overlap_mask(matrix, out_shape, work.shape)] = fill
    return result
