"""Volumes (issue 13): ``align(..., ndim=3)`` against known 4×4 transforms.

Accuracy is the corner RMS error in voxels over the 8 corners of the reference volume.
Pairs are cut from one generated scene on an isotropic grid: the reference samples it
through a voxel → scene map, the moving volume through that map composed with the
inverse of the true transform, so ``reference(v) = moving(truth · v)``.
"""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import AlignmentError, Progress, Template, align, iter_align

TOLERANCE_VOXELS = 0.05
SHAPE = (40, 80, 80)


def _texture(shape, rng):
    field = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 3)
    return field + 0.5 * ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 1.2)


def _blobs(shape, rng):
    out = np.zeros(shape, np.float32)
    centres = rng.uniform(0, 1, (int(np.prod(shape) / 4000), 3)) * np.array(shape)
    out[tuple(np.clip(centres.astype(int), 0, np.array(shape) - 1).T)] = 1.0
    return ndimage.gaussian_filter(out, 3) + 0.05 * ndimage.gaussian_filter(
        rng.random(shape, dtype=np.float32), 6
    )


def _spots(shape, rng):
    out = np.zeros(shape, np.float32)
    centres = rng.uniform(0, 1, (int(np.prod(shape) / 1500), 3)) * np.array(shape)
    out[tuple(np.clip(centres.astype(int), 0, np.array(shape) - 1).T)] = 1.0
    return ndimage.gaussian_filter(out, 1.5)


SCENES = {"texture": _texture, "blobs": _blobs, "spots": _spots}


def _zyx(matrix):
    perm = np.eye(4)[[2, 1, 0, 3]]
    return perm @ matrix @ perm


def _rigid(angles_deg, shift, shape, spacing=(1.0, 1.0, 1.0)):
    """A rigid motion in physical units about the volume centre, as the voxel 4×4."""
    scale = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    rotation = cv2.Rodrigues(np.radians(np.asarray(angles_deg, float)))[0]
    centre = scale[:3, :3] @ np.array([(shape[2] - 1) / 2, (shape[1] - 1) / 2, (shape[0] - 1) / 2])
    physical = np.eye(4)
    physical[:3, :3] = rotation
    physical[:3, 3] = centre + scale[:3, :3] @ np.asarray(shift, float) - rotation @ centre
    return np.linalg.inv(scale) @ physical @ scale


def _pair(kind, truth, shape=SHAPE, spacing=(1.0, 1.0, 1.0), seed=0, photometric=True):
    rng = np.random.default_rng(seed)
    scale = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    extent = np.array(shape) * np.array(spacing)
    margin = 0.3 * extent.max()
    scene = SCENES[kind](tuple(int(n + 2 * margin) for n in extent), rng)
    if spacing[0] > 1:  # coarse planes come with an axial blur (the microscope's PSF)
        scene = ndimage.gaussian_filter1d(scene, spacing[0], axis=0)
    offset = np.eye(4)
    offset[:3, 3] = margin
    to_scene = offset @ scale
    ref_map, mov_map = _zyx(to_scene), _zyx(to_scene @ np.linalg.inv(truth))
    reference = ndimage.affine_transform(scene, ref_map[:3, :3], ref_map[:3, 3], output_shape=shape,
                                         order=1)  # fmt: skip
    moving = ndimage.affine_transform(scene, mov_map[:3, :3], mov_map[:3, 3], output_shape=shape,
                                      order=1)  # fmt: skip
    if photometric:  # gain, bias and noise, stored as 16-bit like a microscope's
        span = float(np.ptp(scene))
        reference = reference / span * 3000 + 200 + rng.normal(0, 15, shape)
        moving = moving / span * 2400 + 600 + rng.normal(0, 15, shape)
        reference, moving = (np.clip(v, 0, 65535).astype(np.uint16) for v in (reference, moving))
    return reference, moving


@pytest.mark.parametrize("kind", sorted(SCENES))
@pytest.mark.parametrize(
    ("motion", "truth"),
    [
        ("translation", _rigid((0, 0, 0), (2.0, 3.5, -4.0), SHAPE)),
        ("euclidean", _rigid((3.0, -2.0, 4.0), (2.0, -3.0, 1.5), SHAPE)),
        ("affine", _rigid((2.0, 1.0, -3.0), (1.5, -2.0, 3.0), SHAPE)
         @ np.array([[1.02, 0.01, 0, 0], [0, 0.99, 0.015, 0], [0.01, 0, 1.01, 0], [0, 0, 0, 1]])),
    ],
    ids=["translation", "rigid", "affine"],
)  # fmt: skip
def test_known_transforms(kind, motion, truth):
    reference, moving = _pair(kind, truth)
    result = align(reference, moving, ndim=3, motion=motion)
    assert result.matrix.shape == (4, 4)
    assert result.corner_error(truth) <= TOLERANCE_VOXELS
    assert result.correlation > result.correlation_before


def test_anisotropic_spacing_is_rigid_in_physical_units():
    spacing = (3.0, 1.0, 1.0)  # z planes three times further apart than pixels
    shape = (20, 96, 96)
    truth = _rigid((2.0, -1.5, 3.0), (1.5, -2.0, 0.7), shape, spacing)
    reference, moving = _pair("texture", truth, shape, spacing)
    result = align(reference, moving, ndim=3, spacing=spacing, motion="euclidean")
    assert result.corner_error(truth) <= TOLERANCE_VOXELS
    assert result.parameters["spacing"] == [3.0, 1.0, 1.0]
    # The same voxels taken as isotropic are not a rigid motion: rigid can only approximate.
    isotropic = align(reference, moving, ndim=3, motion="euclidean")
    assert isotropic.corner_error(truth) > 5 * result.corner_error(truth)


@pytest.mark.parametrize(
    ("angles", "shift"),
    [
        ((10, 0, 0), (0, 0, 0)),
        ((0, 10, 0), (3, 0, 0)),
        ((0, 0, 10), (0, 0, 0)),
        ((0, 0, 0), (0.15 * SHAPE[2], 0.15 * SHAPE[1], 0.15 * SHAPE[0])),
        ((6, -6, 6), (8, -10, 5)),
    ],
)
def test_capture_range_from_the_default_init(angles, shift):
    truth = _rigid(angles, shift, SHAPE)
    reference, moving = _pair("texture", truth, photometric=False)
    result = align(reference, moving, ndim=3, motion="euclidean")
    assert result.corner_error(truth) <= TOLERANCE_VOXELS


def test_iter_align_reports_levels_for_volumes():
    truth = _rigid((1, 0, 0), (1, 1, 1), SHAPE)
    reference, moving = _pair("texture", truth)
    steps = list(iter_align(reference, moving, ndim=3, motion="translation"))
    assert all(isinstance(s, Progress) for s in steps[:-1]) and len(steps) >= 2
    assert steps[-2].done == steps[-2].levels


def test_volume_arguments_are_checked():
    volume = np.random.default_rng(0).random((8, 16, 16))
    with pytest.raises(ValueError, match="homography"):
        align(volume, volume, ndim=3, motion="homography")
    with pytest.raises(ValueError, match="ndim=3"):
        align(volume, volume)  # a (z, y, x) array without ndim: says what to pass
    with pytest.raises(ValueError, match="spacing"):
        align(volume[0], volume[0], spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        align(volume, volume, ndim=3, spacing=(0, 1, 1))
    with pytest.raises(ValueError, match="ndim"):
        align(volume, volume, ndim=4)
    with pytest.raises(TypeError, match="Template"):
        align(Template(volume[0]), volume, ndim=3)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        align(volume[None], volume, ndim=3)
    with pytest.raises(AlignmentError, match="no contrast"):
        align(np.zeros((8, 16, 16)), volume, ndim=3)


def test_nan_voxels_and_masks_are_ignored():
    truth = _rigid((2, 0, -1), (1.5, -1.0, 0.5), SHAPE)
    reference, moving = _pair("texture", truth, photometric=False)
    moving = moving.astype(np.float32)
    moving[10:20, 30:50, 30:50] = np.nan
    corrupted = reference.copy()
    corrupted[:, :, :15] = np.random.default_rng(3).random(corrupted[:, :, :15].shape)
    mask = np.ones(SHAPE, bool)
    mask[:, :, :15] = False
    result = align(corrupted, moving, ndim=3, motion="euclidean", reference_mask=mask)
    assert result.corner_error(truth) <= TOLERANCE_VOXELS


@pytest.mark.parametrize("planes", [8, 12, 24])
@pytest.mark.parametrize("init", ["auto", "phase", "identity"])
def test_thin_stacks_of_wide_planes_align(planes, init):
    """A few planes of wide fields (a common microscope stack): the coarse levels keep
    only 4-6 planes. Their z margin used to leave no sample inside the moving volume
    unless it sat exactly at the identity, so every automatic start failed."""
    from napari_ecc_align.data import volume_pair

    pair = volume_pair((planes, 256, 256), seed=1, spacing=(2.0, 0.5, 0.5))
    found = align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion="euclidean",
                  init=init)  # fmt: skip
    assert found.corner_error(pair.matrix) < TOLERANCE_VOXELS
