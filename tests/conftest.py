"""Shared fixtures.

GUI fixtures come from plugins, not from here:

* ``make_napari_viewer`` -- napari's pytest plugin (entry point ``pytest11: napari``,
  module ``napari.utils._testsupport``), active whenever napari is installed.
* ``qtbot`` -- pytest-qt.
* A display -- pytest-xvfb runs the session on its own Xvfb display whenever Xvfb is installed.
"""

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded random generator: same numbers on every run."""
    return np.random.default_rng(0)


@pytest.fixture
def viewer_widget(make_napari_viewer):
    """A shown napari viewer with the ECC Align widget docked: (viewer, widget)."""
    from napari_ecc_align.plugin._qt.widget import AlignWidget  # Qt only for the GUI tests

    viewer = make_napari_viewer(show=True)
    widget = AlignWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ECC Align")
    return viewer, widget
