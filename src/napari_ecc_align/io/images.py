"""Reading and writing image files: PNG, JPEG and TIFF.

No Qt or napari here: the CLI and scripts use these functions directly.

* Reads return the stored dtype: 8-bit files give uint8, 16-bit PNG and TIFF
  give uint16, float TIFFs stay float. Colour comes back channel-last
  ``(rows, cols, 3|4)``, grayscale as ``(rows, cols)``.
* Writes check first that the array fits the format (JPEG is 8-bit only, PNG
  8 or 16-bit) and then replace the target atomically, so an interrupted run
  never leaves a truncated image where a good one was.

* Reads open regular files only (a FIFO or device named like an image is
  refused by its type, see :mod:`.files`), and check the size a file
  *declares* against the pixel budget before decoding a byte of it.

PNG and JPEG are read with Pillow's format classes (header first, then the
pixels) and written through imageio's Pillow plugin, TIFF through tifffile. The
one exception is 16-bit *colour* PNG, which Pillow reduces to 8 bits on reading
and cannot write: OpenCV (already a dependency) handles those.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..engine import (
    NORMALIZED_FULL_SCALE,
    PixelBudgetError,
    check_pixels,
    create_temporary,
    temporary_name,
)
from ..engine import max_pixels as budget
from .files import check_tiff_series, open_input

PathLike = str | os.PathLike

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
SUPPORTED = "PNG (.png), JPEG (.jpg, .jpeg) or TIFF (.tif, .tiff)"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow modes that are not plain L/RGB/RGBA, and what to convert them to.
_PIL_CONVERT = {"P": "RGB", "PA": "RGBA", "LA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB"}
_JPEG_QUALITY = 95


def image_format(path: PathLike) -> str:
    """Return ``"PNG"``, ``"JPEG"`` or ``"TIFF"`` from the file extension.

    Raises
    ------
    ValueError
        If the extension is none of .png, .jpg, .jpeg, .tif, .tiff.
    """
    ext = Path(path).suffix.lower()
    if ext not in _FORMATS:
        raise ValueError(
            f"{os.fspath(path)}: unsupported file extension {ext or '(none)'!r}; use {SUPPORTED}"
        )
    return _FORMATS[ext]


# ------------------------------------------------------------------------------------- reading
def read_image(path: PathLike, *, max_pixels=None) -> np.ndarray:
    """Read a PNG, JPEG or TIFF image with its stored dtype.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its extension chooses the reader.
    max_pixels : int or float, optional
        The pixel budget (see :mod:`napari_ecc_align.engine.limits`): a file
        declaring more pixels is refused before anything is decoded or
        allocated. Colour channels do not count, the pages of a multi-page TIFF
        do. Default: the environment variable ``NAPARI_ECC_ALIGN_MAX_PIXELS``,
        else 2**28 (a 16384 × 16384 image). For files meant to be bigger, pass a
        larger number (or ``math.inf``), or open them lazily instead:
        ``tifffile.memmap`` or ``tifffile.imread(path, aszarr=True)`` with zarr.

    Returns
    -------
    ndarray
        ``(rows, cols)`` for grayscale, ``(rows, cols, 3|4)`` for RGB(A).
        8-bit files give uint8 (1-bit PNGs give bool), 16-bit PNG and TIFF give
        uint16, TIFF keeps any stored dtype (float32, int16, ...). Palette
        images become RGB (RGBA if they have transparency), gray+alpha becomes
        RGBA so the alpha channel still masks pixels, CMYK becomes RGB. Planar
        RGB TIFFs are returned channel-last. Multi-page TIFFs return the first
        series, e.g. ``(pages, rows, cols)``.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path``.
    PixelBudgetError
        A ``ValueError``: the file declares more pixels than ``max_pixels``; the
        message names its size and how to raise the limit.
    ValueError
        If the extension is not supported, the file cannot be decoded, or
        ``path`` is no regular file (a directory, FIFO or device is refused
        before it is opened, so it cannot block).
    OSError
        For other I/O failures, with the true reason: ``PermissionError``
        ("permission denied") for a file or folder that may not be read,
        "too many levels of symbolic links" for a symlink loop.

    Examples
    --------
    >>> image = read_image("scan.png")  # doctest: +SKIP
    >>> image.dtype, image.shape  # doctest: +SKIP
    (dtype('uint16'), (2048, 1536))
    """
    name = os.fspath(path)
    fmt = image_format(path)
    limit = budget(max_pixels)  # a bad max_pixels fails before the file is touched
    with open_input(name) as fh:
        header = fh.read(32)
        # Decode by content: a PNG saved as .tif still reads; a file that is no image at
        # all gets a clearer message than the decoders' own.
        content = sniff_format(header)
        if content is None:
            what = "the file is empty" if not header else "no PNG, JPEG or TIFF signature"
            raise ValueError(
                f"cannot read {name}: not a valid {fmt} image ({what}); "
                f"supported formats are {SUPPORTED}"
            )
        fmt = content
        fh.seek(0)
        try:
            if fmt == "TIFF":
                image = _read_tiff(fh, name, limit)
            elif fmt == "PNG" and _is_16bit_colour_png(header):
                check_pixels(_png_size(header), name, limit)
                image = _read_png_16bit_colour(fh)
            else:
                image = _read_pillow(fh, name, fmt, limit)
        except (MemoryError, PixelBudgetError):
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(
                f"cannot read {name} as a {fmt} image ({reason}); supported formats are {SUPPORTED}"
            ) from None
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def sniff_format(header: bytes) -> str | None:
    """``"PNG"``, ``"JPEG"`` or ``"TIFF"`` from a file's first bytes, or None.

    The format is told by the file's content, not its extension, so a PNG saved
    as ``.tif`` is still read as a PNG.

    Parameters
    ----------
    header : bytes
        The first bytes of the file (:func:`read_image` reads 32); the longest
        signature, PNG's, is 8 bytes.

    Returns
    -------
    str or None
        ``"PNG"`` for the PNG signature, ``"JPEG"`` for ``FF D8 FF``, ``"TIFF"`` for a
        classic or BigTIFF signature in either byte order (:func:`is_tiff_header`),
        None for anything else (an empty file included).

    Examples
    --------
    >>> from napari_ecc_align.io.images import sniff_format
    >>> sniff_format(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(24))
    'PNG'
    >>> sniff_format(b"II*\\x00" + bytes(28)), sniff_format(b"GIF89a"), sniff_format(b"")
    ('TIFF', None, None)
    """
    if header.startswith(_PNG_SIGNATURE):
        return "PNG"
    if header.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if is_tiff_header(header):
        return "TIFF"
    return None


def is_tiff_header(header: bytes) -> bool:
    """True when a file's first bytes are a TIFF signature (classic or BigTIFF)."""
    return header[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _read_pillow(fh, name: str, fmt: str, limit) -> np.ndarray:
    from PIL import JpegImagePlugin, PngImagePlugin

    # Pillow's format classes read only the header here, and (unlike Image.open) apply
    # no decompression-bomb check of their own: the pixel budget is the one limit, and
    # Pillow's process-wide MAX_IMAGE_PIXELS is neither consulted nor changed.
    factory = PngImagePlugin.PngImageFile if fmt == "PNG" else JpegImagePlugin.JpegImageFile
    image = factory(fh, name)
    check_pixels(image.size[::-1], name, limit)
    convert = _PIL_CONVERT.get(image.mode)
    if image.mode == "P" and "transparency" in image.info:
        convert = "RGBA"
    elif image.mode == "I":  # 16-bit gray PNG on some Pillow versions
        convert = "I;16"
    if convert is not None:
        image = image.convert(convert)
    return np.array(image)  # a writeable copy, not a view of Pillow's buffer


def _png_size(header: bytes) -> tuple[int, int]:
    """(rows, cols) from the IHDR chunk of a PNG's first 24 bytes."""
    width, height = (int.from_bytes(header[i : i + 4], "big") for i in (16, 20))
    return height, width


def _is_16bit_colour_png(header: bytes) -> bool:
    """Bit depth 16 and colour type gray+alpha (4), RGB (2) or RGBA (6), from IHDR."""
    if not header.startswith(_PNG_SIGNATURE) or header[12:16] != b"IHDR" or len(header) < 26:
        return False
    return header[24] == 16 and header[25] in (2, 4, 6)


def _read_png_16bit_colour(fh) -> np.ndarray:
    # Bytes from the open handle + imdecode: cv2.imread cannot open non-ASCII paths on
    # Windows, and the path must not be opened a second time.
    image = cv2.imdecode(np.frombuffer(fh.read(), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("OpenCV could not decode the 16-bit PNG")
    if image.ndim == 3 and image.shape[-1] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[-1] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _read_tiff(fh, name: str, limit) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(fh, name=name) as tif:
        series = tif.series[0]
        check_tiff_series(series, name, limit)  # from the IFDs, before any allocation
        image = series.asarray()
        axes = series.axes
    # Planar-configuration RGB(A) comes as (..., S, Y, X); the rest of the package
    # (and napari's rgb detection) expects channels last.
    if axes.endswith("SYX") and image.ndim >= 3 and image.shape[-3] in (3, 4):
        image = np.moveaxis(image, -3, -1)
    return image


# ------------------------------------------------------------------------------------- writing
def check_writable(path: PathLike, dtype, shape=None, *, volume: bool = False) -> str:
    """Check that an image of ``dtype`` (and ``shape``) can be saved to ``path``.

    Call it before a long computation so that a bad output name fails early.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its extension chooses the format.
    dtype : numpy dtype-like
        dtype of the image that will be written.
    shape : tuple of int, optional
        Shape of that image, to check the number of channels.
    volume : bool
        The array is a ``(z, y, x)`` volume, which only TIFF stores.

    Returns
    -------
    str
        The format: ``"PNG"``, ``"JPEG"`` or ``"TIFF"``.

    Raises
    ------
    ValueError
        If the format cannot store such an image; the message says which one can.
    """
    fmt = image_format(path)
    dtype = np.dtype(dtype)
    name = os.fspath(path)
    channels = _channels(shape) if shape is not None and not volume else None
    if volume and fmt != "TIFF":
        raise ValueError(f"{name}: {fmt} stores one 2D image; save volumes as .tif")
    if volume and shape is not None and len(tuple(shape)) != 3:
        raise ValueError(f"{name}: a volume has shape (z, y, x), got {tuple(shape)}")
    if fmt != "TIFF" and shape is not None and len(tuple(shape)) not in (2, 3):
        raise ValueError(
            f"{name}: {fmt} stores one 2D image, got shape {tuple(shape)}; save stacks as .tif"
        )
    if fmt == "TIFF":
        if not (dtype == np.bool_ or np.issubdtype(dtype, np.number)):
            raise ValueError(f"{name}: cannot store dtype {dtype} in a TIFF file")
        return fmt
    if fmt == "JPEG":
        if dtype not in (np.uint8, np.bool_):
            raise ValueError(
                f"{name}: JPEG stores 8-bit images only, this one is {dtype}; "
                "save it as .png (8 or 16-bit) or .tif (any dtype) instead"
            )
        if channels not in (None, 0, 3):
            raise ValueError(
                f"{name}: JPEG stores grayscale or RGB, this image has {channels} channels; "
                "save it as .png or .tif instead"
            )
        return fmt
    # PNG
    if dtype.kind == "f" or dtype.kind == "c":
        raise ValueError(
            f"{name}: PNG cannot store {dtype} (floating point) images; "
            "save it as .tif to keep the values, or convert to uint8/uint16 first"
        )
    if dtype not in (np.uint8, np.uint16, np.bool_):
        raise ValueError(
            f"{name}: PNG stores bool, uint8 or uint16 images, this one is {dtype}; "
            "save it as .tif to keep the values"
        )
    if channels is not None and channels not in (0, 2, 3, 4):
        raise ValueError(f"{name}: PNG stores 1 to 4 channels, this image has shape {shape}")
    if dtype == np.uint16 and channels == 2:
        raise ValueError(f"{name}: 16-bit gray+alpha PNG is not supported; save it as .tif")
    return fmt


def write_image(path: PathLike, array, *, atomic: bool = True) -> None:
    """Save an image as PNG, JPEG or TIFF, chosen by the extension of ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Target file. Missing parent folders are created.
    array : array_like
        ``(rows, cols)`` grayscale or ``(rows, cols, 3|4)`` RGB(A). PNG takes
        bool (saved as 0/255 uint8), uint8 and uint16; JPEG uint8 (and bool)
        only, grayscale or RGB, quality 95; TIFF any numeric dtype and shape.
        The array is never modified.
    atomic : bool
        Write to a hidden temporary file in the same folder, then rename it
        onto ``path`` (``os.replace``), so readers never see a half-written
        file and a failed write leaves any previous file intact.

    Raises
    ------
    ValueError
        If the extension is unsupported or the dtype/channels do not fit the
        format (the message suggests one that fits).
    OSError
        If the file cannot be written.

    Examples
    --------
    >>> write_image("aligned.tif", aligned)  # doctest: +SKIP
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    fmt = check_writable(path, arr.dtype, arr.shape)
    if arr.dtype == np.bool_ and fmt != "TIFF":
        arr = np.where(arr, np.uint8(255), np.uint8(0))  # a new array: input untouched
    ext = Path(path).suffix.lower()
    with atomic_output(path, atomic=atomic) as target:
        _write(target, arr, fmt, ext)


def _write(target: str, arr: np.ndarray, fmt: str, ext: str) -> None:
    if fmt == "TIFF":
        import tifffile

        rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
        tifffile.imwrite(target, arr, photometric="rgb" if rgb else "minisblack")
    elif fmt == "PNG" and arr.dtype == np.uint16 and arr.ndim == 3:
        # Pillow cannot write 16-bit colour PNG; OpenCV can (it wants BGR order).
        code = cv2.COLOR_RGB2BGR if arr.shape[-1] == 3 else cv2.COLOR_RGBA2BGRA
        ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code))
        if not ok:
            raise OSError(f"OpenCV could not encode {target} as PNG")
        buf.tofile(target)
    else:
        import imageio.v3 as iio

        kwargs = {"quality": _JPEG_QUALITY} if fmt == "JPEG" else {}
        # The extension is passed explicitly: the temporary name must not decide.
        iio.imwrite(target, np.ascontiguousarray(arr), plugin="pillow", extension=ext, **kwargs)


@contextlib.contextmanager
def atomic_output(
    path: PathLike, *, atomic: bool = True, owner: str | None = None
) -> Iterator[str]:
    """Context manager yielding a path to write to, moved onto ``path`` on success.

    The temporary file sits in the target's folder (``os.replace`` is only
    atomic within one file system), is hidden (name starts with ``'.'``) and
    keeps the real extension. It is removed if the body raises. Missing
    parent folders are created.

    Parameters
    ----------
    path : str or os.PathLike
        The target.
    atomic : bool
        False: yield ``path`` itself (no temporary file).
    owner : str, optional
        A token from :func:`napari_ecc_align.engine.new_owner`: the
        temporary file is then named ``.<stem>.<owner>-<hex>.tmp<ext>``, a name
        only that owner makes, so its clean-up can tell its own left-overs
        (``batch`` does this). Default: ``.<stem>.<hex>.tmp<ext>``.

    Examples
    --------
    >>> with atomic_output("result.json") as tmp:  # doctest: +SKIP
    ...     alignment.to_json(tmp)
    """
    target = os.path.abspath(os.fspath(path))
    if not atomic:
        if owner is not None:
            temporary_name(target, owner)  # refuses a malformed owner, as below
        os.makedirs(os.path.dirname(target), exist_ok=True)
        yield target
        return
    tmp = create_temporary(target, owner)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _channels(shape) -> int:
    """0 for a 2D image, else the length of the last axis."""
    shape = tuple(shape)
    if len(shape) == 3 and shape[-1] == 1:
        return 0
    return 0 if len(shape) == 2 else int(shape[-1])


def difference_for_file(
    diff: np.ndarray, path: str, mode: str, reference: np.ndarray, moving: np.ndarray
) -> np.ndarray:
    """Convert a difference image to something the format of ``path`` can store.

    TIFF keeps the values (floats as float32). PNG and JPEG keep uint8 (and
    uint16 in PNG) as is; other data are scaled to uint8, or to uint16 for a
    PNG when either input has more than 8 bits. Normalized differences map
    ``NORMALIZED_FULL_SCALE`` (4) standard deviations to white; absolute ones
    the full range of the inputs (their dtype's maximum, or 1.0 for float
    images in [0, 1]).
    """
    fmt = image_format(path)
    if fmt == "TIFF":
        return diff.astype(np.float32) if diff.dtype.kind == "f" else diff
    if fmt == "JPEG" and diff.ndim == 3 and diff.shape[-1] == 4:
        diff = diff[..., :3]  # JPEG has no alpha; it is a picture of the difference anyway
    if diff.dtype in (np.bool_, np.uint8) or (fmt == "PNG" and diff.dtype == np.uint16):
        return diff
    deep = fmt == "PNG" and any(a.dtype.itemsize > 1 for a in (reference, moving))
    target = np.dtype(np.uint16 if deep else np.uint8)
    if mode == "normalized":
        full = NORMALIZED_FULL_SCALE
    elif diff.dtype.kind in "ui":
        full = float(np.iinfo(diff.dtype).max)
    else:
        full = max(_full_scale(reference), _full_scale(moving))
    scaled = np.clip(np.nan_to_num(diff.astype(np.float64) / full), 0.0, 1.0)
    return np.rint(scaled * np.iinfo(target).max).astype(target)


def _full_scale(image: np.ndarray) -> float:
    if image.dtype.kind in "ui":
        return float(np.iinfo(image.dtype).max)
    if image.dtype == np.bool_:
        return 1.0
    finite = np.abs(image[np.isfinite(image)])
    return max(1.0, float(finite.max())) if finite.size else 1.0
