"""Images given as a *source* (an opened OME-Zarr image, or a path or zarr group that
names one) instead of an array.

A source is any object with ``image`` (an array, or a pyramid as a list of arrays,
finest first), ``ndim`` (2 or 3 space axes) and ``voxel_spacing`` (its pixel or voxel
size in array order, in µm when its unit is known, or None when it states none);
:class:`napari_ecc_align.io.OmeZarrImage` is one. The engine reads no file format
itself: the ``io`` package registers an *opener* (:func:`register_opener`) that turns a
path or zarr group into a source, and every entry point (``align``, ``warp``,
``difference``, ``Template``) resolves its images here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# Two stated voxel sizes agree when every axis is within this fraction (rational TIFF
# resolution tags do not hold 1/0.3 exactly).
SPACING_TOLERANCE = 0.01
_OPENERS: list[Callable] = []


def register_opener(opener: Callable) -> None:
    """Add ``opener(obj) -> source or None``, asked in turn for inputs that are no arrays."""
    if opener not in _OPENERS:
        _OPENERS.append(opener)


def spacings_agree(a, b) -> bool:
    """True unless both voxel sizes (in one unit) are known and differ by more than
    ``SPACING_TOLERANCE`` of the larger on some axis."""
    if a is None or b is None:
        return True
    return all(abs(x - y) <= SPACING_TOLERANCE * max(x, y) for x, y in zip(a, b, strict=True))


def is_source(obj) -> bool:
    """Whether ``obj`` is a source (``image``, ``ndim`` and ``voxel_spacing``)."""
    return all(hasattr(obj, name) for name in ("image", "ndim", "voxel_spacing")) and not hasattr(
        obj, "__array__"
    )


def as_source(obj, name: str):
    """``obj`` as a source, or None when it is an array (or anything else) as it stands."""
    if is_source(obj):
        return obj
    if hasattr(obj, "shape") or isinstance(obj, (list, tuple)):
        return None
    for opener in _OPENERS:
        source = opener(obj)
        if source is not None:
            return source
    if isinstance(obj, (str, os.PathLike)):
        raise TypeError(
            f"{name} is a path ({os.fspath(obj)}) that names no OME-Zarr image; read other "
            "files with napari_ecc_align.read_image, or give the array"
        )
    return None


def image_of(obj, name: str):
    """The array (or pyramid list) to use for ``obj``: a source's ``image``, else ``obj``."""
    source = as_source(obj, name)
    return obj if source is None else source.image


def resolve_pair(reference, moving, ndim, spacing):
    """``(reference, moving, ndim, spacing)`` with sources replaced by their images.

    ``ndim`` None becomes 3 when either source is a volume, else 2. A volume's
    ``spacing`` left None is the voxel size the sources state: the reference's, else
    the moving one's; a ValueError when both state sizes that differ by more than 1 %
    (one spacing serves both volumes, and a silent choice would bend a rigid fit).
    """
    sources = {"reference": as_source(reference, "reference"),
               "moving": as_source(moving, "moving")}  # fmt: skip
    if ndim is None:
        ndim = 3 if any(s is not None and s.ndim == 3 for s in sources.values()) else 2
    if ndim == 3 and spacing is None:
        stated = {k: s.voxel_spacing for k, s in sources.items() if s is not None}
        stated = {k: tuple(v) for k, v in stated.items() if v is not None and len(v) == 3}
        if len(stated) == 2:
            ref, mov = stated["reference"], stated["moving"]
            if not spacings_agree(ref, mov):
                raise ValueError(
                    f"the reference's voxel size {ref} and the moving volume's {mov} differ; "
                    "pass spacing=(dz, dy, dx) to say which to use (one serves both)"
                )
        spacing = stated.get("reference", stated.get("moving"))
    ref_source, mov_source = sources.values()
    reference = reference if ref_source is None else ref_source.image
    moving = moving if mov_source is None else mov_source.image
    return reference, moving, ndim, spacing
