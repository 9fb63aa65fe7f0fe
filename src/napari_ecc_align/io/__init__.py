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
"""

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
from .volumes import VoxelSize, read_volume, read_voxel_size, write_volume

__all__ = [
    "SUPPORTED",
    "ImagePair",
    "VoxelSize",
    "atomic_output",
    "check_volume_options",
    "check_writable",
    "difference_for_file",
    "image_format",
    "read_image",
    "read_pair",
    "read_volume",
    "read_voxel_size",
    "write_image",
    "write_volume",
]
