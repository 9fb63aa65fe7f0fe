"""`napari-ecc-align demo --volume --screenshot`: the volume pair aligned by the widget
and rendered in napari's 3D view, headless (Mesa's software OpenGL under pytest-xvfb)."""

import numpy as np
import pytest

from napari_ecc_align.cli.demo import VOLUME_SCREENSHOT_SIZE
from napari_ecc_align.io.images import read_image

pytestmark = pytest.mark.gui  # napari in a subprocess, on pytest-xvfb's display


def test_demo_volume_screenshot_shows_the_aligned_cube(tmp_path, run_demo):
    path = tmp_path / "volume.png"
    result = run_demo("--volume", "--screenshot", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "euclidean (volume): correlation" in result.stdout  # rigid, as the two channels
    shot = read_image(path)
    # The canvas alone: narrower than the window (side panels), most of its height.
    width, height = VOLUME_SCREENSHOT_SIZE
    assert shot.dtype == np.uint8 and shot.shape[2] in (3, 4)
    assert 0.3 * width < shot.shape[1] < width and 0.8 * height < shot.shape[0] < height
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 15  # rendered volumes, not a blank canvas
    red, green, blue = np.moveaxis(rgb, -1, 0)
    bright = rgb.max(axis=-1) > 80
    assert 0.02 < bright.mean() < 0.5  # a cube on a black background
    # Green reference + magenta aligned channel: white where they agree. Misaligned, over
    # 80 % of the bright pixels are one colour or the other; aligned, only the strips the
    # moving volume does not cover stay green (about 12 %), and nothing is magenta.
    greenish = bright & (green > 1.5 * np.maximum(red, blue))
    magentaish = bright & (np.minimum(red, blue) > 1.5 * green)
    assert magentaish.sum() < 0.02 * bright.sum()
    assert greenish.sum() < 0.25 * bright.sum()
