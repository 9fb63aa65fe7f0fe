"""How many :class:`~.estimate.Progress` steps :func:`~.estimate.iter_align` reports,
predicted from the shapes and options alone (for progress bars sized before the run)."""

from __future__ import annotations

import math

from .image_pair import auto_levels, fit_levels, halvings_for_budget
from .initialisation import SEARCHES
from .plane import PlaneGrid
from .volume import VolumeGrid, check_spacing, plan_levels


def expected_progress_steps(
    reference_shape, moving_shape, *, ndim=2, spacing=None, pyramid_levels=None, init="auto"
) -> int:
    """The number of ``Progress`` items ``iter_align`` yields for these shapes and options.

    Parameters
    ----------
    reference_shape, moving_shape : tuple of int
        The arrays' shapes; their first ``ndim`` axes are the spatial ones ((rows, cols),
        or (z, y, x) for volumes), a trailing channel axis is ignored.
    ndim : {2, 3}
        As for ``iter_align``.
    spacing : tuple of float, optional
        The voxel size (dz, dy, dx) of volumes; it decides where z is halved.
    pyramid_levels : int, optional
        As for ``iter_align`` (None: chosen from the size).
    init : str, array_like or None
        As for ``iter_align``: a search (``"auto"``, ``"phase"``, ...) starts the pyramid on
        the small level it searched on, anything else on the coarsest level.

    Returns
    -------
    int
        The count before the content is seen. The content can change it: masks that leave
        a coarse level nearly empty drop that level (so does a coarsest level too flat to fix
        a translation); the first ``Progress``' ``levels`` then says the count.
    """
    search = isinstance(init, str) and init in SEARCHES
    if ndim == 3:
        ref, mov = tuple(reference_shape[:3]), tuple(moving_shape[:3])
        factors = plan_levels(ref, mov, check_spacing(spacing), pyramid_levels)
        if not search:
            return len(factors)
        for level, factor in enumerate(factors):
            sides = [_level_side(n, f) for n, f in zip(ref + mov, factor * 2, strict=True)]
            if max(sides) <= VolumeGrid.search_side:
                return level + 1
        return len(factors)
    ref, mov = tuple(reference_shape[:2]), tuple(moving_shape[:2])
    halvings = halvings_for_budget(ref, mov)  # very large images are estimated halved
    ref, mov = [tuple(_level_side(n, 2**halvings) for n in s) for s in (ref, mov)]
    levels = fit_levels(pyramid_levels or auto_levels(ref, mov), ref, mov)
    if not search:
        return levels
    for level in range(levels):
        if max(_level_side(n, 2**level) for n in ref + mov) <= PlaneGrid.search_side:
            return level + 1
    return levels


def _level_side(n: int, factor: int) -> int:
    """A side of ``n`` after halving it ``log2(factor)`` times the way ``cv2.pyrDown``
    (and the volume pyramid's z step) does: ``ceil(n / 2)`` each time."""
    for _ in range(int(math.log2(factor))):
        n = (n + 1) // 2
    return n
