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
