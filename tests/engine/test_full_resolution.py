"""Images beyond the working budget: estimated on a halved copy, then refined at full
resolution on tiles of the original arrays (engine/full_resolution.py).

The budget is lowered here so that a 1 MP pair takes the path a 160 MP one takes by
default; the full-resolution estimate of the same pair is the yardstick.
"""

import cv2
import numpy as np
import pytest

import napari_ecc_align.engine.image_pair as image_pair
from napari_ecc_align import align
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine.full_resolution import GRID, choose_tiles

SHAPE = (1100, 1300)


@pytest.fixture
def small_budget(monkeypatch):
    """Images over 0.3 MP are estimated halved twice (as 160 MP ones are by default)."""
    monkeypatch.setattr(image_pair, "_MAX_WORK_PIXELS", 300_000)


def _clean_pair(seed=0):
    reference, moving, truth = natural_pair(SHAPE, seed=seed, noise=0.0)
    return (
        (reference * 255).round().astype(np.uint8),
        (moving * 255).round().astype(np.uint8),
        truth,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_a_halved_estimate_gets_full_resolution_precision(small_budget, seed):
    reference, moving, truth = _clean_pair(seed)
    result = align(reference, moving)
    assert result.parameters["estimated_at_scale"] == 0.25
    assert result.parameters["refined_at_full_resolution"] is True
    assert len(result.iterations) == result.levels - 1  # the two halvings: one level run
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_pair, "_MAX_WORK_PIXELS", 10 * image_pair._MAX_WORK_PIXELS)
        whole = align(reference, moving)  # estimated on the whole images
    assert "estimated_at_scale" not in whole.parameters
    # (refined 0.008 / 0.005 px, the whole estimate 0.004 / 0.005, halved alone 0.021 / 0.015)
    assert result.corner_error(truth) <= 0.01 and whole.corner_error(truth) <= 0.01


def test_without_refinement_the_halved_estimate_is_coarser(small_budget, monkeypatch):
    reference, moving, truth = _clean_pair(0)
    refined = align(reference, moving).corner_error(truth)
    monkeypatch.setattr(image_pair.ImagePair, "refine", lambda self, matrix: (matrix, None))
    halved = align(reference, moving)
    assert halved.parameters["refined_at_full_resolution"] is False
    assert refined < 0.5 * halved.corner_error(truth)


def test_refinement_reads_masks_colour_and_holes_of_the_originals(small_budget):
    """What the masks, NaN holes and transparent pixels hide is noise: read as image, it
    would pull the full-resolution tiles away."""
    reference, moving, truth = _clean_pair(2)
    rng = np.random.default_rng(2)
    colour = np.dstack([moving, moving, moving, np.full_like(moving, 255)])
    colour[:400, :500, :3] = rng.integers(0, 256, (400, 500, 3))
    colour[:400, :500, 3] = 0  # transparent: masked
    holes = reference.astype(np.float32)
    holes[500:560, :] = np.nan  # NaN rows: masked
    mask = np.ones(reference.shape, np.uint8)  # 0/1, as users pass them
    holes[:, :400] = rng.random((holes.shape[0], 400)) * 255
    mask[:, :400] = 0
    result = align(holes, colour, reference_mask=mask)
    assert result.parameters["refined_at_full_resolution"] is True
    assert result.corner_error(truth) < 0.01


def test_odd_masks_and_no_overlap_keep_the_halved_estimate_or_refine_one_tile(small_budget):
    reference, moving, truth = _clean_pair(4)
    roi = np.zeros(reference.shape, bool)
    roi[400:760, 500:860] = True  # one tile's worth: all 60 000 samples in it
    one = align(reference, moving, reference_mask=roi)
    assert one.parameters["refined_at_full_resolution"] is True
    # (corners far from the ROI: halved alone 0.28 px, the whole-image estimate 0.059)
    assert one.corner_error(truth) < 0.08
    interlaced = np.ones(reference.shape, bool)
    interlaced[1::2] = False  # looks valid halved; at full resolution no pixel survives
    striped = align(reference, moving, reference_mask=interlaced)
    assert striped.parameters["refined_at_full_resolution"] is False
    assert len(striped.iterations) == striped.levels - 2  # no entry for a refinement


def test_mapped_intensities_keep_the_halved_estimate(small_budget):
    """Full-resolution tiles run plain ECC only: with mapped intensities the halved
    estimate is the answer (and says so)."""
    reference, moving, truth = _clean_pair(3)
    result = align(reference, moving, intensity="mapped")
    assert result.parameters["intensity_mapped"] is not None
    assert result.parameters["refined_at_full_resolution"] is False
    assert result.corner_error(truth) < 0.05


def test_tiles_are_spread_over_the_image_and_skip_invalid_ones():
    energy = np.random.default_rng(0).random((40, 30))
    share = np.ones_like(energy)
    share[:, :10] = 0.2  # two of the 7 x 7 grid's columns of cells (30 tiles: 5, 5, 4, ...)
    tiles = choose_tiles(energy, share)
    assert len(tiles) == GRID * (GRID - 2)
    rows, cols = zip(*tiles, strict=True)
    assert min(cols) >= 10 and max(rows) >= 30 and min(rows) <= 5  # spread, valid only
    assert choose_tiles(np.zeros((4, 4)), np.ones((4, 4))) == []  # flat: nothing to read


# ------------------------------------------------------------------------------ lazy inputs
def test_dask_and_zarr_inputs_give_the_numpy_answer_without_being_loaded(small_budget, tmp_path):
    """A dask or zarr image beyond the budget is halved region by region (the same
    pyrDown result as the loaded image's) and its tiles read on demand: the matrix is the
    numpy input's to the last bit; one that fits is simply loaded. (That nothing is loaded
    whole is measured in test_memory.py.)"""
    import dask.array as da
    import zarr

    reference, moving, truth = _clean_pair(1)
    eager = align(reference, moving)
    stored = zarr.open_array(str(tmp_path / "moving.zarr"), mode="w", shape=moving.shape,
                             chunks=(200, 300), dtype=moving.dtype)  # fmt: skip
    stored[:] = moving
    lazy_reference = da.from_array(reference, chunks=(256, 256))
    lazy = align(lazy_reference, stored)
    assert np.array_equal(lazy.matrix, eager.matrix)
    assert lazy.parameters["refined_at_full_resolution"] is True
    with pytest.MonkeyPatch.context() as patch:  # fits the budget: loaded, same answer
        patch.setattr(image_pair, "_MAX_WORK_PIXELS", 10**8)
        assert np.array_equal(align(lazy_reference, stored).matrix, align(reference, moving).matrix)
    assert lazy.corner_error(truth) < 0.01


def test_lazy_inputs_are_checked_like_arrays(small_budget):
    import dask.array as da

    reference, moving, _ = _clean_pair(1)
    with pytest.raises(TypeError, match="moving must be a numeric or boolean array"):
        align(reference, da.from_array(moving.astype("U1")))
    with pytest.raises(TypeError, match="complex"):
        align(reference, da.from_array(moving.astype(np.complex64)))
    mask = da.ones((10, 10), dtype=bool)
    with pytest.raises(ValueError, match="moving_mask must have the image's spatial shape"):
        align(reference, da.from_array(moving), moving_mask=mask)
    holes = da.from_array(np.ones(moving.shape, bool), chunks=500)  # a lazy mask
    result = align(reference, da.from_array(moving, chunks=500), moving_mask=holes)
    assert result.parameters["refined_at_full_resolution"] is True


# ------------------------------------------------------------------------------ pyramids
def _pyramid(image, levels, mean=False):
    out = [image]
    for _ in range(levels):
        last = out[-1]
        if mean:  # 2 x 2 means, as many pyramid writers make them (floor of the half)
            out.append(cv2.resize(last, (last.shape[1] // 2, last.shape[0] // 2),
                                  interpolation=cv2.INTER_AREA))  # fmt: skip
        else:
            out.append(cv2.pyrDown(last))
    return out


def test_a_pyramid_list_is_estimated_on_its_stored_level(small_budget):
    """napari's multiscale data, finest level first: the stored level replaces halving the
    finest one (a pyrDown pyramid gives the numpy answer to the last bit; 2 x 2 means sit
    half a pixel off pyrDown's grid, which the full-resolution tiles take out), and the
    finest level is read in tiles."""
    import dask.array as da

    reference, moving, truth = _clean_pair(1)
    eager = align(reference, moving)
    stored = align(_pyramid(reference, 3), [da.from_array(a) for a in _pyramid(moving, 3)])
    assert np.array_equal(stored.matrix, eager.matrix)
    means = align(_pyramid(reference, 3, mean=True), _pyramid(moving, 3, mean=True))
    assert not np.array_equal(means.matrix, eager.matrix)  # the stored levels were used
    assert means.parameters["refined_at_full_resolution"] is True
    assert means.corner_error(truth) < 0.01
    short = align(_pyramid(reference, 1), moving)  # no level 2 stored: the finest is halved
    assert np.array_equal(short.matrix, eager.matrix)


def test_a_list_that_is_no_pyramid_is_refused_by_name(small_budget):
    reference, moving, _ = _clean_pair(1)
    with pytest.raises(ValueError, match="moving is a list of pyramid levels.*level 1"):
        align(reference, [moving, moving[::3, ::3]])
    with pytest.raises(ValueError, match="takes one 2D image"):  # same-size images: a stack
        align(reference, [moving, moving])
