"""The finest levels of images too large to estimate whole: ECC on a bounded set of tiles
read from the original arrays.

Images beyond the working budget (see :mod:`.image_pair`) are estimated on a copy halved
in their own dtype; the levels that halving skips hold the precision (a clean
20 000 x 20 000 pair ended 0.11 px off). :func:`refine_at_full_resolution` runs those
last iterations at full resolution without a full-resolution float copy of either image:

* the reference is read in at most ``GRID`` x ``GRID`` tiles of ``TILE`` pixels, the one
  with the most gradient in each cell of a coarse grid over the image (spread, so that every
  motion parameter is fixed), and the strongest-gradient pixels of each tile are the
  samples;
* the moving image is read, prefiltered, only in windows around where the tiles'
  samples land, re-read when the pose moves them out of the window.

Everything else is the engine's: the sample moments and ECC update of
:class:`~.reference_side.Samples`, the backtracking climb of :func:`~.ecc.climb`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .ecc import climb
from .geometry import grid_corners, max_corner_shift
from .levels import STEP_TOLERANCE
from .plane import delta_matrix, normaliser
from .preprocess import fill_invalid, luminance
from .reference_side import N_PARAMS, erode, level_margin, samples_at, select_samples
from .structure import NoStructure

# The reference is read in at most one tile per cell of a GRID x GRID grid over the
# image, tiles TILE pixels square: 49 tiles of 256 x 256 are 3 MP of float32 work
# whatever the image's size.
GRID = 7
TILE = 256
# Samples over all tiles (spread evenly).
SAMPLES = 60_000
# Extra pixels around a moving window, so that small pose changes reuse it.
_SLACK = 16
_REMAP_POINTS = 32_000  # cv2.remap refuses maps of 32767 or more on a side


class Plane:
    """One original 2D image (gray or colour, any dtype) read window by window as
    float32 luminance, with its mask: what NaN, infinite and fully transparent pixels and
    the user's mask exclude."""

    def __init__(self, array: np.ndarray, mask: np.ndarray | None):
        self.array, self.mask = array, mask
        self.shape = array.shape[:2]

    def window(self, y0: int, y1: int, x0: int, x1: int):
        """``(image, valid)`` of rows ``y0:y1`` and columns ``x0:x1`` (valid None: all)."""
        part = np.asarray(self.array[y0:y1, x0:x1])  # dask and zarr read just this window
        image = np.ascontiguousarray(luminance(part), dtype=np.float32)
        valid = None if self.mask is None else np.asarray(self.mask[y0:y1, x0:x1]) != 0
        bad = ~np.isfinite(image)
        if part.ndim == 3 and part.shape[-1] == 4:
            bad |= part[..., 3] == 0
        if bad.any():
            valid = ~bad if valid is None else valid & ~bad
            fill_invalid(image, ~bad)
        return image, valid


def choose_tiles(energy: np.ndarray, valid_share: np.ndarray) -> list[tuple[int, int]]:
    """``(row, col)`` of the tiles to read: in each cell of a ``GRID`` x ``GRID`` grid
    over the tile grid, the tile with the most gradient ``energy`` among those at least
    half valid."""
    rows, cols = energy.shape
    chosen = []
    for band in np.array_split(np.arange(rows), min(GRID, rows)):
        for column in np.array_split(np.arange(cols), min(GRID, cols)):
            block = np.where(valid_share[np.ix_(band, column)] >= 0.5,
                             energy[np.ix_(band, column)], -1.0)  # fmt: skip
            best = np.unravel_index(int(np.argmax(block)), block.shape)
            if block[best] > 0:
                chosen.append((int(band[best[0]]), int(column[best[1]])))
    return chosen


def tile_energy(level_image: np.ndarray, level_valid, scale: int, shape) -> tuple:
    """The mean gradient magnitude and the valid share of every full-resolution tile,
    measured on a pyramid level ``scale`` times smaller than the images."""
    rows, cols = shape[0] // TILE, shape[1] // TILE
    side = TILE / scale  # a tile's side on the level
    blurred = cv2.GaussianBlur(level_image, (3, 3), 0)
    grad = cv2.magnitude(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))
    height, width = int(round(rows * side)), int(round(cols * side))
    energy = cv2.resize(grad[:height, :width], (cols, rows), interpolation=cv2.INTER_AREA)
    if level_valid is None:
        share = np.ones_like(energy)
    else:
        valid = level_valid[:height, :width].astype(np.float32)
        share = cv2.resize(valid, (cols, rows), interpolation=cv2.INTER_AREA)
    return energy.reshape(rows, cols), share.reshape(rows, cols)


class TiledSamples:
    """The reference samples of the chosen tiles (a :class:`Samples`) and how to read
    the moving image around them."""

    def __init__(self, ref: Plane, tiles, ksize: int, motion: str):
        self.ksize, self.margin = ksize, level_margin(ksize)
        halo = self.margin + 1
        budget = max(4 * N_PARAMS[motion], SAMPLES // max(len(tiles), 1))
        rows, cols = ref.shape
        parts, self.spans = [], []
        for tile_row, tile_col in tiles:
            y0, x0 = max(0, tile_row * TILE - halo), max(0, tile_col * TILE - halo)
            y1 = min(rows, (tile_row + 1) * TILE + halo)
            x1 = min(cols, (tile_col + 1) * TILE + halo)
            image, valid = ref.window(y0, y1, x0, x1)
            if ksize > 1:
                image = cv2.GaussianBlur(image, (ksize, ksize), 0)
            idx = select_samples(image, erode(valid, self.margin), self.margin, budget)
            flat, width = image.ravel(), image.shape[1]
            ys, xs = np.divmod(idx, width)
            parts.append((xs + x0, ys + y0, flat[idx], flat[idx + 1] - flat[idx - 1],
                          flat[idx + width] - flat[idx - width]))  # fmt: skip
        start = 0
        for part in parts:
            self.spans.append((start, start + part[0].size))
            start += part[0].size
        columns = zip(*parts, strict=True)
        xs, ys, template, grad_x, grad_y = (np.concatenate(column) for column in columns)
        if xs.size < 4 * N_PARAMS[motion]:  # e.g. a fine mask the halved copy did not show
            raise NoStructure("too few valid reference pixels in the full-resolution tiles")
        xs, ys = xs.astype(np.float64), ys.astype(np.float64)
        self.samples = samples_at(xs, ys, template, grad_x, grad_y, (rows, cols), motion, 0)
        self.points = np.column_stack([xs, ys, np.ones(xs.size)])
        self.windows: dict[int, tuple] = {}

    def sample_moving(self, mov: Plane, matrix):
        """Prefiltered moving values at W·(x, y), the usable points (uint8, nonzero) and
        their count, as :meth:`Samples.sample_moving` returns them."""
        mapped = np.dot(self.points, matrix.T)
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = mapped[:, :2] / mapped[:, 2:]
        rows, cols = mov.shape
        margin = self.margin
        inside = (
            (mapped[:, 2] > 0) & np.isfinite(xy).all(axis=1)
            & (xy[:, 0] >= margin) & (xy[:, 0] <= cols - 1 - margin)
            & (xy[:, 1] >= margin) & (xy[:, 1] <= rows - 1 - margin)
        )  # fmt: skip
        values = np.zeros(len(xy))
        for tile, (start, end) in enumerate(self.spans):
            ok = np.flatnonzero(inside[start:end]) + start
            if ok.size == 0:
                continue
            image, valid, y0, x0 = self._window(mov, tile, xy[ok])
            local = (xy[ok] - (x0, y0)).astype(np.float32)
            for first in range(0, ok.size, _REMAP_POINTS):  # cv2.remap's map limit
                piece = ok[first : first + _REMAP_POINTS]
                at = local[first : first + _REMAP_POINTS].reshape(1, -1, 2)
                values[piece] = cv2.remap(image, at, None, cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REPLICATE).ravel()  # fmt: skip
                if valid is not None:
                    usable = cv2.remap(valid.view(np.uint8), at, None, cv2.INTER_NEAREST)
                    inside[piece] &= usable.ravel() != 0
        inside = inside.view(np.uint8)
        return values, inside, int(np.count_nonzero(inside))

    def _window(self, mov: Plane, tile: int, xy: np.ndarray):
        """The prefiltered moving window holding ``xy`` (read again if it does not)."""
        low, high = np.floor(xy.min(axis=0)), np.ceil(xy.max(axis=0))
        found = self.windows.get(tile)
        if found is not None:
            image, valid, y0, x0 = found
            reach = self.margin + 1
            rows, cols = mov.shape
            height, width = image.shape
            # A side at the image's edge holds whatever lies there.
            if ((x0 == 0 or low[0] - reach >= x0) and (y0 == 0 or low[1] - reach >= y0)
                    and (x0 + width == cols or high[0] + reach < x0 + width)
                    and (y0 + height == rows or high[1] + reach < y0 + height)):  # fmt: skip
                return found
        rows, cols = mov.shape
        pad = self.margin + 1 + _SLACK
        x0, y0 = max(0, int(low[0]) - pad), max(0, int(low[1]) - pad)
        x1, y1 = min(cols, int(high[0]) + pad + 1), min(rows, int(high[1]) + pad + 1)
        image, valid = mov.window(y0, y1, x0, x1)
        if self.ksize > 1:
            image = cv2.GaussianBlur(image, (self.ksize, self.ksize), 0)
        valid = erode(valid, self.margin)
        self.windows[tile] = found = (image, valid, y0, x0)
        return found


def refine_at_full_resolution(ref: Plane, mov: Plane, tiles, matrix, motion: str, params,
                              ksize: int) -> tuple[np.ndarray, int | None]:  # fmt: skip
    """ECC at full resolution on ``tiles`` of ``ref`` from ``matrix`` (full-resolution
    pixels); returns the refined matrix and the iterations run (None: the tiles' samples
    do not overlap the moving image there, nothing ran). Raises
    :class:`~.structure.NoStructure` or :class:`~.alignment.AlignmentError` as a pyramid
    level does."""
    tiled = TiledSamples(ref, tiles, ksize, motion)
    return climb_on_samples(tiled.samples, lambda m: tiled.sample_moving(mov, m), matrix,
                            motion, params, normaliser(*ref.shape), delta_matrix,
                            grid_corners(ref.shape))  # fmt: skip


def climb_on_samples(problem, sample_moving, matrix, motion: str, params, norms, delta,
                     corners) -> tuple[np.ndarray, int | None]:  # fmt: skip
    """ECC's climb (:func:`~.ecc.climb`) on a fixed set of reference samples, for images
    and volumes: ``problem`` holds their moments (a :class:`~.reference_side.Samples`),
    ``sample_moving(matrix)`` returns the moving values there, ``norms`` is the
    normalised frame ``(N, N⁻¹)`` and ``delta(motion, p)`` the update's warp in it.
    Returns the refined matrix and the iterations (None: no overlap, nothing ran)."""
    norm, norm_inv = norms
    min_overlap = max(4 * problem.n_params, problem.n // 20)

    def evaluate(candidate):
        warped, inside, usable = sample_moving(candidate)
        return None if usable < min_overlap else problem.update(warped, inside, usable)

    def make_step(p):
        step = norm_inv @ delta(motion, p) @ norm
        invertible, step_inv = cv2.invert(step)
        return step_inv, (max_corner_shift(step, corners) if invertible else math.inf)

    state = evaluate(matrix)
    if state is None:
        return matrix, None
    refined, iterations, _ = climb(evaluate, state, matrix, make_step, params, STEP_TOLERANCE)
    return refined, iterations
