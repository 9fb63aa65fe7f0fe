"""Image files: reading and writing PNG, JPEG and TIFF without losing dtype or data.

:func:`read_image` and :func:`write_image` are public (also from
:mod:`napari_ecc_align`). Every write goes to a hidden temporary file that is
renamed into place (:func:`atomic_output`), so an interrupted run never leaves
a half-written output; :func:`check_writable` says before any work whether a
format can hold an array; :func:`difference_for_file` turns a difference image
into something a format can store.

Volumes are multi-page TIFFs: :func:`read_volume` returns ``(z, y, x)`` and the
:class:`VoxelSize` of ImageJ or OME metadata, :func:`write_volume` writes one
that Fiji and tifffile read back with its voxel size. :func:`read_pair` reads a
reference and a moving file as images or volumes, as the CLI and batch do.

OME-Zarr images (NGFF 0.4 and 0.5) are opened lazily by :func:`read_ome_zarr`, with
their pyramid and voxel size, and written chunk by chunk, with a pyramid, by
:func:`write_ome_zarr`. The engine's entry points take their paths and zarr groups
too: :func:`open_zarr_source` is registered as the engine's opener.
"""

from ..engine import register_opener
from .images import (
    SUPPORTED,
    atomic_output,
    check_writable,
    difference_for_file,
    image_format,
    read_image,
    write_image,
)
from .inputs import ImagePair, check_volume_options, read_pair
from .ome_zarr import OmeZarrImage, is_zarr_path, read_ome_zarr, write_ome_zarr
from .transform_files import load_transform, save_transform, transform_format
from .volumes import VoxelSize, read_volume, read_voxel_size, write_volume


def open_zarr_source(obj):
    """``obj`` opened by :func:`read_ome_zarr` when it is a zarr path or group, else None."""
    if is_zarr_path(obj):
        return read_ome_zarr(obj)
    if type(obj).__module__.split(".")[0] == "zarr" and type(obj).__name__ == "Group":
        return read_ome_zarr(obj)
    return None


register_opener(open_zarr_source)

__all__ = [
    "SUPPORTED",
    "ImagePair",
    "OmeZarrImage",
    "VoxelSize",
    "atomic_output",
    "check_volume_options",
    "check_writable",
    "difference_for_file",
    "image_format",
    "is_zarr_path",
    "load_transform",
    "open_zarr_source",
    "read_image",
    "read_ome_zarr",
    "read_pair",
    "read_volume",
    "read_voxel_size",
    "save_transform",
    "transform_format",
    "write_image",
    "write_ome_zarr",
    "write_volume",
]
