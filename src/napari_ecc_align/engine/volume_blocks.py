"""The finest level of volumes too large to estimate whole: ECC on a bounded set of
full-resolution blocks read from the original arrays.

The 3D counterpart of :mod:`.full_resolution`. A volume pair estimated on a reduced
copy (:mod:`.volume_reduce`) loses the precision its skipped levels hold (a 256 x 2048
x 2048 pair estimated at 1/4 ended 0.12 voxel off). The last iterations run at full
resolution on blocks:

* the reference is read in at most ``GRID`` blocks of ``BLOCK`` voxels (z, y, x), the one
  with the most gradient in each cell of a grid over the volume; every candidate block
  lies, with the prefilter's halo, inside one stored chunk, so each block reads one
  chunk; the strongest-gradient voxels of each are the samples;
* the moving volume is read, prefiltered, only in windows around where the blocks'
  samples land, re-read when the pose moves them out of the window.

The moments and the update are :class:`~.volume_samples.VolumeSamples`', the climb is
:func:`~.full_resolution.climb_on_samples`, the prefilter :func:`~.volume.blur`.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from .full_resolution import climb_on_samples
from .geometry import grid_corners
from .preprocess import fill_invalid
from .reference_side import level_margin
from .structure import NoStructure
from .volume import blur, blur_reach_z
from .volume_samples import (
    N_PARAMS_3D,
    VolumeSamples,
    central_difference,
    delta_matrix,
    inside_volume,
    normaliser,
    sample_rows,
    select_voxels,
)

# At most one block per cell of a GRID grid over the volume (z, y, x), blocks of BLOCK
# voxels: 27 blocks of 32 x 64 x 64 are 3.5 M voxels of float32 work whatever the size.
GRID = (3, 3, 3)
BLOCK = (32, 64, 64)
SAMPLES = 60_000  # over all blocks
# Blocks shrink to this side on an axis too short for GRID blocks of BLOCK's side.
_LEAST_SIDE = 8
_SLACK = 8  # extra voxels around a moving window, so that small pose changes reuse it


class VolumeReader:
    """One original volume (any dtype, numpy or lazy) read box by box as float32, with
    its mask: what NaN and infinite voxels and the user's mask exclude."""

    def __init__(self, array, mask):
        self.array, self.mask = array, mask
        self.shape = tuple(array.shape)
        self.chunks = getattr(array, "chunks", None)

    def box(self, lo, hi):
        """``(image, valid)`` of the voxels ``lo:hi`` (z, y, x; valid None: all)."""
        key = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        image = np.asarray(self.array[key]).astype(np.float32)
        valid = None if self.mask is None else np.asarray(self.mask[key]) != 0
        bad = ~np.isfinite(image)
        if bad.any():
            valid = ~bad if valid is None else valid & ~bad
        if valid is not None and not valid.all():
            fill_invalid(image, valid)
        return image, valid


def block_halo(ksize: int, spacing) -> int:
    """Voxels read around a block on every side: the prefilter's reach and one more for
    the gradients."""
    return max(level_margin(ksize) + 1, blur_reach_z(ksize, spacing) + 1)


def choose_blocks(working, working_valid, factors, reader: VolumeReader, halo: int):
    """``(starts, size)``: the (z, y, x) first voxels of the blocks to read and their
    common size, chosen on the reduced reference ``working`` (``factors`` smaller):
    in each cell of ``GRID``, the candidate block with the most gradient among those at
    least half valid. Candidates lie with their halo in one stored chunk."""
    axes = [_candidates(n, min(b, max(_LEAST_SIDE, n // g - 2 * halo)), halo, c)
            for n, b, g, c in zip(reader.shape, BLOCK, GRID, _chunk_bounds(reader),
                                  strict=True)]  # fmt: skip
    size = tuple(s for _, s in axes)
    if min(size) < 1 or not all(starts for starts, _ in axes):
        return [], size
    energy = _gradient_energy(working)
    chosen = []
    cells = [np.array_split(np.array(starts), min(g, len(starts)))
             for (starts, _), g in zip(axes, GRID, strict=True)]  # fmt: skip
    for cell in itertools.product(*cells):
        best, best_energy = None, 0.0
        for start in itertools.product(*cell):
            box = tuple(slice(s // f, max(s // f + 1, (s + n) // f))
                        for s, n, f in zip(start, size, factors, strict=True))  # fmt: skip
            if working_valid is not None and working_valid[box].mean() < 0.5:
                continue
            value = float(energy[box].mean())
            if value > best_energy:
                best, best_energy = tuple(int(s) for s in start), value
        if best is not None:
            chosen.append(best)
    return chosen, size


def _gradient_energy(volume):
    """|∂z| + |∂y| + |∂x| of ``volume`` (twice the central differences, zero on the
    border), accumulated one axis at a time."""
    energy = np.abs(central_difference(volume, 0))
    for axis in (1, 2):
        energy += np.abs(central_difference(volume, axis))
    return energy


def _chunk_bounds(reader: VolumeReader):
    """Per axis, the stored chunks' (start, end), or one span of the whole axis."""
    out = []
    for axis, n in enumerate(reader.shape):
        sides = None if reader.chunks is None else reader.chunks[axis]
        if sides is None:
            out.append([(0, n)])
            continue
        if not isinstance(sides, tuple):  # zarr: one side repeated
            sides = (int(sides),) * -(-n // int(sides))
        ends = np.cumsum(sides)
        out.append([(int(e - s), min(n, int(e))) for s, e in zip(sides, ends, strict=True)])
    return out


def _candidates(n: int, block: int, halo: int, chunks) -> tuple[list[int], int]:
    """First voxels along one axis of blocks that lie, with ``halo``, in one chunk, and
    the blocks' side (smaller than ``block`` on a short axis)."""
    size = min(block, n - 2 * halo)
    if size < 1:
        return [], size
    starts = []
    for a, b in chunks:
        s = a + halo
        while s + size + halo <= b:
            starts.append(s)
            s += size
    if not starts:  # chunks too small for a block: blocks anywhere
        starts = list(range(halo, n - size - halo + 1, size))
    return starts, size


class BlockSamples:
    """The reference samples of the chosen blocks (a :class:`VolumeSamples`) and how to
    read the moving volume around them."""

    def __init__(self, ref: VolumeReader, starts, size, ksize: int, spacing, motion: str):
        self.ksize, self.spacing = ksize, spacing
        self.halo = halo = block_halo(ksize, spacing)
        self.margin = level_margin(ksize)
        budget = max(4 * N_PARAMS_3D[motion], SAMPLES // max(len(starts), 1))
        rows, points, self.spans = [], [], []
        for start in starts:
            lo = tuple(s - halo for s in start)
            hi = tuple(s + n + halo for s, n in zip(start, size, strict=True))
            image, valid = ref.box(lo, hi)
            image = blur(image, ksize, spacing, image)
            idx = select_voxels(image, valid, halo, budget)
            part_rows, part_points = sample_rows(image, idx, lo, ref.shape, spacing, motion)
            first = sum(p.shape[0] for p in points)
            self.spans.append((first, first + idx.size))
            rows.append(part_rows)
            points.append(part_points)
        count = sum(p.shape[0] for p in points)
        if count < 4 * N_PARAMS_3D[motion]:
            raise NoStructure("too few valid reference voxels in the full-resolution blocks")
        self.samples = VolumeSamples(np.concatenate(rows, axis=1), np.concatenate(points), 0)
        if not np.ptp(self.samples.rows[-2]) > 0:
            raise NoStructure("the full-resolution blocks of the reference are flat")
        self.windows: dict[int, tuple] = {}

    def sample_moving(self, mov: VolumeReader, matrix):
        """Prefiltered moving values at W·(x, y, z), the usable points (uint8, nonzero)
        and their count, as :meth:`VolumeSamples.sample_moving` returns them."""
        coords = np.dot(self.samples.points, matrix[:3].T)  # (n, 3): x, y, z
        inside = inside_volume(coords, mov.shape, self.margin)
        values = np.zeros(len(coords))
        for block, (start, end) in enumerate(self.spans):
            ok = np.flatnonzero(inside[start:end]) + start
            if ok.size == 0:
                continue
            image, valid, origin = self._window(mov, block, coords[ok])
            zyx = (coords[ok][:, ::-1] - origin).T
            values[ok] = ndimage.map_coordinates(image, zyx, order=1, mode="nearest",
                                                 prefilter=False)  # fmt: skip
            if valid is not None:
                inside[ok] &= ndimage.map_coordinates(valid, zyx, order=0, mode="nearest")
        inside = inside.view(np.uint8)
        return values, inside, int(np.count_nonzero(inside))

    def _window(self, mov: VolumeReader, block: int, xyz: np.ndarray):
        """The prefiltered moving window holding ``xyz`` (read again if it does not)."""
        low = np.floor(xyz.min(axis=0))[::-1]  # z, y, x
        high = np.ceil(xyz.max(axis=0))[::-1]
        reach = self.halo
        found = self.windows.get(block)
        if found is not None:
            image, _, origin = found
            end = origin + image.shape
            # A side at the volume's edge holds whatever lies there.
            if all((o == 0 or lo - reach >= o) and (e == n or hi + reach < e)
                   for o, e, lo, hi, n in zip(origin, end, low, high, mov.shape,
                                              strict=True)):  # fmt: skip
                return found
        pad = reach + _SLACK
        lo = np.maximum(0, low.astype(int) - pad)
        hi = np.minimum(mov.shape, high.astype(int) + pad + 1)
        image, valid = mov.box(lo, hi)
        image = blur(image, self.ksize, self.spacing, image)
        if valid is not None:
            valid = ndimage.binary_erosion(valid, iterations=self.margin, border_value=1)
        self.windows[block] = found = (image, valid, lo)
        return found


def refine_volume(ref: VolumeReader, mov: VolumeReader, starts, size, matrix, motion: str,
                  params, ksize: int, spacing) -> tuple[np.ndarray, int | None]:  # fmt: skip
    """ECC at full resolution on the blocks ``starts`` (of ``size``) of ``ref`` from
    ``matrix`` (full-resolution voxels); returns the refined matrix and the iterations
    run (None: nothing ran). Raises :class:`~.structure.NoStructure` or
    :class:`~.alignment.AlignmentError` as a pyramid level does."""
    blocks = BlockSamples(ref, starts, size, ksize, spacing, motion)
    return climb_on_samples(blocks.samples, lambda m: blocks.sample_moving(mov, m), matrix,
                            motion, params, normaliser(ref.shape, spacing), delta_matrix,
                            grid_corners(ref.shape))  # fmt: skip
