"""Align images with OpenCV's ECC algorithm: napari plugin, Python library and CLI.

The public API imports neither Qt, napari nor magicgui::

    from napari_ecc_align import align, warp, difference
    alignment = align(reference, moving, motion="affine")
    aligned = warp(moving, alignment)
    diff = difference(reference, aligned, alignment=alignment)

Pairs: :func:`align` (and its generator form :func:`iter_align`, which yields
:class:`Progress`), :class:`Template` for many images against one reference,
:func:`warp`, :func:`difference`, the result :class:`Alignment` and the error
:class:`AlignmentError`. Stacks: :func:`align_stack`, :func:`iter_align_stack`
(:class:`FrameProgress`), :func:`warp_stack`, :class:`StackAlignment` and its
:class:`Canvas`. Files:
:func:`read_image`, :func:`write_image`, :func:`read_ome_zarr` and :func:`write_ome_zarr`
(OME-Zarr, lazily, with pyramids; ``align`` and ``warp`` also take their paths),
:func:`save_transform` and :func:`load_transform` (our JSON and ITK transform files), and
:func:`batch_align` with its :class:`BatchReport`. Synthetic test images with known
transforms are in :mod:`napari_ecc_align.data`.
"""

from importlib.metadata import PackageNotFoundError, version

from .batch import BatchReport, batch_align
from .engine import (
    MOTIONS,
    Alignment,
    AlignmentError,
    Progress,
    Template,
    align,
    difference,
    iter_align,
    warp,
)
from .io import (
    OmeZarrImage,
    load_transform,
    read_image,
    read_ome_zarr,
    save_transform,
    write_image,
    write_ome_zarr,
)
from .stack import (
    Canvas,
    FrameProgress,
    StackAlignment,
    align_stack,
    iter_align_stack,
    warp_stack,
)

try:
    __version__ = version("napari-ecc-align")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "MOTIONS",
    "Alignment",
    "AlignmentError",
    "BatchReport",
    "Canvas",
    "FrameProgress",
    "OmeZarrImage",
    "Progress",
    "StackAlignment",
    "Template",
    "__version__",
    "align",
    "align_stack",
    "batch_align",
    "difference",
    "iter_align",
    "iter_align_stack",
    "load_transform",
    "read_image",
    "read_ome_zarr",
    "save_transform",
    "warp",
    "warp_stack",
    "write_image",
    "write_ome_zarr",
]
