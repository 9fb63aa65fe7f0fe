"""The progress-step count predicted from shapes equals what iter_align yields."""

import pytest

from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.engine.estimate import Progress, iter_align
from napari_ecc_align.engine.steps import expected_progress_steps


def _count(steps) -> int:
    return sum(isinstance(step, Progress) for step in steps)


@pytest.mark.parametrize(
    ("shape", "init", "levels", "expected"),
    [
        ((300, 420), "auto", None, 2),  # searched on level 1 (<= 256 px), then level 0
        ((300, 420), "identity", None, 5),  # the whole automatic pyramid
        ((90, 1000), "phase", None, 3),  # the long side sets the search level
        ((300, 420), None, 2, 2),
    ],
)
def test_2d_count_matches_iter_align(shape, init, levels, expected):
    reference, moving, _ = natural_pair(shape, seed=0)
    steps = list(iter_align(reference, moving, init=init, pyramid_levels=levels))
    predicted = expected_progress_steps(
        reference.shape, moving.shape, pyramid_levels=levels, init=init
    )
    assert predicted == _count(steps) == expected


@pytest.mark.parametrize(
    ("shape", "spacing", "init", "expected"),
    [
        ((40, 128, 128), (3.0, 1.0, 1.0), "auto", 2),  # searched on level 1 (<= 64 voxels)
        ((40, 128, 128), (3.0, 1.0, 1.0), "identity", 4),
        ((24, 64, 64), (1.0, 1.0, 1.0), "auto", 1),
    ],
)
def test_3d_count_matches_iter_align(shape, spacing, init, expected):
    pair = volume_pair(shape, seed=1, spacing=spacing)
    steps = iter_align(pair.reference, pair.moving, ndim=3, spacing=spacing,
                       motion="euclidean", init=init)  # fmt: skip
    predicted = expected_progress_steps(
        pair.reference.shape, pair.moving.shape, ndim=3, spacing=spacing, init=init
    )
    assert predicted == _count(steps) == expected
