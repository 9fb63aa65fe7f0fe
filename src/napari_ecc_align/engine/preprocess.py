"""Input validation and normalisation shared by the engine, warp and difference.

Everything here turns what users hand us (any numeric dtype, grayscale or
RGB/RGBA channel-last, NaNs, masks) into what OpenCV accepts, or raises a
``TypeError``/``ValueError`` that names the argument.
"""

from __future__ import annotations

import cv2
import numpy as np

from .lazy import as_multiscale, decimated, halved_lazily, is_lazy
from .sources import image_of

# ITU-R BT.601 luma weights, the ones cv2.cvtColor(..., COLOR_RGB2GRAY) uses.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def as_array(image, name: str, lazy: bool = False) -> np.ndarray:
    """Return ``image`` as a numeric ndarray (no copy when possible) or raise TypeError.
    ``lazy``: a dask or zarr array is returned as it is (checked, not loaded). A source
    (an OME-Zarr image, by path or opened) stands for its image (see :mod:`.sources`)."""
    if image is None:
        raise TypeError(f"{name} must be an array, got None")
    image = image_of(image, name)
    if lazy:
        image = as_multiscale(image, name) or image  # a pyramid stands for its finest level
    if lazy and is_lazy(image):
        _check_dtype(np.dtype(image.dtype), name)
        return image
    if hasattr(image, "compute") and not isinstance(image, np.ndarray):
        image = image.compute()  # dask and similar lazy arrays
    try:
        arr = np.asarray(image)
    except Exception as exc:  # e.g. ragged lists
        raise TypeError(f"{name} must be array-like: {exc}") from None
    _check_dtype(arr.dtype, name)
    return arr


def _check_dtype(dtype: np.dtype, name: str) -> None:
    if dtype.kind == "O" or not (np.issubdtype(dtype, np.number) or dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric or boolean array, got dtype {dtype}")
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} has complex dtype {dtype}; pass a real image, e.g. np.abs({name})")


def as_real_matrix(value, name: str, expected: str) -> np.ndarray:
    """``value`` as a float64 array, or a TypeError naming ``name``.

    Complex values are refused: casting them to float would silently drop their
    imaginary part. Only the conversion is checked here; the caller checks the
    shape and finiteness (``None`` comes back as a 0-d NaN array).

    Parameters
    ----------
    value : array_like
        The matrix as the user gave it (nested lists, an ndarray, ...).
    name : str
        The argument's name, for messages.
    expected : str
        What it should be, for the message, e.g. ``"a 3x3 matrix"``.

    Returns
    -------
    numpy.ndarray
        A new float64 array (a copy, even when ``value`` already is one).

    Raises
    ------
    TypeError
        If ``value`` holds complex numbers (the message suggests ``np.real``), or
        cannot be made a float64 array (ragged rows, non-numeric strings,
        objects): "``name`` must be ``expected``, got <type>".

    Examples
    --------
    >>> from napari_ecc_align.engine.preprocess import as_real_matrix
    >>> as_real_matrix([[1, 0, 2], [0, 1, 3]], "matrix", "a 2x3 matrix")
    array([[1., 0., 2.],
           [0., 1., 3.]])
    >>> as_real_matrix("eye", "matrix", "a 2x3 matrix")
    Traceback (most recent call last):
    ...
    TypeError: matrix must be a 2x3 matrix, got str
    """
    try:
        arr = np.asarray(value)
        if np.iscomplexobj(arr):
            raise TypeError(
                f"{name} must be a real matrix, got complex values ({arr.dtype}); pass "
                f"np.real({name}) if the imaginary parts are meant to be 0"
            )
        return np.array(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        if str(exc).startswith(f"{name} must be a real"):
            raise
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from None


def as_shape(shape, name: str, form: str) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints, or a TypeError/ValueError naming ``name``.

    Integers (Python or numpy) and integral floats (``2.0``: what arithmetic on sizes
    gives) are accepted; ``1.5`` is refused (ValueError) rather than truncated, and
    bools and non-numbers are refused (TypeError).

    Parameters
    ----------
    shape : sequence of int
        The shape as the user gave it.
    name : str
        The argument's name, for messages.
    form : str
        The expected axes, e.g. ``"(rows, cols)"`` or ``"(z, y, x)"``: the number of
        entries is its number of commas plus one, and messages quote it.

    Returns
    -------
    tuple of int
        Python ints, each at least 1.

    Raises
    ------
    TypeError
        If ``shape`` is not iterable, or an entry is a bool or no number.
    ValueError
        If an entry is not whole (or not finite), an entry is below 1, or the
        number of entries differs from ``form``'s.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align.engine.preprocess import as_shape
    >>> as_shape([2.0, np.int64(3)], "output_shape", "(rows, cols)")
    (2, 3)
    >>> as_shape((1.5, 2), "output_shape", "(rows, cols)")
    Traceback (most recent call last):
    ...
    ValueError: output_shape must be (rows, cols) of whole numbers, got (1.5, 2)
    """
    length = form.count(",") + 1
    try:
        entries = tuple(shape)
    except TypeError:
        raise TypeError(f"{name} must be a sequence {form}, got {shape!r}") from None
    dims = []
    for n in entries:
        if isinstance(n, (bool, np.bool_)) or not isinstance(
            n, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"{name} must be {form} of whole numbers, got {shape!r}")
        if not isinstance(n, (int, np.integer)) and not (np.isfinite(n) and float(n).is_integer()):
            raise ValueError(f"{name} must be {form} of whole numbers, got {shape!r}")
        dims.append(int(n))
    if len(dims) != length or min(dims) < 1:
        raise ValueError(f"{name} must be {form} of positive ints, got {shape!r}")
    return tuple(dims)


def split_channels(arr: np.ndarray, name: str) -> tuple[tuple[int, int], int]:
    """Return the spatial ``(rows, cols)`` of a 2D image and its channel count (0 for gray).

    Channel-last RGB (3) and RGBA (4) are recognised; any other third axis means a
    stack, which this function rejects with a pointer to stack alignment.
    """
    if arr.ndim == 2:
        rows, cols = arr.shape
        channels = 0
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4):
        rows, cols, channels = arr.shape
    elif arr.ndim == 3 and arr.shape[-1] == 1:
        rows, cols, channels = arr.shape
    else:
        raise ValueError(
            f"{name} has shape {arr.shape}: align() takes one 2D image, grayscale (rows, cols) "
            "or colour (rows, cols, 3|4). For a (z, y, x) volume pass ndim=3 (and spacing); "
            "for a time-lapse, z-stack of planes or several channels use align_stack"
        )
    if rows < 2 or cols < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels, got {rows}x{cols}")
    return (rows, cols), channels


def luminance(arr: np.ndarray) -> np.ndarray:
    """Float32 single-channel version of a gray, RGB or RGBA image (alpha ignored)."""
    if arr.ndim == 2:
        return arr.astype(np.float32, copy=False)
    if arr.shape[-1] == 1:
        return arr[..., 0].astype(np.float32, copy=False)
    rgb = arr[..., :3].astype(np.float32, copy=False)
    return rgb @ _LUMA


def validate_mask(mask, shape: tuple[int, int], name: str) -> np.ndarray | None:
    """Return ``mask`` as a boolean array of ``shape`` (or None), or raise."""
    if mask is None:
        return None
    mask = as_array(mask, name)
    if mask.shape != tuple(shape):
        raise ValueError(
            f"{name} must have the image's spatial shape {tuple(shape)}, got {mask.shape}"
        )
    if mask.dtype != np.bool_:
        mask = mask != 0
    return mask


def normalise(image, name: str, mask=None, mask_name: str = "mask"):
    """Turn one input image into ECC's working form.

    Returns
    -------
    gray : float32 ndarray (rows, cols)
        Luminance scaled to [0, 1] over the valid pixels; invalid pixels hold
        the mean of the valid ones.
    valid : bool ndarray (rows, cols) or None
        False where the mask excludes a pixel or the value is NaN/inf; None when
        every pixel is valid (the common case, which lets OpenCV skip masking).
    """
    arr = as_array(image, name)
    shape, channels = split_channels(arr, name)
    valid = validate_mask(mask, shape, mask_name)
    if valid is None and arr.ndim == 2 and arr.dtype in _CV_INTEGER_DTYPES:
        # The common stack frame (8/16-bit, no mask): no NaN to look for, and OpenCV
        # scales it to float32 in one call instead of four full-size numpy passes.
        lo, hi = cv2.minMaxLoc(arr)[:2]
        if hi <= lo:
            _no_contrast(name, lo)
        return cv2.normalize(arr, None, 0.0, 1.0, cv2.NORM_MINMAX, cv2.CV_32F), None
    if channels == 4:
        # Fully transparent pixels carry no image content.
        alpha = arr[..., 3]
        opaque = alpha > 0
        if not opaque.all():
            valid = opaque if valid is None else valid & opaque
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        # Scale float64 before the float32 cast so huge values do not overflow to inf
        # and tiny ones do not underflow to 0.
        with np.errstate(invalid="ignore"):
            extremes = np.abs([np.nanmin(arr), np.nanmax(arr)]) if not np.isnan(arr).all() else [0]
        if not _TINY <= max(extremes) <= _HUGE:
            finite_vals = arr[np.isfinite(arr)]
            peak = float(np.abs(finite_vals).max()) if finite_vals.size else 0.0
            if peak > 0:
                arr = arr / peak
    gray = np.ascontiguousarray(luminance(arr))
    # A finite sum (accumulated in double) proves every pixel finite in one pass.
    if gray.dtype.kind == "f" and not np.isfinite(cv2.sumElems(gray)[0]):
        finite = np.isfinite(gray)
        valid = finite if valid is None else valid & finite
    if valid is not None and valid.all():
        valid = None
    if valid is None:
        lo, hi = cv2.minMaxLoc(gray)[:2]
    else:
        values = gray[valid]
        if values.size == 0:
            raise ValueError(
                f"{name} has no valid pixels: every pixel is masked out, NaN or infinite"
            )
        lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        _no_contrast(name, lo)
    peak = max(abs(lo), abs(hi))
    if peak > _HUGE or span < _TINY:
        # float32 differences near its limits overflow (±3e38 spans 6e38), and 1 / span
        # of a tiny span does: bring the values to a peak of 1 first, in float64.
        gray = (gray.astype(np.float64) / peak).astype(np.float32)
        lo, span = lo / peak, span / peak
    out = gray - np.float32(lo)
    out *= np.float32(1.0 / span)
    if valid is not None:
        # The mean, not 0, so blurring and downsampling near masked pixels
        # creates no strong false edges.
        out[~valid] = out[valid].mean()
    return out, valid


def fill_invalid(image: np.ndarray, valid: np.ndarray) -> None:
    """Set ``image``'s invalid pixels (voxels) to the mean of the valid ones, in place (0
    when none is valid): blurring and downsampling near them then make no false edge."""
    image[~valid] = float(image[valid].mean()) if valid.any() else 0.0


# Beyond these magnitudes float32 arithmetic on the values overflows or loses them.
_HUGE, _TINY = 1e30, 1e-30
_CV_INTEGER_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)}


def _no_contrast(name: str, value: float):
    from .alignment import AlignmentError

    raise AlignmentError(
        f"{name} has no contrast (every valid pixel equals {value:g}); ECC needs image "
        "structure in both images: check that the right image or channel was passed"
    )


def shrink(arr: np.ndarray, mask, halvings: int):
    """Halve an image (and its mask) ``halvings`` times in its own dtype.

    Used for images too large to normalise to float32 within the memory budget:
    ``cv2.pyrDown`` keeps x → x/2 exact (as the engine's pyramid does) and works
    in uint8/uint16/int16/float32/float64 without a float copy of the whole image.
    Other dtypes are decimated first (every second pixel).
    """
    if is_lazy(arr):  # halved chunk by chunk: never loaded whole
        return halved_lazily(arr, halvings), None if mask is None else decimated(mask, halvings)
    for _ in range(halvings):
        channels = arr.shape[2] if arr.ndim == 3 else 1
        if arr.dtype in _PYRDOWN_DTYPES and channels <= 4 and min(arr.shape[:2]) >= 2:
            arr = cv2.pyrDown(np.ascontiguousarray(arr))
        else:
            arr = np.ascontiguousarray(arr[::2, ::2])
        if mask is not None:
            mask = np.ascontiguousarray(np.asarray(mask)[::2, ::2])
            mask = mask[: arr.shape[0], : arr.shape[1]]
    return arr, mask


_PYRDOWN_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}
