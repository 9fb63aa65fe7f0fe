"""Volumes too large to estimate whole: the reduced working copy.

A volume pair beyond the working budget is estimated on a copy reduced by per-axis
factors (z, y, x), then refined on full-resolution blocks (:mod:`.volume_blocks`). The
copy is a stored pyramid level when the input is one (a :class:`~.lazy.Multiscale`,
e.g. an OME-Zarr image or napari's multiscale data); otherwise it is made from the
nearest stored level (or the volume itself) with the engine's own pyramid filters:
``cv2.pyrDown`` per plane, read band by band so that each stored chunk is read once,
then the 5-tap kernel along z on the small result. Nothing is loaded whole, and no
full-resolution float copy is made.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .lazy import Multiscale, as_multiscale, halved_side, is_lazy
from .preprocess import as_array, fill_invalid
from .volume import halve_z_axis

# Volumes with more voxels than this are estimated on a reduced copy. The estimate keeps
# about five float32 copies of each working volume: 24 M voxels is near 0.5 GB for the
# pair, and keeps a 1024 x 2048 x 2048 volume of 2 x 0.5 x 0.5 µm voxels at 1/8 in-plane.
MAX_WORK_VOXELS = 24_000_000
# The working copy keeps at least this many planes and this many voxels across y and x:
# the estimate's own pyramid halves it again, and a 24-plane copy left 6 planes on its
# level 2, too few for the prefilter's margin (no overlap found there).
_MIN_WORK_PLANES = 32
_MIN_WORK_SIDE = 64
# Rows per band when the volume states no chunks (numpy, memmap).
_BAND = 256
_PLANES = 16


def volume_input(volume, name: str):
    """``volume`` as the estimate reads it: a :class:`~.lazy.Multiscale` for a pyramid,
    a lazy array (dask, zarr) as is, else a numpy array; each with three axes."""
    volume = as_multiscale(volume, name, ndim=3) or as_array(volume, name, lazy=True)
    if len(volume.shape) != 3:
        raise ValueError(
            f"{name} has shape {tuple(volume.shape)}: with ndim=3, align() takes one (z, y, x) "
            "volume; for a time-lapse of volumes use align_stack(..., ndim=3)"
        )
    return volume


def working_factors(reference, moving, spacing) -> tuple[int, int, int] | None:
    """The (z, y, x) factors to estimate ``reference`` and ``moving`` at, or None when
    both fit the budget whole. A pyramid input's finest stored level within the budget
    is preferred (it is read as stored); else the engine's own level plan."""
    ref_shape, mov_shape = tuple(reference.shape), tuple(moving.shape)
    if max(math.prod(ref_shape), math.prod(mov_shape)) <= MAX_WORK_VOXELS:
        return None
    for source in (reference, moving):
        if isinstance(source, Multiscale):
            for factors in source.factors()[1:]:
                if _fits(factors, ref_shape, mov_shape):
                    return factors
    return _planned(ref_shape, mov_shape, spacing)


def _planned(ref_shape, mov_shape, spacing) -> tuple[int, int, int]:
    """The first factors within the budget of the engine's level plan (y and x halve, z
    when it is not coarser than the new in-plane voxel), except that z keeps at least
    ``_MIN_WORK_PLANES`` planes: the estimate's own pyramid still halves it."""
    dz, dy, dx = spacing
    planes, side = min(ref_shape[0], mov_shape[0]), min(*ref_shape[1:], *mov_shape[1:])
    sz, sy, sx = 1, 1, 1
    while not _fits((sz, sy, sx), ref_shape, mov_shape) and side / (2 * sy) >= _MIN_WORK_SIDE:
        halve_z = dz * sz <= min(dy, dx) * 2 * sy and planes / (2 * sz) >= _MIN_WORK_PLANES
        sz, sy, sx = sz * (2 if halve_z else 1), 2 * sy, 2 * sx
    return sz, sy, sx


def _fits(factors, *shapes) -> bool:
    return all(math.prod(n / f for n, f in zip(s, factors, strict=True)) <= MAX_WORK_VOXELS
               for s in shapes)  # fmt: skip


def finest(volume):
    """The full-resolution array of a volume input (a pyramid's level 0)."""
    return volume.levels[0] if isinstance(volume, Multiscale) else volume


def working_copy(volume, factors, mask=None):
    """``(volume, valid)``: ``volume`` reduced by ``factors`` (z, y, x) as float32, and
    where it is valid (bool, or None when all is): what its NaN and infinite voxels and
    ``mask`` leave over at least 3/4 of each reduced voxel's support, as the pyramid
    rules it (see :func:`~.volume.volume_pyramid`)."""
    source, have = finest(volume), (1, 1, 1)
    if isinstance(volume, Multiscale):
        # The coarsest stored level the factors are a multiple of.
        for level, stored in zip(volume.levels, volume.factors(), strict=True):
            if all(f % s == 0 for f, s in zip(factors, stored, strict=True)):
                source, have = level, stored
    if have != (1, 1, 1) and mask is not None:
        source, have = finest(volume), (1, 1, 1)  # the mask is at full resolution
    z_halvings = int(math.log2(factors[0] // have[0]))
    plane_halvings = int(math.log2(factors[1] // have[1]))
    image, valid = _reduced_planes(source, plane_halvings, mask)
    for _ in range(z_halvings):
        image = halve_z_axis(image)
        if valid is not None:
            valid = halve_z_axis(valid)
    return image, None if valid is None else _valid(valid)


def _valid(share: np.ndarray) -> np.ndarray | None:
    valid = share > 0.75
    return None if valid.all() else valid


def _reduced_planes(array, halvings: int, mask):
    """Every plane of ``array`` through ``halvings`` times ``cv2.pyrDown`` in float32,
    and the valid share as a float32 volume (None: all valid).

    The planes are read in slabs of the stored z chunks and bands of the stored row
    chunks, each band once: a band is halved with the last rows of the band before
    and the first rows of the next one as context (``2 * 2**halvings`` rows: what
    the halvings' kernels read and spoil), then trimmed, so that the result equals the
    whole planes' halving.
    """
    nz, ny, nx = array.shape
    step = 2**halvings
    context = 2 * step
    planes, band = _chunk_sides(array)
    band = max(context, -(-band // step) * step)
    rows, cols = halved_side(ny, halvings), halved_side(nx, halvings)
    out = np.empty((nz, rows, cols), np.float32)
    share = None
    for z0 in range(0, nz, planes):
        z1 = min(nz, z0 + planes)
        before = None  # the last context rows of the band before
        current = _read(array, mask, z0, z1, 0, min(ny, band))
        for y0 in range(0, ny, band):
            y1 = min(ny, y0 + band)
            after = _read(array, mask, z0, z1, y1, min(ny, y1 + band)) if y1 < ny else None
            parts = [before, current, None if after is None else _head(after, context)]
            region = _stack_rows([p for p in parts if p is not None])
            top = 0 if before is None else before[0].shape[1]
            image, valid = _halve(region, halvings)
            first = y0 // step
            height = (rows if after is None else y1 // step) - first
            out[z0:z1, first : first + height] = image[:, top // step : top // step + height]
            if valid is not None and share is None:
                share = np.ones(out.shape, np.float32)
            if valid is not None:
                share[z0:z1, first : first + height] = valid[:, top // step : top // step + height]
            before, current = _tail(current, context), after
    return out, share


def _chunk_sides(array) -> tuple[int, int]:
    """Planes and rows per stored chunk (a slab and band read whole)."""
    chunks = getattr(array, "chunks", None)
    if chunks is None or not is_lazy(array):
        return _PLANES, _BAND
    sides = [c[0] if isinstance(c, tuple) else int(c) for c in chunks[:2]]  # dask or zarr
    return max(1, sides[0]), max(1, sides[1])


def _read(array, mask, z0, z1, y0, y1):
    """``(values, valid)`` of the box: the stored values and where they are usable (None:
    all), read once."""
    values = np.asarray(array[z0:z1, y0:y1])
    valid = None
    if values.dtype.kind == "f" and not np.isfinite(values.sum(dtype=np.float64)):
        valid = np.isfinite(values)
    if mask is not None:
        given = np.asarray(mask[z0:z1, y0:y1]) != 0
        valid = given if valid is None else valid & given
    return values, valid


def _head(part, rows):
    values, valid = part
    return values[:, :rows], None if valid is None else valid[:, :rows]


def _tail(part, rows):
    values, valid = part
    return values[:, -rows:], None if valid is None else valid[:, -rows:]


def _stack_rows(parts):
    if len(parts) == 1:
        return parts[0]
    values = np.concatenate([p[0] for p in parts], axis=1)
    if all(p[1] is None for p in parts):
        return values, None
    valid = np.concatenate([np.ones(p[0].shape, bool) if p[1] is None else p[1] for p in parts],
                           axis=1)  # fmt: skip
    return values, valid


def _halve(part, halvings: int):
    """The box's planes in float32 halved ``halvings`` times, and its valid share
    halved alike (None: all valid). Invalid voxels take the mean of the valid ones of
    their plane first, so that no false edge is smoothed in."""
    values, valid = part
    image = np.empty((values.shape[0], *(halved_side(n, halvings) for n in values.shape[1:])),
                     np.float32)  # fmt: skip
    share = None if valid is None else np.empty(image.shape, np.float32)
    for k, plane in enumerate(values):
        work = plane.astype(np.float32)
        if valid is not None:
            fill_invalid(work, valid[k])
        image[k] = _halve_plane(work, halvings)
        if share is not None:
            share[k] = _halve_plane(valid[k].astype(np.float32), halvings)
    return image, share


def _halve_plane(plane, halvings):
    for _ in range(halvings):
        plane = cv2.pyrDown(plane)
    return plane
