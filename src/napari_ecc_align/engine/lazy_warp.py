"""``warp`` of lazy images (dask, zarr, a pyramid list): a dask array on the reference
grid, each chunk resampled from the bounded region of the moving image it needs.

A chunk of the output maps, through the alignment, onto a convex region of the moving
image; that region and the interpolation kernel's reach around it (3 pixels) are read,
and the chunk is warped from it by the same call the eager ``warp`` makes, with the
matrix shifted to the region. The values are the eager warp's to within OpenCV's
fixed-point rounding of the sample positions.
"""

from __future__ import annotations

import numpy as np

# Output chunks of at most this many rows and columns.
CHUNK = 1024
_REACH = 3  # bilinear and cubic kernels read up to 2 pixels beyond a sample


def warp_lazily(image, matrix, out_shape, interpolation: str, fill, warp_one):
    """``image`` (rows, cols[, channels], readable by slicing) warped onto ``out_shape``
    by ``matrix`` (reference → moving), as a dask array; ``warp_one`` warps one numpy
    plane (see :mod:`.warping`)."""
    import dask.array as da

    rows, cols = out_shape
    tail = tuple(image.shape[2:])
    dtype = np.dtype(image.dtype)
    chunks = (split_chunks(rows), split_chunks(cols)) + tuple((n,) for n in tail)

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"][:2]
        region = source_region(matrix, (y0, y1, x0, x1), image.shape[:2])
        if region is None:  # the chunk lies wholly outside the moving image
            return np.full((y1 - y0, x1 - x0) + tail, fill, dtype)
        sy0, sy1, sx0, sx1 = region
        source = np.ascontiguousarray(np.asarray(image[sy0:sy1, sx0:sx1]))
        to_region = np.array([[1.0, 0, -sx0], [0, 1, -sy0], [0, 0, 1]])
        from_chunk = np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
        return warp_one(source, to_region @ matrix @ from_chunk, (y1 - y0, x1 - x0),
                        interpolation, fill)  # fmt: skip

    meta = np.empty((0,) * len(chunks), dtype)
    return da.map_blocks(block, chunks=chunks, dtype=dtype, meta=meta)


def source_region(matrix, box, source_shape):
    """``(y0, y1, x0, x1)`` of the moving image that the output ``box`` (y0, y1, x0, x1)
    samples, with the kernel's reach, clipped to the image; None when it samples none
    of it. Raises ValueError for a homography that maps part of the box behind the
    camera."""
    y0, y1, x0, x1 = box
    corners = np.array([[x0, x1 - 1, x0, x1 - 1], [y0, y0, y1 - 1, y1 - 1], [1, 1, 1, 1]], float)
    mapped = matrix @ corners
    if np.any(mapped[2] <= 0):
        raise ValueError(
            "this homography maps part of the output behind the camera; a lazy image can "
            "only be warped where the transform is a proper projection"
        )
    xs, ys = mapped[0] / mapped[2], mapped[1] / mapped[2]
    rows, cols = source_shape
    sx0, sy0 = max(0, int(np.floor(xs.min())) - _REACH), max(0, int(np.floor(ys.min())) - _REACH)
    sx1 = min(cols, int(np.ceil(xs.max())) + _REACH + 1)
    sy1 = min(rows, int(np.ceil(ys.max())) + _REACH + 1)
    if sx1 <= sx0 or sy1 <= sy0:
        return None
    return sy0, sy1, sx0, sx1


def split_chunks(n: int) -> tuple[int, ...]:
    """``n`` in chunks of at most ``CHUNK``."""
    return tuple(min(CHUNK, n - start) for start in range(0, n, CHUNK))


def warp_planes_lazily(image, leading: int, matrix, out_shape, interpolation, fill, warp_one):
    """:func:`warp_lazily` of every 2D plane of ``image``'s ``leading`` axes, stacked."""
    import dask.array as da

    if not leading:
        return warp_lazily(image, matrix, out_shape, interpolation, fill, warp_one)
    shape = tuple(image.shape[:leading])
    planes = [
        warp_lazily(_Plane(image, index), matrix, out_shape, interpolation, fill, warp_one)
        for index in np.ndindex(*shape)
    ]
    stacked = da.stack(planes)
    return stacked.reshape(shape + stacked.shape[1:])


class _Plane:
    """One plane of a lazy array, sliced only when read."""

    def __init__(self, image, index):
        self.image, self.index = image, index
        self.shape, self.dtype = tuple(image.shape[len(index) :]), image.dtype

    def __getitem__(self, key):
        return self.image[self.index + key]


# -- volumes ---------------------------------------------------------------------------
# Output chunks of a lazy volume warp: OME-Zarr's usual chunk, 8 MiB of uint16.
VOLUME_CHUNK = (64, 256, 256)


def volume_chunks(shape) -> tuple[tuple[int, ...], ...]:
    """dask chunks of a (z, y, x) grid in :data:`VOLUME_CHUNK` pieces."""
    return tuple(tuple(min(c, n - s) for s in range(0, n, c))
                 for n, c in zip(shape, VOLUME_CHUNK, strict=True))  # fmt: skip


def _shifted(matrix, source_origin, chunk_origin):
    """``matrix`` from the chunk's voxels (origin ``chunk_origin``, z, y, x) to the
    source region's (origin ``source_origin``)."""
    to_source, from_chunk = np.eye(4), np.eye(4)
    to_source[:3, 3] = -np.asarray(source_origin[::-1], float)
    from_chunk[:3, 3] = np.asarray(chunk_origin[::-1], float)
    return to_source @ matrix @ from_chunk


def volume_region(matrix, box, source_shape):
    """``((z0, z1), (y0, y1), (x0, x1))`` of the moving volume that the output ``box``
    (the same form) samples, with the kernel's reach, clipped; None when it samples
    none of it."""
    (z0, z1), (y0, y1), (x0, x1) = box
    corners = np.array([[x, y, z, 1.0] for z in (z0, z1 - 1) for y in (y0, y1 - 1)
                        for x in (x0, x1 - 1)])  # fmt: skip
    mapped = corners @ matrix[:3].T  # (8, 3): x, y, z
    region = []
    for axis, n in zip((2, 1, 0), source_shape, strict=True):
        low = max(0, int(np.floor(mapped[:, axis].min())) - _REACH)
        high = min(n, int(np.ceil(mapped[:, axis].max())) + _REACH + 1)
        if high <= low:
            return None
        region.append((low, high))
    return tuple(region)


def warp_volume_lazily(image, matrix, out_shape, interpolation: str, fill, warp_volume):
    """``image`` (z, y, x, readable by slicing) warped onto ``out_shape`` by the 4×4
    ``matrix`` as a dask array in :data:`VOLUME_CHUNK` chunks, each from the region of
    ``image`` it maps onto; ``warp_volume(volume, matrix, out, interpolation, fill)``
    resamples one numpy region (see :mod:`.warping`)."""
    import dask.array as da

    dtype = np.dtype(image.dtype)

    def block(block_info=None):
        box = block_info[None]["array-location"]
        out = np.empty(tuple(b - a for a, b in box), dtype)
        region = volume_region(matrix, box, image.shape)
        if region is None:  # the chunk lies wholly outside the moving volume
            out[...] = fill
            return out
        source = np.ascontiguousarray(np.asarray(image[tuple(slice(a, b) for a, b in region)]))
        shifted = _shifted(matrix, [a for a, _ in region], [a for a, _ in box])
        warp_volume(source, shifted, out, interpolation, fill)
        return out

    return da.map_blocks(block, chunks=volume_chunks(out_shape), dtype=dtype,
                         meta=np.empty((0, 0, 0), dtype))  # fmt: skip


def overlap_volume_lazily(matrix, out_shape, moving_shape, overlap_mask):
    """Where the reference voxels of ``out_shape`` map into the moving volume, as a
    lazy bool array in :data:`VOLUME_CHUNK` chunks; ``overlap_mask(matrix, shape,
    moving_shape)`` computes one chunk (see :mod:`.warping`)."""
    import dask.array as da

    def block(block_info=None):
        box = block_info[None]["array-location"]
        shifted = _shifted(matrix, (0, 0, 0), [a for a, _ in box])
        return overlap_mask(shifted, tuple(b - a for a, b in box), moving_shape)

    return da.map_blocks(block, chunks=volume_chunks(out_shape), dtype=bool,
                         meta=np.empty((0, 0, 0), bool))  # fmt: skip
