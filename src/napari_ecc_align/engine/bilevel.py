"""Binarised against grayscale: a last pass on intensity-matched images.

ECC assumes the two images differ by a gain and an offset. A binarised page, a
segmentation mask or any other bilevel image breaks that assumption: its edges are
steps at wherever the threshold crossed, the grayscale image's are ramps around
their own mid-level, and the blurred step and the blurred ramp line up only where
the threshold sat at that mid-level. Everywhere else ECC trades one edge's offset
against another's, and the pose comes out biased (a median of 0.68 px on the binarised
photographs of ``benchmarks/bench_binarised.py``).

So when exactly one image is bilevel, the pose the pyramid found is refined once
more, at full resolution, against a grayscale image mapped through the intensity
transfer ``f(g) = E[binary | gray = g]``, measured over the overlap at that pose:
what the grayscale image predicts the binary one to be. ``f`` is a step at the
threshold for a global threshold, a softer ramp for a local one, for ink bleed or
compression noise. Both images then share one edge profile and the prefilter blurs
like with like. A bilevel image that marks the other's dark class (an ink mask) is
turned over before the pyramid, since ECC climbs towards positive correlation only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .alignment import AlignmentError
from .ecc import run_levels
from .geometry import corner_displacement
from .grid import Level
from .levels import run_to_end
from .plane import PlaneGrid
from .spectral import phase_surface
from .warping import warp_plane

# A normalised image is bilevel when this share of its valid pixels sits within
# _EXTREME_TOLERANCE of 0 or 1: bool, 0/255, any two-valued float, a mask with a few
# stray levels. A blurred grayscale text page keeps 5-20 % of its pixels on its edges.
_BILEVEL_SHARE = 0.99
_EXTREME_TOLERANCE = 1 / 255
# Images of over 16 times this many pixels are probed on every 4th row and column first.
_PROBE_PIXELS = 65_536
# The transfer function is tabulated on this many gray levels; each bin is pulled
# towards the overall mean by _PRIOR_PIXELS pseudo-pixels, so sparse bins stay tame.
_BINS = 64
_PRIOR_PIXELS = 20
# The polarity test runs on the finest pyramid level at most this long, and calls the
# bilevel image inverted when the phase-correlation surface's deepest trough is this
# many times deeper than its highest peak is high.
_POLARITY_SIDE = 256
_INVERTED_RATIO = 1.5
# Pixels the transfer function is measured on, about (a regular subsample).
_TRANSFER_SAMPLES = 500_000
# Fewer overlapping pixels than this leave the transfer function unmeasured.
_MIN_OVERLAP = 256
# The refinement corrects a bias of a fraction of a pixel; a pose that moved a corner
# further than this found another optimum, and the pyramid's pose is kept.
_MAX_CORRECTION_PX = 2.0


def is_bilevel(gray: np.ndarray, valid: np.ndarray | None) -> bool:
    """Whether (nearly) every valid pixel of a ``normalise``-d image is 0 or 1."""
    if gray.size > 16 * _PROBE_PIXELS and valid is None:
        # Most images are plainly gray: a sparse probe says so for 1/16 of the cost.
        probe = np.ascontiguousarray(gray[::4, ::4])
        if not _extremes_share(probe, None) >= _BILEVEL_SHARE - 0.02:
            return False
    return _extremes_share(gray, valid) >= _BILEVEL_SHARE


def _extremes_share(gray: np.ndarray, valid: np.ndarray | None) -> float:
    near_extreme = cv2.bitwise_or(
        cv2.compare(gray, _EXTREME_TOLERANCE, cv2.CMP_LE),
        cv2.compare(gray, 1 - _EXTREME_TOLERANCE, cv2.CMP_GE),
    )
    if valid is None:
        total = gray.size
    else:
        near_extreme = cv2.bitwise_and(near_extreme, valid.view(np.uint8))
        total = cv2.countNonZero(valid.view(np.uint8))
    return cv2.countNonZero(near_extreme) / total if total else 0.0


def bilevel_side(ref, ref_valid, mov, mov_valid) -> str | None:
    """``"reference"`` or ``"moving"`` when exactly that image is bilevel, else None."""
    ref_bilevel, mov_bilevel = is_bilevel(ref, ref_valid), is_bilevel(mov, mov_valid)
    if ref_bilevel == mov_bilevel:
        return None  # both gray, or both bilevel: ECC's gain-and-offset model holds
    return "reference" if ref_bilevel else "moving"


def polarity_ratio(ref: np.ndarray, mov: np.ndarray) -> float:
    """Depth of the phase-correlation surface's trough over the height of its peak, for
    two small (pyramid-level) images.

    Phase correlation finds the shift whatever the images' contrasts; the sign of its
    peak says whether bright matches bright. A mask of the dark class (ink = True on a
    white page) gives a trough where a same-polarity mask gives a peak.
    """
    surface = phase_surface(ref, mov)
    peak = float(surface.max())
    return float(-surface.min()) / peak if peak > 0 else np.inf


def is_inverted(ref_pyr, mov_pyr) -> bool:
    """Whether the bilevel image of the pair marks the other image's dark class, judged
    on the finest pyramid level at most ``_POLARITY_SIDE`` pixels long."""
    level = next(
        (k for k in range(len(ref_pyr))
         if max(*ref_pyr[k].image.shape, *mov_pyr[k].image.shape) <= _POLARITY_SIDE),
        len(ref_pyr) - 1,
    )  # fmt: skip
    return polarity_ratio(ref_pyr[level].image, mov_pyr[level].image) > _INVERTED_RATIO


def turned_over(pyr) -> list:
    """The pyramid of ``1 - image`` (pyrDown is linear and keeps constants: no recompute)."""
    return [Level(np.float32(1) - level.image, level.valid) for level in pyr]


def transfer_function(gray_values: np.ndarray, binary_values: np.ndarray) -> np.ndarray:
    """``E[binary | gray]`` tabulated at the centres of ``_BINS`` gray levels in [0, 1]."""
    bins = np.minimum((gray_values * _BINS).astype(np.intp), _BINS - 1)
    np.maximum(bins, 0, out=bins)
    counts = np.bincount(bins, minlength=_BINS)
    sums = np.bincount(bins, weights=binary_values, minlength=_BINS)
    prior = float(binary_values.mean())
    return (sums + _PRIOR_PIXELS * prior) / (counts + _PRIOR_PIXELS)


def apply_transfer(gray: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``gray`` (in [0, 1]) mapped through ``table``, interpolated linearly between bin
    centres, on 256 gray levels: ``cv2.LUT`` in one pass (np.interp took 0.19 s at 8 MP;
    a 1/255 step in gray moves an edge by about a hundredth of a pixel)."""
    levels = (np.arange(256) + 0.0) / 255
    centres = (np.arange(len(table)) + 0.5) / len(table)
    lut = np.interp(levels, centres, table).astype(np.float32)
    quantised = cv2.convertScaleAbs(np.asarray(gray, np.float32), alpha=255.0)
    return cv2.LUT(quantised, lut)


def refine_bilevel(side, ref_level, mov_level, matrix, motion, params):
    """Refine ``matrix`` at full resolution with the grayscale image intensity-matched
    to the bilevel one (``side`` names which is bilevel).

    ``ref_level``/``mov_level`` are the full-resolution pyramid levels; the bilevel
    one is reused as it is (with its memo: a Template keeps its reference side).
    Returns ``(matrix, iterations, correlation)``, or None when the overlap is too
    small to measure the transfer function or the refinement left the pyramid's
    optimum (the caller then keeps ``matrix``).
    """
    ref, mov = ref_level.image, mov_level.image
    # The transfer function needs a few hundred thousand pixels, not all of them: the
    # moving image is warped onto every stride-th reference pixel.
    stride = max(1, int(math.sqrt(ref.size / _TRANSFER_SAMPLES)))
    sub_shape = (-(-ref.shape[0] // stride), -(-ref.shape[1] // stride))
    source = mov
    if mov_level.valid is not None:
        source = mov.copy()
        source[~mov_level.valid] = np.nan
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    on_grid = matrix @ np.diag([float(stride), float(stride), 1.0])
    warped = warp_plane(source, on_grid, sub_shape, flags, (float("nan"),) * 4)
    ref_sub = ref[::stride, ::stride]
    inside = np.isfinite(warped)
    if ref_level.valid is not None:
        inside &= ref_level.valid[::stride, ::stride]
    if np.count_nonzero(inside) < _MIN_OVERLAP:
        return None
    if side == "reference":
        table = transfer_function(warped[inside], ref_sub[inside])
        mov_level = Level(apply_transfer(mov, table), mov_level.valid)
    else:
        table = transfer_function(ref_sub[inside], warped[inside])
        ref_level = Level(apply_transfer(ref, table), ref_level.valid)
    grid = PlaneGrid(params["gauss_filter_size"])
    steps = run_levels(grid, [ref_level], [mov_level], matrix, motion, params, 0, 0, staged=False)
    try:
        refined, iterations, correlation = run_to_end(steps)
    except AlignmentError:  # e.g. a transfer function too flat to leave any contrast
        return None
    if corner_displacement(refined, ref.shape, matrix) > _MAX_CORRECTION_PX:
        return None
    return refined, iterations[0], correlation
