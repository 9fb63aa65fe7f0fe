"""Two volumes prepared for an estimate (:class:`VolumePair`): normalised, on the
anisotropic pyramid of :func:`~.volume.plan_levels`, within a memory budget.

A volume is large, so the estimate keeps as few full-resolution copies as it can:
the prefilter overwrites the full-resolution levels in place, the pyramids are freed
level by level on the last pass, and the reported correlations are measured on a
strided copy of the reference (taken before the prefilter) against a fresh copy of
the moving volume. A finishing run (a second opinion of ``init="auto"``) rebuilds
the pyramids it needs.

Matrices are 4×4: reference voxel (x, y, z, 1) → moving voxel (x, y, z).
"""

from __future__ import annotations

import math

from .alignment import AlignmentError
from .finishing import Pair
from .geometry import from_level, project_to_motion, to_level
from .image_pair import full_resolution_mask
from .options import check_volume_motion, initial_matrix, smoothing_schedule
from .volume import (
    VolumeGrid,
    check_spacing,
    correlation_grid,
    level_spacing,
    normalise_volume,
    plan_levels,
    volume_correlation,
    volume_pairs,
)
from .volume_blocks import VolumeReader, block_halo, choose_blocks, refine_volume
from .volume_reduce import finest, volume_input, working_copy, working_factors


class VolumePair(Pair):
    """A reference and a moving volume ``(z, y, x)`` with masks and a voxel spacing.

    Volumes beyond the working budget (numpy, dask, zarr or a pyramid) are estimated on
    a reduced working copy (:mod:`.volume_reduce`) and refined on full-resolution blocks
    (:mod:`.volume_blocks`); the attributes then describe the working copy.
    """

    releases_pyramids = True  # the pair's own; rebuilt for a finishing run

    def __init__(self, reference, moving, params, spacing, reference_mask=None, moving_mask=None):
        self.params, self.motion = params, params["motion"]
        check_volume_motion(self.motion)
        self.full_spacing = self.spacing = check_spacing(spacing)
        reference, moving = volume_input(reference, "reference"), volume_input(moving, "moving")
        self.reference_shape, self.moving_shape = tuple(reference.shape), tuple(moving.shape)
        self.factors = working_factors(reference, moving, self.spacing)
        self._inputs = {"reference": (finest(reference), reference_mask),
                        "moving": (finest(moving), moving_mask)}  # fmt: skip
        if self.factors is not None:
            self._reduce(reference, moving)
        ref, ref_valid = self._normalised("reference")
        self._moving = None  # a fresh normalised copy, for the correlations
        self._grid = correlation_grid(ref, ref_valid)  # before the prefilter overwrites ``ref``
        mov, mov_valid = self._normalised("moving")
        self.shape = ref.shape
        factors = plan_levels(ref.shape, mov.shape, self.spacing, params["pyramid_levels"])
        ksizes = smoothing_schedule(params["gauss_filter_size"])
        self.grid = VolumeGrid(ksizes, self.spacing, factors)
        if self.factors is not None:  # before the estimate blurs ``ref`` in place
            halo = block_halo(self.grid.finest_ksize, self.full_spacing)
            self.blocks = choose_blocks(ref, ref_valid, self.factors, self.originals[0], halo)
        self.ref_pyr = self.grid.pyramid(ref, ref_valid, len(factors))
        self.mov_pyr = self.grid.pyramid(mov, mov_valid, len(factors))
        del ref, mov
        self.levels = len(factors)
        if not params["pyramid_levels"]:  # automatic: drop coarsest levels flat for ECC
            self.levels = self.automatic_depth(self.levels)
            del factors[self.levels :], self.ref_pyr[self.levels :], self.mov_pyr[self.levels :]

    def _reduce(self, reference, moving):
        """Replace the inputs by their working copies (see :mod:`.volume_reduce`); keep
        readers of the originals for :meth:`refine`."""
        originals = []
        for name, volume in (("reference", reference), ("moving", moving)):
            array, mask = self._inputs[name]
            mask = full_resolution_mask(mask, array.shape, f"{name}_mask", "volume's")
            originals.append(VolumeReader(array, mask))
            self._inputs[name] = working_copy(volume, self.factors, mask)
        self.originals = tuple(originals)
        self.spacing = level_spacing(self.full_spacing, self.factors)

    def _normalised(self, name):
        """A fresh float32 working copy of the ``name`` input and its mask (see
        :func:`~.volume.normalise_volume`)."""
        volume, mask = self._inputs[name]
        return normalise_volume(volume, name, mask, f"{name}_mask")

    def given_start(self, init):
        matrix, how = initial_matrix(init, self.motion, ndim=3, spacing=self.full_spacing)
        if self.factors is not None and how in ("matrix", "landmarks"):  # full resolution
            matrix = initial_matrix(to_level(matrix, self.factors), self.motion, ndim=3,
                                    spacing=self.spacing)[0]  # fmt: skip
        return matrix, how

    def refine(self, matrix):
        """``(matrix, iterations)``: a reduced estimate's ``matrix`` (working voxels)
        refined at full resolution on blocks of the original volumes (see
        :mod:`.volume_blocks`); iterations None when nothing ran: the pair was not
        reduced, runs on mapped intensities, or ECC found no footing."""
        starts, size = self.blocks if self.factors is not None else ((), None)
        if not starts or self.mapping is not None:
            return matrix, None
        start = from_level(matrix, self.factors)
        try:
            refined, iterations = refine_volume(*self.originals, starts, size, start, self.motion,
                                                self.params, self.grid.finest_ksize,
                                                self.full_spacing)  # fmt: skip
        except AlignmentError:  # NoStructure included: keep the reduced estimate
            return matrix, None
        if iterations is None:
            return matrix, None
        return self.final(to_level(refined, self.factors)), iterations

    def final(self, matrix):
        return project_to_motion(matrix, self.motion, self.spacing)

    def release(self):
        # Blurred in place at full resolution (see VolumeGrid): nothing reads them again.
        for level in (*self.ref_pyr, *self.mov_pyr):
            if level is not None:
                level.memo.clear()
        self.ref_pyr = self.mov_pyr = None

    def _moving_copy(self):
        if self._moving is None:
            self._moving = self._normalised("moving")
        return self._moving

    def linear_correlation(self, matrix):
        grid, grid_valid, stride = self._grid
        return volume_correlation(grid, grid_valid, *self._moving_copy(), matrix, stride)

    def paired_values(self, matrix, limit):
        grid, grid_valid, stride = self._grid  # about 500 000 voxels: ``limit`` is met or near
        return volume_pairs(grid, grid_valid, *self._moving_copy(), matrix, stride)

    def pyramids_for_finishing(self):
        # Rare (a start the full resolution disagrees with): rebuilt rather than kept,
        # since keeping them would raise every estimate's memory peak.
        self._moving = None
        return tuple(self.grid.pyramid(*self._normalised(name), self.levels)
                     for name in ("reference", "moving"))  # fmt: skip

    def result(self, matrix, parameters):
        """The result's full-resolution matrix, shapes and levels; records the spacing
        (and for a reduced estimate its scale) in ``parameters``."""
        parameters["spacing"] = list(self.full_spacing)
        skipped = 0
        if self.factors is not None:
            matrix = project_to_motion(from_level(matrix, self.factors), self.motion,
                                       self.full_spacing)  # fmt: skip
            parameters["estimated_at_scale"] = [1 / f for f in self.factors]
            parameters["refined_at_full_resolution"] = self.refined
            skipped = int(math.log2(max(self.factors)))
        return matrix, self.reference_shape, self.moving_shape, skipped
