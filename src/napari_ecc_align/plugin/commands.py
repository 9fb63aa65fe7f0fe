"""The widget's job as a plain function with napari type annotations.

Contributed as the npe2 command ``napari-ecc-align.align_images`` so scripts,
napari-assistant and other plugins can call it; it also works without napari.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..engine import align, default_difference_mode, difference, warp

if TYPE_CHECKING:
    import napari


def align_images(
    reference: napari.types.ImageData,
    moving: napari.types.ImageData,
    motion: Literal["translation", "euclidean", "affine", "homography"] = "affine",
    max_iterations: int = 100,
    eps: float = 1e-6,
    difference_mode: Literal["auto", "absolute", "normalized"] = "auto",
    ndim: Literal[2, 3] = 2,
) -> list[napari.types.LayerDataTuple]:
    """Align ``moving`` onto ``reference``; return the aligned and difference images.

    Parameters
    ----------
    reference, moving : array
        2D grayscale or RGB(A) images (any dtype), or ``(z, y, x)`` volumes with
        ``ndim=3``.
    motion : {"translation", "euclidean", "affine", "homography"}
        Motion model (no homography for volumes).
    max_iterations, eps : int, float
        ECC termination criteria per pyramid level.
    difference_mode : {"auto", "absolute", "normalized"}
        "auto" picks "normalized" when the images differ in dtype or value range.
    ndim : {2, 3}
        3 aligns two volumes (isotropic voxels; call :func:`~napari_ecc_align.align`
        with ``spacing`` for anisotropic ones).

    Returns
    -------
    list of LayerDataTuple
        ``(aligned, {"name": "aligned", ...}, "image")`` and
        ``(difference, {"name": "difference", ...}, "image")``; both carry the
        alignment as JSON-safe data in ``metadata["ecc_alignment"]``.
    """
    alignment = align(
        reference, moving, motion=motion, max_iterations=max_iterations, eps=eps, ndim=ndim
    )
    aligned = warp(moving, alignment)
    if difference_mode == "auto":
        difference_mode = default_difference_mode(reference, moving, ndim)
    diff = difference(reference, aligned, mode=difference_mode, alignment=alignment)
    meta = {"ecc_alignment": {**alignment.to_dict(), "difference_mode": difference_mode}}
    return [
        (aligned, {"name": "aligned", "metadata": meta}, "image"),
        (diff, {"name": "difference", "colormap": "inferno", "metadata": meta}, "image"),
    ]
