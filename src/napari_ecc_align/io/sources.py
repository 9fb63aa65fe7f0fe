"""Inputs and outputs that may be OME-Zarr stores or files, for the CLI and batch.

:func:`open_pair` opens two inputs as engine sources: a store lazily
(:func:`read_ome_zarr`), a file read whole (:func:`read_image`, or :func:`read_volume`
for volumes) as a :class:`FileImage`. :func:`save_output` writes an image on the
reference grid to a store (chunk by chunk) or a file (computed within the pixel
budget), carrying the reference's voxel size, unit and origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import check_pixels
from .images import atomic_output, difference_for_file, read_image, write_image
from .inputs import choose_spacing
from .ome_zarr import atomic_store, is_zarr_path, read_ome_zarr, write_ome_zarr
from .volumes import VoxelSize, read_layout, read_volume, write_volume


@dataclass(frozen=True)
class FileImage:
    """An image or volume read from a file, as an engine source."""

    image: np.ndarray
    ndim: int
    voxels: VoxelSize = VoxelSize()
    origin: tuple[float, ...] | None = None

    @property
    def voxel_spacing(self) -> tuple[float, ...] | None:
        """The voxel size in µm when its unit is known: what ``align`` compares and uses."""
        return self.voxels.micrometres()

    @property
    def dtype(self) -> np.dtype:
        return self.image.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.image.shape)


@dataclass(frozen=True)
class Geometry:
    """What an output on the reference grid carries: space axes, voxel size, unit, origin."""

    ndim: int
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    origin: tuple[float, ...] | None = None

    @property
    def volume_spacing(self) -> tuple[float, ...] | None:
        """``spacing`` for ``align`` (volumes only; a 2D pixel size is only carried)."""
        return self.spacing if self.ndim == 3 else None


def open_pair(reference, moving, *, ndim=None, spacing=None, max_pixels=None):
    """``(reference, moving, geometry)``: the two inputs as sources, and the geometry of
    outputs on the reference grid. ``ndim`` None: 3 when a store is a volume, else 2.
    The voxel size is chosen as :func:`read_pair` chooses it (:func:`choose_spacing`):
    two volumes whose stated sizes disagree are refused unless ``spacing`` is given."""
    stores = [read_ome_zarr(p) if is_zarr_path(p) else None for p in (reference, moving)]
    ndim = ndim or (3 if any(s is not None and s.ndim == 3 for s in stores) else 2)
    sources = []
    for store, path in zip(stores, (reference, moving), strict=True):
        if store is not None:
            sources.append(store)
        elif ndim == 3:
            volume, voxels = read_volume(path, max_pixels=max_pixels)
            sources.append(FileImage(volume, 3, voxels))
        else:
            sources.append(FileImage(read_image(path, max_pixels=max_pixels), 2))
    ref, mov = sources
    chosen, unit = choose_spacing(spacing, ref.voxels, mov.voxels, check=ndim == 3)
    return ref, mov, Geometry(ndim, chosen, unit, ref.origin)


def open_source(path, *, ndim=None, max_pixels=None):
    """One input as a source: a store lazily, a file read whole (a volume when ``ndim``
    is 3, or when it is None and the TIFF metadata says the pages are z planes)."""
    if is_zarr_path(path):
        return read_ome_zarr(path)
    if ndim is None:
        ndim = 3 if read_layout(path).voxels.z_stack else 2
    if ndim == 3:
        volume, voxels = read_volume(path, max_pixels=max_pixels)
        return FileImage(volume, 3, voxels)
    return FileImage(read_image(path, max_pixels=max_pixels), 2)


def stated_geometry(source) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """``(spacing, origin)`` a source states, in array order: an OME-Zarr image's pixel
    size (when calibrated) and origin, a TIFF volume's voxel size (files state no
    origin); None where it states nothing."""
    if isinstance(source, FileImage):
        return (source.voxels.spacing if source.ndim == 3 else None), None
    return (tuple(source.spacing) if source.calibrated else None), tuple(source.origin)


def transform_geometry(geometry: Geometry, reference, moving) -> dict:
    """``save_transform``'s geometry keywords from opened sources: for volumes the voxel
    size ECC used (one for both), for images each store's own pixel size
    (:func:`stated_geometry`); each source's origin; None where unknown or not one value
    per space axis."""

    def fits(values):
        return tuple(values) if values is not None and len(values) == geometry.ndim else None

    def spacing_of(source):
        if geometry.ndim == 3 and fits(geometry.spacing):  # volumes: the one ECC used
            return fits(geometry.spacing)
        return fits(stated_geometry(source)[0]) or fits(geometry.spacing)

    return {"reference_spacing": spacing_of(reference), "moving_spacing": spacing_of(moving),
            "reference_origin": fits(stated_geometry(reference)[1]),
            "moving_origin": fits(stated_geometry(moving)[1])}  # fmt: skip


def sample_of(source) -> np.ndarray:
    """An array with a source's dtype and value range: a store's coarsest level."""
    if isinstance(source, FileImage):
        return source.image
    return np.asarray(source.levels[-1])


def difference_for_output(diff, path, mode: str, reference, moving, max_pixels=None):
    """``diff`` as ``path`` will hold it: as it is (lazy) for a store; for a file computed,
    within the pixel budget, and converted by :func:`difference_for_file`."""
    if is_zarr_path(path):
        return diff
    check_pixels(diff.shape, "the difference", max_pixels)  # before computing it
    return difference_for_file(np.asarray(diff), path, mode, sample_of(reference),
                               sample_of(moving))  # fmt: skip


def save_output(path, image, geometry: Geometry, *, outputs, owner=None, scheduler=None,
                progress=False, max_pixels=None, what="aligned image"):  # fmt: skip
    """Write ``image`` to ``path`` through a temporary name entered on ``outputs`` (an
    ``ExitStack``: renamed into place when it closes without error). A store is written
    chunk by chunk; a file is computed first, refused beyond ``max_pixels``."""
    if is_zarr_path(path):
        folder = outputs.enter_context(atomic_store(path, owner))
        write_ome_zarr(folder, image, atomic=False, ndim=geometry.ndim, spacing=geometry.spacing,
                       unit=geometry.unit, origin=geometry.origin, scheduler=scheduler,
                       progress=progress)  # fmt: skip
        return
    check_pixels(image.shape, f"the {what}", max_pixels)
    data = np.asarray(image)
    target = outputs.enter_context(atomic_output(path, owner=owner))
    if geometry.ndim == 3:
        write_volume(target, data, spacing=geometry.spacing, unit=geometry.unit, atomic=False)
    else:
        write_image(target, data, atomic=False)
