"""The widget under abuse: every case ends with a notification or a result, the buttons
enabled again, and the input layers unchanged (data hashes before and after)."""

import hashlib

import numpy as np
import pytest
from qtpy.QtCore import Qt, QThreadPool

from napari_ecc_align.data import natural_image
from napari_ecc_align.plugin._qt.widget import AlignWidget

TIMEOUT_MS = 300_000  # guards against a hang only: generous for slow machines


def _digest(layer) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(layer.data)).tobytes()).hexdigest()


def _pair(viewer, shape=(300, 400), seed=0):
    scene = natural_image((shape[0] + 20, shape[1] + 20), seed=seed)
    ref = viewer.add_image(scene[10:-10, 10:-10], name="ref")
    mov = viewer.add_image(scene[7:-13, 12:-8], name="mov")
    return ref, mov


def _settled(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.align_button.enabled


def test_align_pressed_twice_quickly_runs_once(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    ref, mov = _pair(viewer)
    hashes = _digest(ref), _digest(mov)
    widget.align_button.native.click()
    widget.align_button.native.click()
    widget.run()
    _settled(qtbot, widget)
    assert [layer.name for layer in viewer.layers].count("mov (aligned)") == 1
    assert (_digest(ref), _digest(mov)) == hashes


def test_moving_layer_removed_while_running(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    big = natural_image((1500, 2000), seed=1)
    viewer.add_image(big[:-10, :-10], name="ref")
    mov = viewer.add_image(big[4:-6, 6:-4], name="mov")
    widget.align_button.native.click()
    viewer.layers.remove(mov)
    _settled(qtbot, widget)
    assert "removed while aligning" in widget.message.value or "mov (aligned)" not in viewer.layers
    assert [layer.name for layer in viewer.layers] == ["ref"]


@pytest.mark.parametrize(
    "closing, carried",
    [
        ("viewer", 16),  # closing napari itself takes seconds here: a longer job
        ("dock", 8),
    ],
)
def test_closing_while_running_stops_the_worker_early(qtbot, make_napari_viewer, closing, carried):
    viewer = make_napari_viewer(show=True)
    widget = AlignWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="ECC Align")
    big = natural_image((2000, 2600), seed=2)
    viewer.add_image(big[:-10, :-10], name="ref")
    mov = viewer.add_image(big[4:-6, 6:-4], name="mov")
    # A long job: after the estimate, int64 Labels layers are carried, each by an exact
    # nearest-neighbour gather (0.5-2 s each here); the worker can stop between two.
    # Hidden, so the viewer does not spend the time drawing them.
    cells = (np.arange(mov.data.size, dtype=np.int64) % 1000).reshape(mov.data.shape)
    labels = [viewer.add_labels(cells, name=f"cells {k}", visible=False) for k in range(carried)]
    widget.also.value = labels
    names = [layer.name for layer in viewer.layers]

    widget.align_button.native.click()
    assert widget.running
    # Counted in the worker's own thread as each carry begins, and whether the worker
    # stopped at a step (aborted) rather than running the job to its end: counts of work
    # done, not seconds, so the test holds on a machine of any speed.
    carries, aborted = [], []
    direct = Qt.ConnectionType.DirectConnection
    widget._worker.yielded.connect(lambda step: carries.append(step == "carrying"), direct)
    widget._worker.aborted.connect(lambda: aborted.append(True), direct)
    qtbot.waitUntil(lambda: sum(carries) >= 1, timeout=TIMEOUT_MS)  # into the long tail
    if closing == "viewer":
        viewer.close()  # removing the layers first takes a second or more
    else:
        viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    begun = sum(carries)  # the worker was told to stop by now
    # the worker stops and no thread is left running
    qtbot.waitUntil(
        lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=TIMEOUT_MS
    )
    # It finishes the carry under way and stops before the next: at most one more begins.
    assert aborted, f"the worker ran the whole job ({sum(carries)} of {carried} carries)"
    assert sum(carries) <= begun + 1 < carried, (sum(carries), begun, carried)
    qtbot.wait(200)  # anything the worker might still deliver
    # no output appeared (closing the viewer also removed the inputs)
    assert [layer.name for layer in viewer.layers] == ([] if closing == "viewer" else names)
    assert not widget.running and widget.last_alignment is None


def test_cancel_twenty_times(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    ref, mov = _pair(viewer)
    hashes = _digest(ref), _digest(mov)
    for _ in range(20):
        widget.cancel()  # nothing running: harmless
    widget.align_button.native.click()
    for _ in range(20):
        widget.cancel()
    _settled(qtbot, widget)
    assert (_digest(ref), _digest(mov)) == hashes
    assert "mov (aligned)" not in viewer.layers


@pytest.mark.parametrize(
    "data,expected",
    [
        (np.zeros((1, 1)), "2x2"),
        (np.zeros((64, 64)), "no contrast"),
        (np.full((64, 64), np.nan), "no valid pixels"),
    ],
    ids=["1x1", "all-zero", "all-nan"],
)
def test_degenerate_moving_images_are_notified(qtbot, viewer_widget, data, expected):
    viewer, widget = viewer_widget
    ref = viewer.add_image(natural_image((64, 64), seed=3), name="ref")
    mov = viewer.add_image(data, name="mov")
    hashes = _digest(ref), _digest(mov)
    widget.reference.value, widget.moving.value = ref, mov
    widget.run()
    _settled(qtbot, widget)
    assert expected in widget.message.value
    assert [layer.name for layer in viewer.layers] == ["ref", "mov"]
    assert (_digest(ref), _digest(mov)) == hashes


def test_labels_layer_is_not_offered_as_moving(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(natural_image((64, 64), seed=4), name="ref")
    labels = viewer.add_labels(np.zeros((64, 64), np.uint8), name="cells")
    assert labels not in widget.moving.choices and labels not in widget.reference.choices
    assert labels in widget.mask.choices
