"""Synthetic 3D microscopy: a tissue of cells, misaligned volume pairs and drifting 3D
time-lapses, with their true 4×4 transforms.

The matrices follow :attr:`napari_ecc_align.Alignment.matrix` for volumes: they map a
*reference* voxel ``(x, y, z, 1)`` (x = column, y = row, z = plane) to *moving* voxel
coordinates. The arrays are ``(z, y, x)``. A rigid motion is rigid in physical units:
with voxel ``spacing`` ``(dz, dy, dx)`` the voxel matrix is ``S⁻¹·M·S`` for a rotation
and shift ``M`` in micrometres and ``S = diag(dx, dy, dz, 1)``.

Every volume is sampled from one scene built on a grid finer in z than the volumes
(z is the coarse axis of a microscope), so the reference and the moving volume show the
same sample through exactly the transform returned, up to trilinear interpolation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..engine import grid_corners, warp

Shape3 = tuple[int, int, int]
Spacing = tuple[float, float, float]

CELL_SIZE = 11.0  # µm between neighbouring cell centres, like an epithelium's cells
MEMBRANE, CYTOPLASM = 0.35, 0.25


class VolumePair(NamedTuple):
    """What :func:`volume_pair` returns (unpacks like a tuple)."""

    reference: np.ndarray
    moving: np.ndarray
    spacing: Spacing
    matrix: np.ndarray


class VolumeDrift(NamedTuple):
    """What :func:`drift_volume` returns (unpacks like a tuple)."""

    stack: np.ndarray
    spacing: Spacing
    matrices: np.ndarray


# --------------------------------------------------------------------------- transforms


def check_volume(shape, spacing) -> tuple[Shape3, Spacing]:
    if len(shape) != 3 or min(int(v) for v in shape) < 4:
        raise ValueError(f"shape must be (z, y, x), each at least 4, got {tuple(shape)!r}")
    if len(spacing) != 3 or not min(float(v) for v in spacing) > 0:
        raise ValueError(f"spacing must be three positive voxel sizes (dz, dy, dx), got {spacing}")
    return tuple(int(v) for v in shape), tuple(float(v) for v in spacing)


def rigid_volume_matrix(
    angles_deg=(0.0, 0.0, 0.0),
    shift=(0.0, 0.0, 0.0),
    shape: Shape3 = (1, 1, 1),
    spacing: Spacing = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """A rigid motion in physical units about the volume's centre, as a voxel 4×4.

    Parameters
    ----------
    angles_deg : (float, float, float)
        Rotation as x-y-z Euler angles in degrees (``scipy``'s ``"xyz"``), the
        convention of :meth:`napari_ecc_align.StackAlignment.table`.
    shift : (float, float, float)
        ``(dx, dy, dz)`` in voxels: where the centre of the grid goes.
    shape : tuple of int
        ``(z, y, x)`` of the grid; the rotation is about its centre voxel.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)``; the rotation is a rotation in these units.

    Returns
    -------
    ndarray of shape (4, 4), float64
        Maps a voxel ``(x, y, z, 1)`` to voxel coordinates; orthonormal after
        scaling by the spacing.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align.data import rigid_volume_matrix
    >>> m = rigid_volume_matrix((0, 0, 90), (1, 0, 0), (5, 5, 5))
    >>> np.round(m @ [4, 2, 2, 1], 6).tolist()  # (x=4, y=2) turns to (2, 4), then +1 in x
    [3.0, 4.0, 2.0, 1.0]
    """
    dz, dy, dx = (float(v) for v in spacing)
    scale = np.diag([dx, dy, dz, 1.0])
    centre = np.array([(shape[2] - 1) / 2, (shape[1] - 1) / 2, (shape[0] - 1) / 2]) * [dx, dy, dz]
    rotation = Rotation.from_euler("xyz", np.asarray(angles_deg, float), degrees=True).as_matrix()
    physical = np.eye(4)
    physical[:3, :3] = rotation
    physical[:3, 3] = centre + np.asarray(shift, float) * [dx, dy, dz] - rotation @ centre
    return np.linalg.solve(scale, physical @ scale)


# --------------------------------------------------------------------------- the scene


class _Tissue:
    """Cells on a jittered lattice — nuclei, membranes, cytoplasm of varying brightness —
    blurred by an anisotropic PSF, on a scene grid covering a set of views.

    The scene grid has the volumes' spacing in x and y and a finer one in z, so that
    views rotated out of the xy plane interpolate between nearby planes. Its origin is
    at reference voxel ``origin`` (x, y, z).
    """

    def __init__(self, shape: Shape3, spacing: Spacing, matrices, rng: np.random.Generator):
        dz, dy, dx = spacing
        # Scene planes at most twice the xy spacing apart: the PSF (below) is then a few
        # scene planes tall and linear interpolation between them stays accurate.
        self.zoom = max(1, round(dz / (2 * min(dy, dx))))
        lo, hi = _reach(shape, matrices)
        self.origin = lo
        grid = np.ceil((hi - lo) * [1, 1, self.zoom]).astype(int)[::-1] + 1  # (z, y, x)
        scene_spacing = np.array([dz / self.zoom, dy, dx])
        # Sampled near Nyquist, as a microscope is set up to be: σ = 0.8 voxel in z,
        # 1 voxel in y and x.
        psf = np.array([0.8 * dz, dy, dx]) / scene_spacing
        self.scene = _cells(tuple(grid), scene_spacing, rng)
        ndimage.gaussian_filter(self.scene, psf, output=self.scene, mode="nearest", truncate=3)
        self.scene /= max(float(np.percentile(self.scene[:, ::4, ::4], 99.8)), 1e-6)

    def view(self, matrix, shape: Shape3) -> np.ndarray:
        """The scene seen by a volume of ``shape`` whose voxel v shows reference voxel
        ``matrix⁻¹ v`` (``matrix``: reference voxel -> this volume's voxel)."""
        to_scene = np.diag([1.0, 1.0, float(self.zoom), 1.0])
        to_scene[:3, 3] = -self.origin * [1, 1, self.zoom]
        return warp(self.scene, to_scene @ np.linalg.inv(matrix), tuple(shape))


def _reach(shape: Shape3, matrices) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (x, y, z) in reference voxels of every voxel of every view, plus
    one voxel so the trilinear samples at the edges stay inside."""
    corners = grid_corners(shape)
    points = np.hstack([np.linalg.solve(m, corners)[:3] for m in matrices])
    return np.floor(points.min(axis=1)) - 1, np.ceil(points.max(axis=1)) + 1


def _cells(grid: Shape3, spacing: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unblurred tissue on ``grid`` (z, y, x) of voxel size ``spacing`` µm, float32:
    nuclei (soft spheres), membranes (the Voronoi faces between cell centres) and a
    cytoplasm level per cell."""
    extent = np.array(grid) * spacing
    axes = [np.arange(-CELL_SIZE / 2, e + CELL_SIZE / 2, CELL_SIZE) for e in extent]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    centres += rng.uniform(-0.3, 0.3, centres.shape) * CELL_SIZE
    seeds = np.rint(centres / spacing).astype(int)
    seeds = seeds[np.all((seeds >= 0) & (seeds < grid), axis=1)]
    n = len(seeds)
    label_of_seed = np.zeros(grid, np.int32)
    label_of_seed[tuple(seeds.T)] = np.arange(1, n + 1)
    # Nearest cell centre of every voxel (in µm, so anisotropic grids get round cells).
    distance, nearest = ndimage.distance_transform_edt(
        label_of_seed == 0, sampling=spacing, return_indices=True
    )
    labels = label_of_seed[tuple(nearest)]
    del nearest, label_of_seed

    def per_cell(low, high):  # one value per label, 0 for label 0 (none)
        return np.concatenate([[0.0], rng.uniform(low, high, n)]).astype(np.float32)

    radius = per_cell(0.24, 0.32) * np.float32(CELL_SIZE)
    brightness, cytoplasm = per_cell(0.5, 1), per_cell(0, 1)
    edge = np.float32(0.3)  # µm: the nuclear envelope's softness before the PSF
    out = np.subtract(distance, radius[labels], dtype=np.float32)
    out /= edge
    np.clip(out, -30, 30, out=out)
    np.exp(out, out=out)
    out += 1
    np.divide(brightness[labels], out, out=out)  # brightness / (1 + exp((d - r) / edge))
    out += np.float32(CYTOPLASM) * cytoplasm[labels]
    del distance
    for axis in range(3):  # membranes: both voxels either side of a change of cell
        change = (np.diff(labels, axis=axis) != 0) * np.float32(MEMBRANE)
        before = [slice(None)] * 3
        after = [slice(None)] * 3
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        out[tuple(before)] += change
        out[tuple(after)] += change
    return out


# ----------------------------------------------------------------------- the generators


def _photograph(
    volume: np.ndarray, rng: np.random.Generator, gain: float, bias: float, noise: float
) -> np.ndarray:
    """A camera's counts: ``gain * volume + bias`` with Gaussian noise, as uint16."""
    counts = volume * np.float32(gain) + np.float32(bias)
    counts += rng.standard_normal(volume.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


def tissue_volume(
    shape: Shape3 = (32, 128, 128), seed: int = 0, *, spacing: Spacing = (2.0, 0.5, 0.5)
) -> np.ndarray:
    """A volume of tissue: cells ~11 µm apart, their nuclei, membranes and cytoplasm.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)``, each at least 4.
    seed : int
        Seed of the cell layout and brightnesses.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)`` in µm; the cells are round in µm and the blur
        (the microscope's PSF) is about one voxel on each axis.

    Returns
    -------
    ndarray of float32, shape ``shape``
        About 0 to 1 (a few bright voxels above).
    """
    shape, spacing = check_volume(shape, spacing)
    return _Tissue(shape, spacing, [np.eye(4)], np.random.default_rng([seed, 3])).view(
        np.eye(4), shape
    )


def volume_pair(
    shape: Shape3 = (32, 128, 128),
    seed: int = 0,
    *,
    spacing: Spacing = (2.0, 0.5, 0.5),
    angles_deg=(2.0, -1.5, 3.0),
    shift=(3.0, -2.5, 1.5),
) -> VolumePair:
    """Two channels of one tissue volume, the second moved by a known rigid motion.

    The reference (channel 1) and the moving volume (channel 2) show the same cells
    with another gain, offset, contrast curve (γ = 0.7) and noise, both as uint16;
    the moving one is seen through :func:`rigid_volume_matrix` ``(angles_deg, shift)``,
    rigid in µm, so ``align(reference, moving, ndim=3, spacing=spacing,
    motion="euclidean")`` should recover ``matrix``.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` of both volumes; by default a 64 µm cube.
    seed : int
        Seed of the tissue and of the noise.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)`` in µm: z planes 4× further apart than pixels by
        default, as on a confocal microscope.
    angles_deg : (float, float, float)
        x-y-z Euler angles of the rotation about the volume centre, degrees.
    shift : (float, float, float)
        ``(dx, dy, dz)`` displacement of the volume centre, voxels.

    Returns
    -------
    VolumePair
        ``(reference, moving, spacing, matrix)``: two uint16 ``(z, y, x)`` volumes,
        the spacing as floats and the 4×4 reference voxel ``(x, y, z, 1)`` → moving
        voxel matrix.

    Examples
    --------
    >>> from napari_ecc_align import align
    >>> from napari_ecc_align.data import volume_pair
    >>> reference, moving, spacing, truth = volume_pair()  # 32 x 128 x 128, (2, 0.5, 0.5) µm
    >>> found = align(reference, moving, ndim=3, spacing=spacing, motion="euclidean")
    >>> found.corner_error(truth) < 0.05
    True
    """
    shape, spacing = check_volume(shape, spacing)
    matrix = rigid_volume_matrix(angles_deg, shift, shape, spacing)
    rng = np.random.default_rng([seed, 3])
    tissue = _Tissue(shape, spacing, [np.eye(4), matrix], rng)
    reference = _photograph(tissue.view(np.eye(4), shape), rng, 2000, 200, 12)
    moving = tissue.view(matrix, shape)
    np.power(np.clip(moving, 0, None, out=moving), np.float32(0.7), out=moving)
    return VolumePair(reference, _photograph(moving, rng, 2800, 500, 25), spacing, matrix)


def drift_volume(
    frames: int = 12,
    shape: Shape3 = (32, 96, 96),
    seed: int = 0,
    *,
    spacing: Spacing = (2.0, 0.5, 0.5),
    velocity=(0.6, -0.4, 0.25),
    jitter: float = 0.15,
    degrees: float = 0.1,
) -> VolumeDrift:
    """A 3D time-lapse of one tissue drifting steadily, with random jitter and tilt.

    Frame t shows the tissue moved by a rigid motion (in µm) about the volume centre:
    a shift of ``t * velocity`` voxels plus a random walk of ``jitter`` voxels per
    frame and axis, and a rotation walking by ``degrees`` per frame about each axis,
    as a stage drifts and a sample settles.

    Parameters
    ----------
    frames : int
        Number of volumes, at least 2.
    shape : tuple of int
        ``(z, y, x)`` of each volume.
    seed : int
        Seed of the tissue, the walk and the noise.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)`` in µm.
    velocity : (float, float, float)
        Steady drift ``(dx, dy, dz)`` in voxels per frame.
    jitter : float
        Standard deviation of the random part of the shift, voxels per frame per axis.
    degrees : float
        Standard deviation of the rotation's steps, degrees per frame per axis.

    Returns
    -------
    VolumeDrift
        ``(stack, spacing, matrices)``: the uint16 ``(t, z, y, x)`` stack, the spacing
        and the ``(t, 4, 4)`` true matrices, frame 0's voxel ``(x, y, z, 1)`` → frame
        t's voxel (the identity for frame 0), as :func:`napari_ecc_align.align_stack`
        reports them with ``reference="first"`` (or chained ``"previous"``).
    """
    shape, spacing = check_volume(shape, spacing)
    if int(frames) < 2:
        raise ValueError(f"frames must be at least 2, got {frames!r}")
    rng = np.random.default_rng([seed, 4])
    steps = np.zeros((int(frames), 6))
    steps[1:, :3] = rng.normal(0, degrees, (frames - 1, 3))
    steps[1:, 3:] = np.asarray(velocity, float) + rng.normal(0, jitter, (frames - 1, 3))
    walk = np.cumsum(steps, axis=0)  # per frame: three angles (degrees), (dx, dy, dz)
    matrices = np.stack([rigid_volume_matrix(w[:3], w[3:], shape, spacing) for w in walk])
    tissue = _Tissue(shape, spacing, matrices, rng)
    stack = np.stack([_photograph(tissue.view(m, shape), rng, 2000, 200, 12) for m in matrices])
    return VolumeDrift(stack, spacing, matrices)
