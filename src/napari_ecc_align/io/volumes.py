"""3D TIFF volumes: reading them with their voxel size, writing them with it.

A volume is a multi-page TIFF read as ``(z, y, x)``. Its voxel size comes from
the metadata microscopes and Fiji write:

* ImageJ hyperstacks: ``spacing`` in the description is dz, the X/YResolution
  tags are pixels per unit (dx = 1 / XResolution), ``unit`` names the unit;
  ``slices`` > 1 says the file is a z-stack.
* OME-TIFF: ``PhysicalSizeX/Y/Z`` (and their units, µm by default) of the first
  image's ``Pixels``; ``SizeZ`` > 1 says the file is a z-stack.

Volumes are written as ImageJ hyperstacks (uint8, uint16, int16 and float32:
what ImageJ stores), other dtypes as OME-TIFF, so the dtype is kept either way
and Fiji, napari and tifffile read the voxel size back. Writes are atomic, as
for 2D images (:func:`~napari_ecc_align.io.images.atomic_output`).
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from ..engine import check_spacing, spacings_agree
from ..engine import max_pixels as budget
from .files import open_input
from .images import PathLike, atomic_output, check_writable, read_image, sniff_format

# Length units to micrometres, by the names ImageJ and OME use (µ: micro sign or mu).
_MICROMETRES = {
    "m": 1e6, "cm": 1e4, "mm": 1e3, "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0,
    "micrometer": 1.0, "micrometre": 1.0, "nm": 1e-3, "pm": 1e-6, "Å": 1e-4, "angstrom": 1e-4,
    "in": 25_400.0, "inch": 25_400.0,
}  # fmt: skip
_TIFF_UNITS = {2: "in", 3: "cm"}  # ResolutionUnit tag: 1 = none
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.int16, np.float32)


def in_micrometres(spacing, unit: str | None):
    """``spacing`` in µm when ``unit`` is a known length unit, else as stated (None stays)."""
    if spacing is None:
        return None
    factor = _MICROMETRES.get(unit or "", 1.0)
    return tuple(factor * s for s in spacing)


@dataclass(frozen=True)
class VoxelSize:
    """What a file's metadata says about its voxels.

    Attributes
    ----------
    spacing : (dz, dy, dx) or None
        Voxel size in ``unit``; None when the file does not say (2D images,
        plain multi-page TIFFs, z spacing missing).
    unit : str or None
        Length unit of ``spacing`` (``"µm"`` for micron, um, µm), None if unnamed.
    z_stack : bool
        The metadata says the pages are z planes (ImageJ ``slices`` > 1, OME
        ``SizeZ`` > 1): such a file is a volume without being told.
    source : str
        ``"ImageJ"``, ``"OME"`` or ``""`` (no such metadata).
    """

    spacing: tuple[float, float, float] | None = None
    unit: str | None = None
    z_stack: bool = False
    source: str = ""

    def micrometres(self) -> tuple[float, float, float] | None:
        """``spacing`` in µm when the unit is known, else as stored (or None)."""
        return in_micrometres(self.spacing, self.unit)

    def agrees_with(self, other: VoxelSize) -> bool:
        """True unless both spacings are known and differ by more than 1 % on an axis."""
        return spacings_agree(self.micrometres(), other.micrometres())

    def describe(self) -> str:
        """``"(3, 1, 1) µm (ImageJ)"``, or ``"none"``."""
        if self.spacing is None:
            return "none"
        numbers = ", ".join(f"{s:g}" for s in self.spacing)
        unit = f" {self.unit}" if self.unit else ""
        return f"({numbers}){unit}" + (f" ({self.source})" if self.source else "")


# ------------------------------------------------------------------------------------- reading
def read_voxel_size(path: PathLike) -> VoxelSize:
    """The voxel size and z-stack flag in a file's metadata (pixel data not read).

    Parameters
    ----------
    path : str or os.PathLike
        Any supported image; PNG, JPEG and TIFFs without ImageJ or OME metadata
        give ``VoxelSize()`` (nothing known).

    Raises
    ------
    ValueError, FileNotFoundError, OSError
        As :func:`read_layout`, which reads it.
    """
    return read_layout(path).voxels


@dataclass(frozen=True)
class Layout:
    """What a file's header says about its pixels, read without decoding them.

    Attributes
    ----------
    voxels : VoxelSize
        From the ImageJ or OME metadata.
    format : {"PNG", "JPEG", "TIFF", None}
        What the file's first bytes say it is (None: no image).
    axes : str
        tifffile's axes of the first series, e.g. ``"YX"``, ``"YXS"`` (RGB),
        ``"QYX"`` or ``"ZYX"`` (pages); ``""`` for a file that is no TIFF.
    shape : tuple of int
        The first series' shape (``()`` for a file that is no TIFF).
    """

    voxels: VoxelSize
    format: str | None = None
    axes: str = ""
    shape: tuple[int, ...] = ()

    @property
    def pages(self) -> int:
        """How many 2D planes the series holds (every axis but y, x and samples)."""
        return math.prod(n for n, a in zip(self.shape, self.axes, strict=True) if a not in "YXS")

    @property
    def samples(self) -> int:
        """Colour samples per pixel (1 for gray, 3 for RGB), 1 for a file that is no TIFF."""
        return self.shape[self.axes.index("S")] if "S" in self.axes else 1


def read_layout(path: PathLike) -> Layout:
    """The voxel size, axes and shape a TIFF declares (pixel data not read).

    Raises
    ------
    ValueError
        If the TIFF's metadata cannot be parsed, or ``path`` is no regular file.
    FileNotFoundError, OSError
        As :func:`~napari_ecc_align.io.read_image`.
    """
    name = os.fspath(path)
    with open_input(name) as fh:
        fmt = sniff_format(fh.read(32))
        if fmt != "TIFF":
            return Layout(VoxelSize(), fmt)
        fh.seek(0)
        import tifffile

        try:
            with tifffile.TiffFile(fh, name=name) as tif:
                series = tif.series[0]
                axes, shape = series.axes, tuple(series.shape)
                if tif.is_ome and tif.ome_metadata:
                    return Layout(_ome_voxel_size(tif.ome_metadata), fmt, axes, shape)
                if tif.is_imagej and tif.imagej_metadata is not None:
                    page = tif.pages.first
                    meta, resolution = tif.imagej_metadata, page.resolution
                    voxels = _imagej_voxel_size(meta, resolution, page.resolutionunit)
                    return Layout(voxels, fmt, axes, shape)
        except (
            ValueError, TypeError, KeyError, IndexError, ET.ParseError, tifffile.TiffFileError
        ):  # fmt: skip
            raise ValueError(f"cannot read {name}: its TIFF metadata is malformed") from None
    return Layout(VoxelSize(), fmt, axes, shape)


def _imagej_voxel_size(meta: dict, resolution, resolution_unit) -> VoxelSize:
    z_stack = int(meta.get("slices", 1) or 1) > 1
    unit = _unit(meta.get("unit")) or _TIFF_UNITS.get(int(resolution_unit or 1))
    # Uncalibrated (no unit, no z spacing): say nothing rather than "1 pixel".
    if unit is None and "spacing" not in meta:
        return VoxelSize(z_stack=z_stack, source="ImageJ")
    xres, yres = (float(r) if r else 1.0 for r in (resolution or (1.0, 1.0)))
    # ImageJ's own default depth is 1 unit when a file is calibrated in x and y only.
    spacing = (float(meta.get("spacing", 1.0)), 1.0 / yres, 1.0 / xres)
    return VoxelSize(_positive(spacing), unit, z_stack, "ImageJ")


def _ome_voxel_size(xml: str) -> VoxelSize:
    root = ET.fromstring(xml)
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return VoxelSize(source="OME")
    z_stack = int(pixels.get("SizeZ", "1")) > 1
    sizes, units = [], []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        if value is None:  # a missing axis: no voxel size at all, not a guess
            return VoxelSize(z_stack=z_stack, source="OME")
        sizes.append(float(value))
        units.append(_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm")))
    if len(set(units)) > 1 and all(u in _MICROMETRES for u in units):
        sizes, units = [s * _MICROMETRES[u] for s, u in zip(sizes, units, strict=True)], ["µm"]
    unit = units[0] if len(set(units)) == 1 else None
    return VoxelSize(_positive(tuple(sizes)), unit, z_stack, "OME")


def _unit(name) -> str | None:
    """A canonical unit name: ImageJ's ``\\u00B5m`` escape decoded, micron spellings as µm."""
    if not name or not isinstance(name, str):
        return None
    name = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), name.strip())
    name = name.replace("\u03bc", "µ")  # Greek mu -> micro sign
    if name.lower() in ("pixel", "pixels", ""):
        return None
    return "µm" if _MICROMETRES.get(name.lower()) == 1.0 else name


def _positive(spacing: tuple[float, ...]) -> tuple[float, float, float] | None:
    ok = all(math.isfinite(s) and s > 0 for s in spacing)
    return tuple(float(s) for s in spacing) if ok else None


def read_volume(path: PathLike, *, max_pixels=None) -> tuple[np.ndarray, VoxelSize]:
    """Read a multi-page TIFF as a ``(z, y, x)`` volume, with its voxel size.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF whose first series has one axis besides y and x (ImageJ or OME
        z-stacks, or plain multi-page files).
    max_pixels : int or float, optional
        The voxel budget, as for :func:`~napari_ecc_align.io.read_image`: a file
        declaring more than ``z × y × x`` voxels is refused before anything is
        read (default: ``NAPARI_ECC_ALIGN_MAX_PIXELS``, else 2**28, e.g.
        256 × 1024 × 1024). Volumes meant to be bigger can be opened lazily
        instead, with ``tifffile.memmap`` (uncompressed files) or
        ``tifffile.imread(path, aszarr=True)`` and zarr.

    Returns
    -------
    volume : ndarray
        ``(z, y, x)`` in the stored dtype.
    voxel_size : VoxelSize
        From :func:`read_voxel_size`.

    Raises
    ------
    ValueError
        If the file is not a TIFF, holds one plane, or has channels or time as
        well as z (the message says what was found); ``PixelBudgetError`` if it
        declares more voxels than ``max_pixels``.
    FileNotFoundError, OSError
        As :func:`~napari_ecc_align.io.read_image`.

    Examples
    --------
    >>> volume, voxels = read_volume("stack.tif")  # doctest: +SKIP
    >>> volume.shape, voxels.spacing, voxels.unit  # doctest: +SKIP
    ((32, 64, 64), (3.0, 1.0, 1.0), 'µm')
    """
    name = os.fspath(path)
    limit = budget(max_pixels)
    layout = read_layout(name)  # from the header: missing, unreachable and odd files first
    axes, shape = layout.axes, layout.shape
    if layout.format is None:
        read_image(name)  # says why it is no image at all
    if not axes:
        raise ValueError(
            f"{name} holds one 2D image: volumes are read from multi-page TIFF files (z, y, x)"
        )
    # One axis besides y and x, and not samples or channels: ImageJ and OME say Z,
    # tifffile's own and plain multi-page files Q or I. Refused before any pixel is read.
    volume = None
    if _is_zyx(axes):
        volume = read_image(name, max_pixels=limit)
        shape = volume.shape
    if volume is None or volume.ndim != 3:
        found = "one 2D image" if len(axes) == 2 else f"axes {axes}, shape {shape}"
        raise ValueError(
            f"{name} holds {found}: a volume is a multi-page TIFF of (z, y, x) planes, "
            "one channel and one time point"
        )
    return volume, layout.voxels


def _is_zyx(axes: str) -> bool:
    return len(axes) == 3 and axes.endswith("YX") and axes[0] not in "SC"


# ------------------------------------------------------------------------------------- writing
def write_volume(
    path: PathLike,
    volume,
    *,
    spacing=None,
    unit: str | None = None,
    atomic: bool = True,
) -> None:
    """Save a ``(z, y, x)`` volume as a TIFF that carries its voxel size.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` target; missing folders are created.
    volume : array_like
        ``(z, y, x)``, any numeric or bool dtype (kept). Never modified.
    spacing : (dz, dy, dx), optional
        Voxel size in ``unit``; without it no calibration is written.
    unit : str, optional
        Length unit of ``spacing``, e.g. ``"µm"`` (written as ImageJ's
        ``micron``), ``"nm"``.
    atomic : bool
        Write to a hidden temporary file and rename it onto ``path``.

    Raises
    ------
    ValueError
        If ``path`` is not a TIFF, ``volume`` is not 3D, or ``spacing`` is not
        three positive numbers.

    Notes
    -----
    uint8, uint16, int16 and float32 become an ImageJ hyperstack (``spacing``
    and ``unit`` in its description, 1/dx and 1/dy in the resolution tags);
    other dtypes an OME-TIFF (``PhysicalSizeX/Y/Z``), which ImageJ cannot hold.
    """
    arr = np.asarray(volume)
    check_writable(path, arr.dtype, arr.shape, volume=True)
    spacing = None if spacing is None else check_spacing(spacing)
    import tifffile

    kwargs = _imagej_kwargs if arr.dtype in _IMAGEJ_DTYPES else _ome_kwargs
    with atomic_output(path, atomic=atomic) as target:
        tifffile.imwrite(target, arr, photometric="minisblack", **kwargs(spacing, _unit(unit)))


def _imagej_kwargs(spacing, unit) -> dict:
    metadata: dict = {"axes": "ZYX"}
    if spacing is None:
        return {"imagej": True, "metadata": metadata}
    dz, dy, dx = spacing
    metadata["spacing"] = dz
    if unit is not None:
        # The description is ASCII: µm as Fiji itself writes it; other non-ASCII names dropped.
        metadata["unit"] = "micron" if unit == "µm" else unit if unit.isascii() else None
        if metadata["unit"] is None:
            del metadata["unit"]
    return {"imagej": True, "resolution": (1.0 / dx, 1.0 / dy), "metadata": metadata}


def _ome_kwargs(spacing, unit) -> dict:
    metadata: dict = {"axes": "ZYX"}
    if spacing is not None:
        for axis, size in zip("ZYX", spacing, strict=True):
            metadata[f"PhysicalSize{axis}"] = size
            if unit is not None:
                metadata[f"PhysicalSize{axis}Unit"] = unit
    return {"ome": True, "metadata": metadata}
