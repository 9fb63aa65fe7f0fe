"""Image files: reading and writing PNG, JPEG and TIFF without losing dtype or data.

:func:`read_image` and :func:`write_image` are public (also from
:mod:`napari_ecc_align`). Every write goes to a hidden temporary file that is
renamed into place (:func:`atomic_output`), so an interrupted run never leaves
a half-written output; :func:`check_writable` says before any work whether a
format can hold an array; :func:`difference_for_file` turns a difference image
into something a format can store.
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

__all__ = [
    "SUPPORTED",
    "atomic_output",
    "check_writable",
    "difference_for_file",
    "image_format",
    "read_image",
    "write_image",
]
