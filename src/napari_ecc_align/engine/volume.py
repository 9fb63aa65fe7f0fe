"""Volumes for the ECC engine: the 3D :class:`~.grid.Grid`, normalisation, the
anisotropic pyramid, the prefilter and the correlation.

The estimate itself is written once for any dimensionality (:mod:`.ecc`,
:mod:`.initialisation`, :mod:`.estimate`). What differs is here and in
:mod:`.volume_samples`: volumes are ``(z, y, x)`` arrays with a voxel ``spacing``
(dz, dy, dx); the pyramid halves y and x on every level but z only while z is not
already coarser than the new in-plane spacing; resampling is trilinear
(``scipy.ndimage``); and the Jacobian is taken in *physical* normalised coordinates,
so ``euclidean`` is rigid in physical units.

Matrices are 4×4, reference voxel (x, y, z, 1) → moving voxel (x, y, z).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from .alignment import VOLUME_MOTIONS, AlignmentError
from .geometry import project_to_motion, swap_axes
from .grid import Grid, Level
from .preprocess import as_array, validate_mask
from .reference_side import level_margin
from .volume_samples import delta_matrix, normaliser, reference_samples

# The coarsest automatic level keeps at least this many voxels across y and x, and z
# is halved only while at least this many planes remain.
_COARSEST_MIN_SIDE = 12
_MIN_PLANES = 4
_MAX_AUTO_LEVELS = 6
# The z prefilter's least sigma, in planes. Coarse planes left nearly unsmoothed make
# trilinear sampling between them bias sub-voxel z shifts: on drift_volume (z 4x coarser,
# 0.25 plane per frame) consecutive volumes came out 0.0155 plane too far apart and the
# 12-frame chain 0.19 voxel off; with 1 plane, 0.007 and 0.098 (1.5: 0.058, but pairs
# of volume_pair then end up to 0.014 voxel off instead of 0.005-0.016).
_MIN_SIGMA_Z = 1.0
# Columns of the (planes, rows x columns) view filtered along z at a time.
_Z_BLOCK = 4096
_PYR_KERNEL = np.array([1, 4, 6, 4, 1], np.float32) / 16  # cv2.pyrDown's


def normalise_volume(volume, name: str, mask=None, mask_name: str = "mask"):
    """A volume as ECC works on it: float32 scaled to [0, 1] over its valid voxels, and
    a bool mask of them (None when all are valid). NaN and inf voxels are invalid."""
    arr = as_array(volume, name)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} has shape {arr.shape}: with ndim=3, align() takes one (z, y, x) volume; "
            "for a time-lapse of volumes use align_stack(..., ndim=3)"
        )
    if min(arr.shape) < 2:
        raise ValueError(f"{name} must have at least 2 voxels along each axis, got {arr.shape}")
    valid = validate_mask(mask, arr.shape, mask_name)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        finite_values = arr[np.isfinite(arr)]
        peak = float(np.abs(finite_values).max()) if finite_values.size else 0.0
        if peak > 1e30:
            arr = arr / peak  # so the float32 cast cannot overflow
    if arr.dtype.kind == "f" and not np.isfinite(arr.sum(dtype=np.float64)):
        finite = np.isfinite(arr)
        valid = finite if valid is None else valid & finite
    if valid is not None and valid.all():
        valid = None
    values = arr if valid is None else arr[valid]
    if values.size == 0:
        raise ValueError(f"{name} has no valid voxels: every voxel is masked out, NaN or inf")
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise AlignmentError(
            f"{name} has no contrast (every valid voxel equals {lo:g}); ECC needs structure "
            "in both volumes: check that the right volume or channel was passed"
        )
    peak = max(abs(lo), abs(hi))
    if peak > 1e30 or hi - lo < 1e-30:
        # float32 differences near its limits overflow (±3e38 spans 6e38), tiny float64
        # values vanish in float32: a peak of 1 first, in the input's own precision
        arr, lo, hi = arr / peak, lo / peak, hi / peak
    # One float32 copy, scaled in place (a volume is large; the input is never changed).
    out = np.subtract(arr, lo, dtype=np.float32, casting="unsafe")
    out *= np.float32(1.0 / (hi - lo))
    if valid is not None:
        out[~valid] = out[valid].mean()  # no false edges where the mask cuts
    return out, valid


# Voxel sizes a spacing may have, and how much larger one axis may be than another.
_SPACING_RANGE = (1e-12, 1e12)
_MAX_ANISOTROPY = 1000


def check_spacing(spacing) -> tuple[float, float, float]:
    """``spacing`` as (dz, dy, dx) floats > 0 (None: isotropic), or raise.

    Every entry lies in [1e-12, 1e12] (any unit, the same for all three) and the
    largest is at most 1000 times the smallest: beyond that a voxel size is a typo
    or a unit mix-up, and products of spacings would overflow.
    """
    if spacing is None:
        return (1.0, 1.0, 1.0)
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"spacing must be (dz, dy, dx) numbers, got {spacing!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be three positive numbers (dz, dy, dx), got {spacing!r}")
    low, high = _SPACING_RANGE
    if not all(low <= v <= high for v in values):
        raise ValueError(
            f"spacing must lie between {low:g} and {high:g} (any unit, the same for all three), "
            f"got {spacing!r}; express the voxel size in a unit nearer its scale (e.g. µm)"
        )
    if max(values) > _MAX_ANISOTROPY * min(values):
        raise ValueError(
            f"spacing {spacing!r} is more than {_MAX_ANISOTROPY}:1 anisotropic; check that all "
            "three are in the same unit and in (dz, dy, dx) order"
        )
    return values


# ------------------------------------------------------------------------------------ pyramid
def plan_levels(ref_shape, mov_shape, spacing, levels=None) -> list[tuple[int, int, int]]:
    """Cumulative (sz, sy, sx) downsampling factors of each level, level 0 first.

    y and x halve on every level; z halves when its spacing is not coarser than the
    new in-plane spacing (a 1:1:3 stack keeps its planes for the first level) and
    enough planes remain. ``levels`` None picks the depth from the size.
    """
    dz, dy, dx = spacing
    planes = min(ref_shape[0], mov_shape[0])
    side = min(*ref_shape[1:], *mov_shape[1:])
    factors = [(1, 1, 1)]
    limit = levels if levels is not None else _MAX_AUTO_LEVELS
    while len(factors) < limit:
        sz, sy, sx = factors[-1]
        if side / (2 * sy) < (_COARSEST_MIN_SIDE if levels is None else 4):
            break
        halve_z = dz * sz <= min(dy, dx) * 2 * sy and planes / (2 * sz) >= _MIN_PLANES
        factors.append((sz * (2 if halve_z else 1), sy * 2, sx * 2))
    return factors


def volume_pyramid(volume, valid, factors) -> list[Level]:
    """Gaussian pyramid with the per-level factors of :func:`plan_levels`. In-plane it
    is ``cv2.pyrDown`` per plane; along z the same 5-tap kernel on even planes, so a
    level-k voxel sits exactly at the factor times its index on level k-1."""
    out = [Level(volume, valid)]
    for (sz, _, _), (pz, _, _) in zip(factors[1:], factors[:-1], strict=True):
        prev = out[-1]
        image = _down(prev.image, sz != pz)
        small_valid = None
        if prev.valid is not None:
            small_valid = _down(prev.valid.astype(np.float32), sz != pz) > 0.75
        out.append(Level(image, small_valid))
    return out


def _down(volume: np.ndarray, halve_z: bool) -> np.ndarray:
    planes = halve_planes(volume)
    return halve_z_axis(planes) if halve_z else planes


def halve_planes(volume: np.ndarray) -> np.ndarray:
    """Every (y, x) plane of ``volume`` through ``cv2.pyrDown``."""
    return np.stack([cv2.pyrDown(plane) for plane in volume])


def halve_z_axis(volume: np.ndarray) -> np.ndarray:
    """``volume`` (float32) smoothed along z by pyrDown's 5-tap kernel and decimated, so
    that plane ``k`` sits at plane ``2k`` before."""
    flat = volume.reshape(volume.shape[0], -1)
    smoothed = cv2.sepFilter2D(flat, cv2.CV_32F, np.ones(1, np.float32), _PYR_KERNEL)
    return np.ascontiguousarray(smoothed[::2].reshape(-1, *volume.shape[1:]))


def blur(volume: np.ndarray, ksize: int, spacing, out=None) -> np.ndarray:
    """The ECC prefilter in 3D: OpenCV's ``ksize`` Gaussian in-plane, and along z the
    same width in physical units but at least ``_MIN_SIGMA_Z`` planes. ``out`` may be
    ``volume`` itself (OpenCV's filters work in place)."""
    if ksize <= 1:
        return volume
    planes = np.empty_like(volume) if out is None else out
    for plane, dst in zip(volume, planes, strict=True):
        cv2.GaussianBlur(plane, (ksize, ksize), 0, dst=dst)
    sigma_z = _sigma_z(ksize, spacing)
    if volume.shape[0] < 3:
        return planes
    kz = min(2 * blur_reach_z(ksize, spacing) + 1, 2 * (volume.shape[0] // 2) - 1)
    kernel = cv2.getGaussianKernel(kz, sigma_z, cv2.CV_32F).ravel()
    flat = planes.reshape(planes.shape[0], -1)
    # In place, block of columns by block: OpenCV clones a source that is its own
    # destination, and a clone of the whole volume was the estimate's memory peak.
    for start in range(0, flat.shape[1], _Z_BLOCK):
        block = flat[:, start : start + _Z_BLOCK]
        cv2.sepFilter2D(block, cv2.CV_32F, np.ones(1, np.float32), kernel, dst=block)
    return planes


def _sigma_z(ksize: int, spacing) -> float:
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for this ksize
    return max(sigma * min(spacing[1], spacing[2]) / spacing[0], _MIN_SIGMA_Z)


def blur_reach_z(ksize: int, spacing) -> int:
    """How many planes :func:`blur` reads on each side along z (0 without a prefilter)."""
    return int(math.ceil(3 * _sigma_z(ksize, spacing))) if ksize > 1 else 0


def level_spacing(spacing, factor) -> tuple[float, float, float]:
    return tuple(s * f for s, f in zip(spacing, factor, strict=True))


def blurred(level: Level, ksize: int, spacing, in_place: bool = False) -> np.ndarray:
    """The level's image through :func:`blur`, memoised on the level. ``in_place`` blurs
    over the level's own image, for a full-resolution volume whose plain values nothing
    reads any more: a copy of it would be the estimate's memory peak."""
    key = ("blurred", ksize, spacing)
    if key not in level.memo:
        level.memo[key] = blur(level.image, ksize, spacing, level.image if in_place else None)
    return level.memo[key]


def project_volume(matrix, motion, spacing=None) -> np.ndarray:
    """:func:`~.geometry.project_to_motion` for a 4×4, with ``spacing`` checked.

    Parameters
    ----------
    matrix : array_like
        A 4×4 reference → moving voxel matrix.
    motion : {"translation", "euclidean", "affine"}
        The motion to project onto; ``euclidean`` is rigid in physical units.
    spacing : (dz, dy, dx), optional
        The voxel size (None: isotropic).

    Returns
    -------
    numpy.ndarray
        The 4×4 float64 projection.
    """
    return project_to_motion(matrix, motion, check_spacing(spacing))


# --------------------------------------------------------------------------------- the grid
class VolumeGrid(Grid):
    """The 3D half of an estimate: the levels of :func:`plan_levels` with their
    physical spacing, gradient-chosen sample voxels (:mod:`.volume_samples`), trilinear
    sampling, and translation, rigid and affine motions with phase correlation."""

    ndim = 3
    noun = "volume"
    scene = "sample"
    motions = VOLUME_MOTIONS
    estimators = ("phase",)
    search_side = 64
    phase_peaks = 2  # 8 readings each: each is scored by a trilinear warp
    blurs_level0_in_place = True
    other_starts = "init='identity' or a 4x4 matrix"

    def __init__(self, ksizes: tuple[int, int], spacing, factors):
        # The prefilter on coarse levels and at full resolution (see smoothing_schedule).
        (self.ksize, self.finest_ksize), self.spacing, self.level_factors = ksizes, spacing, factors
        self.margin = level_margin(max(ksizes))

    def ksize_at(self, level: int) -> int:
        """The prefilter's (in-plane) size on ``level``."""
        return self.finest_ksize if level == 0 else self.ksize

    def pyramid(self, image, valid, levels):
        return volume_pyramid(image, valid, self.level_factors[:levels])

    def factors(self, level):
        return self.level_factors[level]

    def spacing_at(self, level) -> tuple[float, float, float]:
        """The voxel size on ``level``."""
        return level_spacing(self.spacing, self.level_factors[level])

    # At full resolution nothing reads the plain values again (the final correlations
    # use a strided copy of the reference and a fresh copy of the moving volume), so
    # the prefilter overwrites them: a blurred copy of each would be the memory peak.
    def samples(self, ref, motion, level, seeds):
        return self._reference(ref, motion, level, in_place=level == 0), None

    def probe(self, ref, level):
        self._reference(ref, "translation", level, in_place=False)  # must not change ``ref``

    def _reference(self, ref, motion, level, in_place):
        spacing = self.spacing_at(level)
        ksize = self.ksize_at(level)
        image = blurred(ref, ksize, spacing, in_place)
        return reference_samples(ref, image, ksize, motion, level, spacing, self.margin)

    def moving(self, mov, level):
        image = blurred(mov, self.ksize_at(level), self.spacing_at(level), level == 0)
        key = ("usable", self.margin)
        if key not in mov.memo:
            usable = mov.valid
            if usable is not None:
                usable = ndimage.binary_erosion(usable, iterations=self.margin, border_value=1)
            mov.memo[key] = usable
        return image, mov.memo[key]

    def normaliser(self, shape, level):
        return normaliser(shape, self.spacing_at(level))

    def delta_matrix(self, motion, p):
        return delta_matrix(motion, p)

    def score(self, ref, mov, matrix):
        return volume_correlation(ref.image, ref.valid, mov.image, mov.valid, matrix)

    def paired_values(self, ref, mov, matrix, limit):
        grid, valid, stride = correlation_grid(ref.image, ref.valid, limit)
        return volume_pairs(grid, valid, mov.image, mov.valid, matrix, stride)

    def project(self, matrix, motion, level):
        return project_to_motion(matrix, motion, self.spacing_at(level))

    def level_done(self, ref_pyr, mov_pyr, level, release):
        # Nothing runs on this level again: free its samples and blurred copies, and on
        # the estimate's last pass the level's volumes too.
        ref_pyr[level].memo.clear()
        mov_pyr[level].memo.clear()
        if release:
            ref_pyr[level] = mov_pyr[level] = None


# The reported correlations are measured on every stride-th voxel along each axis, the
# stride chosen so at most this many voxels are resampled (scipy's trilinear warp of a
# whole 96x192x192 volume took 0.5 s, a third of the estimate).
_CORRELATION_VOXELS = 500_000


def correlation_grid(ref, ref_valid, limit=_CORRELATION_VOXELS):
    """``(grid, valid, stride)``: copies of every stride-th reference voxel (and of its
    mask), with at most about ``limit`` of them, for :func:`volume_correlation`."""
    stride = max(1, math.ceil((ref.size / limit) ** (1 / 3)))
    step = np.s_[::stride, ::stride, ::stride]
    valid = None if ref_valid is None else ref_valid[step].copy()
    return ref[step].copy(), valid, stride


def volume_pairs(grid, grid_valid, mov, mov_valid, matrix, stride=1):
    """``(reference values, moving values)`` over the overlap: the reference voxels
    ``grid`` (every ``stride``-th, see :func:`correlation_grid`) and ``mov`` warped by
    ``matrix`` onto them (trilinear), as float64."""
    on_grid = matrix @ np.diag([float(stride)] * 3 + [1.0])
    swap = swap_axes(3)  # scipy indexes (z, y, x)
    zyx = swap @ on_grid @ swap
    source = mov if mov_valid is None else np.where(mov_valid, mov, np.nan).astype(np.float32)
    warped = ndimage.affine_transform(source, zyx[:3, :3], zyx[:3, 3], output_shape=grid.shape,
                                      order=1, mode="constant", cval=np.nan)  # fmt: skip
    ok = np.isfinite(warped)
    if grid_valid is not None:
        ok &= grid_valid
    return grid[ok].astype(np.float64), warped[ok].astype(np.float64)


def volume_correlation(grid, grid_valid, mov, mov_valid, matrix, stride=1) -> float:
    """ECC of the reference voxels ``grid`` (every ``stride``-th, see
    :func:`correlation_grid`) and ``mov`` warped by ``matrix``, over their overlap
    (trilinear)."""
    r, w = volume_pairs(grid, grid_valid, mov, mov_valid, matrix, stride)
    if len(r) < 16:
        return float("nan")
    r -= r.mean()
    w -= w.mean()
    denominator = math.sqrt(float(np.dot(r, r)) * float(np.dot(w, w)))
    return float(np.dot(r, w) / denominator) if denominator > 0 else float("nan")
