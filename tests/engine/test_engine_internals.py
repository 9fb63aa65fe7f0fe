"""The engine's shortcuts give what the plain computation gives: prepared references,
the moment-matrix ECC update, banded correlation, the integer normalise path."""

import math

import cv2
import numpy as np
import pytest

from napari_ecc_align import AlignmentError, Template, align, align_stack
from napari_ecc_align.data import natural_image
from napari_ecc_align.engine.geometry import max_corner_shift
from napari_ecc_align.engine.plane import CorrelationSample, full_correlation
from napari_ecc_align.engine.preprocess import normalise


def _shifted(scene, dx, dy, angle, shape):
    """A ``shape`` view of ``scene`` shifted by (dx, dy) and rotated by ``angle`` degrees."""
    rows, cols = shape
    matrix = cv2.getRotationMatrix2D(((cols - 1) / 2, (rows - 1) / 2), angle, 1.0)
    matrix[:, 2] += (20 + dx, 20 + dy)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(scene, matrix, (cols, rows), flags=flags)


@pytest.fixture(scope="module")
def frames():
    scene = natural_image((300, 340), seed=3)
    poses = [(0, 0, 0), (2.5, -1.5, 0.3), (-4.0, 3.0, -0.5), (6.0, 1.0, 0.8), (-1.0, -5.0, 0.2)]
    return [(_shifted(scene, *pose, (256, 300)) * 255).astype(np.uint8) for pose in poses]


def test_prepared_reference_gives_the_same_result_and_reuses_its_work(frames):
    reference, movings = frames[0], frames[1:]
    prepared = Template(reference)
    plain = [align(reference, m, motion="euclidean") for m in movings]
    first = align(prepared, movings[0], motion="euclidean")
    pyramid = prepared.pyramid(0, plain[0].levels)
    memo_sizes = [len(level.memo) for level in pyramid]
    assert sum(memo_sizes) > 0  # the reference side was kept
    rest = [align(prepared, m, motion="euclidean") for m in movings[1:]]
    for a, b in zip(plain, [first, *rest], strict=True):
        np.testing.assert_array_equal(a.matrix, b.matrix)
        assert a.correlation == b.correlation and a.correlation_before == b.correlation_before
    # later frames found everything they needed in the memo: nothing new was computed
    assert [len(level.memo) for level in prepared.pyramid(0, plain[0].levels)] == memo_sizes


def test_prepared_reference_keeps_its_mask(frames):
    mask = np.ones(frames[0].shape, bool)
    mask[:, :40] = False
    prepared = Template(frames[0], mask)
    a = align(prepared, frames[2], motion="euclidean")
    b = align(frames[0], frames[2], motion="euclidean", reference_mask=mask)
    np.testing.assert_array_equal(a.matrix, b.matrix)


def test_two_workers_give_bit_identical_matrices(frames):
    # The shared memo and the small-level lock must not make results depend on timing.
    stack = np.stack(frames * 3)
    one = align_stack(stack, reference="first", workers=1)
    two = align_stack(stack, reference="first", workers=2)
    np.testing.assert_array_equal(one.matrices, two.matrices)


def _plain_correlation(ref, ref_valid, mov, mov_valid, matrix):
    """The textbook computation: warp everything, mask, centre, correlate (float64)."""
    rows, cols = ref.shape
    source = mov.astype(np.float32).copy()
    if mov_valid is not None:
        source[~mov_valid] = np.nan
    args = (cols, rows), None, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, cv2.BORDER_CONSTANT
    if np.array_equal(matrix, np.eye(3)):
        warped = source  # no resampling, so a masked pixel does not spread to its neighbours
    elif matrix[2, 0] == 0 and matrix[2, 1] == 0:
        warped = cv2.warpAffine(source, matrix[:2], *args, float("nan"))
    else:
        warped = cv2.warpPerspective(source, matrix, *args, float("nan"))
    ok = np.isfinite(warped)
    if ref_valid is not None:
        ok &= ref_valid
    r, w = ref[ok].astype(np.float64), warped[ok].astype(np.float64)
    r, w = r - r.mean(), w - w.mean()
    return float(np.dot(r, w) / math.sqrt(np.dot(r, r) * np.dot(w, w)))


@pytest.mark.parametrize("seed", range(6))
def test_banded_correlation_matches_the_textbook_one(seed):
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(40, 700)), int(rng.integers(40, 1400))
    ref = cv2.GaussianBlur(rng.random((rows, cols), dtype=np.float32), (0, 0), 2)
    mov = np.clip(ref * 0.8 + rng.normal(0, 0.05, ref.shape), 0, 1).astype(np.float32)
    ref_valid = rng.random(ref.shape) > 0.1 if seed % 2 else None
    mov_valid = rng.random(ref.shape) > 0.1 if seed % 3 == 0 else None
    angle = math.radians(rng.uniform(-3, 3))
    matrix = np.array(
        [[math.cos(angle), -math.sin(angle), rng.uniform(-9, 9)],
         [math.sin(angle), math.cos(angle), rng.uniform(-9, 9)],
         [1e-5 if seed == 5 else 0.0, 0.0, 1.0]]
    )  # fmt: skip
    expected = _plain_correlation(ref, ref_valid, mov, mov_valid, matrix)
    got = full_correlation(ref, ref_valid, mov, mov_valid, matrix)
    assert got == pytest.approx(expected, abs=1e-5)
    identity = full_correlation(ref, ref_valid, mov, mov_valid, np.eye(3))
    assert identity == pytest.approx(
        _plain_correlation(ref, ref_valid, mov, mov_valid, np.eye(3)), abs=1e-5
    )


@pytest.mark.parametrize("case", ["affine", "homography", "masked", "smaller moving"])
def test_large_images_report_the_correlation_of_a_random_pixel_per_cell(case):
    """Beyond the budget the reported correlation reads one random pixel per grid cell:
    within 1e-3 of every pixel's on a natural pair (rotated, masked, a homography,
    a moving image of another size), and, on stripes two rows wide, which a grid of
    every second row would see as one flat value, equal to every pixel's."""
    rows, cols, limit = 1200, 900, 200_000
    scene = natural_image((rows + 40, cols + 40), seed=3)
    ref = np.ascontiguousarray(scene[20:-20, 20:-20])
    angle = math.radians(0.4)
    matrix = np.array([[math.cos(angle), -math.sin(angle), 21.3],
                       [math.sin(angle), math.cos(angle), 18.6], [0, 0, 1.0]])  # fmt: skip
    rng = np.random.default_rng(3)
    moving = scene + rng.normal(0, 0.05, scene.shape).astype(np.float32)
    ref_valid = mov_valid = None
    if case == "homography":
        matrix[2, :2] = (2e-6, -3e-6)
    elif case == "masked":
        ref_valid = rng.random(ref.shape) > 0.2
        mov_valid = rng.random(moving.shape) > 0.2
    elif case == "smaller moving":
        moving = np.ascontiguousarray(moving[:900, :700])
    sample = CorrelationSample.of(ref, ref_valid, moving.shape, limit)
    assert sample is not None and limit / 4 < sample.values.size <= limit
    for at in (matrix, np.eye(3)):
        everywhere = full_correlation(ref, ref_valid, moving, mov_valid, at)
        sampled = sample.correlation(moving, mov_valid, at, moving.shape == ref.shape)
        assert sampled != everywhere  # the sample was read, not every pixel
        assert sampled == pytest.approx(everywhere, abs=1e-3)
    assert CorrelationSample.of(ref, None, moving.shape, ref.size) is None  # small: all

    stripes = np.zeros((rows, cols), np.float32)
    stripes[::2] = 1.0
    stripes += rng.normal(0, 0.1, stripes.shape).astype(np.float32)
    sample = CorrelationSample.of(stripes, None, stripes.shape, 300_000)  # a stride of 2
    shifted = np.array([[1.0, 0, 0], [0, 1, 1.0], [0, 0, 1]])  # one row: stripes inverted
    for at in (np.eye(3), shifted):
        expected = full_correlation(stripes, None, stripes, None, at)
        assert sample.correlation(stripes, None, at, True) == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32])
def test_integer_images_normalise_like_their_float_copy(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(1)
    image = rng.integers(max(info.min, -20000), min(info.max, 20000), (90, 120)).astype(dtype)
    fast, valid = normalise(image, "image")
    slow, _ = normalise(image.astype(np.float64), "image")
    assert valid is None and fast.dtype == np.float32
    np.testing.assert_allclose(fast, slow, atol=1e-6)
    with pytest.raises(AlignmentError, match="no contrast"):
        normalise(np.full((20, 20), 7, dtype), "flat")


def test_corner_shift_of_affine_steps_matches_numpy():
    rng = np.random.default_rng(0)
    corners = np.array([[0, 99, 0, 99], [0, 0, 49, 49], [1, 1, 1, 1]], float)
    for _ in range(50):
        step = np.eye(3)
        step[:2] += rng.normal(0, 0.05, (2, 3)) * [1, 1, 20]
        expected = np.abs((step @ corners)[:2] - corners[:2]).max()
        assert max_corner_shift(step, corners) == pytest.approx(expected, rel=1e-12)
    step = np.eye(3)
    step[0, 2] = np.nan
    assert max_corner_shift(step, corners) == math.inf
