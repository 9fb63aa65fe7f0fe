"""`napari-ecc-align demo --screenshot`: the demo builds, aligns and renders headless.

A GUI test: it needs a display (pytest-xvfb provides one) and runs the demo in a
subprocess (the ``run_demo`` fixture) so that its napari Viewer and QApplication are its own.
"""

import numpy as np
import pytest

from napari_ecc_align.io.images import read_image

pytestmark = pytest.mark.gui  # napari in a subprocess, on pytest-xvfb's display


def test_demo_screenshot(tmp_path, run_demo):
    path = tmp_path / "shots" / "demo.png"
    result = run_demo("--screenshot", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "correlation" in result.stdout  # the alignment summary line
    shot = read_image(path)
    assert shot.dtype == np.uint8 and shot.ndim == 3
    assert shot.shape[0] >= 300 and shot.shape[1] >= 400
    assert shot[..., :3].std() > 5  # a rendered window, not a blank image
    # The canvas shows the page: plenty of bright (paper) pixels, not only dark chrome.
    assert (shot[..., :3].mean(axis=-1) > 180).mean() > 0.1


def test_demo_stack_screenshot(tmp_path, run_demo):
    # The drifting sample is one 3D layer, which the widget asks about: the demo answers.
    result = run_demo("--stack", "--screenshot", str(tmp_path / "stack.png"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "40 frames aligned, 0 failed" in result.stdout
    assert read_image(tmp_path / "stack.png")[..., :3].std() > 5
