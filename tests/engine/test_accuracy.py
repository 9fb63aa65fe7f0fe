"""Accuracy against known transforms, judged by corner RMS error in pixels.

The first test re-implements OpenCV's own ECC accuracy protocol
(modules/video/test/test_ecc.cpp): a 216×216 input, a 200×200 template cut
through a random warp G, and ECC must recover G. OpenCV scores a mixed-unit RMS
of matrix entries; we score the template corners in pixels, which is stricter.
"""

import zlib

import cv2
import numpy as np
import pytest

from napari_ecc_align import align, warp
from napari_ecc_align.data import KINDS, make_pair, natural_image, random_warp, score_pair
from napari_ecc_align.engine.alignment import MOTIONS, corner_rms
from napari_ecc_align.engine.plane import full_correlation
from napari_ecc_align.engine.preprocess import normalise

TOLERANCE_PX = 0.1


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_opencv_protocol(kind, motion):
    rng = np.random.default_rng(zlib.crc32(f"{kind}{motion}".encode()))
    errors = []
    for seed in range(3):
        image = KINDS[kind]((216, 216), seed=seed)
        true = random_warp(motion, rng, signed=False)  # OpenCV draws positive shifts and angles
        template = make_pair(image, true, (200, 200))
        result = align(template, image, motion=motion)
        errors.append(corner_rms(result.matrix, true, (200, 200)))
        assert result.correlation > result.correlation_before
    assert max(errors) <= TOLERANCE_PX, errors


def _photometric(image, rng, gain=0.7, bias=0.2, noise=0.02):
    out = gain * image + bias + noise * rng.standard_normal(image.shape).astype(np.float32)
    return out.astype(np.float32)


def _scene_pair(kind, motion, shape=(480, 640), seed=0, margin=40):
    """Two same-size views of one scene, a few pixels and about a degree apart.

    Returns (reference, moving, true matrix, rng); the reference is cut from the
    scene through the true warp, so no pixel of it is made up.
    """
    rng = np.random.default_rng(seed)
    rows, cols = shape
    scene = KINDS[kind]((rows + 2 * margin, cols + 2 * margin), seed=seed)
    true = _small_warp(motion, rng, ((cols - 1) / 2, (rows - 1) / 2))
    to_scene = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
    reference = make_pair(scene, to_scene @ true, shape)
    moving = np.ascontiguousarray(scene[margin:-margin, margin:-margin])
    return reference, moving, true, rng


def _small_warp(motion, rng, center):
    """A few pixels and a degree or so: what ECC alone must handle from the identity."""
    cx, cy = center
    m = np.eye(3)
    if motion != "translation":
        a = np.deg2rad(rng.uniform(-1.5, 1.5))
        m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    if motion in ("affine", "homography"):
        m[:2, :2] = m[:2, :2] @ np.array(
            [
                [1 + rng.uniform(-0.02, 0.02), rng.uniform(-0.01, 0.01)],
                [rng.uniform(-0.01, 0.01), 1 + rng.uniform(-0.02, 0.02)],
            ]
        )
    if motion == "homography":
        m[2, :2] = rng.uniform(-2e-5, 2e-5, 2)
    about = (
        np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
        @ m
        @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    )
    about[:2, 2] += rng.uniform(-6, 6, 2)
    return about / about[2, 2]


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_larger_images_with_gain_bias_and_noise(kind, motion):
    reference, scene, true, rng = _scene_pair(kind, motion)
    moving = _photometric(scene, rng)
    result = align(reference, moving, motion=motion)
    assert result.corner_error(true) <= TOLERANCE_PX
    at_truth = full_correlation(*normalise(reference, "r"), *normalise(moving, "m"), true)
    assert result.correlation >= at_truth - 1e-3


@pytest.mark.parametrize("motion", ["euclidean", "affine", "homography"])
def test_binarised_reference_vs_grayscale_moving(motion):
    reference, moving, true = score_pair((900, 700), seed=3, scale=1.0)  # rigid: euclidean fits
    assert reference.dtype == np.uint8 and set(np.unique(reference)) <= {0, 255}
    result = align(reference, moving, motion=motion)
    assert result.corner_error(true) <= TOLERANCE_PX
    assert result.correlation > result.correlation_before + 0.3


def test_score_pair_with_scale_change_needs_affine():
    reference, moving, true = score_pair(
        (900, 700), seed=4
    )  # 0.2 % scale: about 1 px at the corners
    assert align(reference, moving, motion="affine").corner_error(true) <= TOLERANCE_PX
    assert align(reference, moving, motion="euclidean").corner_error(true) > 0.5


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda im: np.round(im * 4095).astype(np.uint16), id="uint16-12bit"),
        pytest.param(lambda im: im.astype(np.float32), id="float01"),
        pytest.param(lambda im: (im * 1e5 - 3e4).astype(np.float64), id="float64-any-range"),
        pytest.param(lambda im: np.round(im * 2000 - 1000).astype(np.int16), id="int16-signed"),
        pytest.param(lambda im: im > 0.5, id="bool"),
    ],
)
def test_dtypes(convert):
    reference, scene, true, rng = _scene_pair("natural", "affine", shape=(300, 400), seed=5)
    kind = "natural"
    if "bool" in str(convert):
        kind = "text"
    result = align(convert(reference), convert(scene), motion="affine")
    assert result.corner_error(true) <= TOLERANCE_PX, kind


def test_rgb_and_rgba():
    reference, scene, true, rng = _scene_pair("natural", "euclidean", shape=(300, 400), seed=6)
    ref_rgb = np.stack([reference, reference**2, 1 - reference], axis=-1)
    mov_rgba = np.stack([scene, scene**2, 1 - scene, np.ones_like(scene)], axis=-1)
    result = align((ref_rgb * 255).astype(np.uint8), mov_rgba, motion="euclidean")
    assert result.corner_error(true) <= TOLERANCE_PX


def test_reference_and_moving_of_different_sizes():
    scene = natural_image((700, 900), seed=7)
    rng = np.random.default_rng(7)
    true = np.array([[1, 0, 250.0], [0, 1, 180.0], [0, 0, 1]]) @ _small_warp(
        "affine", rng, (149.5, 199.5)
    )
    reference = make_pair(scene, true, (300, 400))
    # ECC needs a rough pose for a crop this far inside the scene: give the offset.
    init = np.array([[1, 0, 250.0], [0, 1, 180.0], [0, 0, 1]])
    result = align(reference, scene, motion="affine", init=init)
    assert result.reference_shape == (300, 400) and result.moving_shape == (700, 900)
    assert result.corner_error(true) <= TOLERANCE_PX
    assert warp(scene, result).shape == (300, 400)


def test_nan_pixels_and_masks_are_ignored():
    reference, scene, true, rng = _scene_pair("natural", "affine", shape=(300, 400), seed=8)
    moving = scene.copy()
    moving[100:180, 150:260] = np.nan  # a hole: masked automatically
    corrupted = reference.copy()
    corrupted[:, :60] = rng.random((300, 60))  # garbage that a mask removes
    mask = np.ones(reference.shape, bool)
    mask[:, :60] = False
    result = align(corrupted, moving, motion="affine", reference_mask=mask)
    assert result.corner_error(true) <= TOLERANCE_PX


def test_reported_correlation_matches_opencv_on_the_final_warp():
    reference, scene, true, rng = _scene_pair("natural", "affine", shape=(300, 400), seed=9)
    result = align(reference, scene, motion="affine")
    aligned = cv2.warpAffine(
        scene, result.matrix[:2], (400, 300), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    inside = warp(np.ones(scene.shape, np.float32), result) > 0.999
    expected = cv2.computeECC(reference, aligned, inside.astype(np.uint8))
    assert result.correlation == pytest.approx(expected, abs=2e-3)


def test_pyramid_levels_and_iterations_are_reported():
    reference, scene, true, rng = _scene_pair("natural", "affine", shape=(480, 640), seed=10)
    auto = align(reference, scene)
    assert auto.levels >= 3 and len(auto.iterations) == auto.levels
    assert auto.iterations[-1] <= 5  # the finest level only polishes
    single = align(reference, scene, pyramid_levels=1, max_iterations=200)
    assert single.levels == 1 and len(single.iterations) == 1
