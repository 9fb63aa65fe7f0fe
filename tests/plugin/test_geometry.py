"""Geometry agrees everywhere: warp, its inverse, transform_points and napari_affine."""

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment, warp
from napari_ecc_align.data import natural_image

SHAPE = (200, 240)


def _matrix(motion):
    c = (SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2
    m = np.vstack([cv2.getRotationMatrix2D(c, 4.0, 1.03), [0, 0, 1]])
    m[:2, 2] += (3.5, -2.25)
    if motion == "translation":
        m[:2, :2] = np.eye(2)
    elif motion == "euclidean":
        m = np.vstack([cv2.getRotationMatrix2D(c, 4.0, 1.0), [0, 0, 1]])
        m[:2, 2] += (3.5, -2.25)
    elif motion == "affine":
        m[0, 1] += 0.02
    elif motion == "homography":
        m[2, :2] = (1.5e-4, -1e-4)
    return m


MOTIONS = ["translation", "euclidean", "affine", "homography"]


@pytest.mark.parametrize("motion", MOTIONS)
def test_warp_then_inverse_returns_the_original(motion):
    image = natural_image(SHAPE, seed=1)
    a = Alignment(_matrix(motion), motion, 1.0, 0.0, SHAPE, SHAPE)
    there = warp(image, a, fill_value=np.nan)
    back = warp(there, a.inverse(), fill_value=np.nan)
    inside = np.isfinite(back)
    inside[:10], inside[-10:], inside[:, :10], inside[:, -10:] = False, False, False, False
    assert inside.mean() > 0.6
    assert np.abs(back - image)[inside].mean() < 0.01  # bilinear twice, smooth image


def _blob(center_rc, shape=SHAPE, sigma=2.0):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    r2 = (yy - center_rc[0]) ** 2 + (xx - center_rc[1]) ** 2
    return np.exp(-r2 / (2 * sigma**2)).astype(np.float32)


def _centroid(image):
    yy, xx = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    w = np.clip(image, 0, None)
    return np.array([(yy * w).sum(), (xx * w).sum()]) / w.sum()


@pytest.mark.parametrize("motion", MOTIONS)
def test_transform_points_agrees_with_warp(motion):
    a = Alignment(_matrix(motion), motion, 1.0, 0.0, SHAPE, SHAPE)
    for landmark in [(60.0, 80.0), (140.5, 170.25), (100.0, 120.0)]:
        warped = warp(_blob(landmark), a)
        expected = a.transform_points(np.array(landmark))
        np.testing.assert_allclose(_centroid(warped), expected, atol=0.05)


@pytest.mark.parametrize("motion", MOTIONS[:3])
def test_napari_affine_agrees_in_a_real_viewer(make_napari_viewer, motion):
    viewer = make_napari_viewer()
    a = Alignment(_matrix(motion), motion, 1.0, 0.0, SHAPE, SHAPE)
    ref = viewer.add_image(np.zeros(SHAPE, np.float32), name="ref")
    mov = viewer.add_image(_blob((60, 80)), name="mov", affine=a.napari_affine())
    world = np.asarray(mov.data_to_world((60.0, 80.0)))
    np.testing.assert_allclose(world, a.transform_points(np.array([60.0, 80.0])), atol=1e-9)
    np.testing.assert_allclose(world, np.asarray(ref.data_to_world(world)), atol=1e-9)
    aligned_centroid = _centroid(warp(mov.data, a))
    np.testing.assert_allclose(aligned_centroid, world, atol=0.05)
