"""Smoke tests for the environment the plugin runs in.

* napari's Qt viewer and its OpenGL canvas work (headless under Xvfb in CI);
* the npe2 manifest is valid;
* importing the package loads no GUI toolkit.
"""

import subprocess
import sys
from pathlib import Path

GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui")


def test_viewer_renders_an_image(make_napari_viewer, rng):
    # show=True: a hidden canvas is never drawn, and its screenshot is all black.
    viewer = make_napari_viewer(show=True)
    image = rng.random((64, 64))

    viewer.add_image(image, contrast_limits=(0, 1))
    assert len(viewer.layers) == 1

    screenshot = viewer.screenshot(canvas_only=True, flash=False)
    assert screenshot.ndim == 3
    assert screenshot.shape[2] == 4
    assert screenshot.shape[0] > 0 and screenshot.shape[1] > 0
    # Rendered pixels, not a blank (all-black) canvas: OpenGL drew the layer.
    assert screenshot[..., :3].max() > 0


def test_manifest_validates():
    # --imports: also import every `python_name` the manifest points at.
    npe2 = Path(sys.executable).parent / "npe2"
    result = subprocess.run(
        [str(npe2), "validate", "--imports", "napari-ecc-align"],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: importing napari is slow on a slow machine
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_loads_no_gui_toolkit():
    code = (
        "import sys, napari_ecc_align\n"
        f"print(','.join(m for m in {GUI_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"importing napari_ecc_align loaded {result.stdout}"
