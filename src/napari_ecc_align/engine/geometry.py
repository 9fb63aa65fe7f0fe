"""Homogeneous-matrix geometry shared by images and volumes: the grid's corners.

Every matrix of the engine maps reference ``(x, y[, z], 1)`` to moving coordinates,
so the corners of a ``(rows, cols)`` or ``(z, y, x)`` grid are what accuracy
(corner RMS), convergence (corner shift), start ranking (corner displacement),
canvases and bounding boxes are measured on. They were written out seven times;
this is the one place.
"""

from __future__ import annotations

import itertools

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
