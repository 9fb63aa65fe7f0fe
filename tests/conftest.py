"""Shared fixtures.

GUI fixtures come from plugins, not from here:

* ``make_napari_viewer`` -- napari's pytest plugin (entry point ``pytest11: napari``,
  module ``napari.utils._testsupport``), active whenever napari is installed.
* ``qtbot`` -- pytest-qt.
* A display -- pytest-xvfb runs the session on its own Xvfb display whenever Xvfb is installed.

The folders mirror the package (engine/, stack/, io/, batch/, cli/, data/, plugin/). Every
test that needs Qt (it uses a viewer or ``qtbot``, or lives in plugin/) is marked ``gui``,
so ``make test-lib`` runs the library tests without Qt (``-m "not gui"``, tests/plugin left
out because its modules import Qt when collected, and the Qt-loading pytest plugins off) and
fails if one of them loaded it.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

_GUI_FIXTURES = {"qtbot", "make_napari_viewer", "viewer_widget"}
_PLUGIN_TESTS = Path(__file__).parent / "plugin"


def pytest_collection_modifyitems(config, items):
    for item in items:
        in_plugin = _PLUGIN_TESTS in Path(str(item.fspath)).parents
        if in_plugin or _GUI_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


def pytest_sessionfinish(session, exitstatus):
    """`-m "not gui"` promises a run without Qt: fail the session if a test loaded it."""
    if session.config.getoption("markexpr") != "not gui" or exitstatus != 0:
        return
    loaded = sorted(m for m in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6") if m in sys.modules)
    if loaded:
        print(f"\nlibrary tests loaded Qt: {', '.join(loaded)}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
