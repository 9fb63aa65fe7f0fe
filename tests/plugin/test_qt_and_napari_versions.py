"""The Qt binding and napari versions we declare are the ones the GUI runs on.

* every Qt user in the process (qtpy, so napari and magicgui; pytest-qt; vispy's canvas;
  matplotlib's drift plot) is on the binding that was asked for: PyQt6 by default
  (pyproject's ``qt_api``), PySide6 with ``make test QT=pyside6``;
* opening a viewer and docking the widget emits no deprecation, neither as a warning nor
  as a napari notification (napari shows one for PyQt5, in the viewer, on first show);
* the widget follows layer renames on every supported napari (the layer list's own
  ``renamed`` event is napari >= 0.7 only).
"""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

DEPRECATIONS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _asked_binding(config) -> str:
    return str(config.getini("qt_api")).lower()  # pyproject's, or make test's -o qt_api=


def _about_us(category, message: str, filename: str) -> bool:
    """A deprecation raised at one of our lines (a deprecated API we call), or one about
    the Qt binding. Not napari's own: napari 0.5 warns about its ``CallDefault`` on import."""
    text = message.lower()
    if not (issubclass(category, DEPRECATIONS) or "deprecat" in text):
        return False
    ours = "napari_ecc_align" in filename
    return ours or any(word in text for word in ("pyqt5", "pyside2", "qt5", "binding", "backend"))


def test_every_qt_user_is_on_the_binding_asked_for(request, qtbot):
    import qtpy
    from pytestqt.qt_compat import qt_api

    asked = _asked_binding(request.config)
    assert asked in ("pyqt6", "pyside6")
    assert os.environ.get("QT_API", asked).lower() == asked, "QT_API and qt_api disagree"
    assert qtpy.API_NAME.lower() == asked
    assert qtpy.QT6  # napari deprecates Qt 5 (PyQt5)
    assert qt_api.pytest_qt_api == asked

    from matplotlib.backends.qt_compat import QT_API as MATPLOTLIB_QT_API

    assert MATPLOTLIB_QT_API.lower() == asked


def test_viewer_canvas_is_on_the_binding_asked_for(request, make_napari_viewer):
    from vispy.app import use_app

    make_napari_viewer()
    assert use_app().backend_name.lower() == _asked_binding(request.config)


def test_docking_the_widget_emits_no_deprecation(qtbot, make_napari_viewer):
    from napari.utils.notifications import notification_manager

    from napari_ecc_align.plugin._qt.widget import AlignWidget

    seen = len(notification_manager.records)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        viewer = make_napari_viewer(show=True)
        widget = AlignWidget(viewer)
        viewer.window.add_dock_widget(widget, name="ECC Align")
        rng = np.random.default_rng(0)
        reference = viewer.add_image(rng.random((64, 64), np.float32), name="reference")
        moving = viewer.add_image(np.roll(reference.data, 2, axis=1), name="moving")
        moving.name = "moving (renamed)"
        widget.moving.value = moving
        widget.align_button.native.click()
        qtbot.waitUntil(lambda: not widget.running, timeout=300_000)  # a hang guard
        viewer.layers.remove(moving)
    assert widget.last_alignment is not None
    warned = [
        f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
        for w in caught
        if _about_us(w.category, str(w.message), w.filename)
    ]
    notified = [
        f"{n.severity}: {n.message}"
        for n in notification_manager.records[seen:]
        if "deprecat" in str(n.message).lower()
    ]
    assert not warned and not notified, warned + notified


# What a user does: napari shows a window, the plugin's widget is docked from its manifest.
# In a fresh process, because napari shows its PyQt5 notice once per process, on first show.
_OPEN_A_VIEWER = """
import json, sys, warnings
warnings.simplefilter("always")
caught = []
warnings.showwarning = lambda m, c, f, n, *_: caught.append((c.__name__, str(m), f))
import napari, qtpy
from napari.utils.notifications import notification_manager
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=True)
viewer.window.add_plugin_dock_widget("napari-ecc-align", "ECC Align")
viewer.add_image(__import__("numpy").zeros((32, 32)), name="a")
for _ in range(20):
    QApplication.processEvents()
notes = [(str(n.severity), str(n.message)) for n in notification_manager.records]
print(json.dumps({"api": qtpy.API_NAME, "napari": napari.__version__,
                  "warnings": caught, "notifications": notes}))
viewer.close()
"""


def test_opening_a_viewer_shows_no_deprecation_notice(request, tmp_path):
    env = dict(os.environ)
    env.pop("QT_QPA_PLATFORM", None)  # the Xvfb display, as a user's screen
    env["NAPARI_CONFIG"] = str(tmp_path / "settings.yaml")  # leave the user's settings alone
    result = subprocess.run(
        [sys.executable, "-c", _OPEN_A_VIEWER],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: opening napari is slow on a slow machine
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["api"].lower() == _asked_binding(request.config)
    category = {c.__name__: c for c in (*DEPRECATIONS, UserWarning, RuntimeWarning)}
    warned = [w for w in report["warnings"] if _about_us(category.get(w[0], Warning), w[1], w[2])]
    notified = [n for n in report["notifications"] if "deprecat" in n[1].lower()]
    assert not warned and not notified, (report["napari"], warned + notified)


@pytest.mark.parametrize("when", ["before", "after"])
def test_widget_follows_renames_of_layers_added_before_and_after_it(make_napari_viewer, when):
    from napari_ecc_align.plugin._qt.widget import AlignWidget

    viewer = make_napari_viewer()
    widget = AlignWidget(viewer) if when == "before" else None
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    b = viewer.add_image(np.ones((8, 8)), name="b")
    if widget is None:
        widget = AlignWidget(viewer)
    b.name = "b renamed"
    assert widget.moving.native.currentText() == "b renamed"
    assert _follows(widget, b)
    viewer.layers.remove(b)
    assert not _follows(widget, b)  # a removed layer is let go
    a.name = "a renamed"
    assert widget.reference.native.currentText() == "a renamed"


def _follows(widget, layer) -> bool:
    # napari's emitters hold a bound method as (weakref to its object, method name)
    return any(isinstance(cb, tuple) and cb[0]() is widget for cb in layer.events.name.callbacks)
