"""No silent wrong answers (issue 21, item 5).

An ECC refinement that turns the image far from where it started has found a
look-alike, not the pose it started near: a brain slice turned by 180° correlates
0.96 with itself on the search level and 0.90 at full resolution. Such a candidate no
longer ends the automatic search early unless it correlates 0.98, and a given start
that ECC turned that far, to less than 0.98, is checked against the search, with an
``AlignmentError`` when the search does clearly better. Accuracy is the corner RMS
error against the known matrix.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_ecc_align import AlignmentError, align
from napari_ecc_align.engine.geometry import turn_degrees
from napari_ecc_align.engine.initialisation import (
    MAX_REFINE_TURN,
    SURE_CORRELATION,
    Candidate,
    _good_enough,
)

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata"
PD_SLICE = REALDATA / "itk-brain-slices" / "BrainProtonDensitySliceBorder20.png"


def _turn(degrees, ndim=2):
    matrix = np.eye(ndim + 1)
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:2, -1] = (7.0, -3.0)  # a shift changes no angle
    return matrix


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("degrees", [0.0, 12.5, 90.0, 179.0])
def test_turn_degrees_reads_the_rotation_of_any_matrix(ndim, degrees):
    matrix = _turn(degrees, ndim)
    assert turn_degrees(matrix) == pytest.approx(degrees, abs=1e-9)
    scaled = matrix @ np.diag([1.2] * ndim + [1.0])  # scale and shear are not a turn
    scaled[0, 1] += 0.01
    assert turn_degrees(scaled) == pytest.approx(degrees, abs=0.5)
    assert turn_degrees(matrix @ _turn(30.0, ndim), _turn(30.0, ndim)) == pytest.approx(
        degrees, abs=1e-9
    )
    assert np.isnan(turn_degrees(np.zeros((ndim + 1, ndim + 1))))


def test_a_candidate_that_turned_far_does_not_end_the_search():
    near = Candidate("identity", np.eye(3), 0.97, refined=_turn(MAX_REFINE_TURN / 2))
    far = Candidate("identity", np.eye(3), 0.97, refined=_turn(MAX_REFINE_TURN + 10))
    started_turned = Candidate("fourier-mellin", _turn(100.0), 0.97, refined=_turn(103.0))
    assert _good_enough([near])
    assert not _good_enough([far])
    assert _good_enough([started_turned])  # it turned 3° from its own start
    sure = Candidate("identity", np.eye(3), SURE_CORRELATION, refined=_turn(70.0))
    assert _good_enough([sure])  # turned far, but to a match that leaves no doubt
    assert not _good_enough([Candidate("phase", np.eye(3), 0.90, refined=np.eye(3))])


@pytest.mark.skipif(not PD_SLICE.is_file(), reason="needs ../shared/realdata (ITK's brain slice)")
@pytest.mark.parametrize("degrees", [100.0, 140.0])
def test_a_real_slice_turned_far_is_found_or_refused_never_a_look_alike(degrees):
    """ITK's proton-density slice turned about its centre: the automatic search ends at
    the turn (it used to stop at the look-alike 180° away: 80° / 40°, correlation 0.90),
    and an identity start that ECC turns onto the look-alike raises instead of returning it."""
    image = cv2.imread(str(PD_SLICE), cv2.IMREAD_GRAYSCALE)
    rows, cols = image.shape
    truth = np.vstack([cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), degrees, 1.0),
                       [0.0, 0.0, 1.0]])  # fmt: skip
    moving = cv2.warpAffine(image, truth[:2], (cols, rows), borderMode=cv2.BORDER_REPLICATE)
    result = align(image, moving, motion="euclidean")
    assert result.corner_error(truth) < 0.1
    with pytest.raises(AlignmentError, match="init='auto' finds a pose"):
        align(image, moving, motion="euclidean", init="identity")


@pytest.mark.skipif(not PD_SLICE.is_file(), reason="needs ../shared/realdata (ITK's brain slice)")
def test_a_far_turn_that_is_right_is_kept_from_an_identity_start():
    """The same slice turned 70°: ECC from the identity gets there (correlation 0.997),
    the search agrees, so nothing is raised."""
    image = cv2.imread(str(PD_SLICE), cv2.IMREAD_GRAYSCALE)
    rows, cols = image.shape
    truth = np.vstack([cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), 70.0, 1.0),
                       [0.0, 0.0, 1.0]])  # fmt: skip
    moving = cv2.warpAffine(image, truth[:2], (cols, rows), borderMode=cv2.BORDER_REPLICATE)
    result = align(image, moving, motion="euclidean", init="identity")
    assert result.corner_error(truth) < 0.1
