"""Binarised against grayscale (issue 12): bilevel pairs (mapped intensities, see
``test_intensity.py``) and the nearest-identity rule.

Corner RMS errors against known similarities. Before bilevel pairs were handled, the binarised
photographs below ended 0.17-0.96 px off (0.51-0.96 with the binarised image moving);
the tolerance here is 0.15 px, and 0.3 px for a binarised reference: its grayscale
partner is matched after the prefilter, which serves sharp-edged pages (score pages
below: 0.021 -> 0.012 px on average) at some cost on soft photographs (0.09-0.27 px
here, 0.15 px when matched before the blur).
"""

import numpy as np
import pytest

from napari_ecc_align import Progress, align, iter_align
from napari_ecc_align.data import make_pair, natural_image, score_pair, text_page
from napari_ecc_align.data.images import similarity_matrix
from napari_ecc_align.engine.bilevel import is_bilevel
from napari_ecc_align.engine.finishing import nearer_identity
from napari_ecc_align.engine.image_pair import ImagePair
from napari_ecc_align.engine.initialisation import (
    NEAR_EQUAL,
    Candidate,
    Initialisation,
    prefer_nearest_identity,
)
from napari_ecc_align.engine.options import validate_params

TOLERANCE_PX = 0.15
BINARISED_REFERENCE_TOLERANCE_PX = 0.3


def _photo_pair(seed, size=320):
    """A grayscale photo pair ``reference(x) = moving(truth x)``, rotated 1.2°, scaled 1 %."""
    scene = natural_image((size + 60, size + 60), seed)
    truth = similarity_matrix(1.2, (3.5, -2.5), 1.01, ((size - 1) / 2, (size - 1) / 2))
    offset = np.array([[1, 0, 30], [0, 1, 30], [0, 0, 1.0]])
    reference = make_pair(scene, offset, (size, size))
    moving = make_pair(scene, offset @ np.linalg.inv(truth), (size, size))
    return reference, moving, truth


ENCODINGS = {
    "bool": lambda bright: bright,
    "uint8 0/255": lambda bright: np.where(bright, 255, 0).astype(np.uint8),
    "two-valued float": lambda bright: np.where(bright, 4.25, -1.5),
}


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binarised_reference_against_grayscale(encoding, seed):
    reference, moving, truth = _photo_pair(seed)
    bright = reference > 0.5 * (reference.min() + reference.max())
    result = align(ENCODINGS[encoding](bright), moving)
    assert result.parameters["bilevel"] == "reference"
    assert result.corner_error(truth) <= BINARISED_REFERENCE_TOLERANCE_PX


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binarised_moving_against_grayscale(seed):
    reference, moving, truth = _photo_pair(seed)
    binary = moving > 0.5 * (moving.min() + moving.max())
    result = align(reference, binary)
    assert result.parameters["bilevel"] == "moving"
    assert result.parameters["intensity_mapped"] == "reference"  # the grayscale one
    assert result.corner_error(truth) <= TOLERANCE_PX


@pytest.mark.parametrize("side", ["reference", "moving"])
def test_a_mask_of_the_dark_class_is_turned_over(side):
    """An ink mask (True where the page is dark) correlates negatively with its page;
    without the polarity test it ended 159 px off with a correlation of 0.36."""
    reference, moving, truth = _photo_pair(0)
    if side == "reference":
        result = align(reference <= 0.5 * (reference.min() + reference.max()), moving)
    else:
        result = align(reference, moving <= 0.5 * (moving.min() + moving.max()))
    assert result.parameters["bilevel"] == side and result.parameters["bilevel_inverted"]
    tolerance = BINARISED_REFERENCE_TOLERANCE_PX if side == "reference" else TOLERANCE_PX
    assert result.corner_error(truth) <= tolerance and result.correlation > 0.6


def test_score_page_binarised_against_scan():
    reference, moving, truth = score_pair((600, 800), seed=1)
    result = align(reference, moving)
    assert result.parameters["bilevel"] == "reference"
    assert not result.parameters["bilevel_inverted"]
    assert result.corner_error(truth) <= 0.05
    # The reported correlation is the one ECC maximised: with the mapped grayscale image.
    assert 0.5 < result.correlation <= 1 and result.correlation > result.correlation_before


def test_score_pages_to_a_hundredth_of_a_pixel():
    """The seed's use: a binarised page against its grayscale scan. Matching the scan to
    the *blurred* binary page, with 100 000 full-resolution samples of its own, keeps
    the edges' sub-pixel positions (0.021 px on average when matched before the blur)."""
    errors = []
    for seed in range(3):
        reference, moving, truth = score_pair((1200, 900), seed=seed)
        errors.append(align(reference, moving).corner_error(truth))
    assert np.mean(errors) <= 0.015 and max(errors) <= 0.02


def test_grayscale_pairs_and_two_masks_take_the_plain_path():
    reference, moving, truth = _photo_pair(0)
    assert "bilevel" not in align(reference, moving).parameters
    masks = align(reference > 0.5, moving > 0.5)  # both bilevel: ECC's model holds
    assert "bilevel" not in masks.parameters


def test_a_bilevel_pair_is_mapped_within_the_pyramid_run():
    """The bilevel pass is a case of the intensity mapping (issue 21, item 3): no pass
    after the pyramid, one progress step and one iteration count per level."""
    reference, moving, _ = _photo_pair(1)
    steps = list(iter_align(reference > 0.5, moving))
    progress = [s for s in steps if isinstance(s, Progress)]
    assert [p.done for p in progress] == list(range(1, len(progress) + 1))
    assert progress[-1].done == progress[-1].levels and progress[-1].level == 0
    result = steps[-1]
    assert len(result.iterations) == result.levels
    assert result.parameters["intensity_mapped"] == "moving"  # the grayscale one


def test_bilevel_detection():
    rng = np.random.default_rng(0)
    gray = natural_image((120, 160), 0)
    binary = (gray > 0.5).astype(np.float32)
    assert is_bilevel(binary, None)
    stray = binary.copy()
    stray.flat[rng.choice(stray.size, stray.size // 200, replace=False)] = 0.5  # 0.5 %
    assert is_bilevel(stray, None)
    assert not is_bilevel(gray, None)
    # A grayscale page is mostly paper and ink, but its stroke edges are gray.
    page = text_page((300, 240), 0)
    assert not is_bilevel(np.float32(0.05) + np.float32(0.9) * page, None)
    # Only valid pixels count: gray values under a mask do not make an image gray.
    holes = binary.copy()
    holes[:40] = gray[:40]
    valid = np.ones(holes.shape, bool)
    valid[:40] = False
    assert is_bilevel(holes, valid) and not is_bilevel(holes, None)


def test_large_images_are_probed_but_gray_rows_between_the_probes_still_count():
    """Images over 4 x 65 536 pixels are probed on every 4th row and column first; the
    probe may only say "gray": gray rows that all fall between its rows (3 % of the
    image, on rows 2 mod 4) keep a binarised-looking page from being called bilevel."""
    binary = (natural_image((1000, 800), 1) > 0.5).astype(np.float32)
    assert binary.size > 4 * 65_536
    assert is_bilevel(binary, None)
    ruled = binary.copy()
    ruled[2::32] = 0.5  # one gray rule every 32 rows, all on rows the probe skips
    assert np.ascontiguousarray(ruled[::4, ::4]).min() != 0.5  # the probe sees none
    assert not is_bilevel(ruled, None)
    assert not is_bilevel(natural_image((1000, 800), 2), None)  # the probe says gray


# --------------------------------------------------------------------- nearer the identity
def _grating_pair(shift=(3.5, -2.0), period=24, size=320):
    """A noisy 2D grating: every shift by half a period in x and y correlates as well."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rng = np.random.default_rng(0)

    def scene(x, y):
        return np.cos(2 * np.pi * x / period) * np.cos(2 * np.pi * y / period)

    noise = rng.standard_normal((2, size, size)).astype(np.float32)
    reference = scene(xx, yy) + 0.3 * noise[0]
    moving = scene(xx - shift[0], yy - shift[1]) + 0.3 * noise[1]
    return reference, moving


def test_auto_start_keeps_the_pose_nearest_the_identity_on_a_repetitive_pair():
    reference, moving = _grating_pair()
    # The identity through the coarse levels drifts by half a period in x and y, to a
    # pose that correlates as well as the true one.
    drifted = align(reference, moving, motion="translation", init="identity")
    assert np.abs(drifted.matrix[:2, 2] - [3.5, -2.0]).max() > 5
    result = align(reference, moving, motion="translation")
    assert np.abs(result.matrix[:2, 2] - [3.5, -2.0]).max() < 0.1
    assert result.init_method.startswith("identity")
    assert result.correlation >= drifted.correlation - NEAR_EQUAL


def _translation(dx, dy):
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])


def test_near_equal_candidates_prefer_the_one_nearest_the_identity():
    near = Candidate("phase", _translation(3, 0), correlation=0.900, refined=_translation(3, 0))
    far = Candidate("fourier-mellin", _translation(27, 0), correlation=0.905,
                    refined=_translation(27, 0))  # fmt: skip
    chosen, method = prefer_nearest_identity([far, near], (200, 200))
    assert chosen is near
    assert method == "phase (nearest the identity; fourier-mellin correlated 0.005 higher)"
    # Clearly better correlation wins however far it is.
    far.correlation = 0.900 + 2 * NEAR_EQUAL
    assert prefer_nearest_identity([far, near], (200, 200)) == (far, "fourier-mellin")


def test_full_resolution_check_finishes_the_identity_when_a_far_pose_was_chosen():
    """A start chosen on the small level that ends half a period away loses, at full
    resolution, to the identity start that ends at the true shift with about the same
    correlation."""
    reference, moving = _grating_pair()
    params = validate_params(motion="translation", pyramid_levels=3)
    pair = ImagePair(reference, moving, params)
    assert pair.levels == 3
    far = _translation(15.5, -14.0)  # (3.5, -2) plus half a period in x and y
    identity = Candidate("identity", np.eye(3), 0.95, refined=_translation(3.4, -2.1))
    phase = Candidate("phase", far, 0.96, refined=far)
    found = Initialisation(far, "phase", 1, [identity, phase])
    finished = pair.finish(phase, 1)
    matrix, method, _, correlation = nearer_identity(pair, found, finished)
    assert np.abs(matrix[:2, 2] - [3.5, -2.0]).max() < 0.1
    # "identity" alone when it even correlates higher; with a note when slightly lower.
    assert method == "identity" or method.startswith("identity (nearest the identity; phase")
    assert correlation >= finished[3] - NEAR_EQUAL
    # An identity start that ends as far out is no reason to switch.
    identity.refined = far.copy()
    assert nearer_identity(pair, found, finished)[1] == "phase"
