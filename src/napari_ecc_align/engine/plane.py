"""Images for the ECC engine: the 2D :class:`~.grid.Grid`, the ``cv2.pyrDown`` pyramid
and the full-resolution correlation.

Everything here uses OpenCV's fast 2D calls: ``cv2.pyrDown`` for the pyramid,
``cv2.GaussianBlur`` for the prefilter, ``cv2.remap`` (in :mod:`.reference_side`) to
sample the moving image and ``cv2.warpAffine``/``warpPerspective`` with ``cv2.norm``
for the correlation. Matrices are 3×3: reference (x, y, 1) → moving.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from .alignment import MOTIONS
from .geometry import project_to_motion
from .grid import Grid, Level
from .reference_side import (
    CV_REMAP_LIMIT,
    centre_and_half_size,
    erode,
    level_margin,
    reference_side,
)
from .warping import warp_plane


class PlaneGrid(Grid):
    """The 2D half of an estimate: isotropic ``cv2.pyrDown`` levels, gradient-chosen
    sample pixels seeded from the coarser level, ``cv2.remap`` sampling, and all four
    motions with the three start estimators."""

    ndim = 2
    noun = "image"
    scene = "scene"
    motions = MOTIONS
    estimators = ("phase", "fourier-mellin", "features")
    search_side = 256  # features use a finer level (see .initialisation)
    phase_peaks = 3
    other_starts = "init='phase' (translation), 'features', 'identity' or a matrix"

    def __init__(self, ksizes: tuple[int, int], finest_samples: int | None = None):
        # The prefilter on coarse levels and at full resolution (see smoothing_schedule).
        self.ksize, self.finest_ksize = ksizes
        self.margin = level_margin(max(ksizes))
        # Level 0's own sample budget (see reference_side), None: the coarser level's picks.
        self.finest_samples = finest_samples

    def pyramid(self, image, valid, levels):
        return pyramid(image, valid, levels)

    def factors(self, level):
        return level

    def samples(self, ref, motion, level, seeds):
        return reference_side(ref, self.ksize_at(level), motion, level, seeds, self.finest_samples)

    def ksize_at(self, level: int) -> int:
        """The prefilter's size on ``level``."""
        return self.finest_ksize if level == 0 else self.ksize

    def probe(self, ref, level):
        self.samples(ref, "translation", level, None)

    def moving(self, mov, level):
        # Not memoised: a blurred copy of every level would cost a pyramid's memory.
        image, ksize = mov.image, self.ksize_at(level)
        if ksize > 1:
            image = cv2.GaussianBlur(image, (ksize, ksize), 0)
        return image, erode(mov.valid, self.margin)

    def normaliser(self, shape, level):
        return normaliser(*shape)

    def delta_matrix(self, motion, p):
        return delta_matrix(motion, p)

    def score(self, ref, mov, matrix):
        return full_correlation(ref.image, None, mov.image, None, matrix)

    def paired_values(self, ref, mov, matrix, limit):
        stride = max(1, math.ceil(math.sqrt(ref.image.size / limit)))
        return plane_pairs(ref.image, ref.valid, mov.image, mov.valid, matrix, stride)

    def project(self, matrix, motion, level):
        return project_to_motion(matrix, motion)


def pyramid(image: np.ndarray, valid: np.ndarray | None, levels: int) -> list[Level]:
    """Gaussian pyramid. ``cv2.pyrDown`` centres its kernel on even pixels, so a
    level-k pixel x sits exactly at 2x on level k-1: no half-pixel offset."""
    out = [Level(image, valid)]
    for _ in range(levels - 1):
        prev = out[-1]
        small = cv2.pyrDown(prev.image)
        small_valid = None
        if prev.valid is not None:
            # Invalid pixels hold the mean value (see normalise), so a coarse pixel
            # whose footprint is mostly valid is still a fair sample of the image.
            small_valid = cv2.pyrDown(prev.valid.astype(np.float32)) > 0.75
        out.append(Level(small, small_valid))
    return out


@functools.lru_cache(maxsize=64)
def normaliser(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel → normalised coordinates (see ``centre_and_half_size``) as a matrix N, and
    N⁻¹ (read-only: shared between calls)."""
    cx, cy, half = centre_and_half_size(rows, cols)
    norm = np.array([[1 / half, 0, -cx / half], [0, 1 / half, -cy / half], [0, 0, 1]])
    norm_inv = np.array([[half, 0, cx], [0, half, cy], [0, 0, 1.0]])
    norm.flags.writeable = norm_inv.flags.writeable = False
    return norm, norm_inv


def nan_filled(mov, mov_valid):
    """``mov`` with NaN where ``mov_valid`` is False (a copy; ``mov`` itself when all is
    valid): a NaN-filled warp then marks every output pixel that reached an invalid one."""
    if mov_valid is None:
        return mov
    source = mov.copy()
    source[~mov_valid] = np.nan
    return source


def plane_pairs(ref, ref_valid, mov, mov_valid, matrix, stride=1):
    """``(reference values, moving values)`` over the overlap: every ``stride``-th
    reference pixel on each axis and ``mov`` warped by ``matrix`` onto it (bilinear),
    as float64."""
    rows, cols = ref.shape
    sub_shape = (-(-rows // stride), -(-cols // stride))
    source = nan_filled(mov, mov_valid)
    on_grid = matrix @ np.diag([float(stride), float(stride), 1.0])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = warp_plane(source, on_grid, sub_shape, flags, (float("nan"),) * 4)
    inside = np.isfinite(warped)
    if ref_valid is not None:
        inside &= ref_valid[::stride, ::stride]
    return ref[::stride, ::stride][inside].astype(np.float64), warped[inside].astype(np.float64)


def usable_pixels(level: Level, margin: int) -> int:
    """Pixels of a level that ECC may sample: valid and away from the border."""
    rows, cols = level.image.shape
    if level.valid is None:
        return max(0, rows - 2 * margin) * max(0, cols - 2 * margin)
    return int(np.count_nonzero(erode(level.valid, margin)[margin:-margin, margin:-margin]))


def delta_matrix(motion, p) -> np.ndarray:
    if motion == "translation":
        return np.array([[1, 0, p[0]], [0, 1, p[1]], [0, 0, 1]], float)
    if motion == "euclidean":
        c, s = math.cos(p[0]), math.sin(p[0])
        return np.array([[c, -s, p[1]], [s, c, p[2]], [0, 0, 1]], float)
    bottom = [p[6], p[7], 1] if motion == "homography" else [0, 0, 1]
    return np.array([[1 + p[0], p[2], p[4]], [p[1], 1 + p[3], p[5]], bottom], float)


# ---------------------------------------------------------------------------------- correlation
# full_correlation works in bands of rows this size, so a band's warp, mask and sums
# stay in cache between the passes (about 10 % faster than whole-image passes at 1 MP).
_BAND_BYTES = 2 << 20
_IDENTITY = np.eye(3)


def full_correlation(ref, ref_valid, mov, mov_valid, matrix) -> float:
    """ECC of ``ref`` and ``mov`` warped by ``matrix`` over their overlap, at full resolution.

    Both images are non-negative (``normalise`` scales them to [0, 1]), so their L1
    norms are their sums. cv2.norm accumulates in double, one vectorised pass each
    (5-10x faster than cv2.mean or cv2.meanStdDev with a mask).
    """
    rows, cols = ref.shape
    identity = mov.shape == ref.shape and (matrix == _IDENTITY).all()
    source = mov if identity else nan_filled(mov, mov_valid)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    band = rows if identity else max(8, _BAND_BYTES // (4 * cols))  # nothing to cache
    sums = np.zeros(6)
    for y0 in range(0, rows, band):
        y1 = min(rows, y0 + band)
        r = ref[y0:y1]
        if identity:  # no resampling
            w = mov[y0:y1]
            mask = None if mov_valid is None else mov_valid[y0:y1].view(np.uint8)
        else:
            # NaN fill marks every output pixel whose interpolation reached outside `mov`.
            shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
            w = warp_plane(source, matrix @ shift, (y1 - y0, cols), flags, (float("nan"),) * 4)
            mask = cv2.compare(w, w, cv2.CMP_EQ)  # 0 where NaN
        if ref_valid is not None:
            valid = ref_valid[y0:y1].view(np.uint8)
            mask = valid if mask is None else cv2.bitwise_and(mask, valid)
        sums += _sums(r, w, mask)
    return _correlation(sums)


def _sums(r, w, mask) -> tuple:
    """n, Σr, Σw, Σr², Σw², Σ(r - w)² where ``mask`` is nonzero (None: everywhere)."""
    n = r.size if mask is None else cv2.countNonZero(mask)
    if not n:
        return (0,) * 6
    return (
        n,
        cv2.norm(r, cv2.NORM_L1, mask=mask),
        cv2.norm(w, cv2.NORM_L1, mask=mask),
        cv2.norm(r, cv2.NORM_L2SQR, mask=mask),
        cv2.norm(w, cv2.NORM_L2SQR, mask=mask),
        cv2.norm(r, w, cv2.NORM_L2SQR, mask=mask),
    )


def _correlation(sums) -> float:
    """The correlation from :func:`_sums` (NaN: too few pixels, or one side flat)."""
    count = sums[0]
    if count < 16:
        return float("nan")
    ref_mean, mov_mean = sums[1] / count, sums[2] / count
    ref_var = sums[3] / count - ref_mean**2
    mov_var = sums[4] / count - mov_mean**2
    if not (ref_var > 0 and mov_var > 0):
        return float("nan")
    # Σ(r - r̄)(w - w̄)/n from the mean squared difference: no product image needed.
    cov = 0.5 * (ref_var + mov_var + (ref_mean - mov_mean) ** 2 - sums[5] / count)
    return float(cov / math.sqrt(ref_var * mov_var))


# ------------------------------------------------------------------------ sampled correlation
# The reported correlations of images with more valid pixels than this read about this
# many, one drawn at random in each cell of a square grid (at 8 MP the two
# full-resolution passes had taken 57 of 190 ms). A random pixel per cell cannot alias
# with a pattern as a regular grid can (2-pixel stripes under a stride of 2 look flat),
# and spreads the sample over the whole image (blocks of rows missed a score's staff
# lines). An overlap that leaves fewer than _MIN_SAMPLED of them is measured on every
# pixel: a small overlap read on a few hundred pixels was off by 0.01-0.05.
CORRELATION_PIXELS = 500_000
_MIN_SAMPLED = 50_000
_TILE_CELLS = 64
_NAN = float("nan")


class CorrelationSample:
    """The reference pixels the reported correlation reads, chosen once per image.

    ``None`` from :meth:`of` means every pixel (images with at most ``limit`` valid
    pixels, and images beyond ``cv2.remap``'s size limit).
    """

    def __init__(self, ref, ref_valid, stride: int):
        rows, cols = ref.shape
        self.ref, self.ref_valid = ref, ref_valid  # for small overlaps (see correlation)
        grid_y = np.arange(0, rows, stride, dtype=np.float32)
        grid_x = np.arange(0, cols, stride, dtype=np.float32)
        # One pixel per cell, at offsets drawn once (seeded) for a tile of cells.
        tile = np.random.default_rng(0).integers(0, stride, (_TILE_CELLS, _TILE_CELLS, 2))
        reps = (-(-grid_y.size // _TILE_CELLS), -(-grid_x.size // _TILE_CELLS), 1)
        points = np.tile(tile.astype(np.float32), reps)[: grid_y.size, : grid_x.size].copy()
        points[..., 0] += grid_x[None, :]
        points[..., 1] += grid_y[:, None]
        # The last row and column of cells may be cut by the image's edge.
        np.minimum(points[:, -1, 0], cols - 1, out=points[:, -1, 0])
        np.minimum(points[-1, :, 1], rows - 1, out=points[-1, :, 1])
        self.points = points
        self.values = self.gather(ref)
        self.valid = None if ref_valid is None else self.gather(ref_valid.view(np.uint8))

    @classmethod
    def of(cls, ref, ref_valid, mov_shape, limit: int = CORRELATION_PIXELS):
        if max(*ref.shape, *mov_shape) >= CV_REMAP_LIMIT:
            return None
        pixels = ref.size if ref_valid is None else cv2.countNonZero(ref_valid.view(np.uint8))
        if pixels <= limit:
            return None
        return cls(ref, ref_valid, math.ceil(math.sqrt(pixels / limit)))

    def gather(self, image: np.ndarray) -> np.ndarray:
        """``image`` at the chosen pixels."""
        return cv2.remap(image, self.points, None, cv2.INTER_NEAREST)

    def correlation(self, mov, mov_valid, matrix, same_grid: bool) -> float:
        """The correlation of the chosen reference pixels with ``mov`` warped by
        ``matrix`` (bilinear), over the overlap; ``same_grid``: ``mov`` has the
        reference's shape."""
        if same_grid and (matrix == _IDENTITY).all():
            warped = self.gather(mov)
            mask = None if mov_valid is None else self.gather(mov_valid.view(np.uint8))
        else:
            source = nan_filled(mov, mov_valid)
            # NaN fill marks every point whose interpolation reached outside `mov`.
            warped = cv2.remap(source, self._mapped(matrix), None, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=_NAN)  # fmt: skip
            mask = cv2.compare(warped, warped, cv2.CMP_EQ)  # 0 where NaN
        if self.valid is not None:
            mask = self.valid if mask is None else cv2.bitwise_and(mask, self.valid)
        sums = _sums(self.values, warped, mask)
        if sums[0] < _MIN_SAMPLED:
            return full_correlation(self.ref, self.ref_valid, mov, mov_valid, matrix)
        return _correlation(sums)

    def _mapped(self, matrix) -> np.ndarray:
        if matrix[2, 0] == 0 and matrix[2, 1] == 0 and matrix[2, 2] == 1:
            return cv2.transform(self.points, matrix[:2])
        points = self.points.reshape(-1, 2).astype(np.float64)
        mapped = np.dot(points, matrix[:2, :2].T) + matrix[:2, 2]
        depth = np.dot(points, matrix[2, :2]) + matrix[2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy = mapped / depth[:, None]
        xy[~(depth > 0) | ~np.isfinite(xy).all(axis=1)] = -1.0  # behind the camera: outside
        np.clip(xy, -1.0, CV_REMAP_LIMIT, out=xy)  # outside stays outside, in float32 range
        return xy.astype(np.float32).reshape(self.points.shape)
