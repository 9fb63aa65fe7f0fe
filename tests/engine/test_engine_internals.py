"""The engine's shortcuts give what the plain computation gives: prepared references,
the moment-matrix ECC update, banded correlation, the integer normalise path."""

import math

import cv2
import numpy as np
import pytest

from napari_ecc_align import AlignmentError, Template, align, align_stack
from napari_ecc_align.data import natural_image
from napari_ecc_align.engine.geometry import max_corner_shift
from napari_ecc_align.engine.intensity import BINS, Transfer, _percentile_range, map_values
from napari_ecc_align.engine.plane import CorrelationSample, full_correlation
from napari_ecc_align.engine.preprocess import normalise
from napari_ecc_align.engine.reference_side import select_samples


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
        ref_valid = rng.random(ref.shape) > 0.05
        ref_valid[:, :200] = False
        mov_valid = np.ones(moving.shape, bool)
        mov_valid[300:700, 400:600] = False
    elif case == "smaller moving":
        moving = np.ascontiguousarray(moving[:900, :700])
    sample = CorrelationSample.of(ref, ref_valid, moving.shape, limit)
    assert sample is not None
    read = sample.values.size if sample.valid is None else np.count_nonzero(sample.valid)
    assert limit / 4 < read <= 1.05 * limit  # of the valid pixels
    for at in (matrix, np.eye(3)):
        everywhere = full_correlation(ref, ref_valid, moving, mov_valid, at)
        sampled = sample.correlation(moving, mov_valid, at, moving.shape == ref.shape)
        assert sampled != everywhere  # the sample was read, not every pixel
        assert sampled == pytest.approx(everywhere, abs=1e-3)
    assert CorrelationSample.of(ref, None, moving.shape, ref.size) is None  # small: all

    stripes = np.zeros((rows, cols), np.float32)
    stripes[::2] = 1.0
    stripes += rng.normal(0, 0.1, stripes.shape).astype(np.float32)
    np.clip(stripes, 0, 1, out=stripes)  # the sums take non-negative images, as normalise makes
    sample = CorrelationSample.of(stripes, None, stripes.shape, 300_000)  # a stride of 2
    shifted = np.array([[1.0, 0, 0], [0, 1, 1.0], [0, 0, 1]])  # one row: stripes inverted
    for at in (np.eye(3), shifted):
        expected = full_correlation(stripes, None, stripes, None, at)
        assert sample.correlation(stripes, None, at, True) == pytest.approx(expected, abs=5e-3)


def test_small_overlaps_and_strips_read_every_pixel():
    """The sample needs enough valid pixels: a small reference_mask, an overlap of a few
    thousand pixels and images beyond cv2.remap's 32767-pixel limit are read on every
    pixel, and a long strip aligns (a sampled gather had refused it)."""
    scene = natural_image((1040, 1040), seed=5)
    ref = np.ascontiguousarray(scene[20:-20, 20:-20])
    roi = np.zeros(ref.shape, bool)
    roi[400:560, 300:500] = True  # 32 000 valid pixels
    assert CorrelationSample.of(ref, roi, ref.shape, 200_000) is None
    sample = CorrelationSample.of(ref, None, ref.shape, 200_000)
    corner = np.ascontiguousarray(scene[:140, :140])  # overlaps 120 x 120 pixels
    at = np.array([[1.0, 0, 20], [0, 1, 20], [0, 0, 1]])
    expected = full_correlation(ref, None, corner, None, at)
    assert sample.correlation(corner, None, at, False) == expected  # read on every pixel

    strip = natural_image((64, 40_000), seed=6)
    assert CorrelationSample.of(strip, None, (64, 30_000)) is None
    result = align(strip, strip[:, 3000:33_000], motion="translation",
                   init=np.array([[1.0, 0, -2990], [0, 1, 0], [0, 0, 1]]))  # fmt: skip
    assert np.allclose(result.matrix[:2, 2], [-3000, 0], atol=0.01)


def test_template_reads_one_correlation_sample_for_all_frames():
    scene = natural_image((1100, 1100), seed=7)
    template = Template(scene[30:-30, 30:-30])
    frames = [np.ascontiguousarray(scene[30 + d : 1070 + d, 28:1068]) for d in (1, 2)]
    first = template.correlation_sample(0, frames[0].shape)
    assert first is not None and template.correlation_sample(0, frames[1].shape) is first
    results = [align(template, frame, motion="translation") for frame in frames]
    assert [tuple(np.round(r.matrix[:2, 2], 2)) for r in results] == [(2, -1), (2, -2)]


def _strongest_by_numpy(image, valid, margin, budget):
    """The whole-image numpy selection the banded one replaced, as it was."""
    rows, cols = image.shape
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    grad_x, grad_y = np.zeros_like(image), np.zeros_like(image)
    grad_x[:, 1:-1] = image[:, 2:] - image[:, :-2]
    grad_y[1:-1] = image[2:] - image[:-2]
    rng = np.random.default_rng(0)
    probe_rows = rng.integers(margin, rows - margin, size=30_000)
    probe_cols = rng.integers(margin, cols - margin, size=30_000)
    kth = min(29_999, int(30_000 * (1.0 - 0.5 * budget / inner)))
    chosen = np.zeros((rows, cols), bool)
    for grad in (grad_x, grad_y):
        magnitude = np.abs(grad)
        threshold = np.partition(magnitude[probe_rows, probe_cols], kth)[kth]
        chosen |= magnitude >= max(float(threshold), 1e-12)
    chosen[:margin] = chosen[-margin:] = chosen[:, :margin] = chosen[:, -margin:] = False
    if valid is not None:
        chosen &= valid
    idx = np.flatnonzero(chosen)
    if idx.size > budget:
        idx = np.sort(rng.choice(idx, size=budget, replace=False))
    return idx


@pytest.mark.parametrize("case", ["natural", "binary ties", "masked", "thin"])
def test_banded_sample_choice_matches_the_whole_image_one(case):
    rng = np.random.default_rng(8)
    shape = (37, 5000) if case == "thin" else (600, 700)
    image = natural_image(shape, seed=8)
    if case == "binary ties":
        image = cv2.GaussianBlur((image > 0.5).astype(np.float32), (3, 3), 0)
    valid = rng.random(shape) > 0.3 if case == "masked" else None
    for margin in (1, 2, 3):
        got = select_samples(image, valid, margin, 20_000)
        assert np.array_equal(got, _strongest_by_numpy(image, valid, margin, 20_000))
        assert 0 < got.size <= 20_000


def test_mapped_values_equal_numpy_interpolation():
    rng = np.random.default_rng(9)
    values = rng.random(50_000) * 1.4 - 0.2  # beyond the table's range on both sides
    for low, high in ((0.0, 1.0), (0.13, 0.81), (0.4, 0.4 + 1e-6)):
        table = Transfer(low, high, rng.random(BINS))
        expected = np.interp(values, table.centres, table.values)
        assert np.allclose(map_values(values, table), expected, rtol=0, atol=1e-8)
        assert np.array_equal(map_values(np.array([low - 1, high + 1]), table),
                              table.values[[0, -1]])  # fmt: skip


def test_the_tables_range_is_the_percentiles_to_one_histogram_bin():
    """The table spans the 0.1st-99.9th percentiles (a hot pixel cannot squeeze the
    content into two bins), found from a histogram to 1/4096 of the full range."""
    rng = np.random.default_rng(10)
    for values in (
        rng.random(100_000),
        rng.normal(0.5, 0.1, 30_000),
        np.r_[rng.random(5000), 40.0],
    ):
        low, high = _percentile_range(values)
        exact_low, exact_high = np.percentile(values, (0.1, 99.9), method="inverted_cdf")
        step = np.ptp(values) / 4096
        # (the percentiles' own definitions differ by a sample at the tails)
        assert abs(low - exact_low) <= 3 * step and abs(high - exact_high) <= 3 * step
    assert high < 1.01  # the hot pixel at 40 is left out
    assert _percentile_range(np.full(10, 0.3)) == (0.3, 0.3)


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
