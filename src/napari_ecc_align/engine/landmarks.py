"""Starts from corresponding landmarks: ``init=(reference_points, moving_points)``.

A few point pairs, clicked in napari (Points layers) or read from BigWarp, put ECC where
no automatic start reaches (a half turn, a shift of half the image, a doubled scale).
The least-squares fit of the chosen motion maps the reference points onto the moving
ones, in our convention (reference pixel (x, y[, z]) → moving pixel):

* translation: the mean displacement;
* euclidean: Umeyama's rotation (no scale; for volumes in physical units, so that it is
  rigid in µm as ECC's is), the one minimising the squared residuals;
* affine: plain linear least squares;
* homography: the direct linear transform (OpenCV's ``findHomography`` without RANSAC).

Points are given as napari and scikit-image give them: ``(row, col)`` or ``(z, y, x)``.
"""

from __future__ import annotations

import cv2
import numpy as np

# Point pairs each motion needs at the least.
_LEAST = {"translation": 1, "euclidean": 2, "affine": None, "homography": 4}


def is_landmarks(init) -> bool:
    """Whether ``init`` is a pair of point arrays (not a name, not a matrix)."""
    if not isinstance(init, (tuple, list)) or len(init) != 2:
        return False
    try:
        return all(np.ndim(np.asarray(points, dtype=float)) == 2 for points in init)
    except (TypeError, ValueError):
        return False


def landmark_start(reference_points, moving_points, motion: str, *, ndim: int = 2,
                   spacing=None) -> tuple[np.ndarray, float]:  # fmt: skip
    """The motion's least-squares fit of point pairs, and its residual.

    Parameters
    ----------
    reference_points, moving_points : array_like, shape (N, ndim)
        Corresponding points, ``(row, col)`` or ``(z, y, x)``, in the same order.
    motion : {"translation", "euclidean", "affine", "homography"}
        What to fit.
    ndim : {2, 3}
        Images or volumes.
    spacing : (dz, dy, dx), optional
        A volume's voxel size: the rigid fit is rigid in these units.

    Returns
    -------
    matrix : numpy.ndarray
        3×3 (4×4), reference pixel (x, y[, z]) → moving pixel.
    residual : float
        RMS distance, in pixels (voxels), between the moving points and where the fit
        sends the reference points.

    Raises
    ------
    ValueError
        For points of another shape, unequal counts, too few pairs for the motion, or
        points that fix no transform (all on a line, or repeated).
    """
    ref = _points(reference_points, "reference_points", ndim)[:, ::-1]  # (x, y[, z])
    mov = _points(moving_points, "moving_points", ndim)[:, ::-1]
    if len(ref) != len(mov):
        raise ValueError(
            f"init gives {len(ref)} reference points and {len(mov)} moving points; "
            "landmarks come in pairs"
        )
    least = _LEAST[motion] or ndim + 1
    if len(ref) < least:
        article = "an" if motion == "affine" else "a"
        raise ValueError(
            f"{article} {motion} start needs at least {least} point pairs, got {len(ref)}"
        )
    if motion == "translation":
        matrix = np.eye(ndim + 1)
        matrix[:ndim, ndim] = (mov - ref).mean(axis=0)
    elif motion == "euclidean":
        scale = np.ones(ndim) if spacing is None or ndim == 2 else np.asarray(spacing, float)[::-1]
        physical = _rigid(ref * scale, mov * scale)
        to_physical = np.diag([*scale, 1.0])
        matrix = np.linalg.inv(to_physical) @ physical @ to_physical
    elif motion == "affine":
        design = np.column_stack([ref, np.ones(len(ref))])
        if np.linalg.matrix_rank(design) < ndim + 1:
            raise ValueError(_DEGENERATE)
        solution = np.linalg.lstsq(design, mov, rcond=None)[0]
        matrix = np.eye(ndim + 1)
        matrix[:ndim] = solution.T
    else:
        found, _ = cv2.findHomography(ref.astype(np.float64), mov.astype(np.float64), 0)
        if found is None:
            raise ValueError(_DEGENERATE)
        matrix = found / found[2, 2]
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError(_DEGENERATE)
    sent = np.column_stack([ref, np.ones(len(ref))]) @ matrix.T
    sent = sent[:, :ndim] / sent[:, ndim:]
    residual = float(np.sqrt(np.mean(np.sum((sent - mov) ** 2, axis=1))))
    return matrix, residual


_DEGENERATE = (
    "the landmarks fix no transform (on one line, or repeated): spread them over the image"
)


def _points(value, name: str, ndim: int) -> np.ndarray:
    try:
        points = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numbers, an (N, {ndim}) array") from None
    order = "(row, col)" if ndim == 2 else "(z, y, x)"
    if points.ndim != 2 or points.shape[1] != ndim or not np.all(np.isfinite(points)):
        raise ValueError(f"{name} must be a finite (N, {ndim}) array of {order} points, "
                         f"got shape {points.shape}")  # fmt: skip
    return points


def _rigid(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Umeyama's least-squares rotation and shift taking ``source`` onto ``target``."""
    n = source.shape[1]
    mean_s, mean_t = source.mean(axis=0), target.mean(axis=0)
    covariance = (target - mean_t).T @ (source - mean_s)
    if np.linalg.matrix_rank(covariance) < n - 1:
        raise ValueError(_DEGENERATE)
    u, _, vt = np.linalg.svd(covariance)
    flip = np.eye(n)
    flip[-1, -1] = np.sign(np.linalg.det(u @ vt)) or 1.0  # a rotation, never a reflection
    rotation = u @ flip @ vt
    matrix = np.eye(n + 1)
    matrix[:n, :n], matrix[:n, n] = rotation, mean_t - rotation @ mean_s
    return matrix
