"""Right answers at the edges of the value ranges (issue 19, item 7)."""

import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import Alignment, align, warp
from napari_ecc_align.data import natural_pair


def _stretched(image, peak, dtype):
    """``image`` mapped linearly onto [-peak, peak] (computed in float64), as ``dtype``."""
    a = np.asarray(image, np.float64)
    return (((a - a.min()) / (a.max() - a.min()) * 2 - 1) * peak).astype(dtype)


# ------------------------------------------------------------------------ float extremes
@pytest.mark.parametrize(
    "peak,dtype",
    [(3e38, np.float32), (3.4e38, np.float32), (1.7e308, np.float64), (1e-300, np.float64)],
    ids=["float32-3e38", "float32-max", "float64-1.7e308", "float64-1e-300"],
)
def test_float_extremes_align_as_the_unscaled_pair(peak, dtype):
    reference, moving, _ = natural_pair((128, 128), seed=0)
    plain = align(reference, moving)
    scaled = align(_stretched(reference, peak, dtype), _stretched(moving, peak, dtype))
    assert scaled.corner_error(plain.matrix) < 0.01


def test_float32_extremes_in_a_volume_align_as_the_unscaled_pair():
    rng = np.random.default_rng(0)
    scene = ndimage.gaussian_filter(rng.random((40, 48, 48)), 2)
    reference, moving = scene[2:34, 4:44, 4:44], scene[3:35, 5:45, 3:43]
    plain = align(reference, moving, ndim=3, motion="translation")
    scaled = align(_stretched(reference, 3e38, np.float32), _stretched(moving, 3e38, np.float32),
                   ndim=3, motion="translation")  # fmt: skip
    assert scaled.corner_error(plain.matrix) < 0.01


# -------------------------------------------------------------- 64-bit integers in warp
WIDE = [
    (np.uint64, [2**64 - 1, 0, 2**63 + 1, 2**53 + 1]),
    (np.int64, [2**63 - 1, -(2**63), -1, 2**62 + 1]),
]


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("dtype,values", WIDE, ids=["uint64", "int64"])
def test_warp_keeps_64_bit_values_exact_through_whole_pixel_moves(dtype, values, interpolation):
    image = np.array(values * 6, dtype=dtype).reshape(4, 6)
    np.testing.assert_array_equal(warp(image, np.eye(3), interpolation=interpolation), image)
    shift = np.array([[1.0, 0, 1], [0, 1, -1], [0, 0, 1]])  # output (x, y) <- input (x+1, y-1)
    out = warp(image, shift, interpolation=interpolation, fill_value=values[0])
    expected = np.full_like(image, values[0])
    expected[1:, :-1] = image[:-1, 1:]
    np.testing.assert_array_equal(out, expected)
    turned = np.array([[0.0, 1, 0], [-1, 0, 3], [0, 0, 1]])  # (x, y) <- (y, 3 - x): a turn
    out = warp(image, turned, output_shape=(6, 4), interpolation=interpolation)
    np.testing.assert_array_equal(out, image[::-1].T)


@pytest.mark.parametrize("dtype,values", WIDE, ids=["uint64", "int64"])
def test_warp_keeps_64_bit_volumes_exact_through_whole_voxel_moves(dtype, values):
    volume = np.array(values * 18, dtype=dtype).reshape(3, 4, 6)
    np.testing.assert_array_equal(warp(volume, np.eye(4)), volume)
    shift = np.eye(4)
    shift[0, 3], shift[2, 3] = 1, 1  # output (x, y, z) <- input (x+1, y, z+1)
    out = warp(volume, shift, fill_value=values[1])
    expected = np.full_like(volume, values[1])
    expected[:-1, :, :-1] = volume[1:, :, 1:]
    np.testing.assert_array_equal(out, expected)


def test_warp_between_64_bit_pixels_rounds_once_and_saturates_exactly():
    image = np.array([[2**64 - 1, 2**64 - 1, 0, 0]] * 3, dtype=np.uint64)
    half = np.array([[1.0, 0, 0.5], [0, 1, 0], [0, 0, 1]])
    out = warp(image, half, fill_value=2**64 - 1)
    assert out[0, 0] == 2**64 - 1  # between two maxima: the maximum, not 2**64 - 2048
    assert out[0, 1] == 2**63  # half way to 0, rounded once in float64


@pytest.mark.parametrize(
    "dtype,fill",
    [(np.uint64, 2**64 - 1), (np.int64, 2**63 - 1), (np.int64, -(2**63)), (np.uint8, 255.0)],
)
def test_fill_value_takes_anything_the_dtype_holds(dtype, fill):
    out = warp(np.ones((3, 3), dtype), np.array([[1.0, 0, 5], [0, 1, 0], [0, 0, 1]]),
               fill_value=fill)  # fmt: skip
    assert out.dtype == dtype and (out == fill).all() and int(out[0, 0]) == int(fill)


@pytest.mark.parametrize(
    "dtype,fill,bounds",
    [(np.uint64, 2**64, "0 to 18446744073709551615"),
     (np.int64, -(2**63) - 1, "-9223372036854775808 to 9223372036854775807"),
     (np.uint8, 2.5, "0 to 255"), (np.uint8, float("nan"), "0 to 255")],
)  # fmt: skip
def test_fill_value_outside_the_dtype_is_refused_with_its_range(dtype, fill, bounds):
    with pytest.raises(ValueError, match=rf"fill_value .* dtype {np.dtype(dtype)} .*{bounds}"):
        warp(np.ones((3, 3), dtype), np.eye(3), fill_value=fill)


# --------------------------------------------------------------- complex and non-integer
def test_complex_matrices_are_refused_not_truncated():
    reference, moving, _ = natural_pair((64, 64), seed=0)
    for init in (np.eye(3) + 1e-3j, np.eye(3).astype(complex)):
        with pytest.raises(TypeError, match=r"^init must be a real matrix"):
            align(reference, moving, init=init)
    volume = np.random.default_rng(0).random((12, 12, 12))
    with pytest.raises(TypeError, match=r"^init must be a real matrix"):
        align(volume, volume, ndim=3, init=np.eye(4) * (1 + 1j))
    with pytest.raises(TypeError, match=r"^alignment must be a real matrix"):
        warp(reference, np.eye(3) * 1j)
    with pytest.raises(TypeError, match=r"^reference has complex dtype"):
        align(reference.astype(complex), moving)
    with pytest.raises(TypeError, match="matrix must be real"):
        Alignment(np.eye(3) + 0j, "affine", 1.0, 1.0, (64, 64), (64, 64))
    with pytest.raises(ValueError, match="matrix must be a 2x3"):  # what JSON could say
        Alignment.from_dict({"matrix": (np.eye(3) + 1j).tolist(), "motion": "affine",
                             "reference_shape": [64, 64], "moving_shape": [64, 64]})  # fmt: skip


@pytest.mark.parametrize(
    "shape", [(1.5, 2.5), (10, 2.5), (0, 4), (-1, 3), (3,), (3, 4, 5), (float("nan"), 3)]
)
def test_output_shape_must_be_positive_whole_numbers(shape):
    with pytest.raises(ValueError, match="output_shape"):
        warp(np.ones((8, 8)), np.eye(3), output_shape=shape)


def test_output_shape_takes_numpy_integers_and_integral_floats():
    image = np.ones((8, 8), np.float32)
    assert warp(image, np.eye(3), output_shape=(np.int64(3), np.uint8(4))).shape == (3, 4)
    assert warp(image, np.eye(3), output_shape=(3.0, np.float32(4.0))).shape == (3, 4)
    with pytest.raises(ValueError, match="output_shape"):
        warp(np.ones((4, 4, 4)), np.eye(4), output_shape=(2, 1.5, 2))
    with pytest.raises(TypeError, match="output_shape"):
        warp(image, np.eye(3), output_shape=(True, 3))
