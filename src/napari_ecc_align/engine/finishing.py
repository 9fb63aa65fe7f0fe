"""Second opinions for ``init="auto"`` (other starts finished at full resolution), and
the checks every estimate's final correlation passes (:func:`check_outcome`).

The automatic initialisation ranks its candidate starts on a small pyramid level.
That ranking is usually right, but not always: a start can look best there and end
worse than no alignment at full resolution (then the runner-ups are finished and the
best full-resolution correlation wins), or a far pose can correlate about as well as
the identity's on repetitive content (then the identity is finished too and, if it
ends within ``NEAR_EQUAL`` of the chosen correlation, kept, since images to be
aligned usually start close).
"""

from __future__ import annotations

import abc

import numpy as np

from .alignment import AlignmentError
from .ecc import run_levels
from .geometry import corner_displacement
from .grid import Grid
from .initialisation import NEAR_EQUAL, nearest_note
from .intensity import RELATION_SAMPLES, Mapping, measure
from .levels import run_to_end
from .structure import content_depth, fixes

# Below this final correlation the "alignment" fits noise: unrelated blurred-noise
# images reach 0.15-0.23 with an affine model by distorting one of them.
MIN_CORRELATION = 0.25
# Runner-up starts finished at full resolution when the chosen one ends badly.
_RUNNERS_UP = 3
# An identity start is finished as well when it refined this close to the chosen
# start's correlation on the small level, to a pose moving the image _APART_PX less.
_AMBIGUOUS = 0.05
_APART_PX = 1.0


class Pair(abc.ABC):
    """Two images (or volumes) prepared for one estimate: what the driver
    (:func:`~.estimate.iter_align`) and the finishing rules need of them.

    :class:`~.image_pair.ImagePair` and :class:`~.volume_pair.VolumePair` implement
    it; the attributes are set by their constructors.

    Attributes
    ----------
    grid : Grid
        The :class:`~.grid.Grid` of this dimensionality and prefilter.
    ref_pyr, mov_pyr : list of Level
        The pyramids the estimate runs on (``levels`` long).
    levels : int
        Pyramid levels in use.
    shape : tuple of int
        The working-resolution reference's shape (corner measures are taken on it).
    motion : str
    params : dict
        The checked options (:func:`~.options.validate_params`).
    releases_pyramids : bool
        Whether a pass may free pyramid levels it is done with (see
        :meth:`~.grid.Grid.level_done`): only pyramids the pair alone holds, never a
        :class:`~.template.Template`'s, which a whole stack shares.
    """

    grid: Grid
    ref_pyr: list
    mov_pyr: list
    levels: int
    shape: tuple
    motion: str
    params: dict
    releases_pyramids: bool = False
    # How intensities are mapped on every level (see :mod:`.intensity`), None for plain
    # ECC; decided before and after the start search.
    mapping: Mapping | None = None
    # ``"reference"`` or ``"moving"`` when exactly that image is binarised (see :mod:`.bilevel`).
    bilevel: str | None = None
    # Whether the result was refined beyond the pyramid run (see :meth:`refine`).
    refined: bool = False

    @abc.abstractmethod
    def given_start(self, init) -> tuple[np.ndarray, str]:
        """``(matrix, how)`` for an ``init`` that is no search (raises for a bad one)."""

    @abc.abstractmethod
    def final(self, matrix) -> np.ndarray:
        """A matrix ECC returned, made exact for the motion (normalised, projected)."""

    def refine(self, matrix) -> tuple[np.ndarray, int | None]:
        """``(matrix, iterations)`` after any last level the pyramid run does not cover
        (images estimated on a halved copy); default: nothing more (iterations None)."""
        return matrix, None

    @abc.abstractmethod
    def linear_correlation(self, matrix) -> float:
        """The correlation at working resolution at ``matrix``; NaN without overlap."""

    @abc.abstractmethod
    def paired_values(self, matrix, limit: int):
        """``(reference values, moving values)`` of a regular subsample of about
        ``limit`` working-resolution pixels (voxels) of the overlap at ``matrix``."""

    def correlation(self, matrix) -> float:
        """What ECC maximised, at working resolution at ``matrix`` (NaN without
        overlap): the correlation, or with mapped intensities the correlation with the
        mapped image (the correlation ratio, see :mod:`.intensity`)."""
        if self.mapping is None:
            return self.linear_correlation(matrix)
        relation = measure(*self.paired_values(matrix, RELATION_SAMPLES), self.mapping.side)
        return float("nan") if relation is None else relation.correlation

    @abc.abstractmethod
    def pyramids_for_finishing(self) -> tuple[list, list]:
        """Pyramids a finishing run may use from any level down to 0."""

    @abc.abstractmethod
    def result(self, matrix, parameters: dict) -> tuple:
        """``(matrix, reference_shape, moving_shape, halvings)`` of the result from the
        working-resolution ``matrix``; records what only this kind of pair has in
        ``parameters`` (changed in place)."""

    def automatic_depth(self, levels: int) -> int:
        """``levels`` without the coarsest ones on which the reference cannot fix even a
        translation (:func:`~.structure.content_depth`)."""
        return content_depth(levels, lambda k: fixes(lambda: self.grid.probe(self.ref_pyr[k], k)))

    def release(self) -> None:
        """The pyramid run is over: free what only it needed. Default: keep it all."""
        return None

    def finish(self, cand, level: int, pyramids=None):
        """``cand``'s refined pose taken from ``level`` to full resolution, as
        ``(matrix, method, iterations, correlation)``; None when ECC fails on the way.
        ``pyramids``: from :meth:`pyramids_for_finishing`, if the caller has them."""
        ref_pyr, mov_pyr = pyramids or self.pyramids_for_finishing()
        steps = run_levels(self.grid, ref_pyr, mov_pyr, cand.refined, self.motion, self.params,
                           level, 0, False, self.releases_pyramids, self.mapping)  # fmt: skip
        try:
            matrix, iterations, _ = run_to_end(steps)
        except AlignmentError:
            return None
        matrix = self.final(matrix)
        value = self.correlation(matrix)
        return (matrix, cand.method, iterations, value) if np.isfinite(value) else None


def finish_runner_ups(pair: Pair, found, best):
    """Finish the other refined candidates of ``found`` (an ``Initialisation``) and return
    the best of them and ``best``, each ``(matrix, method, iterations, correlation)``."""
    others = sorted(
        (
            c
            for c in found.tried
            if not c.error and c.refined is not None and c.refined is not found.matrix
        ),
        key=lambda c: -c.correlation,
    )
    for cand in others[:_RUNNERS_UP]:
        finished = pair.finish(cand, found.level)
        if finished is not None and finished[3] > best[3]:
            best = finished
    return best


def nearer_identity(pair: Pair, found, best):
    """``best``, or an identity start's finish when that moves the image over a pixel
    less than ``best`` with a correlation within ``NEAR_EQUAL`` of it (said in the
    method). ``best`` is ``(matrix, method, iterations, correlation)``."""
    chosen = next((c for c in found.tried if c.refined is found.matrix), None)
    if chosen is None:
        return best
    shape = pair.shape
    reach = corner_displacement(best[0], shape)
    for identity in found.tried:
        if (
            identity.method != "identity"
            or identity is chosen
            or identity.error
            or identity.refined is None
            or identity.correlation < chosen.correlation - _AMBIGUOUS
            or corner_displacement(identity.refined, shape) >= reach - _APART_PX
        ):
            continue
        finished = pair.finish(identity, found.level)
        if finished is None or finished[3] < best[3] - NEAR_EQUAL:
            continue
        if corner_displacement(finished[0], shape) >= reach - _APART_PX:
            continue  # it ended as far out as the chosen start
        gap = best[3] - finished[3]
        if gap <= 0:
            return finished  # simply the better finish
        return (finished[0], nearest_note("identity", best[1], gap), *finished[2:])
    return best


def check_outcome(corr_before, corr_after, *, images="images", scene="scene", tried=""):
    """Raise the ``AlignmentError`` that says what to try when the final correlation
    shows no overlap, no relation, or a match worse than the start (2D and volumes)."""
    if not np.isfinite(corr_after):
        raise AlignmentError(
            f"after alignment the {images} no longer overlap; try motion='euclidean' or "
            "'translation', fewer pyramid_levels, or an init matrix close to the answer"
        )
    if corr_after < MIN_CORRELATION:
        raise AlignmentError(
            f"the {images} look unrelated: their correlation is {corr_after:.3f} even after "
            f"alignment; check that both show the same {scene}, then try an init matrix close "
            "to the answer, a mask around the common content, more pyramid_levels, or for two "
            "modalities intensity='mapped'"
            + (f" (initialisations tried: {tried})" if tried else "")
        )
    if np.isfinite(corr_before) and corr_after < corr_before - 0.05:
        raise AlignmentError(
            f"ECC made the match worse (correlation {corr_before:.3f} -> {corr_after:.3f}): "
            f"the {images} may be too far apart or unrelated; try an init matrix, a mask "
            "around the common content, or a simpler motion model"
        )


def normalise_matrix(matrix, motion) -> np.ndarray:
    """``matrix`` scaled to ``[2, 2] == 1``, its last row exactly ``[0, 0, 1]`` unless
    ``motion`` is a homography."""
    matrix = matrix / matrix[2, 2]
    if motion != "homography":
        matrix = matrix.copy()
        matrix[2] = [0.0, 0.0, 1.0]
    return matrix


# How far a result may scale the grid's area (volume) before it counts as degenerate.
_MAX_SCALE = {2: 1e4, 3: 1e3}


def check_plausible(matrix) -> None:
    """Refuse a result that collapsed or exploded the grid: the last check of an estimate.

    Parameters
    ----------
    matrix : numpy.ndarray
        A 3×3 (image) or 4×4 (volume) reference → moving matrix.

    Raises
    ------
    AlignmentError
        When the matrix is not finite, or scales the area (volume) by less than
        1e-4 (1e-3) or more than 1e4 (1e3); the message says what to try.
    """
    ndim = matrix.shape[0] - 1
    limit = _MAX_SCALE[ndim]
    scale = float(np.linalg.det(matrix[:ndim, :ndim])) if np.all(np.isfinite(matrix)) else np.nan
    if not 1 / limit < scale < limit:
        what = "volume" if ndim == 3 else "area"
        raise AlignmentError(
            f"ECC converged to a degenerate transform ({what} scale {scale:.3g}); try a "
            "simpler motion model (euclidean or translation), an init matrix, or a mask"
        )
