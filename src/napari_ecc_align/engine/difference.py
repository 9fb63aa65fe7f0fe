"""Difference images: ``|reference - aligned|`` like Pillow's ``ImageChops.difference``, or
the same after normalising both images over their common region; for images and volumes.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .alignment import Alignment
from .lazy import Multiscale, is_lazy
from .lazy_warp import overlap_volume_lazily, split_chunks, volume_chunks, warp_planes_lazily
from .preprocess import as_array, luminance
from .warping import overlap, overlap_mask, warp_one

# A normalized difference (in standard deviations) is shown or saved at full scale here.
NORMALIZED_FULL_SCALE = 4.0
# Robust value ranges closer than this share of the span count as "the same range".
_RANGE_TOLERANCE = 0.1
_RANGE_PIXELS = 1_000_000  # about this many pixels of a lazy image judge its value range


def difference(reference, aligned, *, mode="absolute", alignment=None, mask=None):
    """Difference image of the reference and the aligned (warped) moving image.

    Parameters
    ----------
    reference, aligned : array_like
        Images on the same grid, e.g. ``aligned = warp(moving, alignment)``:
        ``(rows, cols[, channels])``, or volumes ``(z, y, x[, channels])`` when
        ``alignment`` is a volume alignment (without one, a 3D array whose last
        axis is not 1, 3 or 4 long, or any 4D array, is taken as a volume).
    mode : {"absolute", "normalized"}
        ``"absolute"``: ``|reference - aligned|`` like Pillow's
        ``ImageChops.difference``; same unsigned dtype in, same dtype out (signed
        integers give the unsigned type of their width, so nothing wraps; mixed
        dtypes give float64). ``"normalized"``: both images scaled to zero mean
        and unit variance over their common valid region first (float32 out),
        which makes e.g. a binarised and a grayscale image comparable.
    alignment : Alignment, optional
        When given, pixels the moving image does not cover are 0 instead of
        showing the warp's fill value as spurious edges (see :func:`overlap`).
    mask : array_like of bool, optional
        Only pixels where ``mask`` is True are compared; the rest are 0. Shape
        ``(rows, cols)``, or ``(z, y, x)`` for volumes.

    Returns
    -------
    ndarray or dask.array.Array
        Absolute mode: the shape of ``reference``. Normalized mode: ``(rows, cols)``
        (``(z, y, x)``), the difference of the two luminances (colour images are
        compared by their luminance), with statistics over the whole volume for
        volumes. NaN or infinite pixels in either image give 0. With a dask or zarr
        image (2D), a dask array in the chunks of a lazy :func:`warp`, computed chunk
        by chunk (the normalized statistics are read in one chunked pass at the call).
    """
    if mode not in ("absolute", "normalized"):
        raise ValueError(f"mode must be 'absolute' or 'normalized', got {mode!r}")
    ref = as_array(reference, "reference", lazy=True)  # dask, zarr: a lazy difference
    ali = as_array(aligned, "aligned", lazy=True)
    if alignment is not None and not isinstance(alignment, Alignment):
        raise TypeError(f"alignment must be an Alignment, got {type(alignment).__name__}")
    if alignment is not None:
        spatial = alignment.ndim
    else:  # without an alignment: (z, y, x) and (z, y, x, channels) are volumes
        spatial = 3 if ref.ndim == 4 or (ref.ndim == 3 and ref.shape[-1] not in (1, 3, 4)) else 2
    axes = "(z, y, x)" if spatial == 3 else "(rows, cols)"
    if ref.shape[:spatial] != ali.shape[:spatial] or ref.ndim < spatial:
        raise ValueError(
            f"reference {ref.shape} and aligned {ali.shape} must share {axes}; "
            "warp the moving image onto the reference grid first: warp(moving, alignment)"
        )
    if ref.shape != ali.shape and mode == "absolute":
        raise ValueError(
            f"reference {ref.shape} and aligned {ali.shape} differ in channels; "
            "use mode='normalized' to compare their luminance"
        )
    if is_lazy(ref) or is_lazy(ali):
        if spatial == 2 or (ref.ndim == 3 and ali.ndim == 3):
            return _lazy_difference(ref, ali, mode, alignment, mask, spatial)
        ref, ali = as_array(ref, "reference"), as_array(ali, "aligned")  # with channels: loaded
    if mode == "normalized" or ref.shape != ali.shape:
        ref, ali = (_gray(a, spatial) for a in (ref, ali))
    valid = _valid_region(ref, ali, alignment, mask, spatial)
    if mode == "normalized":
        return _normalized_difference(ref, ali, valid)
    diff = _absolute_difference(ref, ali)
    if valid is not None:
        diff[~valid] = 0
    return diff


def _lazy_difference(ref, ali, mode, alignment, mask, spatial):
    """:func:`difference` of 2D images or gray volumes of which one is lazy: a dask
    array in the chunks of a lazy ``warp``, each chunk computed from the same chunks of
    the inputs (and of the overlap and ``mask``). The normalized mode's statistics are
    one pass over both images now, chunk by chunk; the differences are computed when
    asked for."""
    import dask.array as da

    shape = tuple(ref.shape[:spatial])
    grid = volume_chunks(shape) if spatial == 3 else tuple(split_chunks(n) for n in shape)

    def chunked(arr):
        if isinstance(arr, Multiscale):  # a pyramid: its finest level
            arr = arr.levels[0]
        chunks = grid + tuple((n,) for n in arr.shape[spatial:])
        if isinstance(arr, da.Array):
            return arr.rechunk(chunks)
        return da.from_array(arr, chunks=chunks)  # each chunk read on its own

    gray = mode == "normalized" or ref.shape != ali.shape
    a, b = chunked(ref), chunked(ali)
    if gray:
        a, b = (_lazy_gray(x, spatial) for x in (a, b))
    valid = None
    if alignment is not None and spatial == 3:
        valid = overlap_volume_lazily(alignment.matrix, shape, alignment.moving_shape,
                                      overlap_mask)  # fmt: skip
    elif alignment is not None:
        covered = warp_planes_lazily(_Ones(alignment.moving_shape), 0, alignment.matrix,
                                     shape, "linear", 0.0, warp_one)  # fmt: skip
        valid = covered > 0.999
    if mask is not None:
        if tuple(mask.shape) != shape:
            raise ValueError(f"mask must have shape {shape}, got {tuple(mask.shape)}")
        given = chunked(mask if is_lazy(mask) else as_array(mask, "mask")) != 0
        valid = given if valid is None else valid & given
    extra = [] if valid is None else [valid]
    if gray:
        stats = _lazy_statistics(a, b, valid, spatial)
        return da.map_blocks(_normalized_block, a, b, *extra, stats=stats, spatial=spatial,
                             dtype=np.float32)  # fmt: skip
    dtype = _absolute_difference(np.zeros(1, a.dtype), np.zeros(1, b.dtype)).dtype
    if valid is not None and a.ndim > spatial:
        extra = [valid[..., None]]  # dask lines blocks up from the last axis, as numpy does
    return da.map_blocks(_absolute_block, a, b, *extra, spatial=spatial, dtype=dtype)


def _lazy_gray(arr, spatial):
    if arr.ndim == spatial:
        return arr.astype(np.float32)
    return arr.map_blocks(luminance, drop_axis=spatial, dtype=np.float32)


def _usable(a, b, valid=None, spatial=2):
    """Where both (gray or channel-last) blocks are finite, and ``valid``."""
    shape = a.shape[:spatial]
    usable = np.ones(shape, bool) if valid is None else valid.reshape(shape).copy()
    for arr in (a, b):
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            usable &= finite.all(axis=-1) if finite.ndim > spatial else finite
    return usable


def _absolute_block(a, b, valid=None, *, spatial=2):
    diff = _absolute_difference(a, b)
    usable = _usable(a, b, valid, spatial)
    diff[~usable] = 0  # every channel of an unusable pixel
    return diff


def _lazy_statistics(a, b, valid, spatial):
    """Count, sums and sums of squares of both gray images over where both are usable,
    computed now (float64, chunk by chunk)."""
    import dask.array as da

    def sums(x, y, v=None):
        usable = _usable(x, y, v, spatial)
        xs, ys = x[usable].astype(np.float64), y[usable].astype(np.float64)
        total = np.array([usable.sum(), xs.sum(), ys.sum(), xs @ xs, ys @ ys])
        return total.reshape((1,) * spatial + (5,))

    chunks = tuple((1,) * len(c) for c in a.chunks[:spatial]) + ((5,),)
    parts = da.map_blocks(sums, a, b, *([] if valid is None else [valid]), dtype=np.float64,
                          new_axis=spatial, chunks=chunks)  # fmt: skip
    return parts.sum(axis=tuple(range(spatial))).compute()


def _normalized_block(a, b, valid=None, *, stats, spatial=2):
    n, sum_a, sum_b, square_a, square_b = stats
    out = np.zeros(a.shape, np.float32)
    if n < 2:
        return out
    usable = _usable(a, b, valid, spatial)
    scale = []
    for total, square in ((sum_a, square_a), (sum_b, square_b)):
        mean = total / n
        std = math.sqrt(max(square / n - mean * mean, 0.0))
        scale.append((mean, 1.0 / std if std > 0 else 1.0))
    with np.errstate(invalid="ignore"):
        z_a = (a.astype(np.float32) - np.float32(scale[0][0])) * np.float32(scale[0][1])
        z_b = (b.astype(np.float32) - np.float32(scale[1][0])) * np.float32(scale[1][1])
        out[usable] = np.abs(z_a - z_b)[usable]
    return out


class _Ones:
    """A moving image of ones, made region by region (for the lazy overlap)."""

    def __init__(self, shape):
        self.shape, self.dtype = tuple(shape), np.dtype(np.float32)

    def __getitem__(self, key):
        sides = (len(range(*k.indices(n))) for k, n in zip(key, self.shape, strict=True))
        return np.ones(tuple(sides), np.float32)


def _gray(arr, spatial):
    """Float32 luminance of an image or volume with ``spatial`` axes (channels last)."""
    return luminance(arr) if arr.ndim > spatial else arr.astype(np.float32, copy=False)


def _valid_region(ref, ali, alignment, mask, spatial):
    shape = ref.shape[:spatial]
    valid = None
    for arr in (ref, ali):
        if arr.dtype.kind == "f":
            finite = np.isfinite(arr)
            finite = finite.all(axis=-1) if finite.ndim == spatial + 1 else finite
            if not finite.all():
                valid = finite if valid is None else valid & finite
    if alignment is not None:
        covered = overlap(alignment, shape)
        valid = covered if valid is None else valid & covered
    if mask is not None:
        mask = as_array(mask, "mask")
        if mask.shape != shape:
            raise ValueError(f"mask must have shape {shape}, got {mask.shape}")
        valid = mask != 0 if valid is None else valid & (mask != 0)
    if valid is not None and valid.ndim == spatial and ref.ndim == spatial + 1:
        valid = np.broadcast_to(valid[..., None], ref.shape)
    return valid


def _absolute_difference(a, b):
    if a.dtype != b.dtype:
        a, b = a.astype(np.float64), b.astype(np.float64)
    if a.dtype == np.bool_:
        return a ^ b
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            return np.abs(a - b)
    if a.dtype.kind == "u":
        return np.where(a >= b, a - b, b - a)
    # Signed: modular subtraction in the unsigned type of the same width is exact
    # for the true difference, which always fits there.
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    ua, ub = a.astype(unsigned), b.astype(unsigned)
    return np.where(a >= b, ua - ub, ub - ua)


def _normalized_difference(ref, ali, valid):
    """|z(ref) - z(aligned)| with z-scores over the common valid region.

    OpenCV's masked statistics (double accumulators) and float32 ufuncs keep
    this fast and release the GIL, so a viewer stays responsive meanwhile.
    """
    ref = np.ascontiguousarray(ref, dtype=np.float32)
    ali = np.ascontiguousarray(ali, dtype=np.float32)
    out = np.zeros(ref.shape, np.float32)
    mask = None if valid is None else np.ascontiguousarray(valid).view(np.uint8)

    def rows(a):  # OpenCV takes (z, y, x) volumes as (z * y, x) images
        return a.reshape(-1, a.shape[-1])

    if mask is not None and cv2.countNonZero(rows(mask)) < 2:
        return out
    with np.errstate(invalid="ignore"):
        mask = None if mask is None else rows(mask)
        ref_mean, ref_std = (float(v[0, 0]) for v in cv2.meanStdDev(rows(ref), mask=mask))
        ali_mean, ali_std = (float(v[0, 0]) for v in cv2.meanStdDev(rows(ali), mask=mask))
        np.subtract(ref, np.float32(ref_mean), out=out)
        out *= np.float32(1.0 / ref_std if ref_std > 0 else 1.0)
        scaled = ali - np.float32(ali_mean)
        scaled *= np.float32(1.0 / ali_std if ali_std > 0 else 1.0)
        out -= scaled
        np.abs(out, out=out)
    if valid is not None:
        out[~valid] = 0.0
    return out


def _for_range(image, name: str) -> np.ndarray:
    """``image`` loaded for its value range: a pyramid's coarsest level, a lazy array's
    every n-th pixel (about a million of them), a numpy array as it is."""
    arr = as_array(image, name, lazy=True)
    if isinstance(arr, Multiscale):
        arr = arr.levels[-1]
    if is_lazy(arr):  # strided over the spatial axes (a volume's three)
        axes = 2 if arr.ndim == 2 or arr.shape[-1] in (1, 3, 4) else min(arr.ndim, 3)
        voxels = np.prod(arr.shape[:axes], dtype=np.float64)
        step = max(1, int((voxels / _RANGE_PIXELS) ** (1 / axes)))
        arr = arr[(slice(None, None, step),) * axes]
    return as_array(arr, name)


def default_difference_mode(reference, moving, ndim=None) -> str:
    """``"absolute"`` if the images are directly comparable, else ``"normalized"``.

    Comparable means the same dtype, the same channels and robust value ranges
    (1st and 99th percentiles) that agree within 10 % of the larger span. ``ndim``
    (2 or 3) says how many leading axes are spatial; by default a 3D array whose
    last axis is not 1, 3 or 4 long is a volume. Volumes of different shapes compare.

    Raises
    ------
    ValueError
        If ``ndim`` is not None, 2 or 3, an array has fewer axes than that, or
        (without ``ndim``) one array is a volume and the other a 2D image.
    TypeError
        If an input is not a numeric array.
    """
    reference = _for_range(reference, "reference")
    moving = _for_range(moving, "moving")
    if ndim is not None and (isinstance(ndim, bool) or ndim not in (2, 3)):
        raise ValueError(f"ndim must be 2 (images), 3 (volumes) or None, got {ndim!r}")
    spatial = ndim or (3 if _is_volume(reference) else 2)
    if ndim is None and _is_volume(moving) != (spatial == 3):
        kinds = {True: "a (z, y, x) volume", False: "a 2D image"}
        raise ValueError(
            f"reference {reference.shape} is {kinds[spatial == 3]} but moving {moving.shape} "
            f"is {kinds[spatial != 3]}; compare images with images and volumes with volumes"
        )
    for name, arr in (("reference", reference), ("moving", moving)):
        if arr.ndim < spatial:
            raise ValueError(
                f"{name} has shape {arr.shape}: fewer than the {spatial} spatial axes "
                f"of {'(z, y, x)' if spatial == 3 else '(rows, cols)'}"
            )
    if reference.dtype != moving.dtype or reference.shape[spatial:] != moving.shape[spatial:]:
        return "normalized"
    lo_a, hi_a = _robust_range(reference, spatial == 3)
    lo_b, hi_b = _robust_range(moving, spatial == 3)
    span = max(hi_a - lo_a, hi_b - lo_b)
    if span <= 0:
        return "absolute"
    tolerance = _RANGE_TOLERANCE * span
    close = abs(lo_a - lo_b) <= tolerance and abs(hi_a - hi_b) <= tolerance
    return "absolute" if close else "normalized"


def _is_volume(image: np.ndarray) -> bool:
    return image.ndim == 4 or (image.ndim == 3 and image.shape[-1] not in (1, 3, 4))


def _robust_range(image: np.ndarray, volume: bool) -> tuple[float, float]:
    if volume:
        step = max(1, int(np.cbrt(np.prod(image.shape[:3]) / 250_000)))  # ~250k samples
        sample = image[::step, ::step, ::step].astype(np.float64).ravel()
    else:
        if image.ndim == 3 and image.shape[-1] == 4:
            image = image[..., :3]  # alpha is not intensity
        step = max(1, int(math.sqrt(image.shape[0] * image.shape[1] / 250_000)))  # ~250k samples
        sample = image[::step, ::step].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(sample, [1, 99])
    return float(lo), float(hi)
