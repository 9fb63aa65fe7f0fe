"""The 3D generators: shapes and dtypes as documented, true 4×4s that the engine
recovers, rigid in physical units, deterministic for a seed."""

import numpy as np
import pytest

from napari_ecc_align import align, align_stack
from napari_ecc_align.data import (
    drift_volume,
    rigid_volume_matrix,
    tissue_volume,
    volume_pair,
)
from napari_ecc_align.engine.alignment import corner_rms

SPACING = (2.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def pair():
    return volume_pair()


def _physical(matrix, spacing):
    scale = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    return scale @ matrix @ np.linalg.inv(scale)


def test_volume_pair_is_two_uint16_channels_with_anisotropic_spacing(pair):
    reference, moving, spacing, matrix = pair
    assert reference.shape == moving.shape == (32, 128, 128)
    assert reference.dtype == moving.dtype == np.uint16
    assert spacing == SPACING and all(isinstance(v, float) for v in spacing)
    assert matrix.shape == (4, 4)
    np.testing.assert_array_equal(matrix[3], [0, 0, 0, 1])
    # Other gain and offset: channel 2 is brighter and sits on a higher background.
    assert np.percentile(moving, 1) > np.percentile(reference, 1) + 200
    assert moving.mean() > reference.mean() + 500


def test_the_true_matrix_is_rigid_in_micrometres_with_the_documented_shift(pair):
    _, _, spacing, matrix = pair
    linear = _physical(matrix, spacing)[:3, :3]
    np.testing.assert_allclose(linear @ linear.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(linear) == pytest.approx(1.0)
    centre = np.array([127 / 2, 127 / 2, 31 / 2, 1.0])
    np.testing.assert_allclose((matrix @ centre)[:3] - centre[:3], [3.0, -2.5, 1.5])
    # In voxels it is not rigid: z voxels are 4x longer than x and y voxels.
    assert not np.allclose(matrix[:3, :3] @ matrix[:3, :3].T, np.eye(3), atol=1e-3)


def test_align_recovers_the_pair_within_five_hundredths_of_a_voxel(pair):
    reference, moving, spacing, truth = pair
    assert corner_rms(np.eye(4), truth, reference.shape) > 3  # misaligned as it comes
    found = align(reference, moving, ndim=3, spacing=spacing, motion="euclidean")
    assert found.corner_error(truth) <= 0.05
    assert found.correlation > 0.95 > 0.3 > found.correlation_before


def test_other_motions_and_seeds_are_recovered_too():
    reference, moving, spacing, truth = volume_pair(
        (40, 112, 112), seed=5, angles_deg=(-3.0, 2.0, -4.0), shift=(-2.0, 4.0, -1.0)
    )
    assert reference.shape == (40, 112, 112)
    found = align(reference, moving, ndim=3, spacing=spacing, motion="euclidean")
    assert found.corner_error(truth) <= 0.05


def test_a_seed_gives_the_same_volumes_and_another_seed_other_ones():
    first = volume_pair((16, 48, 48), seed=3)
    again = volume_pair((16, 48, 48), seed=3)
    other = volume_pair((16, 48, 48), seed=4)
    np.testing.assert_array_equal(first.reference, again.reference)
    np.testing.assert_array_equal(first.moving, again.moving)
    assert np.abs(first.reference.astype(float) - other.reference).mean() > 100


def test_tissue_has_structure_along_z_and_across_cells():
    volume = tissue_volume()
    assert volume.shape == (32, 128, 128) and volume.dtype == np.float32
    assert 0 <= volume.min() and 0.2 < volume.mean() < 0.6 and volume.max() < 2

    def similarity(a, b):
        return np.corrcoef(a.ravel(), b.ravel())[0, 1]

    # Neighbouring planes (2 µm apart) look alike; planes 20 µm apart show other cells.
    assert similarity(volume[20], volume[21]) > 0.45
    assert abs(similarity(volume[10], volume[20])) < 0.3
    assert volume.std(axis=0).mean() > 0.1


def test_rigid_volume_matrix_keeps_distances_in_micrometres():
    shape, spacing = (20, 60, 80), (3.0, 1.0, 0.5)
    matrix = rigid_volume_matrix((10.0, -20.0, 30.0), (1.0, 2.0, 3.0), shape, spacing)
    points = np.array([[0, 0, 0, 1], [79, 0, 0, 1], [0, 59, 19, 1], [40, 30, 10, 1.0]]).T
    um = np.diag([0.5, 1.0, 3.0])
    before, after = um @ points[:3], um @ (matrix @ points)[:3]
    distances = [np.linalg.norm(x[:, :, None] - x[:, None, :], axis=0) for x in (before, after)]
    np.testing.assert_allclose(distances[1], distances[0], atol=1e-9)
    centre = np.array([79 / 2, 59 / 2, 19 / 2, 1.0])
    np.testing.assert_allclose((matrix @ centre)[:3] - centre[:3], [1.0, 2.0, 3.0])


def test_drift_volume_is_recovered_by_chaining_previous_frames():
    stack, spacing, truths = drift_volume()
    assert stack.shape == (12, 32, 96, 96) and stack.dtype == np.uint16
    assert spacing == SPACING and truths.shape == (12, 4, 4)
    np.testing.assert_array_equal(truths[0], np.eye(4))
    frame = stack.shape[1:]
    assert corner_rms(np.eye(4), truths[-1], frame) > 5  # it drifted several voxels
    shift = (truths[-1] @ [47.5, 47.5, 15.5, 1])[:3] - [47.5, 47.5, 15.5]
    assert shift[2] > 2  # in z too
    result = align_stack(stack, ndim=3, spacing=spacing, reference="previous", workers=2)
    assert result.ok.all()
    errors = [corner_rms(m, t, frame) for m, t in zip(result.matrices, truths, strict=True)]
    assert errors[-1] <= 0.3, np.round(errors, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: volume_pair((2, 64, 64)), "shape"),
        (lambda: volume_pair(spacing=(0.0, 0.5, 0.5)), "spacing"),
        (lambda: tissue_volume((8, 8)), "shape"),
        (lambda: drift_volume(frames=1), "frames"),
    ],
)
def test_bad_arguments_say_which(call, match):
    with pytest.raises(ValueError, match=match):
        call()
