"""One driver for images and volumes (issue 20, item 1).

The level loop, one ECC level, the start search, phase correlation and the finishing
rules are written once; what differs per dimensionality sits behind a ``Grid``. These
tests run the shared parts through both grids and check what used to exist for one
dimensionality only now holds for the other. Accuracy is the corner RMS error.
"""

import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import align
from napari_ecc_align.data import natural_image, volume_pair
from napari_ecc_align.engine import estimate
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.engine.ecc import run_levels
from napari_ecc_align.engine.finishing import finish_runner_ups
from napari_ecc_align.engine.image_pair import ImagePair
from napari_ecc_align.engine.initialisation import Candidate, Initialisation
from napari_ecc_align.engine.levels import run_to_end
from napari_ecc_align.engine.options import validate_params
from napari_ecc_align.engine.spectral import phase_candidates, shift_peaks
from napari_ecc_align.engine.volume_pair import VolumePair


def _blob_volume(shape, seed):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 2.0)


@pytest.mark.parametrize(
    ("shape", "shift"),
    [
        ((96, 128), (5.0, -7.0)),
        ((96, 128), (-30.0, 12.0)),
        ((40, 48, 56), (4.0, -3.0, 2.0)),
        ((40, 48, 56), (-9.0, 6.0, -5.0)),
    ],
)
def test_phase_correlation_is_one_function_for_images_and_volumes(shape, shift):
    """``moving(v + d) = reference(v)``: ``d`` (x first) is one of the strongest peak's
    wrap-around readings, in 2D and 3D, for positive and negative shifts alike (the
    search ranks the readings by correlation)."""
    base_shape = tuple(n + 2 * 32 for n in shape)
    scene = (
        natural_image(base_shape, seed=1).astype(np.float32)
        if len(shape) == 2
        else _blob_volume(base_shape, seed=1)
    )
    inner = tuple(slice(32, 32 + n) for n in shape)
    moved = tuple(
        slice(32 - int(d), 32 - int(d) + n) for n, d in zip(shape, shift[::-1], strict=True)
    )
    reference, moving = scene[inner], scene[moved]
    readings = shift_peaks(reference, moving, peaks=1)
    assert len(readings) == 2 ** len(shape)  # every wrap-around reading of the peak
    strongest = phase_candidates(reference, moving)[: 2 ** len(shape)]
    assert all(m.shape == (len(shape) + 1,) * 2 for m in strongest)
    errors = [np.abs(m[:-1, -1] - shift).max() for m in strongest]
    assert min(errors) < 0.3
    for matrix in strongest:
        np.testing.assert_array_equal(matrix[:-1, :-1], np.eye(len(shape)))


def test_one_level_loop_serves_both_grids():
    """``run_levels`` with a volume pair's grid and with an image pair's grid reaches the
    truth from the identity, staged on the coarsest level, and frees each volume level
    on its last pass (a volume grid's ``release``)."""
    ref, mov, spacing, truth = volume_pair(shape=(48, 96, 96), seed=2)
    params = validate_params(motion="euclidean")
    pair = VolumePair(ref, mov, params, spacing)
    steps = run_levels(pair.grid, pair.ref_pyr, pair.mov_pyr, np.eye(4), "euclidean", params,
                       pair.levels - 1, 0, True, release=True)  # fmt: skip
    matrix, iterations, _ = run_to_end(steps)
    assert len(iterations) == pair.levels
    assert corner_rms(pair.final(matrix), truth, ref.shape) < 0.05
    assert all(level is None for level in pair.ref_pyr[1:])  # released
    assert pair.ref_pyr[0] is not None  # the finest level is the caller's to release

    image = natural_image((256, 320), seed=4)
    shifted = np.roll(image, (3, -2), axis=(0, 1))
    plane = ImagePair(image, shifted, validate_params(motion="translation"))
    steps = run_levels(plane.grid, plane.ref_pyr, plane.mov_pyr, np.eye(3), "translation",
                       plane.params, plane.levels - 1, 0, True, release=True)  # fmt: skip
    matrix, _, _ = run_to_end(steps)
    np.testing.assert_allclose(matrix[:2, 2], [-2.0, 3.0], atol=0.05)
    assert all(level is not None for level in plane.ref_pyr)  # image levels are kept


def _grating_volumes(period=12):
    """A grating along x (period ``period`` voxels) with faint texture, and its copy
    moved by (x, y, z) = (-2, -1.5, -1): a start a period off correlates nearly as well."""
    rng = np.random.default_rng(0)
    shape = (40, 96, 120)
    x = np.arange(shape[2], dtype=np.float32)
    texture = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 3)
    volume = np.sin(2 * np.pi * x / period) + 0.05 * (texture - texture.mean()) / texture.std()
    inner = np.s_[4:36, 8:88, 8:112]
    moved = ndimage.shift(volume, (-1.0, -1.5, -2.0), order=1)
    truth = np.eye(4)
    truth[:3, 3] = (-2.0, -1.5, -1.0)
    return volume[inner], moved[inner], truth


def test_volumes_get_the_finishing_rules_after_a_real_last_pass():
    """A search that chose a start a grating period off: after the main pass (which
    blurred the full-resolution volumes in place and freed the pyramids), the driver's
    finishing rules finish the identity start on rebuilt pyramids and keep it, since it
    correlates as well and moves the volume a period less; a finish reads no blurred
    level as plain (the same result as on a fresh pair)."""
    reference, moving, truth = _grating_volumes()
    params = validate_params(motion="translation")
    pair = VolumePair(reference, moving, params, None)
    far = truth.copy()
    far[0, 3] += 12.0  # one period further in x
    near = Candidate("identity", np.eye(4), 0.95, refined=truth.copy(), path="direct")
    chosen = Candidate("phase", far, 0.96, refined=far)
    begin = estimate._Start(far, "phase", 1, False, np.eye(4),
                            Initialisation(far, "phase", 1, [near, chosen]))  # fmt: skip
    matrix, iterations, failure = run_to_end(estimate._run_pyramid(pair, begin, 2))
    assert corner_rms(matrix, far, reference.shape) < 0.5  # ECC stayed a period off
    assert corner_rms(matrix, truth, reference.shape) > 11
    assert pair.ref_pyr is not None and pair.ref_pyr[1] is None  # the pass freed level 1
    outcome = estimate._outcome(pair, begin, matrix, iterations, failure)
    assert outcome.method.startswith("identity")
    assert corner_rms(outcome.matrix, truth, reference.shape) < 0.05
    assert pair.ref_pyr is None  # released before the finishing runs
    fresh = VolumePair(reference, moving, params, None)
    assert pair.finish(near, 1)[0].tolist() == fresh.finish(near, 1)[0].tolist()


def test_volume_runner_ups_are_finished_when_the_chosen_start_ends_badly():
    """The runner-up rule holds for volumes: a chosen start that ended far off loses to a
    runner-up finished from the search level."""
    ref, mov, spacing, truth = volume_pair(shape=(48, 96, 96), seed=5)
    params = validate_params(motion="euclidean")
    pair = VolumePair(ref, mov, params, spacing)
    pair.release()
    good = Candidate("phase", np.eye(4), 0.9, refined=np.eye(4))
    bad = np.eye(4)
    bad[:3, 3] = (20.0, -15.0, 4.0)
    chosen = Candidate("identity", bad, 0.95, refined=bad)
    found = Initialisation(bad, "identity", 1, [chosen, good])
    start = (bad, "identity", [1, 1], pair.correlation(bad))
    matrix, method, _, correlation = finish_runner_ups(pair, found, start)
    assert method == "phase"
    assert correlation > start[3] + 0.1
    assert corner_rms(matrix, truth, ref.shape) < 0.05


def test_grids_offer_their_own_estimators():
    """Fourier–Mellin and features exist in 2D only: volumes name what they offer."""
    ref, mov, spacing, _ = volume_pair(shape=(24, 48, 48), seed=1)
    for init in ("fourier-mellin", "features"):
        with pytest.raises(ValueError, match="'auto', 'phase'"):
            align(ref, mov, ndim=3, spacing=spacing, init=init)
