"""Two 2D images prepared for an estimate (:class:`ImagePair`): the working resolution,
the pyramids and their depth, and what only images have (bilevel pairs).

Images too large for float32 work within the memory budget are estimated on a reduced
copy (halved in their own dtype); the matrix is scaled back exactly. A
:class:`~.template.Template` reference brings its own pyramid.
"""

from __future__ import annotations

import math

from .alignment import AlignmentError
from .bilevel import bilevel_side, is_inverted, turned_over
from .finishing import Pair, normalise_matrix
from .full_resolution import TILE, Plane, choose_tiles, refine_at_full_resolution, tile_energy
from .geometry import from_level, to_level
from .grid import Level
from .lazy import is_lazy
from .options import initial_matrix, smoothing_schedule
from .plane import CorrelationSample, PlaneGrid, full_correlation, usable_pixels
from .preprocess import as_array, normalise, shrink, split_channels
from .reference_side import check_thick_enough
from .template import Template

# The coarsest automatic level keeps at least this many pixels on its shorter side:
# small enough that a shift of 10 % of the image is about a pixel there.
_COARSEST_MIN_SIDE = 12
_MAX_AUTO_LEVELS = 8
# A coarsest level with fewer usable pixels than this is dropped.
_MIN_COARSE_PIXELS = 32
# The full-resolution level of a bilevel pair picks this many strongest-gradient pixels
# of its own (other levels: 30 000, seeded from the coarser level). On the 3400 x 2400
# seed page: 0.026 px with the seeded 30 000, 0.007 px with these, for 0.09 s more.
BILEVEL_FINEST_SAMPLES = 100_000
# Larger images are estimated on a copy halved (in their own dtype) until they fit.
_MAX_WORK_PIXELS = 40_000_000


class ImagePair(Pair):
    """A reference (array or :class:`~.template.Template`) and a moving image, with
    masks, at working resolution, and their ``cv2.pyrDown`` pyramids."""

    def __init__(self, reference, moving, params, reference_mask=None, moving_mask=None):
        self.params, self.motion = params, params["motion"]
        ksizes = smoothing_schedule(params["gauss_filter_size"])
        self.grid = PlaneGrid(ksizes)
        ksize = max(ksizes)
        if isinstance(reference, Template):
            if reference_mask is not None:
                raise ValueError(
                    "reference_mask cannot be given with a Template reference: pass the mask "
                    "to Template(reference, mask=...) instead"
                )
            prepared = reference
        else:
            prepared = Template(reference, reference_mask)
        moving = as_array(moving, "moving", lazy=True)  # dask, zarr: loaded only if it fits
        self.reference_shape = prepared.shape
        self.moving_shape, _ = split_channels(moving, "moving")
        self.halvings = halvings = halvings_for_budget(self.reference_shape, self.moving_shape)
        self.originals = None  # full-resolution planes, for a halved estimate's last level
        if halvings:
            ref_mask = full_resolution_mask(prepared.mask, prepared.shape, "reference_mask")
            mov_mask = full_resolution_mask(moving_mask, self.moving_shape, "moving_mask")
            self.originals = (Plane(prepared.array, ref_mask), Plane(moving, mov_mask))
            moving, moving_mask = shrink(moving, moving_mask, halvings)
        elif is_lazy(moving):
            moving = as_array(moving, "moving")
        self.ref, self.ref_valid = prepared.normalised(halvings)
        self.mov, self.mov_valid = normalise(moving, "moving", moving_mask, "moving_mask")
        self.shape = self.ref.shape
        for name, shape in (("reference", self.ref.shape), ("moving", self.mov.shape)):
            check_thick_enough(name, shape, ksize)
        levels = params["pyramid_levels"] or auto_levels(self.ref.shape, self.mov.shape)
        levels = fit_levels(levels, self.ref.shape, self.mov.shape)
        self.ref_pyr = prepared.pyramid(halvings, levels)
        self.mov_pyr = self.grid.pyramid(self.mov, self.mov_valid, levels)
        # One image binarised, the other not: its intensities are mapped (see .intensity),
        # and a mask of the dark class is turned over first (the search climbs to positive
        # correlation).
        self.bilevel = bilevel_side(self.ref, self.ref_valid, self.mov, self.mov_valid)
        self.inverted = self.bilevel is not None and is_inverted(self.ref_pyr, self.mov_pyr)
        if self.bilevel is not None and params["intensity"] != "linear":
            # Its edges are all a binarised image has, and pixel-quantised: the precision
            # takes many of them (see BILEVEL_FINEST_SAMPLES).
            self.grid.finest_samples = BILEVEL_FINEST_SAMPLES
        if self.inverted and self.bilevel == "reference":
            self.ref_pyr = turned_over(self.ref_pyr)
            self.ref = self.ref_pyr[0].image
        elif self.inverted:
            self.mov_pyr = turned_over(self.mov_pyr)
            self.mov = self.mov_pyr[0].image
        self.levels = self._depth(levels)
        # The pixels the reported correlations read (None: all of them).
        if self.ref is prepared.normalised(halvings)[0]:  # not turned over: the template's
            self.correlation_sample = prepared.correlation_sample(halvings, self.mov.shape)
        else:
            self.correlation_sample = CorrelationSample.of(self.ref, self.ref_valid, self.mov.shape)

    def _depth(self, levels: int) -> int:
        """``levels`` without coarsest levels that masks and NaN holes left with too
        little to fit, or (automatic depth) whose content cannot fix a translation."""
        margin, ref_pyr, mov_pyr = self.grid.margin, self.ref_pyr, self.mov_pyr
        while levels > 1 and min(
            usable_pixels(ref_pyr[levels - 1], margin), usable_pixels(mov_pyr[levels - 1], margin)
        ) < _MIN_COARSE_PIXELS:  # fmt: skip
            levels -= 1
        if not self.params["pyramid_levels"]:
            levels = self.automatic_depth(levels)
        return levels

    def given_start(self, init):
        matrix, how = initial_matrix(init, self.motion)
        if self.halvings and how in ("matrix", "landmarks"):  # given at full resolution
            matrix = initial_matrix(to_level(matrix, self.halvings), self.motion)[0]
        return matrix, how

    def final(self, matrix):
        return normalise_matrix(matrix, self.motion)

    def refine(self, matrix):
        """``(matrix, iterations)``: a halved estimate's ``matrix`` (working resolution)
        refined at full resolution on tiles of the original images (see
        :mod:`.full_resolution`); iterations None when nothing ran: the pair was not
        halved, runs on mapped or turned-over intensities, or ECC found no footing."""
        if not self.halvings or self.mapping is not None or self.inverted:
            return matrix, None
        ref, mov = self.originals
        rows, cols = ref.shape
        if rows < TILE or cols < TILE:
            return matrix, None
        # The tiles' gradient is measured where a tile is about 8 pixels across.
        level = max(0, min(len(self.ref_pyr) - 1, int(math.log2(TILE / 8)) - self.halvings))
        scale = 2 ** (self.halvings + level)
        energy, share = tile_energy(self.ref_pyr[level].image, self.ref_pyr[level].valid, scale,
                                    ref.shape)  # fmt: skip
        tiles = choose_tiles(energy, share)
        if not tiles:
            return matrix, None
        start = from_level(matrix, self.halvings)
        try:
            refined, iterations = refine_at_full_resolution(
                ref, mov, tiles, start, self.motion, self.params, self.grid.finest_ksize
            )
        except AlignmentError:  # NoStructure included: keep the halved estimate
            return matrix, None
        if iterations is None:
            return matrix, None
        return self.final(to_level(refined, self.halvings)), iterations

    def linear_correlation(self, matrix):
        sample = self.correlation_sample
        if sample is None:
            return full_correlation(self.ref, self.ref_valid, self.mov, self.mov_valid, matrix)
        return sample.correlation(self.mov, self.mov_valid, matrix, self.mov.shape == self.shape)

    def paired_values(self, matrix, limit):
        ref, mov = Level(self.ref, self.ref_valid), Level(self.mov, self.mov_valid)
        return self.grid.paired_values(ref, mov, matrix, limit)

    def pyramids_for_finishing(self):
        return self.ref_pyr, self.mov_pyr

    def result(self, matrix, parameters):
        """The result's full-resolution matrix, shapes and levels, with what only images
        record in ``parameters`` (changed in place)."""
        if self.bilevel is not None:
            parameters["bilevel"], parameters["bilevel_inverted"] = self.bilevel, self.inverted
        if self.halvings:
            matrix = from_level(matrix, self.halvings)
            parameters["estimated_at_scale"] = 0.5**self.halvings  # correlations are from there
            parameters["refined_at_full_resolution"] = self.refined
        return matrix, self.reference_shape, self.moving_shape, self.halvings


def full_resolution_mask(mask, shape, name: str, what: str = "image's spatial"):
    """A full-resolution mask for the tiles and blocks: its shape checked against the
    ``what`` shape, the array kept as given (numpy or lazy; read tile by tile or block by
    block: no full-size bool copy)."""
    if mask is None:
        return None
    if not is_lazy(mask):
        mask = as_array(mask, name)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have the {what} shape {tuple(shape)}, got {mask.shape}")
    return mask


# ------------------------------------------------------------------------------ pyramid depth
def halvings_for_budget(ref_shape, mov_shape) -> int:
    """How often to halve both images so each has at most ``_MAX_WORK_PIXELS`` pixels.

    The engine keeps about eight float32 copies of each image (normalised, blurred,
    gradients, pyramid); 40 MP per image keeps that near 1.5 GB in all.
    """
    pixels = max(ref_shape[0] * ref_shape[1], mov_shape[0] * mov_shape[1])
    halvings = 0
    while pixels > _MAX_WORK_PIXELS:
        pixels /= 4
        halvings += 1
    return halvings


def auto_levels(ref_shape, mov_shape) -> int:
    """Pyramid depth keeping the coarsest level at least 12 px on its shorter side."""
    side = min(min(ref_shape), min(mov_shape))
    if side < 2 * _COARSEST_MIN_SIDE:
        return 1
    return min(_MAX_AUTO_LEVELS, int(math.log2(side / _COARSEST_MIN_SIDE)) + 1)


def fit_levels(levels: int, ref_shape, mov_shape) -> int:
    """Reduce ``levels`` so no level is smaller than 8 px on a side."""
    side = min(min(ref_shape), min(mov_shape))
    while levels > 1 and side / 2 ** (levels - 1) < 8:
        levels -= 1
    return levels
