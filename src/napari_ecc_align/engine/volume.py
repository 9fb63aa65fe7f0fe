"""Volumes for the ECC engine: normalisation, the anisotropic pyramid, and one level's
sample points.

The maths of ECC does not care about dimensionality: the moment algebra of
:class:`~.reference_side.Samples` and the climbing loop of :func:`~.ecc.climb` are
shared with the 2D engine. What differs is here: volumes are ``(z, y, x)`` arrays with
a voxel ``spacing`` (dz, dy, dx); the pyramid halves y and x on every level but z only
while z is not already coarser than the new in-plane spacing; resampling at the sample
points is trilinear (``scipy.ndimage.map_coordinates``); and the Jacobian is taken in
*physical* normalised coordinates, so ``euclidean`` is rigid in physical units.

Matrices are 4×4, reference voxel (x, y, z, 1) → moving voxel (x, y, z).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy import ndimage

from .alignment import AlignmentError
from .ecc import Level
from .preprocess import as_array, validate_mask
from .reference_side import Samples, flat_overlap_error
from .structure import NoStructure

# Volumes keep more sample points than images: three gradient directions share them.
_MAX_SAMPLES = 60_000
# The coarsest automatic level keeps at least this many voxels across y and x, and z
# is halved only while at least this many planes remain.
_COARSEST_MIN_SIDE = 12
_MIN_PLANES = 4
_MAX_AUTO_LEVELS = 6
# Planes per slab when gradient magnitudes are thresholded.
_SLAB = 8
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
    planes = np.stack([cv2.pyrDown(plane) for plane in volume])
    if not halve_z:
        return planes
    flat = planes.reshape(planes.shape[0], -1)
    smoothed = cv2.sepFilter2D(flat, cv2.CV_32F, np.ones(1, np.float32), _PYR_KERNEL)
    return np.ascontiguousarray(smoothed[::2].reshape(-1, *planes.shape[1:]))


def blur(volume: np.ndarray, ksize: int, spacing, out=None) -> np.ndarray:
    """The ECC prefilter in 3D: OpenCV's ``ksize`` Gaussian in-plane, and along z the
    same width in physical units but at least ``_MIN_SIGMA_Z`` planes. ``out`` may be
    ``volume`` itself (OpenCV's filters work in place)."""
    if ksize <= 1:
        return volume
    planes = np.empty_like(volume) if out is None else out
    for plane, dst in zip(volume, planes, strict=True):
        cv2.GaussianBlur(plane, (ksize, ksize), 0, dst=dst)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for this ksize
    sigma_z = max(sigma * min(spacing[1], spacing[2]) / spacing[0], _MIN_SIGMA_Z)
    if volume.shape[0] < 3:
        return planes
    kz = min(2 * int(math.ceil(3 * sigma_z)) + 1, 2 * (volume.shape[0] // 2) - 1)
    kernel = cv2.getGaussianKernel(kz, sigma_z, cv2.CV_32F).ravel()
    flat = planes.reshape(planes.shape[0], -1)
    # In place, block of columns by block: OpenCV clones a source that is its own
    # destination, and a clone of the whole volume was the estimate's memory peak.
    for start in range(0, flat.shape[1], _Z_BLOCK):
        block = flat[:, start : start + _Z_BLOCK]
        cv2.sepFilter2D(block, cv2.CV_32F, np.ones(1, np.float32), kernel, dst=block)
    return planes


def level_spacing(spacing, factor) -> tuple[float, float, float]:
    return tuple(s * f for s, f in zip(spacing, factor, strict=True))


# -------------------------------------------------------------------- one level's samples
def normaliser(shape, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Voxel (x, y, z, 1) → centred physical coordinates over half the largest physical
    extent, as a 4×4 N, and N⁻¹: the Jacobian's frame, rigid in physical units."""
    (nz, ny, nx), (dz, dy, dx) = shape, spacing
    half = max((nx - 1) * dx, (ny - 1) * dy, (nz - 1) * dz, 1.0) / 2
    centre = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    scale = np.array([dx, dy, dz]) / half
    norm = np.eye(4)
    norm[:3, :3] = np.diag(scale)
    norm[:3, 3] = -centre * scale
    norm_inv = np.eye(4)
    norm_inv[:3, :3] = np.diag(1 / scale)
    norm_inv[:3, 3] = centre
    return norm, norm_inv


N_PARAMS_3D = {"translation": 3, "euclidean": 6, "affine": 12}


def jacobian(motion, u, g, out=None) -> np.ndarray:
    """∂template(W(u; p))/∂p at p = 0 in normalised coordinates ``u`` = (x, y, z) with
    gradients ``g`` = (gx, gy, gz); one row per parameter, written into the first rows
    of ``out`` if given (no stacked temporaries: volumes keep many samples)."""
    (x, y, z), (gx, gy, gz) = u, g
    if out is None:
        out = np.empty((N_PARAMS_3D[motion], x.size))
    if motion == "translation":
        out[0], out[1], out[2] = gx, gy, gz
    elif motion == "euclidean":  # small rotations about x, y, z, then translation
        np.subtract(y * gz, z * gy, out=out[0])
        np.subtract(z * gx, x * gz, out=out[1])
        np.subtract(x * gy, y * gx, out=out[2])
        out[3], out[4], out[5] = gx, gy, gz
    else:
        for i, grad in enumerate((gx, gy, gz)):
            for j, coord in enumerate((x, y, z)):
                np.multiply(coord, grad, out=out[3 * i + j])
        out[9], out[10], out[11] = gx, gy, gz
    return out


def delta_matrix(motion, p) -> np.ndarray:
    """The 4×4 warp (normalised coordinates) of the parameter vector ``p``."""
    out = np.eye(4)
    if motion == "translation":
        out[:3, 3] = p
    elif motion == "euclidean":
        out[:3, :3] = cv2.Rodrigues(np.asarray(p[:3], np.float64))[0]
        out[:3, 3] = p[3:]
    else:
        out[:3, :3] += np.asarray(p[:9]).reshape(3, 3)
        out[:3, 3] = p[9:]
    return out


class VolumeSamples(Samples):
    """A level's sample voxels and the fixed half of ECC (the 2D moment algebra, reused);
    moving values are trilinear samples of the moving volume."""

    def __init__(self, rows, points, level):  # pylint: disable=super-init-not-called
        """``rows``: the Jacobian's rows, then the template values, then ones."""
        n = rows.shape[1]
        self.n, self.level, self.n_params = n, level, rows.shape[0] - 2
        self.rows = rows
        self.moments = np.dot(self.rows, self.rows.T)
        self.points = points  # (n, 4): x, y, z, 1
        self.full = self._fixed_terms(self.moments)

    def sample_moving(self, mov_img, mov_ok, matrix, margin):
        coords = np.dot(self.points, matrix[:3].T)  # (n, 3): x, y, z in the moving volume
        nz, ny, nx = mov_img.shape
        zm = min(margin, (nz - 1) / 2)  # thin stacks: the z margin shrinks
        inside = (
            (coords[:, 0] >= margin) & (coords[:, 0] <= nx - 1 - margin)
            & (coords[:, 1] >= margin) & (coords[:, 1] <= ny - 1 - margin)
            & (coords[:, 2] >= zm) & (coords[:, 2] <= nz - 1 - zm)
        )  # fmt: skip
        zyx = coords[:, ::-1].T
        values = ndimage.map_coordinates(mov_img, zyx, order=1, mode="nearest", prefilter=False)
        if mov_ok is not None:
            inside &= ndimage.map_coordinates(mov_ok, zyx, order=0, mode="nearest")
        inside = inside.view(np.uint8)
        return values.astype(np.float64), inside, int(np.count_nonzero(inside))


def blurred(level: Level, ksize: int, spacing, in_place: bool = False) -> np.ndarray:
    """The level's image through :func:`blur`, memoised on the level. ``in_place`` blurs
    over the level's own image, for a full-resolution volume whose plain values nothing
    reads any more: a copy of it would be the estimate's memory peak."""
    key = ("blurred", ksize, spacing)
    if key not in level.memo:
        level.memo[key] = blur(level.image, ksize, spacing, level.image if in_place else None)
    return level.memo[key]


def reference_samples(ref: Level, ksize, motion, level, spacing, margin,
                      in_place: bool = False) -> VolumeSamples:  # fmt: skip
    """The level's :class:`VolumeSamples` for ``motion``, memoised on ``ref``."""
    key = ("volume", ksize, motion, spacing)
    found = ref.memo.get(key)
    if found is not None:
        return found
    image = blurred(ref, ksize, spacing, in_place)
    idx = _select(image, ref.valid, margin)
    if idx.size < 4 * N_PARAMS_3D[motion]:
        raise NoStructure(
            f"the reference has too few valid voxels on pyramid level {level} ({idx.size}); "
            "use fewer pyramid_levels or a larger reference_mask"
        )
    zs, ys, xs = np.unravel_index(idx, image.shape)
    points = np.column_stack([xs, ys, zs, np.ones(idx.size)]).astype(np.float64)
    norm, _ = normaliser(image.shape, spacing)
    u = np.dot(points, norm[:3].T).T
    # Gradients per normalised unit: d/du = d/dvoxel · (voxels per unit); halved because
    # _gradients returns twice the central difference.
    per_unit = 0.5 / np.diag(norm)[:3]
    g = [_gradient_at(image, idx, axis) * per_unit[axis] for axis in range(3)]
    p = N_PARAMS_3D[motion]
    rows = np.empty((p + 2, idx.size))
    jacobian(motion, u, g, out=rows[:p])
    rows[p], rows[p + 1] = image.ravel()[idx], 1.0
    del u, g
    if not np.ptp(rows[p]) > 0:
        raise flat_overlap_error(level)
    return ref.memo.setdefault(key, VolumeSamples(rows, points, level))


# Flat-index steps to the next voxel along x, y and z.
def _strides(shape) -> tuple[int, int, int]:
    return 1, shape[2], shape[1] * shape[2]


def _gradient(image, axis) -> np.ndarray:
    """Twice the central difference along x (0), y (1) or z (2); zero on the border."""
    out = np.zeros_like(image)
    inner = [slice(None)] * 3
    ahead, behind = list(inner), list(inner)
    dim = 2 - axis  # array axis of x, y, z
    inner[dim], ahead[dim], behind[dim] = slice(1, -1), slice(2, None), slice(None, -2)
    np.subtract(image[tuple(ahead)], image[tuple(behind)], out=out[tuple(inner)])
    return out


def _gradient_at(image, idx, axis) -> np.ndarray:
    """:func:`_gradient` at the flat indices ``idx`` only (they are never on the border)."""
    flat, step = image.ravel(), _strides(image.shape)[axis]
    return (flat[idx + step] - flat[idx - step]).astype(np.float64)


def _select(image, valid, margin) -> np.ndarray:
    """Flat indices of the voxels ECC uses: all inner valid voxels on small levels, else
    the strongest |gx|, |gy| and |gz| (a third each), deterministic. One gradient volume
    exists at a time."""
    shape = image.shape
    zm = min(margin, (shape[0] - 1) // 2)
    inner = np.zeros(shape, bool)
    inner[zm : shape[0] - zm, margin:-margin, margin:-margin] = True
    if valid is not None:
        inner &= ndimage.binary_erosion(valid, iterations=margin, border_value=1)
    count = int(np.count_nonzero(inner))
    if count <= _MAX_SAMPLES:
        return np.flatnonzero(inner)
    chosen = np.zeros(shape, bool)
    keep = _MAX_SAMPLES / (3 * count)
    if valid is None:
        del inner  # the border is cut from `chosen` below: one bool volume at a time
    rng = np.random.default_rng(0)  # deterministic: same inputs, same samples
    bounds = ((zm, shape[0] - zm), (margin, shape[1] - margin), (margin, shape[2] - margin))
    probe = tuple(rng.integers(lo, hi, 50_000) for lo, hi in bounds)
    probe_idx = np.ravel_multi_index(probe, shape)
    for axis in range(3):
        threshold = max(float(np.quantile(np.abs(_gradient_at(image, probe_idx, axis)), 1 - keep)),
                        1e-12)  # fmt: skip
        # Slab by slab: a whole gradient volume would be the estimate's memory peak.
        for z0 in range(0, shape[0], _SLAB):
            z1 = min(shape[0], z0 + _SLAB)
            lo, hi = max(0, z0 - 1), min(shape[0], z1 + 1)
            magnitude = np.abs(_gradient(image[lo:hi], axis))[z0 - lo : z0 - lo + (z1 - z0)]
            chosen[z0:z1] |= magnitude >= threshold
    if valid is None:
        chosen[:zm] = chosen[shape[0] - zm :] = False
        chosen[:, :margin] = chosen[:, -margin:] = False
        chosen[:, :, :margin] = chosen[:, :, -margin:] = False
    else:
        chosen &= inner
    idx = np.flatnonzero(chosen)
    if idx.size > _MAX_SAMPLES:
        idx = np.sort(rng.choice(idx, size=_MAX_SAMPLES, replace=False))
    elif idx.size < 64:  # nearly flat: a regular grid of the inner voxels
        grid = np.zeros(shape, bool)
        grid[zm : shape[0] - zm : 2, margin:-margin:4, margin:-margin:4] = True
        idx = np.flatnonzero(grid if valid is None else grid & inner)
    return idx
