"""One volume level's sample voxels and the fixed half of ECC on them.

The 3D counterpart of :mod:`.reference_side`: the voxels with the strongest gradients
(a third each along x, y and z, chosen slab by slab), their Jacobian in *physical*
normalised coordinates (so ``euclidean`` is rigid in physical units), and trilinear
samples of the moving volume (``scipy.ndimage.map_coordinates``). The moment algebra
is :class:`~.reference_side.Samples`', reused.

Matrices are 4×4, reference voxel (x, y, z, 1) → moving voxel (x, y, z).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from .grid import Level
from .reference_side import Samples, flat_overlap_error
from .structure import NoStructure

# Volumes keep more sample points than images: three gradient directions share them.
_MAX_SAMPLES = 60_000
# Planes per slab when gradient magnitudes are thresholded.
_SLAB = 8


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
        inside = inside_volume(coords, mov_img.shape, margin)
        zyx = coords[:, ::-1].T
        values = ndimage.map_coordinates(mov_img, zyx, order=1, mode="nearest", prefilter=False)
        if mov_ok is not None:
            inside &= ndimage.map_coordinates(mov_ok, zyx, order=0, mode="nearest")
        inside = inside.view(np.uint8)
        return values.astype(np.float64), inside, int(np.count_nonzero(inside))


def z_margin(margin: int, planes: int) -> int:
    """The margin kept along z inside the moving volume on a stack of ``planes``:
    ``margin``, shrunk on thin stacks (a coarse level of a few planes) by a plane more
    than the reference's samples are (:func:`select_voxels` keeps the central planes),
    so that they may shift by about a plane. It used to shrink exactly as much, which
    on 4 to 8 planes let only samples at the identity itself count: every automatic
    start failed on thin stacks."""
    return max(0, min(margin, (planes - 3) // 2))


def inside_volume(coords, shape, margin) -> np.ndarray:
    """Which moving points ``coords`` (n, 3: x, y, z) lie at least ``margin`` voxels
    inside a volume of ``shape`` (z, y, x); on thin stacks the z margin shrinks
    (:func:`z_margin`)."""
    nz, ny, nx = shape
    zm = z_margin(margin, nz)
    return (
        (coords[:, 0] >= margin) & (coords[:, 0] <= nx - 1 - margin)
        & (coords[:, 1] >= margin) & (coords[:, 1] <= ny - 1 - margin)
        & (coords[:, 2] >= zm) & (coords[:, 2] <= nz - 1 - zm)
    )  # fmt: skip


def reference_samples(ref: Level, image, ksize, motion, level, spacing, margin) -> VolumeSamples:
    """The level's :class:`VolumeSamples` for ``motion`` from its prefiltered ``image``
    (``ksize``), memoised on ``ref``."""
    key = ("volume", ksize, motion, spacing)
    found = ref.memo.get(key)
    if found is not None:
        return found
    idx = select_voxels(image, ref.valid, margin)
    if idx.size < 4 * N_PARAMS_3D[motion]:
        raise NoStructure(
            f"the reference has too few valid voxels on pyramid level {level} ({idx.size}); "
            "use fewer pyramid_levels or a larger reference_mask"
        )
    rows, points = sample_rows(image, idx, (0, 0, 0), image.shape, spacing, motion)
    if not np.ptp(rows[-2]) > 0:
        raise flat_overlap_error(level)
    return ref.memo.setdefault(key, VolumeSamples(rows, points, level))


def sample_rows(image, idx, origin, shape, spacing, motion):
    """``(rows, points)`` of :class:`VolumeSamples` for the flat indices ``idx`` of
    ``image``, a box of a volume of ``shape`` whose first voxel is at ``origin`` (z, y,
    x): the Jacobian in the whole volume's normalised frame, the values, ones; and the
    points (x, y, z, 1) in the volume's voxels."""
    zs, ys, xs = np.unravel_index(idx, image.shape)
    points = np.column_stack([xs + origin[2], ys + origin[1], zs + origin[0],
                              np.ones(idx.size)]).astype(np.float64)  # fmt: skip
    norm, _ = normaliser(shape, spacing)
    u = np.dot(points, norm[:3].T).T
    # Gradients per normalised unit: d/du = d/dvoxel · (voxels per unit); halved because
    # central_difference returns twice it.
    per_unit = 0.5 / np.diag(norm)[:3]
    g = [_gradient_at(image, idx, axis) * per_unit[axis] for axis in range(3)]
    p = N_PARAMS_3D[motion]
    rows = np.empty((p + 2, idx.size))
    jacobian(motion, u, g, out=rows[:p])
    rows[p], rows[p + 1] = image.ravel()[idx], 1.0
    return rows, points


# Flat-index steps to the next voxel along x, y and z.
def _strides(shape) -> tuple[int, int, int]:
    return 1, shape[2], shape[1] * shape[2]


def central_difference(image, axis) -> np.ndarray:
    """Twice the central difference along x (0), y (1) or z (2); zero on the border."""
    out = np.zeros_like(image)
    inner = [slice(None)] * 3
    ahead, behind = list(inner), list(inner)
    dim = 2 - axis  # array axis of x, y, z
    inner[dim], ahead[dim], behind[dim] = slice(1, -1), slice(2, None), slice(None, -2)
    np.subtract(image[tuple(ahead)], image[tuple(behind)], out=out[tuple(inner)])
    return out


def _gradient_at(image, idx, axis) -> np.ndarray:
    """:func:`central_difference` at the flat indices ``idx`` only (never on the border)."""
    flat, step = image.ravel(), _strides(image.shape)[axis]
    return (flat[idx + step] - flat[idx - step]).astype(np.float64)


def select_voxels(image, valid, margin, limit=_MAX_SAMPLES) -> np.ndarray:
    """Flat indices of the voxels ECC uses, at least ``margin`` voxels from the sides
    (z: at most half the planes): all inner valid voxels when there are at most
    ``limit``, else the strongest |gx|, |gy| and |gz| (a third each), deterministic. One
    gradient volume exists at a time."""
    shape = image.shape
    zm = min(margin, (shape[0] - 1) // 2)
    inner = np.zeros(shape, bool)
    inner[zm : shape[0] - zm, margin:-margin, margin:-margin] = True
    if valid is not None:
        inner &= ndimage.binary_erosion(valid, iterations=margin, border_value=1)
    count = int(np.count_nonzero(inner))
    if count <= limit:
        return np.flatnonzero(inner)
    chosen = np.zeros(shape, bool)
    keep = limit / (3 * count)
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
            slab = np.abs(central_difference(image[lo:hi], axis))
            magnitude = slab[z0 - lo : z0 - lo + (z1 - z0)]
            chosen[z0:z1] |= magnitude >= threshold
    if valid is None:
        chosen[:zm] = chosen[shape[0] - zm :] = False
        chosen[:, :margin] = chosen[:, -margin:] = False
        chosen[:, :, :margin] = chosen[:, :, -margin:] = False
    else:
        chosen &= inner
    idx = np.flatnonzero(chosen)
    if idx.size > limit:
        idx = np.sort(rng.choice(idx, size=limit, replace=False))
    elif idx.size < 64:  # nearly flat: a regular grid of the inner voxels
        grid = np.zeros(shape, bool)
        grid[zm : shape[0] - zm : 2, margin:-margin:4, margin:-margin:4] = True
        idx = np.flatnonzero(grid if valid is None else grid & inner)
    return idx
