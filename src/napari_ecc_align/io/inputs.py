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

from ..engine.volume import check_spacing
from .images import PathLike, check_writable, read_image, write_image
from .volumes import VoxelSize, read_volume, read_voxel_size, write_volume


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

    def write(self, path: PathLike, array: np.ndarray) -> None:
        """Save an output on the reference grid: a volume with the pair's voxel size."""
        if self.ndim == 3:
            write_volume(path, array, spacing=self.spacing, unit=self.unit)
        else:
            write_image(path, array)


def read_pair(
    reference: PathLike,
    moving: PathLike,
    *,
    ndim: int | None = None,
    spacing=None,
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

    Returns
    -------
    ImagePair

    Raises
    ------
    ValueError
        For ``spacing`` with 2D images, a file that is no volume with
        ``ndim=3``, or volumes whose stated voxel sizes disagree (without
        ``spacing``); and every error of :func:`read_image`.
    FileNotFoundError, OSError
        As :func:`read_image`.
    """
    ndim, spacing = check_volume_options(ndim, spacing)
    voxels = [read_voxel_size(reference), read_voxel_size(moving)]
    if ndim is None:
        ndim = 3 if any(v.z_stack for v in voxels) else 2
    if ndim == 2:
        if spacing is not None:
            raise ValueError(
                f"spacing=(dz, dy, dx) is the voxel size of volumes, but {reference} and {moving} "
                "are read as 2D images; pass ndim=3 to read multi-page TIFF files as volumes"
            )
        return ImagePair(read_image(reference), read_image(moving))
    (ref, ref_voxels), (mov, mov_voxels) = read_volume(reference), read_volume(moving)
    return ImagePair(ref, mov, 3, *_choose_spacing(spacing, ref_voxels, mov_voxels))


def check_volume_options(ndim, spacing) -> tuple[int | None, tuple[float, float, float] | None]:
    """``ndim`` and ``spacing`` of :func:`read_pair`, checked (spacing as floats).

    Raises
    ------
    ValueError
        If ``ndim`` is not None, 2 or 3, ``spacing`` is not three positive
        numbers, or ``spacing`` comes with ``ndim=2``.
    """
    if ndim is not None and (isinstance(ndim, bool) or ndim not in (2, 3)):
        raise ValueError(
            f"ndim must be 2 (images), 3 (volumes) or None (ask the files), got {ndim!r}"
        )
    if spacing is None:
        return ndim, None
    if ndim == 2:
        raise ValueError(
            "spacing=(dz, dy, dx) is the voxel size of volumes; it does not go with ndim=2"
        )
    return ndim, check_spacing(spacing)


def _choose_spacing(spacing, ref: VoxelSize, mov: VoxelSize):
    """(spacing, unit): the given one, else the reference's, else the moving file's."""
    if spacing is None and not ref.agrees_with(mov):
        raise ValueError(
            f"the moving volume's voxel size {mov.describe()} differs from the reference's "
            f"{ref.describe()}: ECC takes one spacing for both volumes. Resample one volume to "
            "the other's voxel size, or pass spacing=(dz, dy, dx) to use one for both "
            "(with motion='affine', which can absorb the difference in scale)"
        )
    chosen = ref if ref.spacing is not None else mov
    return spacing or chosen.spacing, chosen.unit
