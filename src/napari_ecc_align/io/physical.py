"""Voxel and physical coordinates: the one place our matrices meet ITK's convention.

Our matrix ``M`` maps a *reference voxel* to a *moving voxel*, both as (x, y[, z], 1)
(x = column, y = row, z = plane). ITK, SimpleITK and elastix map a *fixed physical
point* to a *moving physical point*, also in (x, y[, z]) order (LPS for medical images),
where an image's voxel ``v`` (ITK's index, the same axis order) lies at

    p = origin + D · diag(spacing) · v,

``D`` the image's direction cosines. Written as a homogeneous matrix ``P`` (voxel →
physical), the physical transform of an alignment and its inverse are

    T = P_moving · M · P_reference⁻¹        M = P_moving⁻¹ · T · P_reference.

Spacing and origin are given in the array's axis order, (z, y, x) or (row, col), as
``align``'s ``spacing``; the direction is ITK's matrix over (x, y[, z]) (SimpleITK's
``GetDirection()`` reshaped), identity by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image's voxels lie in physical space (all in (x, y[, z]) order)."""

    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: np.ndarray

    @classmethod
    def of(cls, ndim: int, spacing=None, origin=None, direction=None, name: str = "image"):
        """The geometry from arguments in array order (``spacing``, ``origin``) and ITK's
        ``direction``; unit spacing, zero origin and the identity by default. Raises
        ValueError or TypeError naming the argument."""
        spacing = _vector(spacing, ndim, f"{name}_spacing", 1.0)
        if not all(v > 0 for v in spacing):
            raise ValueError(f"{name}_spacing must be positive, got {spacing[::-1]}")
        origin = _vector(origin, ndim, f"{name}_origin", 0.0)
        return cls(spacing[::-1], origin[::-1], _direction(direction, ndim))

    @property
    def ndim(self) -> int:
        return len(self.spacing)

    def to_physical(self) -> np.ndarray:
        """The homogeneous voxel (x, y[, z]) → physical matrix ``P``."""
        n = self.ndim
        matrix = np.eye(n + 1)
        matrix[:n, :n] = self.direction @ np.diag(self.spacing)
        matrix[:n, n] = self.origin
        return matrix


def physical_transform(matrix, reference: ImageGeometry, moving: ImageGeometry) -> np.ndarray:
    """``T = P_moving · M · P_reference⁻¹``: our voxel matrix as a fixed physical →
    moving physical map (ITK's direction)."""
    return moving.to_physical() @ np.asarray(matrix, float) @ np.linalg.inv(reference.to_physical())


def voxel_transform(transform, reference: ImageGeometry, moving: ImageGeometry) -> np.ndarray:
    """``M = P_moving⁻¹ · T · P_reference``: a physical transform as our voxel matrix."""
    to_moving_voxels = np.linalg.inv(moving.to_physical())
    return to_moving_voxels @ np.asarray(transform, float) @ reference.to_physical()


def _vector(value, ndim: int, name: str, default: float) -> tuple[float, ...]:
    if value is None:
        return (default,) * ndim
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {ndim} numbers, got {value!r}") from None
    if len(values) != ndim or not all(math.isfinite(v) for v in values):
        order = "(z, y, x)" if ndim == 3 else "(row, col)"
        raise ValueError(f"{name} must be {ndim} finite numbers in {order} order, got {value!r}")
    return values


def _direction(value, ndim: int) -> np.ndarray:
    if value is None:
        return np.eye(ndim)
    matrix = np.asarray(value, dtype=float)
    if matrix.size == ndim * ndim:
        matrix = matrix.reshape(ndim, ndim)
    if matrix.shape != (ndim, ndim) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"direction must be a {ndim}x{ndim} matrix (ITK's, over x, y[, z])")
    if not np.allclose(matrix.T @ matrix, np.eye(ndim), atol=1e-6):
        raise ValueError("direction must be orthonormal: its columns are the axes' unit vectors")
    return matrix
