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

from .finishing import Pair
from .geometry import project_to_motion
from .options import check_volume_motion, initial_matrix, smoothing_schedule
from .volume import (
    VolumeGrid,
    check_spacing,
    correlation_grid,
    normalise_volume,
    plan_levels,
    volume_correlation,
    volume_pairs,
)


class VolumePair(Pair):
    """A reference and a moving volume ``(z, y, x)`` with masks and a voxel spacing."""

    releases_pyramids = True  # the pair's own; rebuilt for a finishing run

    def __init__(self, reference, moving, params, spacing, reference_mask=None, moving_mask=None):
        self.params, self.motion = params, params["motion"]
        check_volume_motion(self.motion)
        self.spacing = check_spacing(spacing)
        self._inputs = {"reference": (reference, reference_mask), "moving": (moving, moving_mask)}
        ref, ref_valid = self._normalised("reference")
        self._moving = None  # a fresh normalised copy, for the correlations
        self._grid = correlation_grid(ref, ref_valid)  # before the prefilter overwrites ``ref``
        mov, mov_valid = self._normalised("moving")
        self.shape, self.moving_shape = ref.shape, mov.shape
        factors = plan_levels(ref.shape, mov.shape, self.spacing, params["pyramid_levels"])
        self.grid = VolumeGrid(smoothing_schedule(params["gauss_filter_size"]), self.spacing,
                               factors)  # fmt: skip
        self.ref_pyr = self.grid.pyramid(ref, ref_valid, len(factors))
        self.mov_pyr = self.grid.pyramid(mov, mov_valid, len(factors))
        del ref, mov
        self.levels = len(factors)
        if not params["pyramid_levels"]:  # automatic: drop coarsest levels flat for ECC
            self.levels = self.automatic_depth(self.levels)
            del factors[self.levels :], self.ref_pyr[self.levels :], self.mov_pyr[self.levels :]

    def _normalised(self, name):
        """A fresh float32 working copy of the ``name`` input and its mask (see
        :func:`~.volume.normalise_volume`)."""
        volume, mask = self._inputs[name]
        return normalise_volume(volume, name, mask, f"{name}_mask")

    def given_start(self, init):
        return initial_matrix(init, self.motion, ndim=3, spacing=self.spacing)

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
        """The result's matrix, shapes and levels; records the spacing in ``parameters``."""
        parameters["spacing"] = list(self.spacing)
        return matrix, self.shape, self.moving_shape, 0
