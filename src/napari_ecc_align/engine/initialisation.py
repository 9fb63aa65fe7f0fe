"""Global initialisation: a rough pose for ECC to refine.

ECC only refines; from the identity it fails beyond a few pixels or a degree or
two. Here candidate poses come from classic estimators, all run on a small pyramid
level; the :class:`~.grid.Grid` says which exist (volumes: phase correlation only):

* ``"phase"``: windowed phase correlation for translation, in 2D and 3D. The
  cross-power spectrum's strongest peaks are tried with every wrap-around reading.
* ``"fourier-mellin"``: phase correlation of the log-polar resampled magnitude
  spectra gives rotation and scale (:func:`log_polar`); both readings of the
  spectrum's 180° symmetry are tried, each followed by phase correlation for
  the translation. Skipped beyond an aspect ratio of 8:1 (said in ``init_method``).
* ``"features"``: ORB keypoints, ratio-tested matches and a RANSAC fit
  (``estimateAffinePartial2D``/``estimateAffine2D``/``findHomography``) for
  large rotations, perspective and low overlap.

The two spectral estimators live in :mod:`.spectral`, which bounds their memory.

Every candidate, the identity included, is refined briefly by ECC on the small
images and ranked by the correlation it reaches; the best one seeds the full
pyramid. Matrices follow the project convention: reference (x, y[, z], 1) → moving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .alignment import AlignmentError
from .ecc import run_levels
from .geometry import corner_displacement, from_level, grid_corners, to_level, turn_degrees
from .grid import Grid
from .levels import run_to_end
from .plane import PlaneGrid
from .spectral import NoEstimate, Skipped, fourier_mellin, phase_candidates
from .spectral import log_polar as log_polar  # re-exported: tests and notes name it here
from .structure import NoStructure, first_level_that_works, is_thin

# Features want more detail than the spectral methods (which work on the finest level at
# most PlaneGrid.search_side long).
_FEATURE_SIDE = 512
_ORB_FEATURES = 800
_RATIO = 0.8
SEARCHES = PlaneGrid.searches()
# Candidates per estimator that get an ECC refinement (ranked by raw correlation first).
_REFINE_PER_METHOD = 2
# ECC refines a pose; one that turned further than this (degrees) from its start found
# something else (a look-alike of the image turned over), not the pose it started near.
MAX_REFINE_TURN = 20.0
# ... unless it correlates this well.
SURE_CORRELATION = 0.98
# Iterations for refining a candidate on the small levels.
_REFINE_ITERATIONS = 10
# "auto" stops searching once a candidate refines to this correlation.
_GOOD_CORRELATION = 0.95
# Candidates refining to within this of the best correlation score the same: the one
# that moves the image least wins, if it moves the corners at least _FARTHER_PX less.
# Images to be aligned usually start close, and a far pose that correlates just as well
# is a repeat of the content (a staff spacing, a grating period), not the answer.
NEAR_EQUAL = 0.01
_FARTHER_PX = 1.0
# The identity is also refined from the small level itself when the coarse levels took
# it further than this (small-level pixels).
_DIRECT_REACH_PX = 2.0


@dataclass
class Candidate:
    """A rough pose and how well ECC could refine it."""

    method: str
    matrix: np.ndarray  # 3×3 (4×4), working-resolution pixel (voxel) coordinates
    correlation: float = float("nan")
    error: str = ""

    refined: np.ndarray | None = None
    path: str = ""  # how the identity was refined (it is refined two ways)
    skipped: str = ""  # why the estimator was not run (then ``error`` says it too)
    # The refinement failed for want of structure on its level (a finer one may do).
    structural: bool = False

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}" if self.path else self.method

    def finish(self, steps) -> None:
        """Run ``steps`` (a :func:`~.ecc.run_levels`-style generator) to its end and keep
        the pose and correlation it returns, or the first clause of its error."""
        try:
            self.refined, _, self.correlation = run_to_end(steps)
        except AlignmentError as exc:
            self.error = str(exc).split(";")[0]
            self.structural = isinstance(exc, NoStructure)

    def describe(self) -> str:
        how = f", {self.path}" if self.path else ""
        if self.skipped:
            return f"{self.method} (skipped: {self.skipped})"
        if self.error:
            return f"{self.method} (failed{how}: {self.error})"
        return f"{self.method} (correlation {self.correlation:.3f}{how})"


@dataclass
class Initialisation:
    """The pose the pyramid starts from, and on which level."""

    matrix: np.ndarray  # full resolution
    method: str
    level: int
    tried: list[Candidate] = field(default_factory=list)


def with_skipped(method: str, tried) -> str:
    """``init_method`` with the estimators of ``tried`` that were skipped and why, e.g.
    ``"identity (fourier-mellin skipped: aspect ratio 2000:1)"``."""
    notes = "; ".join(f"{c.method} skipped: {c.skipped}" for c in tried if c.skipped)
    if not notes:
        return method
    return f"{method[:-1]}; {notes})" if method.endswith(")") else f"{method} ({notes})"


def choose_initialisation(
    grid: Grid, ref_pyr, mov_pyr, levels, search, motion, params, mapping=None
) -> Initialisation:
    """Run the global estimators named by ``search`` on a small pyramid level, refine
    their candidates there and return the best (images and volumes alike).

    ``"auto"`` tries the identity, then the ``grid``'s estimators (phase correlation,
    and for images Fourier–Mellin and features), cheapest first, and stops as soon as
    a candidate refines to a correlation of at least 0.95: nothing else could do
    visibly better, and most pairs (a few pixels apart) need no more than the first step.
    ``mapping``: candidates are refined on intensity-mapped images (see
    :func:`~.ecc.run_levels`).
    """
    small = _level_at_most(ref_pyr, mov_pyr, levels, grid.search_side)
    if is_thin(ref_pyr[small].image, grid.margin):
        # A volume level of a few planes holds little of a tilt: search on the coarsest
        # finer level that has more, if any (a stack of a few planes has none).
        fuller = [k for k in range(small) if not is_thin(ref_pyr[k].image, grid.margin)]
        small = max(fuller, default=small)
    refine = {**params, "max_iterations": min(params["max_iterations"], _REFINE_ITERATIONS)}
    # A search level that cannot fix the motion moves to the next finer one (.structure).
    return first_level_that_works(
        lambda level: _search(
            grid, ref_pyr, mov_pyr, levels, search, motion, refine, mapping, level
        ),
        small,
    )


def _search(
    grid, ref_pyr, mov_pyr, levels, search, motion, refine, mapping, small
) -> Initialisation:
    """:func:`choose_initialisation` on pyramid level ``small``."""
    ref = ref_pyr[small].image
    identity = np.eye(grid.ndim + 1)
    auto = search == "auto"
    tried = []
    if auto:
        # The identity goes through the coarse levels too, as init="identity" would:
        # that deep pyramid alone captures shifts of ~10 % of the image. It also starts
        # on the small level itself: on repetitive content (a grating, staff lines) the
        # coarse levels can drift by a period that correlates as well as the true pose.
        deep = Candidate("identity", identity, path="via the coarse levels")
        direct = Candidate("identity", identity, path=f"from pyramid level {small}")
        _refine(grid, [deep], ref_pyr, mov_pyr, small, motion, refine, mapping, top=levels - 1)
        tried = [deep]
        # Only worth it when the coarse levels moved the image further than ECC on the
        # small level reaches by itself; closer in, both end in the same place.
        if levels - 1 > small and (
            deep.refined is None
            or corner_displacement(to_level(deep.refined, grid.factors(small)), ref.shape)
            > _DIRECT_REACH_PX
        ):
            _refine(grid, [direct], ref_pyr, mov_pyr, small, motion, refine, mapping)
            tried.append(direct)
    for method in grid.estimators if auto else (search,):
        if auto and _good_enough(tried):
            break
        try:
            found = _estimate(grid, method, ref_pyr, mov_pyr, levels, small, motion)
        except Skipped as exc:
            if not auto:
                raise AlignmentError(
                    f"init={method!r} cannot be used on these {grid.noun}s: {exc}; use "
                    + grid.other_starts
                ) from None
            tried.append(Candidate(method, identity, error=str(exc), skipped=exc.reason))
            continue
        except NoEstimate as exc:
            tried.append(Candidate(method, identity, error=str(exc)))
            continue
        found = [grid.project(m, motion, small) for m in found]
        found.sort(key=lambda m: -_score(grid, ref_pyr[small], mov_pyr[small], m))
        factors = grid.factors(small)
        new = [Candidate(method, from_level(m, factors)) for m in found[:_REFINE_PER_METHOD]]
        tried.extend(new)
        _mark_duplicates(tried, ref.shape, factors)
        _refine(grid, new, ref_pyr, mov_pyr, small, motion, refine, mapping)
    same = f"{grid.noun}s show the same {grid.scene}"
    chosen, method = choose_candidate(tried, ref_pyr[0].image.shape, same)
    return Initialisation(chosen.refined, method, small, tried)


def choose_candidate(tried, shape, same: str):
    """:func:`prefer_nearest_identity` over the candidates that refined, or an
    ``AlignmentError`` listing every one tried (``same``: what to check, in words)."""
    usable = [c for c in tried if not c.error and np.isfinite(c.correlation)]
    if not usable:
        # NoStructure: the search level may be what failed, and a finer one may do.
        error = NoStructure if any(c.structural for c in tried) else AlignmentError
        raise error(
            "no initialisation worked: tried "
            + ", ".join(c.describe() for c in tried)
            + f"; check that both {same}, or give an init matrix"
        )
    return prefer_nearest_identity(usable, shape)


def prefer_nearest_identity(cands, shape):
    """The best-correlating candidate, or among those within ``NEAR_EQUAL`` of it the one
    whose refined pose moves the reference's corners least; with what to report in
    ``init_method``. ``shape`` is the working-resolution reference's ``(rows, cols)``
    or ``(z, y, x)``."""
    best = max(cands, key=lambda c: c.correlation)
    near = [c for c in cands if c.correlation >= best.correlation - NEAR_EQUAL]
    nearest = min(near, key=lambda c: corner_displacement(c.refined, shape))
    if corner_displacement(nearest.refined, shape) > (
        corner_displacement(best.refined, shape) - _FARTHER_PX
    ):
        return best, best.method
    return nearest, nearest_note(nearest.method, best.label, best.correlation - nearest.correlation)


def nearest_note(method: str, other: str, gap: float) -> str:
    """``init_method`` for a start kept over a farther one that correlated ``gap`` higher."""
    return f"{method} (nearest the identity; {other} correlated {gap:.3f} higher)"


def _estimate(grid, method, ref_pyr, mov_pyr, levels, small, motion) -> list[np.ndarray]:
    """Candidate matrices on level ``small`` from one estimator."""
    if method == "phase":
        return phase_candidates(ref_pyr[small].image, mov_pyr[small].image, grid.phase_peaks)
    if method == "fourier-mellin":
        return fourier_mellin(ref_pyr[small].image, mov_pyr[small].image)
    level = _level_at_most(ref_pyr, mov_pyr, levels, _FEATURE_SIDE)
    matrix = features(ref_pyr[level].image, mov_pyr[level].image, motion)
    return [to_level(matrix, small - level)]


def _refine(grid, cands, ref_pyr, mov_pyr, small, motion, params, mapping, top=None) -> None:
    """A short ECC run from each candidate, from level ``top`` (default: ``small``) down to
    ``small`` (on intensity-mapped images with a ``mapping``); records the correlation
    reached."""
    top = small if top is None else top
    for cand in cands:
        if cand.error:
            continue
        staged = top > small
        steps = run_levels(grid, ref_pyr, mov_pyr, cand.matrix, motion, params, top, small, staged,
                           mapping=mapping)  # fmt: skip
        cand.finish(steps)


def _good_enough(cands) -> bool:
    """Whether a refined candidate correlates so well that nothing else is worth trying.
    One that ECC turned further than ``MAX_REFINE_TURN`` from its start must correlate
    ``SURE_CORRELATION``: it may have found a look-alike, not a refinement (a brain slice
    turned by 180° correlated 0.96 with itself on the search level, 0.90 at full
    resolution; turned by 70° it refined to 1.000 there)."""
    return any(
        not c.error
        and c.correlation >= _GOOD_CORRELATION
        and (
            c.correlation >= SURE_CORRELATION
            or turn_degrees(c.refined, c.matrix) <= MAX_REFINE_TURN
        )
        for c in cands
    )


def _mark_duplicates(cands, shape, factors) -> None:
    """Candidates within a pixel of an earlier one (on the small level) need no
    refinement of their own: ECC would end in the same place. The identity is no
    twin: it was refined through the coarse levels, a different path that can end
    elsewhere (on repetitive pages, one staff spacing off)."""
    corners = grid_corners(shape)
    kept = []
    for cand in cands:
        if cand.error or cand.method == "identity":
            continue
        small = to_level(cand.matrix, factors) @ corners
        small = small[:-1] / small[-1]
        twin = next((k for k, pts in kept if np.abs(pts - small).max() < 1.0), None)
        if twin is None:
            kept.append((cand, small))
        else:
            cand.error = f"same pose as {twin.method}"


def _level_at_most(ref_pyr, mov_pyr, levels, side) -> int:
    """The finest pyramid level whose images are at most ``side`` pixels long."""
    for k in range(levels):
        if max(*ref_pyr[k].image.shape, *mov_pyr[k].image.shape) <= side:
            return k
    return levels - 1


def _score(grid, ref, mov, matrix) -> float:
    value = grid.score(ref, mov, matrix)
    return value if np.isfinite(value) else -1.0


# ------------------------------------------------------------------------------------ features
def features(ref, mov, motion: str) -> np.ndarray:
    """ORB keypoints, ratio-tested matches and a RANSAC fit of ``motion``."""
    orb = cv2.ORB_create(nfeatures=_ORB_FEATURES, fastThreshold=5)
    kp_ref, des_ref = orb.detectAndCompute(_to_u8(ref), None)
    kp_mov, des_mov = orb.detectAndCompute(_to_u8(mov), None)
    if des_ref is None or des_mov is None or len(kp_ref) < 8 or len(kp_mov) < 8:
        raise NoEstimate("too few keypoints")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_ref, des_mov, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
    if len(good) < 8:
        raise NoEstimate(f"{len(good)} distinctive matches")
    src = np.float32([kp_ref[m.queryIdx].pt for m in good])
    dst = np.float32([kp_mov[m.trainIdx].pt for m in good])
    if motion == "homography":
        matrix, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    else:
        fit = cv2.estimateAffine2D if motion == "affine" else cv2.estimateAffinePartial2D
        matrix, inliers = fit(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if matrix is not None:
            matrix = np.vstack([matrix, [0, 0, 1]])
    if matrix is None or inliers is None or int(inliers.sum()) < 6:
        raise NoEstimate("no consistent set of matches")
    return np.asarray(matrix, np.float64)


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
