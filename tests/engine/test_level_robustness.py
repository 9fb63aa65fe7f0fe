"""No pyramid level is fatal for want of structure (issue 20, item 4).

A level that cannot fix the motion (flat, or too thin once the prefilter's margin is cut
away) is skipped: the coarse-to-fine run and the start search go on from the next finer
level that can. Accuracy is the corner RMS error against the true matrix.
"""

import itertools

import cv2
import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import AlignmentError, align
from napari_ecc_align.data import natural_image
from napari_ecc_align.engine.ecc import run_levels
from napari_ecc_align.engine.initialisation import choose_initialisation
from napari_ecc_align.engine.options import smoothing_schedule
from napari_ecc_align.engine.plane import PlaneGrid, pyramid
from napari_ecc_align.engine.preprocess import normalise
from napari_ecc_align.engine.structure import NoStructure, first_level_that_works, fit_stages

TOLERANCE = 0.05  # voxels / pixels, corner RMS


def _zyx(matrix):
    perm = np.eye(4)[[2, 1, 0, 3]]
    return perm @ matrix @ perm


def _rigid_about_z(degrees, shift, shape):
    """Voxel 4×4 (x, y, z): a rotation about the z axis through the volume centre, then
    ``shift``. In-plane spacing is equal, so the voxel matrix is rigid whatever dz is."""
    nz, ny, nx = shape
    centre = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2])
    rotation = cv2.Rodrigues(np.radians([0.0, 0.0, degrees]))[0]
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = centre + np.asarray(shift, float) - rotation @ centre
    return matrix


def _anisotropic_pair(shape=(64, 512, 512), seed=0):
    """The reported pair at an eighth of its voxels: smooth texture and spots, physically
    round, in voxels whose z side is 4× the in-plane one (so 4× flatter along z), as
    uint16; ``moving(truth · v) = reference(v)``."""
    rng = np.random.default_rng(seed)
    scale = shape[2] / 512
    texture = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32),
                                      (2 * scale, 8 * scale, 8 * scale))  # fmt: skip
    texture = (texture - texture.mean()) / texture.std()
    spots = np.zeros(shape, np.float32)
    count = int(np.prod(shape) / 20_000)
    spots[tuple((rng.random((3, count)) * np.array(shape)[:, None]).astype(int))] = 1.0
    spots = ndimage.gaussian_filter(spots, (0.75 * scale, 3 * scale, 3 * scale))
    reference = 0.3 * texture + 3.0 * spots / spots.max()
    truth = _rigid_about_z(1.5, (3.0, -2.0, 1.0), shape)
    moving = ndimage.affine_transform(reference, _zyx(np.linalg.inv(truth)), order=1,
                                      mode="nearest")  # fmt: skip

    def as_uint16(volume):
        volume = (volume - volume.min()) / (volume.max() - volume.min())
        noisy = 200 + 3000 * volume + rng.normal(0, 20, volume.shape)
        return noisy.clip(0, 65535).astype(np.uint16)

    return as_uint16(reference), as_uint16(moving), truth


def _corner_rms(matrix, truth, shape):
    """RMS distance between where ``matrix`` and ``truth`` send the corners of ``shape``."""
    sides = [(0, n - 1) for n in reversed(shape)]  # x first
    corners = np.array([[*c, 1.0] for c in itertools.product(*sides)]).T
    mapped, expected = matrix @ corners, truth @ corners
    diff = mapped[:-1] / mapped[-1] - expected[:-1] / expected[-1]
    return float(np.sqrt((diff**2).sum(axis=0).mean()))


@pytest.fixture(scope="module")
def anisotropic_pair():
    return _anisotropic_pair()


@pytest.mark.parametrize("motion", ["affine", "euclidean"])
def test_anisotropic_volumes_with_unit_spacing_align_from_the_default_init(
    anisotropic_pair, motion
):
    # Before: affine failed with "no initialisation worked: ... the reference has no
    # structure that fixes this motion on pyramid level 3" (the 8-plane search level keeps
    # one plane of samples once a z shift moves the other past the prefilter's margin).
    reference, moving, truth = anisotropic_pair
    result = align(reference, moving, ndim=3, motion=motion)
    assert _corner_rms(result.matrix, truth, reference.shape) <= TOLERANCE


def _flattened(levels, first_flat):
    """The pyramid with every level from ``first_flat`` up replaced by its mean: the
    coarsest levels carry no structure at all."""
    for level in levels[first_flat:]:
        level.image = np.full_like(level.image, level.image.mean())
    return levels


def _plane_pair(shape, degrees, shift, seed):
    """A natural image and its copy turned by ``degrees`` about the centre and shifted:
    ``moving(truth · p) = reference(p)``."""
    truth = cv2.getRotationMatrix2D(((shape[1] - 1) / 2, (shape[0] - 1) / 2), degrees, 1.0)
    truth = np.vstack([truth, [0, 0, 1]])
    truth[:2, 2] += shift
    reference = natural_image(shape, seed=seed)
    moving = cv2.warpAffine(reference, truth[:2], shape[::-1],
                            flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    return reference, moving, truth


@pytest.mark.parametrize("motion", ["affine", "euclidean"])
def test_planes_whose_coarsest_levels_are_flat_align_from_the_finer_levels(motion):
    # Before: the start search (on level 1, the one at most 256 px long) raised "no
    # initialisation worked: ... one image is flat where they overlap (pyramid level 1)".
    shape, levels = (384, 512), 5
    reference, moving, truth = _plane_pair(shape, 1.5, (3.3, -2.6), seed=3)
    ref, ref_valid = normalise(reference, "reference")
    mov, mov_valid = normalise(moving, "moving")
    ref_pyr = _flattened(pyramid(ref, ref_valid, levels), 1)
    mov_pyr = _flattened(pyramid(mov, mov_valid, levels), 1)
    params = {"motion": motion, "max_iterations": 100, "eps": 1e-6, "gauss_filter_size": 5}
    grid = PlaneGrid(smoothing_schedule(params["gauss_filter_size"]))
    found = choose_initialisation(grid, ref_pyr, mov_pyr, levels, "auto", motion, params)
    assert found.level == 0  # the only level with structure
    steps = run_levels(grid, ref_pyr, mov_pyr, found.matrix, motion, params, found.level, 0, False)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            matrix = stop.value[0]
            break
    assert _corner_rms(matrix, truth, shape) <= TOLERANCE


def test_the_shared_rule():
    def fit(stage, budget):
        if stage == "affine":
            raise NoStructure("no structure")
        return 2

    assert fit_stages(("translation", "euclidean", "affine"), fit, 100, last=False) == (4, False)
    with pytest.raises(NoStructure):
        fit_stages(("translation", "affine"), fit, 100, last=True)

    def attempt(level):
        if level > 1:
            raise NoStructure(f"flat on level {level}")
        return level

    assert first_level_that_works(attempt, 4) == 1
    with pytest.raises(NoStructure):
        first_level_that_works(attempt, 4, bottom=2)

    def unrelated(level):
        raise AlignmentError("unrelated")  # not for want of structure: no finer retry

    with pytest.raises(AlignmentError, match="unrelated"):
        first_level_that_works(unrelated, 3)
