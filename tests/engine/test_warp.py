"""warp() and difference(): dtypes, channels, leading axes, big images, overlap."""

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment, difference, warp

SHIFT = np.array(
    [[1, 0, 2.5], [0, 1, -1.5], [0, 0, 1]]
)  # reference (x, y) -> moving (x+2.5, y-1.5)


def _alignment(matrix=SHIFT, ref_shape=(40, 50), mov_shape=(40, 50), motion="affine"):
    return Alignment(matrix, motion, 1.0, 0.5, ref_shape, mov_shape)


def _smooth(shape, seed=0, dtype=np.float32, scale=1.0):
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random(shape[:2], dtype=np.float32), (0, 0), 3)
    img = (img - img.min()) / (img.max() - img.min()) * scale
    if len(shape) == 3:
        img = np.stack([img * (0.5 + 0.25 * c) for c in range(shape[2])], axis=-1)
    return img.astype(dtype)


def test_linear_warp_matches_opencv():
    img = _smooth((40, 50))
    out = warp(img, _alignment())
    expected = cv2.warpAffine(
        img, SHIFT[:2], (50, 40), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    np.testing.assert_allclose(out, expected)
    # integer shift: exact copy of the moving pixels
    a = _alignment(np.array([[1, 0, 3], [0, 1, 2], [0, 0, 1.0]]))
    np.testing.assert_array_equal(warp(img, a)[:30, :40], img[2:32, 3:43])


@pytest.mark.parametrize(
    "dtype",
    [
        np.uint8,
        np.uint16,
        np.int16,
        np.int8,
        np.int32,
        np.uint32,
        np.int64,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    ],
)
def test_dtype_is_kept_without_overflow(dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    top = info.max if info else 1000.0
    img = np.full((40, 50), top, dtype=dtype)
    img[:, ::2] = info.min if info else -1000.0
    out = warp(img, _alignment(), interpolation="cubic")  # cubic overshoots: must saturate
    assert out.dtype == np.dtype(dtype)
    assert out.shape == (40, 50)
    if info:
        assert out.min() >= info.min and out.max() <= info.max
    # a value in the middle of the overlap comes from the moving image's range
    assert img.min() <= out[20, 20] <= img.max()


def test_bool_and_labels_use_nearest_neighbour():
    labels = np.zeros((40, 50), np.int64)
    labels[10:20, 10:20] = 2**40 + 7  # beyond float32 precision
    labels[25:35, 30:45] = 3
    out = warp(labels, _alignment(), interpolation="nearest")
    assert out.dtype == np.int64
    assert set(np.unique(out)) <= {0, 3, 2**40 + 7}
    mask = labels > 0
    out_mask = warp(mask, _alignment())  # bool: nearest regardless of interpolation
    assert out_mask.dtype == np.bool_
    assert out_mask.sum() == pytest.approx(mask.sum(), rel=0.1)


def test_rgb_and_leading_axes():
    rgb = _smooth((40, 50, 3), dtype=np.uint8, scale=255)
    out = warp(rgb, _alignment())
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], warp(rgb[..., c], _alignment()))
    stack = np.stack([_smooth((40, 50), seed=s) for s in range(4)])[None]  # (1, 4, rows, cols)
    out = warp(stack, _alignment())
    assert out.shape == (1, 4, 40, 50)
    np.testing.assert_array_equal(out[0, 2], warp(stack[0, 2], _alignment()))


def test_output_shape_and_fill_value():
    img = _smooth((40, 50)) + 1.0
    a = _alignment(ref_shape=(30, 20))
    out = warp(img, a, fill_value=-7)
    assert out.shape == (30, 20)
    out = warp(img, _alignment(), output_shape=(60, 70), fill_value=-7)
    assert out.shape == (60, 70)
    assert out[-1, -1] == -7
    with pytest.raises(ValueError, match="fill_value"):
        warp(img.astype(np.uint8), _alignment(), fill_value=300)
    # beyond float16's 65504 the fill would become inf (and NaN at the borders)
    with pytest.raises(ValueError, match="fill_value 70000 does not fit the image dtype float16"):
        warp(img.astype(np.float16), _alignment(), fill_value=70000)
    assert warp(img.astype(np.float16), _alignment(), fill_value=np.nan).dtype == np.float16
    with pytest.raises(ValueError, match="interpolation"):
        warp(img, _alignment(), interpolation="lanczos")
    with pytest.raises(TypeError, match="alignment"):
        warp(img, "not an alignment")


def test_images_beyond_opencv_limit_are_tiled():
    """OpenCV's remap refuses sides >= 32767; warp tiles and matches the small-image result."""
    rng = np.random.default_rng(1)
    long = cv2.resize(
        rng.random((4, 400), dtype=np.float32), (40000, 6), interpolation=cv2.INTER_LINEAR
    )
    matrix = np.array([[1.0, 0.0, 3.25], [0.0, 1.0, 0.5], [0, 0, 1]])
    a = _alignment(matrix, ref_shape=long.shape, mov_shape=long.shape)
    out = warp(long, a)
    assert out.shape == long.shape
    # compare with a small piece warped directly by OpenCV
    piece = cv2.warpAffine(
        long[:, 20000:21000], matrix[:2], (990, 6), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    np.testing.assert_allclose(out[:5, 20000:20990], piece[:5], atol=1e-5)


def test_absolute_difference_like_pillow():
    a = np.array([[0, 10, 255]], np.uint8)
    b = np.array([[5, 3, 0]], np.uint8)
    np.testing.assert_array_equal(difference(a, b), [[5, 7, 255]])
    assert difference(a, b).dtype == np.uint8
    s = np.array([[-128, 127]], np.int8)
    t = np.array([[127, -128]], np.int8)
    d = difference(s, t)
    assert d.dtype == np.uint8
    np.testing.assert_array_equal(d, [[255, 255]])
    big = np.array([[np.iinfo(np.int64).min]], np.int64)
    assert difference(big, -big - 1)[0, 0] == np.iinfo(np.uint64).max


def test_difference_is_zero_outside_the_overlap():
    ref = _smooth((40, 50))
    a = _alignment(np.array([[1, 0, 10.0], [0, 1, 0], [0, 0, 1]]))
    aligned = warp(ref, a)  # the right 10 columns fall outside the moving image
    diff = difference(ref, aligned, alignment=a)
    assert np.all(diff[:, -10:] == 0)
    assert diff[:, :30].max() > 0


def test_normalized_difference_compares_binary_with_grayscale():
    gray = _smooth((40, 50))
    binary = gray > np.median(gray)
    gain = 40 + 150 * gray  # other range and offset
    d_norm = difference(gray, gain.astype(np.uint8), mode="normalized")
    assert d_norm.dtype == np.float32
    assert d_norm.max() < 0.1  # same content up to gain and bias
    d_bin = difference(binary, gray, mode="normalized")
    shifted = np.roll(gray, 5, axis=1)
    assert d_bin.mean() < difference(binary, shifted, mode="normalized").mean()


def test_difference_validates_shapes():
    with pytest.raises(ValueError, match="rows, cols"):
        difference(np.zeros((4, 5)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="normalized"):
        difference(np.zeros((4, 5, 3)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="mode"):
        difference(np.zeros((4, 5)), np.zeros((4, 5)), mode="relative")
    with pytest.raises(TypeError):
        difference(np.zeros((4, 5), complex), np.zeros((4, 5)))
