"""Multimodal pairs: ECC on intensity-mapped images (``intensity="mapped"``).

ECC's criterion, the correlation, assumes the two images differ by a gain and an
offset. Two modalities of one scene (a T1 and a proton-density MRI, a binarised page
and its grayscale scan, a channel whose dyes swap brightness) break that: one image's
intensities are a function of the other's, but not a linear one, and not always a
monotonic one. Correlation then trades one edge's contrast against another's and the
optimum moves (ITK's T1/PD slice pair: 1.7 px off with no warning).

So, level by level, the intensity function is measured at the current pose as a
binned conditional mean, ``f(v) = E[other | this = v]`` over ``BINS`` levels of
``this`` (a correlation-ratio model), and ECC runs on ``f(this)`` against the other
image: their relation is then linear again and ECC's assumption holds. The image whose
intensities predict the other's better is the one mapped (a grayscale image is mapped
onto a binarised one, never the reverse, which would throw the grays away).

Against a binarised reference the table is measured, and applied, after the prefilter,
on ECC's own samples of the moving grayscale image: a binarised image keeps the
sub-pixel position of its edges only once blurred, so the grayscale image is matched to
the *blurred* binary one (the 3400 × 2400 seed page: 0.007 px against 0.030 mapping
before the blur; on the 144 binarised pairs of ``bench_binarised.py`` the median is
0.060 px either way, soft-edged photographs do 0.02 px worse). Two gray modalities are
mapped before the blur: mapping blurred class boundaries through a non-monotonic table
would invent a third class between two (ITK's T1/PD slices: 0.20 px against 0.07).

Overfitting is kept down two ways: every bin is pulled towards the straight-line fit
by ``PRIOR_SAMPLES`` pseudo-samples (a sparse bin follows the line, not its few
samples' noise), and the explained variance is adjusted for the ``BINS - 1`` degrees
of freedom the table spends (as the adjusted R² is), so ``"auto"`` never prefers the
table merely because it has more parameters than a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from .grid import Level

INTENSITY_MODES = ("auto", "linear", "mapped")
# The table has this many bins over the mapped values' range (RANGE_PERCENTILES); each
# bin is pulled towards the straight-line fit by PRIOR_SAMPLES pseudo-samples.
BINS = 32
PRIOR_SAMPLES = 20
# The relation is measured on at most about this many sample pairs (a regular subsample).
RELATION_SAMPLES = 250_000
# Fewer overlapping samples than this leave the relation unmeasured (linear kept).
MIN_SAMPLES = 256
# Whether to map is judged on the coarsest level of the run with this many pixels.
DECISION_SAMPLES = 4096
BIN_CENTRES = (np.arange(BINS) + 0.5) / BINS
# The table spans these percentiles of the mapped image's sampled values.
RANGE_PERCENTILES = (0.1, 99.9)
_RANGE_BINS = 4096  # the percentiles' resolution, in parts of the values' full range
# ``"auto"`` maps when the table explains at least MIN_GAIN more of the variance than
# a line, and leaves at most 1 / MARKEDLY_WORSE of what the line leaves, measured at the
# start pose. At their start poses, gray pairs (ITK's PD slices, a page, generated
# photos, text, spots, textures) gain -0.02 to 0.02; ITK's T1/PD pairs gain 0.21-0.23
# (the line leaves 8-10 times more), generated non-monotonic remaps 0.09-0.39 (1.13-2.6
# times more) even from starts tens of pixels off.
MARKEDLY_WORSE = 1.1
MIN_GAIN = 0.05
# Before the start search, at the identity (or the given start), a gray pair far from
# aligned looks non-linear too (a page 3 degrees off: 1.29; ITK's PD slice turned by 10
# degrees: 1.76), while a second modality already shows: the line must leave this many
# times more (T1/PD: 10; generated non-monotonic remaps: 2.7-5.5).
MARKEDLY_WORSE_UNALIGNED = 2.0


@dataclass(frozen=True)
class Mapping:
    """How an estimate maps intensities: which image (``side``: ``"reference"`` or
    ``"moving"``) and whether on the prefiltered moving samples (``after_blur``: a
    binarised reference) or on the plain pyramid levels."""

    side: str
    after_blur: bool = False


@dataclass(frozen=True)
class Relation:
    """How one image's intensities predict the other's at one pose.

    Attributes
    ----------
    side : {"moving", "reference"}
        The image that is mapped: its intensities predict the other's better.
    table : Transfer
        The other image's mean intensity at each of ``BINS`` bins of this one's.
    mapped : float
        Share of the other image's variance the table explains, adjusted for its
        degrees of freedom.
    linear : float
        Share a straight line explains (r²).
    """

    side: str
    table: Transfer
    mapped: float
    linear: float

    def markedly_better(self, worse: float = MARKEDLY_WORSE) -> bool:
        """Whether the table explains the pair markedly better than a line: at least
        ``MIN_GAIN`` more of the variance, and a line leaves ``worse`` times as much
        unexplained."""
        unexplained_linear, unexplained_mapped = 1 - self.linear, 1 - self.mapped
        return (
            self.mapped - self.linear >= MIN_GAIN
            and unexplained_linear >= worse * unexplained_mapped
        )

    @property
    def correlation(self) -> float:
        """The correlation of the other image with the mapped one (the correlation
        ratio, ``sqrt`` of the explained share): what ECC maximises in mapped mode."""
        return math.sqrt(max(self.mapped, 0.0))


class Transfer(NamedTuple):
    """A tabulated intensity function: ``values`` at the centres of ``BINS`` equal bins
    spanning ``[low, high]``, linear between them and flat beyond."""

    low: float
    high: float
    values: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        return self.low + (self.high - self.low) * BIN_CENTRES


def conditional_mean(values: np.ndarray, other: np.ndarray) -> tuple[Transfer, float]:
    """``E[other | values]`` tabulated on ``BINS`` bins between the 0.1st and 99.9th
    percentiles of ``values`` (a few hot pixels do not squeeze the content into a couple
    of bins), each bin shrunk towards the straight-line fit, and the share of ``other``'s
    variance it explains (adjusted for the bins spent)."""
    low, high = _percentile_range(values)
    if not high > low:
        low, high = float(values.min()), float(values.max()) + 1e-6
    scaled = (values - low) * (BINS / (high - low))
    bins = np.clip(scaled.astype(np.intp), 0, BINS - 1)
    counts = np.bincount(bins, minlength=BINS).astype(np.float64)
    sums = np.bincount(bins, weights=other, minlength=BINS)
    squares = np.bincount(bins, weights=other * other, minlength=BINS)
    n = float(len(other))
    mean = sums.sum() / n
    total = squares.sum() - n * mean * mean
    # The line through the bins' means: where a bin has few samples the table follows it,
    # so a sparse bin adds no shape that its samples' noise alone put there.
    value_sums = np.bincount(bins, weights=values, minlength=BINS)
    value_mean = value_sums.sum() / n
    centres = low + (high - low) * BIN_CENTRES
    centres = np.where(counts > 0, value_sums / np.maximum(counts, 1), centres)
    spread = float(np.sum(counts * (centres - value_mean) ** 2))
    covariance = float(np.sum((centres - value_mean) * (sums - counts * mean)))
    line = mean + (covariance / spread if spread > 0 else 0.0) * (centres - value_mean)
    table = (sums + PRIOR_SAMPLES * line) / (counts + PRIOR_SAMPLES)
    transfer = Transfer(low, high, table)
    if not total > 0:
        return transfer, 0.0
    # Σ over bins of Σ(other - table)², from the per-bin sums: no second pass.
    residual = float(np.sum(squares - 2 * table * sums + counts * table * table))
    used = int(np.count_nonzero(counts))
    explained = 1 - residual / total
    return transfer, 1 - (1 - explained) * (n - 1) / max(n - used, 1.0)


def _percentile_range(values: np.ndarray) -> tuple[float, float]:
    """The ``RANGE_PERCENTILES`` of ``values``, to 1/``_RANGE_BINS`` of their full range,
    from a histogram (np.percentile's selection was a third of :func:`conditional_mean`'s
    time on 100 000 samples; a random subsample moved ITK's T1/PD result by 0.05 px)."""
    lowest, highest = float(values.min()), float(values.max())
    if not highest > lowest:
        return lowest, highest
    width = (highest - lowest) / _RANGE_BINS
    bins = ((values - lowest) * (1 / width)).astype(np.intp)
    np.minimum(bins, _RANGE_BINS - 1, out=bins)
    below = np.cumsum(np.bincount(bins, minlength=_RANGE_BINS))
    ranks = np.ceil(np.multiply(RANGE_PERCENTILES, len(values) / 100) - 1e-9)  # 1-based
    low_bin, high_bin = np.searchsorted(below, ranks)
    return lowest + low_bin * width, min(highest, lowest + (high_bin + 1) * width)


def measure(ref_values: np.ndarray, mov_values: np.ndarray, side: str | None = None):
    """The :class:`Relation` of two equally long arrays of paired intensities in
    [0, 1], mapping ``side`` (None: the side whose intensities predict the other's
    better); None with fewer than ``MIN_SAMPLES`` pairs or a constant image."""
    n = len(ref_values)
    if n < MIN_SAMPLES:
        return None
    r = np.asarray(ref_values, np.float64)
    m = np.asarray(mov_values, np.float64)
    r_dev, m_dev = r - r.mean(), m - m.mean()
    r_var, m_var = float(r_dev @ r_dev), float(m_dev @ m_dev)
    if not (r_var > 0 and m_var > 0):
        return None
    linear = float(r_dev @ m_dev) ** 2 / (r_var * m_var)
    options = []
    if side in (None, "moving"):
        options.append(Relation("moving", *conditional_mean(m, r), linear))
    if side in (None, "reference"):
        options.append(Relation("reference", *conditional_mean(r, m), linear))
    return max(options, key=lambda relation: relation.mapped)


def measure_at(grid, ref: Level, mov: Level, matrix, side: str | None = None):
    """:func:`measure` on two levels at ``matrix`` (level coordinates)."""
    return measure(*grid.paired_values(ref, mov, matrix, RELATION_SAMPLES), side)


def map_values(values: np.ndarray, table: Transfer) -> np.ndarray:
    """``values`` (finite) mapped through ``table`` (float64): linear between the bins'
    centres, flat beyond. The centres are equally spaced, so each value's bin is arithmetic (half
    the time of ``np.interp``'s search, run on every ECC evaluation of a mapped level)."""
    bin_width = (table.high - table.low) / BINS
    position = np.multiply(values, 1 / bin_width, dtype=np.float64)  # in bins from the first centre
    position -= table.low / bin_width + 0.5
    np.clip(position, 0, BINS - 1, out=position)
    left = position.astype(np.intp)
    np.minimum(left, BINS - 2, out=left)
    position -= left
    at_left = table.values[left]
    at_left += position * (table.values[left + 1] - at_left)
    return at_left


def apply_table(image: np.ndarray, table: Transfer) -> np.ndarray:
    """``image`` (float32, 2D or 3D) mapped through ``table`` on 256 input levels over
    its range: ``cv2.LUT`` in one pass (a 1/255 step of the range moves an edge by about a
    hundredth of a pixel)."""
    step = (table.high - table.low) / 255
    lut = map_values(table.low + step * np.arange(256), table).astype(np.float32)
    flat = np.ascontiguousarray(image, np.float32).reshape(image.shape[0], -1)
    quantised = cv2.convertScaleAbs(flat, alpha=1 / step, beta=-table.low / step)
    return cv2.LUT(quantised, lut).reshape(image.shape)


def mapped_levels(relation: Relation, ref: Level, mov: Level) -> tuple[Level, Level]:
    """The two levels with ``relation.side``'s image mapped (a new level, so the
    original's memo, which a Template may share across a stack, stays as it was)."""
    if relation.side == "moving":
        return ref, Level(apply_table(mov.image, relation.table), mov.valid)
    return Level(apply_table(ref.image, relation.table), ref.valid), mov
