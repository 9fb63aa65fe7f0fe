"""What to do with a pyramid level that carries too little structure: one rule for 2D and 3D.

A coarse level can be flat (fine detail, sparse dots, a Nyquist-scale texture vanish
under the pyramid's blur), or too thin to fix the motion (a volume halved to a few
planes keeps one plane of samples once the prefilter's margin is cut away, and an
affine motion needs a spread in z). That says nothing about the images, only about the
level, so it is never fatal while a finer level is left:

* the coarse-to-fine run (:func:`fit_stages`) skips such a level, and when it was the
  staged start (translation → rigid → full) the next finer level starts the stages again;
* the start search (:func:`first_level_that_works`) moves to the next finer level;
* the automatic depth (:func:`content_depth`) drops coarsest levels that cannot fix
  even a translation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .alignment import AlignmentError


class NoStructure(AlignmentError):
    """A pyramid level (where the images overlap) cannot fix the motion: flat, too few
    samples, or a singular ECC Hessian. A finer level may still do."""


def fit_stages(
    stages: Sequence[str], fit: Callable[[str, int], int], max_iterations: int, last: bool
) -> tuple[int, bool]:
    """Fit ``stages`` in turn on one level with ``fit(stage, budget) -> iterations``.

    The stages share the level's ``max_iterations``. A stage that fails ends the level
    (its error is raised only on the ``last`` level: a finer one refines what a coarse
    level could not). Returns the iterations run and whether every stage was fit, so a
    staged start that stopped short can hand its stages to the next finer level.
    """
    n_iter = 0
    for stage in stages:
        budget = max_iterations - n_iter
        if budget < 1:
            break
        try:
            n_iter += fit(stage, budget)
        except AlignmentError:
            if last:
                raise
            return n_iter, False
    return n_iter, True


def is_thin(image, margin: int) -> bool:
    """Whether ``image`` is a volume level of so few planes that its z margin shrinks
    (fewer than ``2 * margin + 3``): the samples keep to its central planes."""
    return image.ndim == 3 and image.shape[0] < 2 * margin + 3


def first_level_that_works(attempt: Callable[[int], object], level: int, bottom: int = 0):
    """``attempt(level)``, or on the next finer level while it fails for want of structure
    (:class:`NoStructure`) and a finer level than ``level`` is left down to ``bottom``."""
    while True:
        try:
            return attempt(level)
        except NoStructure:
            if level <= bottom:
                raise
            level -= 1


def content_depth(levels: int, fixes_translation: Callable[[int], bool]) -> int:
    """``levels`` without the coarsest ones on which the reference cannot fix even a
    translation (``fixes_translation(level)`` false): they would only cost time."""
    while levels > 1 and not fixes_translation(levels - 1):
        levels -= 1
    return levels


def fixes(probe: Callable[[], object]) -> bool:
    """Whether ``probe()`` (building a level's reference side) succeeds."""
    try:
        probe()
    except NoStructure:
        return False
    return True
