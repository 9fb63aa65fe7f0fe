"""`napari-ecc-align demo --screenshot`: the demo builds, aligns and renders headless.

A GUI test: it needs a display (pytest-xvfb provides one) and runs the demo in a
subprocess so that its napari Viewer and QApplication are its own.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_ecc_align.io.images import read_image

pytestmark = pytest.mark.gui  # napari in a subprocess, on pytest-xvfb's display


def test_demo_screenshot(tmp_path):
    path = tmp_path / "shots" / "demo.png"
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # "offscreen" has no OpenGL for napari's canvas
    code = "import sys; from napari_ecc_align.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", code, "demo", "--screenshot", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "correlation" in result.stdout  # the alignment summary line
    shot = read_image(path)
    assert shot.dtype == np.uint8 and shot.ndim == 3
    assert shot.shape[0] >= 300 and shot.shape[1] >= 400
    assert shot[..., :3].std() > 5  # a rendered window, not a blank image
    # The canvas shows the page: plenty of bright (paper) pixels, not only dark chrome.
    assert (shot[..., :3].mean(axis=-1) > 180).mean() > 0.1
