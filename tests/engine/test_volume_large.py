"""Volumes beyond the working budget: estimated on a reduced copy (a stored pyramid level,
or made band by band from the arrays) and refined on full-resolution blocks
(engine/volume_reduce.py, engine/volume_blocks.py).

The budget is lowered here so that a 2 M voxel pair takes the path a 1 G voxel one takes
by default; the whole-volume estimate of the same pair is the yardstick.
"""

import numpy as np
import pytest

from napari_ecc_align import align
from napari_ecc_align.data.large import lazy_volume_pair
from napari_ecc_align.engine import volume_reduce
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.engine.volume import halve_planes, halve_z_axis

da = pytest.importorskip("dask.array")  # a base dependency: always there
SHAPE = (48, 192, 192)


@pytest.fixture(scope="module")
def pairs():
    """The euclidean and affine pairs, computed once (numpy) with their truths."""
    out = {}
    for motion in ("euclidean", "affine"):
        pair = lazy_volume_pair(SHAPE, chunks=(16, 64, 64), motion=motion, seed=2)
        out[motion] = (pair.reference.compute(), pair.moving.compute(), pair.spacing, pair.matrix)
    return out


@pytest.fixture
def small_budget(monkeypatch):
    """Volumes over 200 000 voxels are estimated reduced (1/2 in-plane here: the working
    copy keeps 32 planes and 64 voxels across)."""
    monkeypatch.setattr(volume_reduce, "MAX_WORK_VOXELS", 200_000)


class Logged:
    """A sliceable array that counts the voxels read from it (as zarr would serve them)."""

    def __init__(self, array, chunks=None):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype
        self.ndim, self.chunks = array.ndim, chunks
        self.voxels = 0

    def __getitem__(self, key):
        part = np.asarray(self.array[key])
        self.voxels += part.size
        return part


def _pyramid(volume, levels=3):
    """pyrDown levels halving y and x each time and z on the second."""
    out = [volume]
    work = volume.astype(np.float32)
    for k in range(1, levels):
        work = halve_planes(work)
        if k == 2:
            work = halve_z_axis(work)
        out.append(np.round(work).astype(volume.dtype))
    return out


def test_the_working_copy_is_the_loaded_volumes_pyramid_level():
    """Read band by band (odd chunks, with the context rows of the bands around), the
    reduced copy equals halving the whole volume, to float32 rounding."""
    rng = np.random.default_rng(0)
    volume = (rng.random((20, 150, 130)) * 4000).astype(np.uint16)
    whole = halve_z_axis(halve_planes(halve_planes(volume.astype(np.float32))))
    for given in (volume, da.from_array(volume, chunks=(7, 37, 50))):
        image, valid = volume_reduce.working_copy(given, (2, 4, 4))
        assert valid is None and image.shape == whole.shape
        np.testing.assert_allclose(image, whole, rtol=0, atol=4000 * 2e-6)


def test_nan_voxels_and_masks_reduce_to_the_valid_share():
    rng = np.random.default_rng(1)
    volume = rng.random((16, 96, 96)).astype(np.float32)
    volume[:, :40, :40] = np.nan
    mask = np.ones(volume.shape, bool)
    mask[:, 60:, 60:] = False
    image, valid = volume_reduce.working_copy(da.from_array(volume, chunks=(8, 32, 32)),
                                              (1, 4, 4), mask)  # fmt: skip
    assert np.isfinite(image).all()
    assert not valid[:, :8, :8].any() and not valid[:, 17:, 17:].any()
    assert valid[:, 12:14, :8].all() and valid[:, :8, 12:14].all()


@pytest.mark.parametrize("motion", ["euclidean", "affine"])
def test_reduced_and_refined_equals_the_whole_estimate(pairs, small_budget, monkeypatch, motion):
    reference, moving, spacing, truth = pairs[motion]
    reduced = align(reference, moving, ndim=3, spacing=spacing, motion=motion)
    assert reduced.parameters["estimated_at_scale"] == [1, 0.5, 0.5]
    assert reduced.parameters["refined_at_full_resolution"] is True
    monkeypatch.setattr(volume_reduce, "MAX_WORK_VOXELS", 10**9)
    whole = align(reference, moving, ndim=3, spacing=spacing, motion=motion)
    assert "estimated_at_scale" not in whole.parameters
    assert corner_rms(reduced.matrix, whole.matrix, SHAPE) < 0.02
    assert corner_rms(reduced.matrix, truth, SHAPE) < 0.05
    assert reduced.parameters["spacing"] == list(spacing)


def test_lazy_inputs_give_the_numpy_result(pairs, small_budget):
    reference, moving, spacing, _ = pairs["euclidean"]
    expected = align(reference, moving, ndim=3, spacing=spacing)
    logged = [Logged(v, chunks=(16, 64, 64)) for v in (reference, moving)]
    result = align(*logged, ndim=3, spacing=spacing)
    # The blocks lie in one stored chunk each: others than numpy's, as precise.
    assert corner_rms(result.matrix, expected.matrix, SHAPE) < 0.02


def test_the_reduction_reads_each_stored_voxel_once():
    volume = Logged(np.ones((40, 300, 200), np.uint16), chunks=(16, 64, 64))
    volume.array[:, ::3] = 7
    volume_reduce.working_copy(volume, (2, 8, 8))
    assert volume.voxels == volume.array.size


def test_a_pyramid_is_read_at_its_stored_level_and_in_blocks(small_budget):
    """Given as a list of levels, only stored levels and the full-resolution blocks are
    read: a third of the finest reference, where the blocks lie."""
    shape = (64, 384, 384)
    pair = lazy_volume_pair(shape, chunks=(32, 128, 128), seed=4)
    levels = {name: _pyramid(v.compute()) for name, v in (("reference", pair.reference),
                                                         ("moving", pair.moving))}  # fmt: skip
    finest = {name: Logged(v[0], chunks=(32, 128, 128)) for name, v in levels.items()}
    reference = [finest["reference"], *levels["reference"][1:]]
    moving = [finest["moving"], *levels["moving"][1:]]
    result = align(reference, moving, ndim=3, spacing=pair.spacing)
    assert result.parameters["estimated_at_scale"] == [0.5, 0.25, 0.25]  # stored level 2
    assert result.parameters["refined_at_full_resolution"] is True
    assert corner_rms(result.matrix, pair.matrix, shape) < 0.05
    size = np.prod(shape)
    assert 0 < finest["reference"].voxels < 0.4 * size
    assert 0 < finest["moving"].voxels < 0.6 * size


def test_a_full_resolution_start_is_taken_to_the_working_copy(pairs, small_budget):
    reference, moving, spacing, truth = pairs["euclidean"]
    result = align(reference, moving, ndim=3, spacing=spacing, init=truth)
    assert result.init_method == "matrix"
    assert corner_rms(result.matrix, truth, SHAPE) < 0.05


def test_a_mask_of_another_shape_is_refused(pairs, small_budget):
    reference, moving, spacing, _ = pairs["euclidean"]
    with pytest.raises(ValueError, match="reference_mask must have the volume's shape"):
        align(reference, moving, ndim=3, spacing=spacing, reference_mask=np.ones((4, 4, 4)))


def test_a_volume_list_that_is_no_pyramid_is_refused(pairs):
    reference, moving, spacing, _ = pairs["euclidean"]
    with pytest.raises(ValueError, match="reference is a list of pyramid levels"):
        align([reference, reference[:, ::2, ::3]], moving, ndim=3, spacing=spacing)


def test_a_thin_lazy_stack_of_wide_planes_aligns():
    """24 planes of 512 x 512 (2 x 0.5 x 0.5 µm), lazily: the level the starts are
    searched on has 6 planes, where every automatic start used to fail (see
    test_volume_accuracy's thin stacks)."""
    pair = lazy_volume_pair((24, 512, 512), chunks=(24, 256, 256), seed=4)
    found = align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion="euclidean")
    assert found.corner_error(pair.matrix) < 0.05
