"""An opened OME-Zarr image (:class:`OmeZarrImage`): its levels as dask arrays in the
engine's axis order, its calibration, and the pyramid rules of the stores we write."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..engine import halving_levels
from .volumes import VoxelSize

_SPACE_NAMES = "zyx"


@dataclass(frozen=True)
class OmeZarrImage:
    """An OME-Zarr image opened lazily by :func:`~napari_ecc_align.io.read_ome_zarr`.

    Attributes
    ----------
    levels : tuple of dask.array.Array
        The pyramid, finest first, each ``(y, x)``, ``(y, x, channels)`` or
        ``(z, y, x)``.
    ndim : {2, 3}
        Space axes.
    spacing, origin : tuple of float
        Level 0's pixel (voxel) size and first pixel's centre, per space axis in array
        order, as the metadata states them (1 and 0 when it does not).
    unit : str or None
        Length unit (``"µm"``...), when the space axes name one.
    version : str
        NGFF version (``"0.4"``, ``"0.5"``; ``""`` for a plain zarr array).
    name : str or None
    calibrated : bool
        False for a plain zarr array, whose spacing nobody stated.
    """

    levels: tuple
    ndim: int
    spacing: tuple[float, ...]
    unit: str | None
    origin: tuple[float, ...]
    version: str
    name: str | None = None
    calibrated: bool = True

    def without_calibration(self) -> OmeZarrImage:
        return replace(self, calibrated=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.levels[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.levels[0].dtype)

    @property
    def image(self):
        """What to give :func:`~napari_ecc_align.align` and ``warp``: the list of levels
        that halve the plane one after the other (for a volume, z at most as often: a
        pyramid the engine reads level by level), or level 0 alone when no stored level
        halves it."""
        kept = halving_levels(self.levels, self.ndim)
        return list(self.levels[:kept]) if kept > 1 else self.levels[0]

    @property
    def voxels(self) -> VoxelSize:
        """The stated voxel size as the TIFF readers give theirs (no spacing when the
        store states none)."""
        return VoxelSize(self.spacing if self.calibrated else None, self.unit,
                         self.ndim == 3, "OME-Zarr")  # fmt: skip

    @property
    def voxel_spacing(self) -> tuple[float, ...] | None:
        """The voxel size in µm when its unit is known (else as stated; None when the
        store states none): what ``align`` compares and uses."""
        return self.voxels.micrometres()


def spatial_view(array, axes, where: str, *, channel=None, timepoint=None):
    """``array`` (a zarr array with NGFF ``axes``) as a dask array in the engine's axis
    order, and the source axis of each of its axes."""
    import dask.array as da

    space = [i for i, axis in enumerate(axes) if _is_space(axis)]
    if len(space) not in (2, 3):
        names = [axis.name for axis in axes]
        raise ValueError(f"{where} has space axes {[names[i] for i in space]}: 2 or 3 are aligned")
    if all(axes[i].name in _SPACE_NAMES for i in space):
        space.sort(key=lambda i: _SPACE_NAMES.index(axes[i].name))
    index, last = [], []
    for i, axis in enumerate(axes):
        if i in space:
            index.append(slice(None))
            continue
        size = array.shape[i]
        chosen = {"time": timepoint, "channel": channel}.get(_kind(axis))
        what = {"time": "timepoint", "channel": "channel"}.get(_kind(axis), None)
        if chosen is not None:
            if not isinstance(chosen, (int, np.integer)) or not 0 <= chosen < size:
                raise ValueError(f"{what} must be an integer in [0, {size}), got {chosen!r}")
            index.append(int(chosen))
        elif size == 1:
            index.append(0)
        elif _kind(axis) == "channel" and size in (3, 4) and len(space) == 2:
            index.append(slice(None))
            last.append(i)
        else:
            hint = f"; pick one with {what}=" if what else ""
            raise ValueError(f"{where} has {size} entries on its {axis.name!r} axis{hint}")
    lazy = da.from_array(array, chunks=array.chunks, inline_array=True)[tuple(index)]
    kept = [i for i, item in enumerate(index) if isinstance(item, slice)]
    order = space + last
    return lazy.transpose([kept.index(i) for i in order]), order


def _is_space(axis) -> bool:
    return axis.type == "space" or (axis.type is None and axis.name in _SPACE_NAMES)


def _kind(axis) -> str | None:
    if axis.type in ("time", "channel"):
        return axis.type
    return {"t": "time", "c": "channel"}.get(axis.name) if axis.type is None else None


# ------------------------------------------------------------------------- writing pyramids
def pyramid_factors(shape, spacing, smallest: int) -> list[tuple[int, ...]]:
    """Each level's downsampling step from the one before (level 0's is all ones).

    The plane axes halve at every level; z halves when that keeps its voxel side no
    longer than 1.5 times the plane's, so that coarse levels of an anisotropic volume
    grow towards isotropic voxels. Levels stop when the plane's largest side is at
    most ``smallest``.
    """
    shape, spacing = list(shape), list(spacing)
    steps = [(1,) * len(shape)]
    while max(shape[-2:]) > smallest:
        step = [2] * len(shape)
        if len(shape) == 3:
            halve_z = shape[0] > 1 and 2 * spacing[0] <= 1.5 * 2 * min(spacing[1:])
            step[0] = 2 if halve_z else 1
        shape = [max(1, n // s) for n, s in zip(shape, step, strict=True)]
        spacing = [d * s for d, s in zip(spacing, step, strict=True)]
        steps.append(tuple(step))
    return steps


def downsampled(array, step, leading: int):
    """``array`` averaged over blocks of ``step`` (per space axis; ``leading`` channel
    axes first are kept), the excess trimmed, in its own dtype (integers rounded)."""
    import dask.array as da

    axes = {leading + i: s for i, s in enumerate(step) if s > 1}
    return da.coarsen(_mean_as(np.dtype(array.dtype)), array, axes, trim_excess=True)


def _mean_as(dtype: np.dtype):
    def mean(block, axis=None):
        value = block.mean(axis=axis, dtype=np.float64)
        if dtype.kind == "b":
            return value >= 0.5
        if dtype.kind in "iu":
            return np.rint(value).astype(dtype)
        return value.astype(dtype)

    return mean
