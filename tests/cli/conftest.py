"""The demo as a user starts it: in a subprocess, so that its napari Viewer and
QApplication are its own, on pytest-xvfb's display."""

import os
import subprocess
import sys

import pytest


@pytest.fixture
def run_demo(tmp_path):
    """``run_demo(*options)``: run ``napari-ecc-align demo *options`` from ``tmp_path``;
    the CompletedProcess (text stdout and stderr)."""

    def run(*options: str) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop("QT_QPA_PLATFORM", None)  # "offscreen" has no OpenGL for napari's canvas
        code = "import sys; from napari_ecc_align.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, "demo", *options],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )

    return run
