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


def test_volume_finishing_rebuilds_the_pyramids_after_the_last_pass():
    """The finishing rules (runner-up starts) now hold for volumes: after the main pass
    freed the pyramids, a runner-up is finished from the search level on rebuilt ones
    and wins over a start that ended far off."""
    ref, mov, spacing, truth = volume_pair(shape=(48, 96, 96), seed=5)
    params = validate_params(motion="euclidean")
    pair = VolumePair(ref, mov, params, spacing)
    pair.release()  # as after the main pass: nothing of the pyramids is left
    assert pair.ref_pyr is None
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
