"""The log-polar resampling behind Fourier–Mellin (our own grid, the same under every OpenCV)."""

import math

import numpy as np

from napari_ecc_align.engine.initialisation import log_polar


def test_rows_are_angles_and_columns_log_radii():
    size = 256
    c = size / 2
    yy, xx = np.mgrid[0:size, 0:size] - c
    theta, r = np.arctan2(yy, xx), np.hypot(xx, yy)
    image = (np.cos(3 * theta) * np.exp(-(((r - 60) / 30) ** 2))).astype(np.float32)

    polar = log_polar(image, max_radius=c)

    assert polar.shape == (size, size) and polar.dtype == np.float32
    k = np.arange(size)[:, None]  # row k: angle 2πk/size
    j = np.arange(size)[None, :]  # column j: radius c ** (j/size)
    radius = c ** (j / size)
    expected = np.cos(3 * 2 * math.pi * k / size) * np.exp(-(((radius - 60) / 30) ** 2))
    beyond_centre = radius[0] > 4  # the first pixels around the centre interpolate coarsely
    np.testing.assert_allclose(polar[:, beyond_centre], expected[:, beyond_centre], atol=0.03)


def test_a_rotation_about_the_centre_is_a_circular_shift_of_the_rows():
    rng = np.random.default_rng(0)
    size = 128
    image = np.zeros((size, size), np.float32)
    image[1:, 1:] = rng.random((size - 1, size - 1))  # rows/cols 1..size-1: centre size/2
    rotated = np.zeros_like(image)
    rotated[1:, 1:] = np.rot90(image[1:, 1:], -1)  # 90° about the centre, in array order

    a, b = log_polar(image, size / 2), log_polar(rotated, size / 2)

    shifted = np.roll(a, size // 4, axis=0)
    assert np.abs(shifted - b).max() < 1e-5
