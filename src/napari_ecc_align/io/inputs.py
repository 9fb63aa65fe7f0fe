"""Two input files read as images or as volumes: :func:`read_pair` and :class:`ImagePair`.

The command line's ``align`` and each batch pair go through here, so both decide
the same way whether the files are volumes and which voxel size counts:

* ``ndim=3`` (``--ndim 3``) reads both as ``(z, y, x)`` TIFF volumes; without
  ``ndim``, a file whose metadata says it is a z-stack (ImageJ ``slices`` > 1,
  OME ``SizeZ`` > 1) makes both volumes, and anything else is read as 2D images.
* The spacing is ``spacing=`` when given (in the reference's unit, if it names
  one), else the reference's metadata, else the moving file's. When both files
  state a voxel size and they differ by more than 1 %, reading fails: ECC takes
  one spacing for both volumes, and a silent choice would make a rigid fit wrong.
* Outputs are written on the reference grid, so a volume's outputs carry that
  spacing (:meth:`ImagePair.write`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import check_dimensions
from ..engine import max_pixels as budget
from .images import PathLike, check_writable, read_image, write_image
from .volumes import VoxelSize, read_layout, read_volume, write_volume


@dataclass(frozen=True)
class ImagePair:
    """A reference and a moving image (or volume) as read, with the voxel size to use.

    Attributes
    ----------
    reference, moving : ndarray
        ``(rows, cols[, channels])`` images, or ``(z, y, x)`` volumes.
    ndim : {2, 3}
        2 for images, 3 for volumes.
    spacing : (dz, dy, dx) or None
        The voxel size for ``align`` and the outputs (None: isotropic, uncalibrated).
    unit : str or None
        Unit of ``spacing``.
    """

    reference: np.ndarray
    moving: np.ndarray
    ndim: int = 2
    spacing: tuple[float, float, float] | None = None
    unit: str | None = None

    @property
    def align_keywords(self) -> dict:
        """``ndim`` and ``spacing`` for :func:`~napari_ecc_align.align` (empty for images)."""
        return {"ndim": 3, "spacing": self.spacing} if self.ndim == 3 else {}

    @property
    def aligned_shape(self) -> tuple[int, ...]:
        """Shape of the moving image warped onto the reference grid."""
        return self.reference.shape[: self.ndim] + self.moving.shape[self.ndim :]

    @property
    def same_channels(self) -> bool:
        return self.reference.shape[self.ndim :] == self.moving.shape[self.ndim :]

    def check_output(self, path: PathLike) -> str:
        """:func:`check_writable` for the aligned image at ``path``; returns its format."""
        return check_writable(path, self.moving.dtype, self.aligned_shape, volume=self.ndim == 3)

    def write(self, path: PathLike, array: np.ndarray, *, atomic: bool = True) -> None:
        """Save an output on the reference grid: a volume with the pair's voxel size.

        ``atomic=False`` writes ``path`` directly, for a caller that already writes
        to a temporary name (:func:`~napari_ecc_align.io.images.atomic_output`).
        """
        if self.ndim == 3:
            write_volume(path, array, spacing=self.spacing, unit=self.unit, atomic=atomic)
        else:
            write_image(path, array, atomic=atomic)


def read_pair(
    reference: PathLike,
    moving: PathLike,
    *,
    ndim: int | None = None,
    spacing=None,
    max_pixels=None,
) -> ImagePair:
    """Read two files as 2D images or as volumes, and choose the voxel size.

    Parameters
    ----------
    reference, moving : str or os.PathLike
        The two files (PNG, JPEG or TIFF; volumes are multi-page TIFF).
    ndim : {None, 2, 3}
        3 reads both as volumes, 2 as images; None decides from the metadata
        (volumes when either file says it is a z-stack).
    spacing : (dz, dy, dx), optional
        Voxel size to use instead of the files' (volumes only).
    max_pixels : int or float, optional
        The pixel (voxel) budget of each file, see :func:`read_image`.

    Returns
    -------
    ImagePair

    Raises
    ------
    ValueError
        For ``spacing`` with 2D images, a file that is no volume with
        ``ndim=3``, volumes whose stated voxel sizes disagree (without
        ``spacing``), or, read as 2D images, one multi-page file with a 2D
        image or a file whose colour channels are neither gray, RGB nor RGBA
        (said from the headers, before any pixel is read); and every error of
        :func:`read_image`, ``PixelBudgetError`` included.
    FileNotFoundError, OSError
        As :func:`read_image`.
    """
    ndim, spacing = check_volume_options(ndim, spacing)
    limit = budget(max_pixels)
    layouts = {"reference": read_layout(reference), "moving": read_layout(moving)}
    if ndim is None:
        ndim = 3 if any(layout.voxels.z_stack for layout in layouts.values()) else 2
    if ndim == 2:
        if spacing is not None:
            raise ValueError(
                f"spacing=(dz, dy, dx) is the voxel size of volumes, but {reference} and {moving} "
                "are read as 2D images; pass ndim=3 to read multi-page TIFF files as volumes"
            )
        _check_images(dict(zip(layouts, (reference, moving), strict=True)), layouts)
        return ImagePair(
            read_image(reference, max_pixels=limit), read_image(moving, max_pixels=limit)
        )
    ref, ref_voxels = read_volume(reference, max_pixels=limit)
    mov, mov_voxels = read_volume(moving, max_pixels=limit)
    return ImagePair(ref, mov, 3, *choose_spacing(spacing, ref_voxels, mov_voxels))


def _check_images(paths: dict, layouts: dict) -> None:
    """Refuse, from the headers, what cannot be aligned as two 2D images.

    A stack of pages opposite a 2D image would fail deep inside the engine; two
    stacks are left to :func:`~napari_ecc_align.align`, whose message points to
    ``ndim=3`` and ``align_stack``.
    """
    for role, layout in layouts.items():
        if layout.samples not in (1, 3, 4):
            raise ValueError(
                f"the {role} image {paths[role]} has {layout.samples} channels (shape "
                f"{layout.shape}), which is neither gray, RGB nor RGBA; save the channel to "
                "align as a grayscale image (or three as RGB)"
            )
    stacks = {role: layout for role, layout in layouts.items() if layout.pages > 1}
    if len(stacks) == 1:
        (role, layout), other = next(iter(stacks.items())), paths.keys() - stacks.keys()
        other_role = other.pop()
        raise ValueError(
            f"the {role} image {paths[role]} has {layout.pages} pages (axes {layout.axes}, shape "
            f"{layout.shape}) but the {other_role} image {paths[other_role]} is one 2D image; "
            f"save the page to align as its own file, or, if both files are stacks of z planes, "
            "pass ndim=3 to align them as volumes"
        )


def check_volume_options(ndim, spacing) -> tuple[int | None, tuple[float, float, float] | None]:
    """``ndim`` and ``spacing`` of :func:`read_pair`, checked (spacing as floats).

    :func:`~napari_ecc_align.engine.check_dimensions` with ``ndim=None`` allowed (the
    files decide): the same words as every other caller's.

    Raises
    ------
    ValueError
        If ``ndim`` is not None, 2 or 3, ``spacing`` is not three positive
        numbers, or ``spacing`` comes with ``ndim=2``.
    """
    return check_dimensions(ndim, spacing, files_decide=True)


def choose_spacing(spacing, ref: VoxelSize, mov: VoxelSize, *, check: bool = True):
    """(spacing, unit): the given one, else the reference's, else the moving file's.
    ``check``: refuse stated voxel sizes that disagree (volumes; 2D pixel sizes are only
    carried to the outputs)."""
    if check and spacing is None and not ref.agrees_with(mov):
        raise ValueError(
            f"the moving volume's voxel size {mov.describe()} differs from the reference's "
            f"{ref.describe()}: ECC takes one spacing for both volumes. Resample one volume to "
            "the other's voxel size, or pass spacing=(dz, dy, dx) to use one for both "
            "(with motion='affine', which can absorb the difference in scale)"
        )
    chosen = ref if ref.spacing is not None else mov
    return spacing or chosen.spacing, chosen.unit
