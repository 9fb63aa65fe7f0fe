"""The coarse-to-fine level loop, written once for images and volumes.

From the coarsest level ``top`` down to ``bottom``: bring the matrix one level
finer, fit the level (on the staged start: translation, then rigid, then the full
model — fewer parameters, wider capture range), and report. How a matrix moves
between levels and how one ECC level runs come in as two callables
(:func:`~.ecc.run_levels` supplies them from a :class:`~.grid.Grid`); the stages, the
tolerances and the rule for levels without structure (:mod:`.structure`) live here.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from .structure import fit_stages

# The staged start: each motion's simpler models first (volumes have no homography).
STAGES = {
    "translation": ("translation",),
    "euclidean": ("translation", "euclidean"),
    "affine": ("translation", "euclidean", "affine"),
    "homography": ("translation", "euclidean", "affine", "homography"),
}
# A level stops once an update moves every corner by less than this (level pixels).
STEP_TOLERANCE = 1e-3
# ... on a coarse level, whose result the next finer level refines anyway: 0.05 px
# here is 0.1 px there, well inside ECC's capture range. Most of a stack frame's
# iterations were spent polishing coarse levels to 0.001 px.
COARSE_STEP_TOLERANCE = 0.05

FitLevel = Callable[[int, np.ndarray, str, int, float], tuple[np.ndarray, int, float]]


def coarse_to_fine(
    fit: FitLevel,
    descend: Callable[[np.ndarray, int], np.ndarray],
    matrix: np.ndarray,
    motion: str,
    max_iterations: int,
    top: int,
    bottom: int = 0,
    staged: bool = True,
    level_done: Callable[[int], None] | None = None,
) -> Generator[tuple[int, int, float], None, tuple[np.ndarray, list[int], float]]:
    """Run ECC level by level, from ``top`` down to ``bottom``.

    Parameters
    ----------
    fit : callable
        ``fit(level, matrix, stage, budget, tolerance) -> (matrix, iterations,
        correlation)``: one ECC run on ``level`` with the ``stage`` motion, at most
        ``budget`` iterations, stopping once a step moves the corners less than
        ``tolerance``; matrices in ``level``'s coordinates.
    descend : callable
        ``descend(matrix, level)``: a matrix of level ``level + 1`` in ``level``'s
        coordinates.
    matrix : numpy.ndarray
        The start, in ``top``'s coordinates.
    motion : str
        The motion to fit.
    max_iterations : int
        ECC iterations per level, shared by its stages.
    top, bottom : int
        The coarsest and the finest level to run.
    staged : bool
        Stage the coarsest level (translation → rigid → full); a staged start that
        stopped short (a level without structure) hands its stages on.
    level_done : callable, optional
        ``level_done(level)`` after each level (to free what it held).

    Yields
    ------
    tuple
        ``(level, iterations, correlation)`` after each level.

    Returns
    -------
    tuple
        The matrix in ``bottom``'s coordinates, the iterations per level, the last
        correlation.
    """
    iterations: list[int] = []
    correlation = float("nan")
    staging = staged and top > bottom
    for level in range(top, bottom - 1, -1):
        if level != top:
            matrix = descend(matrix, level)

        def fit_stage(stage: str, budget: int, level: int = level) -> int:
            nonlocal matrix, correlation
            tolerance = STEP_TOLERANCE if level == 0 else COARSE_STEP_TOLERANCE
            matrix, used, correlation = fit(level, matrix, stage, budget, tolerance)
            return used

        stages = STAGES[motion] if staging else (motion,)
        n_iter, complete = fit_stages(stages, fit_stage, max_iterations, level == bottom)
        staging = staging and not complete
        iterations.append(n_iter)
        if level_done is not None:
            level_done(level)
        yield level, n_iter, correlation
    return matrix, iterations, correlation


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Drain a generator that reports progress (such as :func:`coarse_to_fine`) and
    return what it returns; its errors propagate.

    Parameters
    ----------
    steps : generator
        Yields progress, returns a result.

    Returns
    -------
    object
        The generator's return value.
    """
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value
