"""3D time-lapses (issue 13): ``align_stack(..., ndim=3)`` on (t, z, y, x) and
(t, c, z, y, x) stacks drifting by known rigid motions."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import StackAlignment, align_stack, warp_stack

FRAME = (24, 64, 64)


def _zyx(matrix):
    perm = np.eye(4)[[2, 1, 0, 3]]
    return perm @ matrix @ perm


def _drift(frames, seed=0, step=0.8, degrees=0.3):
    """A (t, z, y, x) float32 time-lapse of one scene and each frame's true 4×4
    (reference grid = frame 0 → frame t)."""
    rng = np.random.default_rng(seed)
    margin = 24
    scene_shape = tuple(n + 2 * margin for n in FRAME)
    scene = ndimage.gaussian_filter(rng.random(scene_shape, dtype=np.float32), 2.5)
    scene += 0.4 * ndimage.gaussian_filter(rng.random(scene_shape, dtype=np.float32), 1.2)
    centre = np.array([(FRAME[2] - 1) / 2, (FRAME[1] - 1) / 2, (FRAME[0] - 1) / 2])
    pose, poses, stack = np.zeros(6), [], []
    for _ in range(frames):
        rotation = cv2.Rodrigues(np.radians(pose[:3]))[0]
        to_scene = np.eye(4)
        to_scene[:3, :3] = rotation
        to_scene[:3, 3] = centre + margin + pose[3:] - rotation @ centre
        poses.append(to_scene)
        zyx = _zyx(to_scene)
        frame = ndimage.affine_transform(scene, zyx[:3, :3], zyx[:3, 3], output_shape=FRAME,
                                         order=1)  # fmt: skip
        stack.append(frame + rng.normal(0, 0.01, FRAME).astype(np.float32))
        pose = pose + np.concatenate(
            [rng.uniform(-degrees, degrees, 3), rng.uniform(-step, step, 3)]
        )
    truths = [np.linalg.solve(p, poses[0]) for p in poses]
    return np.stack(stack), truths


def _corner_rms(matrix, truth):
    nz, ny, nx = FRAME
    corners = np.array([[x, y, z, 1.0] for z in (0, nz - 1) for y in (0, ny - 1)
                        for x in (0, nx - 1)]).T  # fmt: skip
    diff = (matrix @ corners - truth @ corners)[:3]
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=0))))


def test_chained_drift_of_thirty_volumes_stays_within_a_third_of_a_voxel():
    stack, truths = _drift(30)
    result = align_stack(stack, reference="previous", ndim=3, motion="euclidean", workers=2)
    assert result.ok.all() and result.ndim == 3 and result.matrices.shape == (30, 4, 4)
    errors = [_corner_rms(m, t) for m, t in zip(result.matrices, truths, strict=True)]
    assert errors[-1] <= 0.3, errors
    drift = np.linalg.norm(truths[-1][:3, 3])
    assert drift > 1.0  # the walk went somewhere: the test would catch identities


@pytest.mark.parametrize("reference", ["first", 3, "mean"])
def test_fixed_and_mean_references(reference):
    stack, truths = _drift(6, seed=1)
    result = align_stack(stack, reference=reference, ndim=3, motion="euclidean", workers=2)
    assert result.ok.all()
    k = 0 if reference in ("first", "mean") else reference
    for matrix, truth in zip(result.matrices, truths, strict=True):
        expected = truth @ np.linalg.inv(truths[k])  # frame k's grid -> frame t
        if reference == "mean":  # the mean's grid is close to, not exactly, frame 0's
            assert _corner_rms(matrix, truth) < 1.0
        else:
            assert _corner_rms(matrix, expected) <= 0.1  # small, noisy 24x64x64 volumes


def test_channels_on_their_own_axis_share_the_transform_and_warp_stack_puts_frames_back():
    stack, truths = _drift(4, seed=2, step=2.5, degrees=0.0)  # pure shifts, a few voxels
    two_channels = np.stack([stack, 2 * stack + 1], axis=1)  # (t, c, z, y, x)
    result = align_stack(two_channels, channel_axis=1, reference="first", ndim=3,
                         motion="translation")  # fmt: skip
    assert result.ok.all() and result.frame_shape == FRAME
    aligned = warp_stack(two_channels, result)
    assert aligned.shape == two_channels.shape and aligned.dtype == two_channels.dtype
    inner = np.s_[4:-4, 10:-10, 10:-10]
    for t in range(1, 4):
        residual = np.abs(aligned[t, 0][inner] - stack[0][inner]).mean()
        # Down to about the noise floor (two noisy volumes differ by ~0.011 on average).
        assert residual < 0.5 * np.abs(stack[t][inner] - stack[0][inner]).mean()
        np.testing.assert_allclose(aligned[t, 1][inner], 2 * aligned[t, 0][inner] + 1, atol=1e-4)


def test_a_failed_volume_is_flagged_and_the_table_has_dz_and_three_rotations(tmp_path):
    stack, _ = _drift(5, seed=3)
    stack[2] = 0.0  # a blank volume cannot be aligned
    result = align_stack(stack, reference="previous", ndim=3, motion="euclidean", workers=1)
    assert result.ok.tolist() == [True, True, False, True, True]
    assert "no contrast" in result.errors[2]
    table = result.table()
    assert {"dx", "dy", "dz", "rotation_x_deg", "rotation_y_deg", "rotation_z_deg"} <= set(table[0])
    assert np.isnan(table[2]["dz"]) and not np.isnan(table[3]["dz"])
    result.to_csv(tmp_path / "drift.csv")
    header = (tmp_path / "drift.csv").read_text().splitlines()[0]
    assert "dz" in header and "rotation_z_deg" in header
    again = StackAlignment.from_json(result.to_json())
    assert again.ndim == 3 and np.allclose(again.matrices, result.matrices)


def test_volume_stack_arguments_are_checked():
    stack, _ = _drift(2, seed=4)
    with pytest.raises(ValueError, match="ndim=3"):
        align_stack(stack)  # (t, z, y, x) taken as frames of 2D images: says what to pass
    with pytest.raises(ValueError, match="homography"):
        align_stack(stack, ndim=3, motion="homography")
    with pytest.raises(ValueError, match="spacing"):
        align_stack(stack[:, 0], spacing=(1, 1, 1))
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        align_stack(stack[:, 0], ndim=3)
