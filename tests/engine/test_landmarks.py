"""Starts from landmarks, ``init=(reference_points, moving_points)``: the motion's
least-squares fit of a few clicked point pairs, refined by ECC; pairs far outside the
automatic start's reach align."""

import math

import numpy as np
import pytest

from napari_ecc_align import align
from napari_ecc_align.data import make_pair, natural_image, volume_pair
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.engine.landmarks import landmark_start

SHAPE = (300, 300)
POINTS = np.array([[40.0, 50.0], [250.0, 60.0], [150.0, 260.0], [220.0, 220.0]])  # (row, col)


def _about_centre(angle_deg, scale, shift):
    """Template pixel → pixel of a 600 x 600 scene whose middle the template shows."""
    a = math.radians(angle_deg)
    rotation = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    centre = np.array([149.5, 149.5])
    matrix = np.eye(3)
    matrix[:2, :2] = rotation
    matrix[:2, 2] = centre + 150 + np.asarray(shift) - rotation @ centre
    return matrix


def _clicked(points, matrix, rng, error=1.0):
    """Where ``points`` (row, col) land through ``matrix``, clicked ``error`` px off."""
    xy = np.column_stack([points[:, ::-1], np.ones(len(points))]) @ matrix.T
    return xy[:, 1::-1] + rng.normal(0, error, (len(points), 2))


@pytest.fixture(scope="module")
def scene():
    return natural_image((600, 600), seed=4)


@pytest.mark.parametrize(
    ("case", "truth", "motion"),
    [
        ("half turn", _about_centre(180, 1.0, (0, 0)), "euclidean"),
        ("half the image away", _about_centre(0, 1.0, (150, -150)), "euclidean"),
        ("twice the scale", _about_centre(20, 0.5, (0, 0)), "affine"),
        ("twice the scale, projective", _about_centre(20, 0.5, (0, 0)), "homography"),
    ],
)
def test_four_clicked_pairs_capture_far_poses(scene, case, truth, motion):
    reference = make_pair(scene, truth, SHAPE)
    moving_points = _clicked(POINTS, truth, np.random.default_rng(0))
    result = align(reference, scene, motion=motion, init=(POINTS, moving_points))
    assert result.init_method == "landmarks"
    # 8 free parameters on a reference that is the scene zoomed twice: a little looser
    limit = 0.1 if motion == "homography" else 0.05
    assert corner_rms(result.matrix, truth, SHAPE) < limit, case


def test_the_automatic_start_misses_what_landmarks_catch(scene):
    truth = _about_centre(20, 0.5, (0, 0))  # a 2x zoom with a turn
    reference = make_pair(scene, truth, SHAPE)
    automatic = align(reference, scene, motion="affine")
    assert corner_rms(automatic.matrix, truth, SHAPE) > 5


def test_a_volume_half_turned_aligns_from_three_landmarks():
    spacing = (2.0, 0.5, 0.5)
    pair = volume_pair((24, 96, 96), seed=1, spacing=spacing, angles_deg=(0, 0, 180),
                       shift=(2.0, -1.0, 0.5))  # fmt: skip
    points = np.array([[6.0, 20.0, 30.0], [12.0, 70.0, 25.0], [18.0, 40.0, 75.0]])  # (z, y, x)
    zyx1 = np.column_stack([points[:, ::-1], np.ones(3)]) @ pair.matrix.T
    moving_points = zyx1[:, 2::-1] + np.random.default_rng(1).normal(0, 0.5, (3, 3))
    result = align(pair.reference, pair.moving, ndim=3, spacing=spacing, motion="euclidean",
                   init=(points, moving_points))  # fmt: skip
    assert result.init_method == "landmarks"
    assert corner_rms(result.matrix, pair.matrix, (24, 96, 96)) < 0.1


def test_exact_pairs_give_the_motion_and_no_residual():
    rng = np.random.default_rng(3)
    truth = _about_centre(33, 1.0, (4, -7))
    points = rng.uniform(0, 300, (5, 2))
    moving = _clicked(points, truth, rng, error=0.0)
    for motion in ("euclidean", "affine", "homography"):
        matrix, residual = landmark_start(points, moving, motion)
        np.testing.assert_allclose(matrix, truth, rtol=1e-6, atol=1e-6)
        assert residual < 1e-4
    shifted, residual = landmark_start(points, points + [2.0, -3.0], "translation")
    np.testing.assert_allclose(shifted[:2, 2], [-3.0, 2.0])  # (x, y) from (row, col)


def test_bad_landmarks_get_named_errors():
    points = np.array([[0.0, 0.0], [10.0, 10.0], [20.0, 20.0]])
    with pytest.raises(ValueError, match="on one line"):
        landmark_start(points, points + 1, "affine")
    with pytest.raises(ValueError, match="at least 4 point pairs"):
        landmark_start(points, points, "homography")
    with pytest.raises(ValueError, match="landmarks come in pairs"):
        landmark_start(points, points[:2], "euclidean")
    with pytest.raises(ValueError, match=r"reference_points must be a finite \(N, 2\)"):
        landmark_start(np.ones((3, 3)), points, "euclidean")
