"""Volumes of any size made chunk by chunk: a misaligned pair as dask arrays, never held
whole, with its true 4×4 transform (for the large-data tests and ``bench_large.py``).

The scene is a sum of a few products of a smooth random field over (x, y) (cubic
interpolation of a small random grid) and a smooth random profile along z, so a voxel
anywhere costs a handful of ``cv2.remap`` lookups; the moving volume shows the same
scene through the transform (reference voxel → moving voxel, rigid in µm), sampled
exactly, not resampled from the reference.
"""

from __future__ import annotations

import cv2
import numpy as np

from .volumes import VolumePair, check_volume, rigid_volume_matrix

# (in-plane step, z step) in µm of each field: structure from coarse to fine.
_SCALES = ((24.0, 16.0), (10.0, 10.0), (4.0, 6.0))
_WEIGHTS = (0.4, 0.35, 0.25)


def large_volume_matrix(shape, spacing, motion: str = "euclidean") -> np.ndarray:
    """The benchmark's transform for a volume of ``shape``: 1.5° about z, 0.3° about x,
    and a (3.3, -2.6, 1.4) voxel shift of the centre; ``"affine"`` adds 0.3 % scale in
    x and a 0.2 % shear of x along y."""
    matrix = rigid_volume_matrix((0.3, 0.0, 1.5), (3.3, -2.6, 1.4), shape, spacing)
    if motion == "affine":
        centre = np.array([(shape[2] - 1) / 2, (shape[1] - 1) / 2, (shape[0] - 1) / 2])
        extra = np.eye(4)
        extra[0, 0], extra[0, 1] = 1.003, 0.002
        extra[:3, 3] = centre - extra[:3, :3] @ centre
        matrix = matrix @ extra
    elif motion != "euclidean":
        raise ValueError(f"motion must be 'euclidean' or 'affine', got {motion!r}")
    return matrix


def lazy_volume_pair(shape=(256, 2048, 2048), *, spacing=(2.0, 0.5, 0.5), chunks=(64, 256, 256),
                     seed: int = 0, motion: str = "euclidean") -> VolumePair:  # fmt: skip
    """A uint16 volume pair of any size as dask arrays computed chunk by chunk.

    Parameters
    ----------
    shape : (int, int, int)
        ``(z, y, x)`` of both volumes.
    spacing : (float, float, float)
        Voxel size ``(dz, dy, dx)`` in µm.
    chunks : (int, int, int)
        The dask arrays' chunks.
    seed : int
        Seeds the scene.
    motion : {"euclidean", "affine"}
        The transform (see :func:`large_volume_matrix`).

    Returns
    -------
    VolumePair
        ``(reference, moving, spacing, matrix)``: two dask arrays and the 4×4 reference
        voxel → moving voxel matrix.

    Examples
    --------
    >>> from napari_ecc_align.data.large import lazy_volume_pair
    >>> pair = lazy_volume_pair((16, 64, 64), chunks=(8, 32, 32))
    >>> pair.reference.chunks[0], pair.moving.dtype.name
    ((8, 8), 'uint16')
    """
    import dask.array as da

    shape, spacing = check_volume(shape, spacing)
    matrix = large_volume_matrix(shape, spacing, motion)
    scene = _Scene(shape, spacing, seed)
    to_scene = {"reference": np.eye(4), "moving": np.linalg.inv(matrix)}
    arrays = []
    for name in ("reference", "moving"):

        def block(block_info=None, inverse=to_scene[name]):
            box = block_info[None]["array-location"]
            return scene.values(inverse, box)

        blocks = da.core.normalize_chunks(chunks, shape)
        meta = np.empty((0, 0, 0), np.uint16)
        arrays.append(da.map_blocks(block, chunks=blocks, dtype=np.uint16, meta=meta))
    return VolumePair(arrays[0], arrays[1], spacing, matrix)


class _Scene:
    """The scene: ``Σ w·g(x, y)·h(z)`` over :data:`_SCALES`, in reference voxels."""

    def __init__(self, shape, spacing, seed: int):
        rng = np.random.default_rng(seed)
        dz, dy, dx = spacing
        self.fields = []
        for (plane_step, z_step), weight in zip(_SCALES, _WEIGHTS, strict=True):
            step_xy = plane_step / min(dy, dx)  # in voxels
            step_z = max(z_step / dz, 1.0)
            # A margin of grid cells: the moving view reaches beyond the reference.
            grid = rng.random((int(shape[1] / step_xy) + 16, int(shape[2] / step_xy) + 16),
                              dtype=np.float32)  # fmt: skip
            profile = rng.random((1, int(shape[0] / step_z) + 16), dtype=np.float32)
            self.fields.append((grid, profile, step_xy, step_z, weight))

    def values(self, inverse, box) -> np.ndarray:
        """uint16 values of the voxels in ``box`` ((z0, z1), (y0, y1), (x0, x1)) of a
        volume whose voxel v shows reference voxel ``inverse @ v``."""
        (z0, z1), (y0, y1), (x0, x1) = box
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), np.uint16)
        for k in range(z0, z1):
            sx, sy, sz = (r[0] * xs + r[1] * ys + (r[2] * k + r[3]) for r in inverse[:3])
            total = np.zeros(xs.shape, np.float32)
            for grid, profile, step_xy, step_z, weight in self.fields:
                gx = (sx / step_xy + 8).astype(np.float32)
                gy = (sy / step_xy + 8).astype(np.float32)
                in_plane = cv2.remap(grid, gx, gy, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
                gz = (sz / step_z + 8).astype(np.float32)
                along_z = cv2.remap(profile, gz, np.zeros_like(gz), cv2.INTER_CUBIC,
                                    borderMode=cv2.BORDER_REFLECT)  # fmt: skip
                total += weight * in_plane * along_z
            out[k - z0] = np.clip(1000 + 50_000 * total, 0, 65535).astype(np.uint16)
        return out
