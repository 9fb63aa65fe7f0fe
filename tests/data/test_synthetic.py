"""Synthetic images and pairs: shapes, determinism, transform ranges and the ECC convention."""

import math

import cv2
import numpy as np
import pytest

from napari_ecc_align import data as _synthetic
from napari_ecc_align.engine.alignment import MOTIONS, corner_rms
from napari_ecc_align.plugin import sample_data as _sample_data

CV_MOTION = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
    "homography": cv2.MOTION_HOMOGRAPHY,
}


def _warp_back(moving, matrix, shape):
    """Moving image resampled onto the reference grid with a reference→moving matrix."""
    rows, cols = shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(np.float32(moving), np.asarray(matrix), (cols, rows), flags=flags)


def _interior_corr(a, b, border=20):
    a = np.asarray(a, np.float64)[border:-border, border:-border].ravel()
    b = np.asarray(b, np.float64)[border:-border, border:-border].ravel()
    return float(np.corrcoef(a, b)[0, 1])


def _ecc_from(template, image, matrix, motion, gauss):
    init = np.float32(matrix) if motion == "homography" else np.float32(matrix[:2])
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-8)
    _, out = cv2.findTransformECC(template, image, init, CV_MOTION[motion], criteria, None, gauss)
    return out


# ----------------------------------------------------------------------------- images


@pytest.mark.parametrize("kind", sorted(_synthetic.KINDS))
@pytest.mark.parametrize("shape", [(200, 200), (97, 261)])
def test_image_shape_dtype_range(kind, shape):
    img = _synthetic.KINDS[kind](shape, 3)
    assert img.shape == shape
    assert img.dtype == np.float32
    assert np.isfinite(img).all()
    assert img.min() >= 0.0 and img.max() <= 1.0
    assert img.std() > 0.02  # not flat


@pytest.mark.parametrize("kind", sorted(_synthetic.KINDS))
def test_image_determinism(kind):
    make = _synthetic.KINDS[kind]
    a, b, c = make((150, 170), 7), make((150, 170), 7), make((150, 170), 8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_text_page_is_ink_on_paper():
    page = _synthetic.text_page((400, 300), 0)
    assert np.median(page) == 1.0  # white paper
    assert page.min() < 0.05  # black ink
    assert 0.02 < np.mean(page < 0.5) < 0.4


def test_spots_are_sparse_and_dark():
    img = _synthetic.fluorescence_spots((256, 256), 0)
    assert np.median(img) < 0.12
    assert img.max() > 0.3


# --------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("motion", MOTIONS)
def test_random_warp_ranges(motion):
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = _synthetic.random_warp(motion, rng)
        assert m.shape == (3, 3) and m.dtype == np.float64 and m[2, 2] == 1.0
        assert np.all((np.abs(m[:2, 2]) >= 10) & (np.abs(m[:2, 2]) <= 20))
        if motion == "translation":
            np.testing.assert_array_equal(m[:2, :2], np.eye(2))
        if motion == "euclidean":
            np.testing.assert_allclose(m[:2, :2] @ m[:2, :2].T, np.eye(2), atol=1e-12)
            assert 4 <= abs(math.degrees(math.atan2(m[1, 0], m[0, 0]))) <= 8
        if motion in ("affine", "homography"):
            assert np.all(np.abs(np.diag(m)[:2] - 1) <= 0.05)
            assert abs(m[0, 1]) <= 0.03 and abs(m[1, 0]) <= 0.03
        if motion == "homography":
            assert np.all((m[2, :2] >= 1e-4) & (m[2, :2] <= 3e-4))
        else:
            np.testing.assert_array_equal(m[2], [0, 0, 1])


def test_random_warp_signs_and_unsigned():
    rng = np.random.default_rng(1)
    tx = [_synthetic.random_warp("translation", rng)[0, 2] for _ in range(40)]
    assert min(tx) < 0 < max(tx)
    angles = [_synthetic.random_warp("euclidean", rng, signed=False) for _ in range(20)]
    assert all(m[1, 0] > 0 and m[0, 2] > 0 and m[1, 2] > 0 for m in angles)


@pytest.mark.parametrize("motion", MOTIONS)
def test_random_warp_center_moves_by_translation(motion):
    center = (100.0, 60.0)
    m = _synthetic.random_warp(motion, np.random.default_rng(2), center=center)
    plain = _synthetic.random_warp(motion, np.random.default_rng(2))
    p = m @ [*center, 1.0]
    np.testing.assert_allclose(p[:2] / p[2], np.add(center, plain[:2, 2]), atol=1e-9)


def test_random_warp_rejects_unknown_motion():
    with pytest.raises(ValueError, match="motion must be one of"):
        _synthetic.random_warp("similarity", np.random.default_rng(0))


def test_make_pair_samples_image_at_matrix_times_x():
    """template(x) = image(W x): checked pixel by pixel with a bilinear lookup."""
    image = _synthetic.natural_image((216, 216), 0)
    w = _synthetic.random_warp("homography", np.random.default_rng(3), signed=False)
    template = _synthetic.make_pair(image, w, (200, 200))
    assert template.shape == (200, 200) and template.dtype == np.float32
    for x, y in [(50, 40), (120, 90), (20, 150), (150, 20)]:
        p = w @ [x, y, 1.0]
        mx, my = p[0] / p[2], p[1] / p[2]
        x0, y0 = int(mx), int(my)
        fx, fy = mx - x0, my - y0
        patch = image[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
        expected = (
            patch[0, 0] * (1 - fx) * (1 - fy)
            + patch[0, 1] * fx * (1 - fy)
            + patch[1, 0] * (1 - fx) * fy
            + patch[1, 1] * fx * fy
        )
        assert template[y, x] == pytest.approx(expected, abs=2e-3)


@pytest.mark.parametrize("kind", sorted(_synthetic.KINDS))
@pytest.mark.parametrize("motion", MOTIONS)
def test_ecc_started_at_truth_stays_there(kind, motion):
    """OpenCV's protocol (216x216 input, 200x200 template): the truth is a fixed point.

    Without the prefilter ECC must not move at all (this pins the convention);
    with OpenCV's default 5x5 prefilter it drifts a little, because blurring
    does not commute with a warp that scales or shears.
    """
    image = _synthetic.KINDS[kind]((216, 216), 0)
    w = _synthetic.random_warp(motion, np.random.default_rng(10))
    template = _synthetic.make_pair(image, w, (200, 200))
    assert corner_rms(_ecc_from(template, image, w, motion, 1), w, (200, 200)) < 0.05
    tol = 0.3 if motion == "homography" else 0.1
    assert corner_rms(_ecc_from(template, image, w, motion, 5), w, (200, 200)) < tol


def test_wrong_direction_is_detected():
    """The inverse matrix (the classic mistake) is far from a fixed point."""
    image = _synthetic.natural_image((216, 216), 0)
    w = _synthetic.random_warp("affine", np.random.default_rng(4), signed=False)
    template = _synthetic.make_pair(image, w, (200, 200))
    right = _warp_back(image, w, (200, 200))
    wrong = _warp_back(image, np.linalg.inv(w), (200, 200))
    assert _interior_corr(template, right) > 0.999
    assert _interior_corr(template, wrong) < 0.9


# -------------------------------------------------------------------------------- pairs


def test_score_pair():
    reference, moving, matrix = _synthetic.score_pair()
    assert reference.shape == moving.shape == (600, 800)
    assert reference.dtype == np.uint8 and set(np.unique(reference)) == {0, 255}
    assert moving.dtype == np.uint8 and len(np.unique(moving)) > 100
    paper = moving[reference == 255]
    assert 195 < np.median(paper) < 240
    assert math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])) == pytest.approx(0.3)
    assert math.hypot(matrix[0, 0], matrix[1, 0]) == pytest.approx(1.002)
    aligned = _warp_back(moving, matrix, reference.shape)
    assert _interior_corr(reference, aligned) > 0.9
    assert _interior_corr(reference, moving) < 0.5  # visibly misaligned before


def test_natural_pair():
    reference, moving, matrix = _synthetic.natural_pair()
    assert reference.shape == moving.shape == (512, 512)
    assert reference.dtype == moving.dtype == np.float32
    assert 0 <= moving.min() and moving.max() <= 1
    assert math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])) == pytest.approx(0.5)
    aligned = _warp_back(moving, matrix, reference.shape)
    assert _interior_corr(reference, aligned) > 0.98
    assert _interior_corr(reference, moving) < _interior_corr(reference, aligned) - 0.02


def test_pairs_are_deterministic():
    a, b = _synthetic.score_pair((200, 240), 5), _synthetic.score_pair((200, 240), 5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------- samples


@pytest.mark.parametrize(
    ("sample", "names"),
    [
        (_sample_data.score_pair, ("score reference (binarised)", "score moving (grayscale)")),
        (_sample_data.natural_pair, ("natural reference", "natural moving")),
    ],
)
def test_sample_data_layer_tuples(sample, names):
    layers = sample((240, 200), 0)
    assert [layer[0].shape for layer in layers] == [(240, 200), (240, 200)]
    assert [layer[1]["name"] for layer in layers] == list(names)
    assert [layer[2] for layer in layers] == ["image", "image"]
    assert layers[1][1]["blending"] == "additive"
    assert layers[0][1]["colormap"] != layers[1][1]["colormap"]
    true = [np.array(layer[1]["metadata"]["ecc_true_matrix"]) for layer in layers]
    assert true[0].shape == (3, 3)
    np.testing.assert_array_equal(true[0], true[1])
