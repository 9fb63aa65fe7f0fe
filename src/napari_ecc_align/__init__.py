"""Align images with OpenCV's ECC algorithm: napari plugin, Python library and CLI.

The public API imports neither Qt, napari nor magicgui::

    from napari_ecc_align import align, warp, difference
    alignment = align(reference, moving, motion="affine")
    aligned = warp(moving, alignment)
    diff = difference(reference, aligned, alignment=alignment)
"""

from .engine.alignment import Alignment, AlignmentError
from .engine.estimate import align
from .engine.warping import difference, warp
from .stack.stack import StackAlignment, align_stack, warp_stack

__version__ = "0.1.0"

__all__ = [
    "Alignment",
    "AlignmentError",
    "StackAlignment",
    "__version__",
    "align",
    "align_stack",
    "difference",
    "warp",
    "warp_stack",
]
