"""Binarised against grayscale: which image is bilevel, and which way round.

ECC assumes the two images differ by a gain and an offset. A binarised page, a
segmentation mask or any other bilevel image breaks that assumption: its edges are
steps at wherever the threshold crossed, the grayscale image's are ramps around
their own mid-level, and the blurred step and the blurred ramp line up only where
the threshold sat at that mid-level. Everywhere else ECC trades one edge's offset
against another's, and the pose comes out biased (a median of 0.68 px on the binarised
photographs of ``benchmarks/bench_binarised.py``).

A bilevel pair is one case of the intensity mapping of :mod:`.intensity`: with
``intensity="auto"`` it is always mapped, the grayscale image through
``E[binary | gray]`` (a step at the threshold for a global threshold, a softer ramp
for a local one, for ink bleed or compression noise), so both images share one edge
profile and the prefilter blurs like with like. What is left here is telling a
bilevel image apart, and turning over one that marks the other's dark class (an ink
mask) before the pyramid, since the start search and ECC climb towards positive
correlation only.
"""

from __future__ import annotations

import cv2
import numpy as np

from .grid import Level
from .spectral import phase_surface

# A normalised image is bilevel when this share of its valid pixels sits within
# _EXTREME_TOLERANCE of 0 or 1: bool, 0/255, any two-valued float, a mask with a few
# stray levels. A blurred grayscale text page keeps 5-20 % of its pixels on its edges.
_BILEVEL_SHARE = 0.99
_EXTREME_TOLERANCE = 1 / 255
# Images of over 4 times this many pixels are probed on every 4th row and column first.
_PROBE_PIXELS = 65_536
# The polarity test runs on the finest pyramid level at most this long, and calls the
# bilevel image inverted when the phase-correlation surface's deepest trough is this
# many times deeper than its highest peak is high.
_POLARITY_SIDE = 256
_INVERTED_RATIO = 1.5


def is_bilevel(gray: np.ndarray, valid: np.ndarray | None) -> bool:
    """Whether (nearly) every valid pixel of a ``normalise``-d image is 0 or 1."""
    if gray.size > 4 * _PROBE_PIXELS and valid is None:
        # Most images are plainly gray: a sparse probe says so for 1/16 of the cost. (It
        # only says no: a regular probe can miss gray rows that fall between its rows.)
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
