"""The homogeneous-matrix geometry shared by images and volumes (engine/geometry.py)."""

import numpy as np

from napari_ecc_align.engine import grid_corners
from napari_ecc_align.engine.geometry import from_level, to_level

HOMOGRAPHY = np.array([[1.01, 0.02, 12.5], [-0.03, 0.98, -7.25], [2e-4, -1e-4, 1.0]])
VOLUME = np.array(
    [[0.99, 0.01, 0.02, 3.5], [-0.01, 1.02, 0.0, -2.0], [0.0, 0.03, 0.97, 1.25], [0, 0, 0, 1.0]]
)


def test_levels_move_points_with_the_grid():
    # A reference point p on the level is p * D at full resolution; the level matrix must
    # send it to the moving point divided by D: W_level = D⁻¹ W D, for any factors.
    rng = np.random.default_rng(0)
    for matrix, factors, d in [
        (HOMOGRAPHY, 2, np.array([4.0, 4.0, 1.0])),
        (HOMOGRAPHY, (4, 2), np.array([2.0, 4.0, 1.0])),  # (sy, sx): x by 2, y by 4
        (VOLUME, (2, 4, 4), np.array([4.0, 4.0, 2.0, 1.0])),
    ]:
        level = to_level(matrix, factors)
        p = np.append(rng.uniform(0, 50, matrix.shape[0] - 1), 1.0)
        full = matrix @ (p * d)
        on_level = level @ p
        np.testing.assert_allclose(on_level[:-1] / on_level[-1], (full[:-1] / full[-1]) / d[:-1])
        np.testing.assert_array_equal(from_level(level, factors), matrix)  # exact: powers of 2


def test_an_int_level_is_isotropic_halving():
    np.testing.assert_array_equal(to_level(HOMOGRAPHY, 3), to_level(HOMOGRAPHY, (8, 8)))


def test_grid_corners_of_images_and_volumes():
    corners = grid_corners((3, 5))
    assert corners.shape == (3, 4)
    assert corners[:, -1].tolist() == [4.0, 2.0, 1.0]
    volume = grid_corners((2, 3, 4))
    assert volume.shape == (4, 8)
    assert {tuple(c) for c in volume[:3].T} == {
        (x, y, z) for x in (0.0, 3.0) for y in (0.0, 2.0) for z in (0.0, 1.0)
    }


def test_one_projection_for_images_and_volumes():
    from napari_ecc_align.engine import project_to_motion, project_volume

    # Images: a homography is scaled to end in 1; rigid is a rotation, never a reflection.
    assert project_to_motion(HOMOGRAPHY * 2, "homography")[2, 2] == 1.0
    flip = np.diag([-1.0, 1.0, 1.0])
    rigid = project_to_motion(flip @ HOMOGRAPHY, "euclidean")
    assert np.linalg.det(rigid[:2, :2]) > 0
    np.testing.assert_allclose(rigid[:2, :2] @ rigid[:2, :2].T, np.eye(2), atol=1e-12)
    # Volumes: rigid in physical units. With spacing (3, 1, 1) a rotation about y of the
    # sample is S⁻¹·R·S in voxels, and projecting it onto euclidean leaves it as it is.
    angle = np.radians(5.0)
    rotation = np.eye(4)
    rotation[[0, 0, 2, 2], [0, 2, 0, 2]] = (
        np.cos(angle),
        np.sin(angle),
        -np.sin(angle),
        np.cos(angle),
    )
    physical = np.diag([1.0, 1.0, 3.0, 1.0])  # (x, y, z)
    voxels = np.linalg.solve(physical, rotation) @ physical
    voxels[:3, 3] = (2.0, -1.0, 0.5)
    np.testing.assert_allclose(project_volume(voxels, "euclidean", (3, 1, 1)), voxels, atol=1e-12)
    assert project_to_motion(voxels, "translation", (3.0, 1.0, 1.0))[:3, 3].tolist() == [2, -1, 0.5]


def test_one_initial_matrix_for_images_and_volumes():
    import pytest

    from napari_ecc_align.engine import initial_matrix

    assert initial_matrix(None, "affine")[1] == "identity"
    assert initial_matrix("identity", "affine", ndim=3)[0].shape == (4, 4)
    start, how = initial_matrix(VOLUME[:3], "translation", ndim=3, spacing=(3.0, 1.0, 1.0))
    assert how == "matrix" and start[:3, :3].tolist() == np.eye(3).tolist()
    with pytest.raises(ValueError, match=r"one of \('identity', 'auto', 'phase'\), None or a 4x4"):
        initial_matrix("features", "affine", ndim=3)  # a 2D search
    with pytest.raises(ValueError, match="fourier-mellin"):  # 2D lists its own searches
        initial_matrix("sideways", "affine")
    with pytest.raises(ValueError, match=r"init must be a 4x4 \(or 3x4\) matrix for volumes"):
        initial_matrix(np.eye(3), "affine", ndim=3)
    with pytest.raises(ValueError, match="finite, invertible"):
        initial_matrix(np.zeros((3, 3)), "affine")
