"""Homogeneous-matrix geometry shared by images and volumes: the grid's corners, moving
a matrix between pyramid levels, and projecting it onto a motion model.

Every matrix of the engine maps reference ``(x, y[, z], 1)`` to moving coordinates,
so the corners of a ``(rows, cols)`` or ``(z, y, x)`` grid are what accuracy
(corner RMS), convergence (corner shift), start ranking (corner displacement),
canvases and bounding boxes are measured on. They were written out seven times;
this is the one place.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def grid_corners(shape) -> np.ndarray:
    """The homogeneous corners of a pixel (voxel) grid, x varying fastest.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of an image or ``(z, y, x)`` of a volume; pixel centres at
        integers, so the corners are at 0 and ``n - 1`` on each axis.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(ndim + 1, 2**ndim)``: columns ``(x, y[, z], 1)``,
        the last one the far corner ``(cols - 1, rows - 1[, z - 1], 1)``.

    Examples
    --------
    >>> from napari_ecc_align.engine import grid_corners
    >>> grid_corners((3, 5))
    array([[0., 4., 0., 4.],
           [0., 0., 2., 2.],
           [1., 1., 1., 1.]])
    """
    extents = [(0.0, float(n) - 1.0) for n in tuple(shape)]  # (rows, cols) or (z, y, x)
    points = [point[::-1] for point in itertools.product(*extents)]  # last axis (x) fastest
    return np.vstack([np.array(points, dtype=np.float64).T, np.ones(len(points))])


def swap_axes(ndim: int) -> np.ndarray:
    """The homogeneous permutation between (x, y[, z]) and array order ((row, col) or
    (z, y, x)); it is its own inverse.

    Parameters
    ----------
    ndim : int
        Spatial axes (2 or 3).

    Returns
    -------
    numpy.ndarray
        ``(ndim + 1) × (ndim + 1)`` float64: ``swap @ matrix @ swap`` is a matrix over
        (x, y[, z]) expressed over array indices (scipy's and napari's order), and back.

    Examples
    --------
    >>> from napari_ecc_align.engine import swap_axes
    >>> swap_axes(2)
    array([[0., 1., 0.],
           [1., 0., 0.],
           [0., 0., 1.]])
    """
    return np.eye(ndim + 1)[[*range(ndim - 1, -1, -1), ndim]]


def max_corner_shift(step: np.ndarray, corners: np.ndarray) -> float:
    """How far ``step`` moves the ``corners`` at most, on any axis (inf: to infinity).

    Parameters
    ----------
    step : numpy.ndarray
        A 3×3 or 4×4 matrix.
    corners : numpy.ndarray
        :func:`grid_corners` of the grid.

    Returns
    -------
    float
        The largest coordinate change of a corner, in pixels (voxels).
    """
    n = step.shape[0] - 1
    if n == 2 and step[2, 0] == 0 and step[2, 1] == 0:
        # Affine image step (most of ECC's steps): plain float arithmetic; numpy calls on
        # 3x4 arrays cost more in call overhead (with the GIL held) than the sums themselves.
        (a, b, c), (d, e, f) = (step[:2] / step[2, 2]).tolist()
        width, height = float(corners[0, -1]), float(corners[1, -1])
        dx, dy = (a - 1.0) * width, d * width  # the corner shift is affine in (x, y)
        ex, ey = b * height, (e - 1.0) * height
        if not math.isfinite(a + b + c + d + e + f):
            return math.inf
        return max(abs(c), abs(c + dx), abs(c + ex), abs(c + dx + ex),
                   abs(f), abs(f + dy), abs(f + ey), abs(f + dy + ey))  # fmt: skip
    moved = np.dot(step, corners)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = moved / moved[n]
    shift = float(np.abs(moved[:n] - corners[:n]).max())
    return shift if shift == shift else math.inf  # NaN: a corner at infinity


def to_level(matrix: np.ndarray, factors) -> np.ndarray:
    """A full-resolution matrix on a pyramid level downsampled by ``factors``: D⁻¹·W·D.

    Parameters
    ----------
    matrix : numpy.ndarray
        A 3×3 (image) or 4×4 (volume) reference → moving matrix.
    factors : int or tuple of int
        An int ``k``: an image level halved ``k`` times on both axes (D = diag(2^k,
        2^k, 1)). A tuple: the level's downsampling per axis in array order, ``(sy,
        sx)`` or ``(sz, sy, sx)`` (D = diag(sx, sy[, sz], 1)).

    Returns
    -------
    numpy.ndarray
        float64, the same shape. Powers of two scale exactly: no rounding.
    """
    return _rescale(matrix, factors, inverse=True)


def from_level(matrix: np.ndarray, factors) -> np.ndarray:
    """A matrix of the pyramid level downsampled by ``factors`` at full resolution: D·W·D⁻¹.

    Parameters
    ----------
    matrix : numpy.ndarray
        A 3×3 or 4×4 matrix in the level's coordinates.
    factors : int or tuple of int
        As for :func:`to_level`.

    Returns
    -------
    numpy.ndarray
        float64, the same shape.
    """
    return _rescale(matrix, factors, inverse=False)


def _rescale(matrix, factors, inverse: bool) -> np.ndarray:
    out = np.array(matrix, dtype=np.float64)
    n = out.shape[0] - 1
    if isinstance(factors, (int, np.integer)):
        d = np.full(n, 2.0 ** int(factors))
    else:
        d = np.array(factors, dtype=np.float64)[::-1]  # (x, y[, z]) like the matrix
    if inverse:
        d = 1.0 / d
    d = np.append(d, 1.0)
    # D·W·D⁻¹ elementwise: entry (i, j) scales by d_i / d_j (two products cost more).
    out *= d[:, None] / d[None, :]
    return out


def project_to_motion(matrix: np.ndarray, motion: str, spacing=None) -> np.ndarray:
    """The closest matrix of the ``motion`` family (drops what the model cannot express).

    Parameters
    ----------
    matrix : numpy.ndarray
        A 3×3 (image) or 4×4 (volume) reference → moving matrix; an image's is first
        scaled to end in 1.
    motion : {"translation", "euclidean", "affine", "homography"}
        ``"homography"`` keeps a 3×3 as it is.
    spacing : (dz, dy, dx), optional
        A volume's voxel size, already checked: rigid then means a rotation in physical
        units, so the voxel matrix is S⁻¹·R·S with S = diag(dx, dy, dz, 1).

    Returns
    -------
    numpy.ndarray
        float64, the same shape. Euclidean keeps the rotation of the polar
        decomposition (never a reflection), translation only the shift.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n = matrix.shape[0] - 1
    if n == 2:
        matrix = matrix / matrix[2, 2]
    else:  # a volume: work in physical units
        physical = np.diag([*(spacing or (1.0, 1.0, 1.0))[::-1], 1.0])
        matrix = physical @ matrix @ np.linalg.inv(physical)
    out = np.eye(n + 1)
    out[:n, n] = matrix[:n, n]
    if motion == "euclidean":
        u, _, vt = np.linalg.svd(matrix[:n, :n])
        if np.linalg.det(u @ vt) < 0:  # a reflection is not a rotation
            u[:, -1] *= -1
        out[:n, :n] = u @ vt
    elif motion == "affine":
        out[:n, :n] = matrix[:n, :n]
    elif motion == "homography":
        out = matrix.copy()
    if n == 2:
        return out
    return np.linalg.solve(physical, out) @ physical


def corner_displacement(matrix, shape, other=None) -> float:
    """How far ``matrix`` moves the corners of a ``shape`` image from where ``other``
    (default: the identity) puts them, at most, in pixels (inf: to infinity)."""
    # A volume: the 8 corners of its (z, y, x) shape; an image: the 4 of (rows, cols).
    corners = grid_corners(shape[:3] if matrix.shape == (4, 4) else shape[:2])
    moved = matrix @ corners
    target = corners if other is None else other @ corners
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = moved[:-1] / moved[-1] - target[:-1] / target[-1]
        distance = np.sqrt(np.sum(diff * diff, axis=0))
    value = float(distance.max())
    return value if math.isfinite(value) else math.inf


def turn_degrees(matrix, other=None) -> float:
    """How far ``matrix`` turns the grid relative to ``other`` (default: the identity),
    in degrees: the angle of the rotation in the polar decomposition of the linear part
    of ``matrix · other⁻¹`` (a homography: of its affine part).

    Parameters
    ----------
    matrix, other : numpy.ndarray
        3×3 (image) or 4×4 (volume) matrices.

    Returns
    -------
    float
        The angle in [0, 180]; NaN for a matrix that is not finite or not invertible.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align.engine.geometry import turn_degrees
    >>> turn = np.array([[0.0, -1.0, 5.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    >>> round(turn_degrees(turn), 6)
    90.0
    """
    relative = np.asarray(matrix, np.float64)
    if other is not None:
        try:
            relative = relative @ np.linalg.inv(other)
        except np.linalg.LinAlgError:
            return float("nan")
    n = relative.shape[0] - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        linear = relative[:n, :n] / relative[n, n]
    if not np.all(np.isfinite(linear)):
        return float("nan")
    u, _, vt = np.linalg.svd(linear)
    rotation = u @ vt
    if n == 2:
        return abs(math.degrees(math.atan2(rotation[1, 0], rotation[0, 0])))
    cosine = (np.trace(rotation) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))
