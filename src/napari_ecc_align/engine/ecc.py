"""Inverse-compositional ECC for images and volumes: one pyramid level, its
iterations, and the coarse-to-fine loop.

On each level the Jacobian of the *reference* is computed once (Evangelidis &
Psarakis, TPAMI 2008, section 3.2; see :mod:`.reference_side`), so each iteration only
resamples the moving image at the sample points and solves a p×p system. Every
accepted step raises the correlation (a step that does not is halved). What differs
between images and volumes comes through a :class:`~.grid.Grid`.

Matrices follow ``cv2.findTransformECC``: reference (x, y[, z], 1) → moving.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Generator

import cv2
import numpy as np

from .alignment import AlignmentError
from .geometry import from_level, grid_corners, max_corner_shift, to_level
from .grid import Grid, Level
from .intensity import (
    MIN_SAMPLES,
    Mapping,
    conditional_mean,
    map_values,
    mapped_levels,
    measure_at,
)
from .levels import STEP_TOLERANCE, coarse_to_fine
from .structure import NoStructure, is_thin

# Levels with at most this many samples (128x128 px) run one thread at a time (see
# ecc_level): they barely gain from a second thread and lose a lot to GIL ping-pong.
_SERIAL_SAMPLES = 20_000
_SMALL_LEVEL_LOCK = threading.Lock()
# Halvings of an ECC step that lowers the correlation before the level gives up.
_MAX_HALVINGS = 6


def run_levels(
    grid: Grid, ref_pyr, mov_pyr, matrix, motion, params, top: int, bottom: int = 0,
    staged: bool = True, release: bool = False, mapping: Mapping | None = None,
) -> Generator[tuple[int, int, float], None, tuple[np.ndarray, list[int], float]]:  # fmt: skip
    """ECC from level ``top`` down to ``bottom``, starting at full-resolution ``matrix``.

    Yields ``(level, iterations, correlation)`` after each level and returns the
    full-resolution matrix, the iterations per level and the last correlation.
    With ``staged``, the top level fits translation, then euclidean, then the
    full model (see :func:`~.levels.coarse_to_fine`). ``release``: the estimate's
    last pass over these pyramids (see :meth:`~.grid.Grid.level_done`).
    ``mapping``: map one image's intensities onto the other's on each level, measured
    where the level starts and, on ``bottom``, once more where it ended (see
    :mod:`.intensity`).
    """
    # Each level starts its sampling from the points the coarser level chose.
    seeds = {"previous": None, "chosen": None}
    mapped = {}
    on_levels = mapping is not None and not mapping.after_blur

    def levels_at(level, matrix, again=False):
        if not on_levels:
            return ref_pyr[level], mov_pyr[level]
        if again or level not in mapped:
            ref, mov = ref_pyr[level], mov_pyr[level]
            relation = measure_at(grid, ref, mov, matrix, mapping.side)
            if relation is not None:
                mapped.pop(level, None)  # one mapped copy at a time
                mapped[level] = mapped_levels(relation, ref, mov)
            elif level not in mapped:
                mapped[level] = (ref, mov)
        return mapped[level]

    def fit(level, matrix, stage, budget, tolerance):
        criteria = {**params, "max_iterations": budget}
        # The table measured where the level started is blurred by the pose error left
        # then; measured again at the pose found, the last run ends sharper (on ITK's
        # T1/PD pair a third measurement moved no corner by 0.001 px). Not where the
        # grid blurred the plain full-resolution volumes in place: nothing unblurred is
        # left to measure on.
        last = mapping is not None and level == bottom and stage == motion
        on_samples = mapping is not None and not on_levels
        matrix, used, correlation, chosen = ecc_level(
            grid, *levels_at(level, matrix), matrix, stage, criteria, level, seeds["previous"],
            tolerance, on_samples, remeasure=last and on_samples,
        )  # fmt: skip
        if last and on_levels and not (level == 0 and grid.blurs_level0_in_place) and budget > used:
            matrix, more, correlation, chosen = ecc_level(
                grid, *levels_at(level, matrix, again=True), matrix, stage,
                {**params, "max_iterations": budget - used}, level, seeds["previous"], tolerance,
            )  # fmt: skip
            used += more
        seeds["chosen"] = chosen
        return matrix, used, correlation

    def level_done(level):
        seeds["previous"], seeds["chosen"] = seeds["chosen"], None
        mapped.pop(level, None)
        if level > bottom:
            grid.level_done(ref_pyr, mov_pyr, level, release)

    def descend(matrix, level):  # S·W·S⁻¹ from one level to the next finer one
        return to_level(from_level(matrix, grid.factors(level + 1)), grid.factors(level))

    steps = coarse_to_fine(
        fit, descend, to_level(matrix, grid.factors(top)), motion, params["max_iterations"],
        top, bottom, staged, level_done,
    )  # fmt: skip
    matrix, iterations, correlation = yield from steps
    return from_level(matrix, grid.factors(bottom)), iterations, correlation


def ecc_level(
    grid: Grid, ref: Level, mov: Level, matrix, motion, params, level, seeds=None,
    tolerance=STEP_TOLERANCE, on_samples: bool = False, remeasure: bool = False,
):  # fmt: skip
    """Run ECC on one pyramid level from ``matrix`` (in the level's coordinates).

    ``seeds`` are the sample points chosen on the next coarser level (see
    :meth:`~.grid.Grid.samples`). ``on_samples``: the prefiltered moving samples go
    through ``E[reference | moving]``, measured at ``matrix`` (with ``remeasure`` once
    more where ECC ended, then ECC again; see :class:`~.intensity.Mapping`). Returns
    the refined matrix, the iterations run, the final correlation on the samples, and
    this level's sample points (to seed the next finer level, or None).
    """
    problem, selected = grid.samples(ref, motion, level, seeds)
    mov_img, mov_ok = grid.moving(mov, level)
    margin = grid.margin
    # The Jacobian is in normalised coordinates (see the grid); updates map back by N⁻¹·ΔW·N.
    norm, norm_inv = grid.normaliser(ref.image.shape, level)
    corners = grid_corners(ref.image.shape)
    min_overlap = max(4 * problem.n_params, problem.n // 20)
    table = None  # what the moving samples go through (see measure_table)

    def measure_table(at):
        """``E[reference | moving]`` over the prefiltered samples at ``at``."""
        warped, inside, usable = problem.sample_moving(mov_img, mov_ok, at, margin)
        if usable < max(min_overlap, MIN_SAMPLES):
            return None
        ok = inside.view(bool)
        return conditional_mean(warped[ok], problem.template[ok])[0]

    def evaluate(candidate):
        """Correlation at ``candidate`` and the ECC update from there (None: no overlap)."""
        warped, inside, usable = problem.sample_moving(mov_img, mov_ok, candidate, margin)
        if usable < min_overlap:
            return None
        if table is not None:
            warped = map_values(warped, table)
        return problem.update(warped, inside, usable)

    def make_step(delta):
        step = norm_inv @ grid.delta_matrix(motion, delta) @ norm
        invertible, step_inv = cv2.invert(step)
        return step_inv, (max_corner_shift(step, corners) if invertible else math.inf)

    # Small levels are almost all Python (GIL-bound) work: two threads running them at
    # once hand the GIL back and forth around every OpenCV call and both slow down
    # (2x in a test). Serialised, they interleave with the other threads' big levels.
    with _SMALL_LEVEL_LOCK if problem.n <= _SERIAL_SAMPLES else contextlib.nullcontext():
        if on_samples:
            table = measure_table(matrix)
        state = evaluate(matrix)
        if state is None:
            # A level of a few planes keeps too few inside its z margin to hold any
            # motion: a finer level may (the search moves there, see .structure).
            raise (NoStructure if is_thin(ref.image, margin) else AlignmentError)(
                f"the {grid.noun}s barely overlap at the initial pose (pyramid level {level}); "
                f"give an init matrix close to the answer, or check which {grid.noun} is which"
            )
        matrix, n_iter, corr = climb(evaluate, state, matrix, make_step, params, tolerance)
        left = params["max_iterations"] - n_iter
        if remeasure and left > 0:
            measured = measure_table(matrix)
            table = table if measured is None else measured  # a failed one keeps the last
            state = evaluate(matrix)
            if state is not None:
                rest = {**params, "max_iterations": left}
                matrix, more, corr = climb(evaluate, state, matrix, make_step, rest, tolerance)
                n_iter += more
    return matrix, n_iter, corr, selected


def climb(evaluate, state, matrix, make_step, params, tolerance):
    """ECC's iterations on one level, for any dimensionality.

    ``state`` is ``(correlation, Δp)`` at ``matrix``; ``evaluate(matrix)`` returns the
    same at another matrix (None: no overlap left); ``make_step(Δp)`` returns the
    inverse of the update's warp (in pixel coordinates) and how far it moves the
    corners at most. Returns ``(matrix, iterations, correlation)``.
    """
    corr, delta = state
    n_iter = 0
    while n_iter < params["max_iterations"]:
        n_iter += 1
        # Backtracking: halve a step that lowers the correlation, so every accepted
        # step climbs. Plain ECC overshoots on coarse levels and walks off the image.
        for _ in range(_MAX_HALVINGS):
            step_inv, moved = make_step(delta)
            if moved < tolerance:
                break  # what is left of the step is below the tolerance
            new_state = None
            if math.isfinite(moved):
                candidate = matrix @ step_inv
                candidate /= candidate[-1, -1]
                new_state = evaluate(candidate)
            if new_state is not None and new_state[0] >= corr - 1e-12:
                break
            delta = 0.5 * delta
        else:
            break  # no step along this direction helps: converged as far as ECC can
        if moved < tolerance:
            break  # converged: a step this small is not worth an evaluation
        gain = new_state[0] - corr
        matrix, (corr, delta) = candidate, new_state
        if gain < params["eps"]:
            break
    return matrix, n_iter, corr
