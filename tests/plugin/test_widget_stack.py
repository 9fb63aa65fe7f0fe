"""Stack alignment from the dock widget, in a real viewer."""

import cv2
import numpy as np
from qtpy.QtCore import Qt

from napari_ecc_align.data import natural_image
from napari_ecc_align.plugin.modes import AS_PLANES, AS_VOLUME

TIMEOUT_MS = 300_000  # guards against a hang only: generous for slow machines


def _drift_stack(frames=16, shape=(96, 128), seed=0):
    """Frames of one scene drifting by a known translation; returns (stack, shifts)."""
    scene = natural_image((shape[0] + 60, shape[1] + 60), seed=seed)
    rng = np.random.default_rng(seed)
    shifts = np.cumsum(rng.uniform(-1.5, 1.5, (frames, 2)), axis=0)
    shifts -= shifts[0]
    stack = np.empty((frames, *shape), np.float32)
    for t, (dx, dy) in enumerate(shifts):
        # frame t shows scene(x + 30 + shift)
        m = np.float32([[1, 0, 30 + dx], [0, 1, 30 + dy]])
        stack[t] = cv2.warpAffine(
            scene, m, shape[::-1], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
    return stack, shifts


def _click(plot, frame, inside=True):
    """A left click on the drift plot at x = ``frame`` (data units), as matplotlib's Qt
    canvas would deliver it to the plot's ``button_press_event`` handlers."""
    from matplotlib.backend_bases import MouseEvent

    plot.canvas.draw()  # the transforms below need the laid-out figure
    axes = plot.axes
    x, y = axes.transData.transform((frame, np.mean(axes.get_ylim())))
    if not inside:
        y = axes.bbox.y1 + 0.5 * (plot.figure.bbox.y1 - axes.bbox.y1)  # above the axes
    event = MouseEvent("button_press_event", plot.canvas, x, y, button=1)
    assert (event.inaxes is not None) == inside
    plot.canvas.callbacks.process("button_press_event", event)


def test_stack_is_aligned_with_plot_and_slider(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    stack, shifts = _drift_stack()
    stack[9] = 0.5  # a blank frame: it must fail alone and be flagged
    layer = viewer.add_image(stack, name="movie")
    before = stack.copy()
    # A 3D layer alone is a volume or a time-lapse: the widget asks, Align waits.
    assert widget.align_as.visible and widget.align_as.value is None
    assert list(widget.align_as.choices) == [None, AS_VOLUME, AS_PLANES]
    assert "choose Align as" in widget.message.value and widget.message.visible
    assert not widget.stack_mode and not widget.stack.visible
    widget.align_button.native.click()
    assert not widget.running and len(viewer.layers) == 1
    widget.align_as.value = AS_PLANES
    assert widget.stack_mode and widget.stack.visible
    assert not widget.message.visible  # one stack layer is enough
    assert not widget.reference.enabled and widget.motion.value == "euclidean"
    widget.stack.reference.value = "first"
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)

    aligned = viewer.layers["movie (aligned)"]
    assert np.asarray(aligned.data).shape == stack.shape
    result = widget.last_stack_alignment
    assert result.ok.sum() == len(stack) - 1 and not result.ok[9]
    rows = result.table()
    # frame t shows the scene moved by -shift: a reference pixel x is frame pixel x - shift
    for row, (dx, dy) in zip(rows, shifts, strict=True):
        if row["ok"]:
            assert abs(row["dx"] + dx) < 0.1 and abs(row["dy"] + dy) < 0.1
    assert "1 failed: 9" in widget.result.value
    plot = widget.drift_plot
    assert plot is not None and plot.frames.size == len(stack)
    # Clicks on the plot go through the handler it registered with matplotlib and move
    # the viewer's frame slider: to the nearest frame, clipped to the stack (the axes
    # reach a little beyond the first and the last frame).
    assert viewer.dims.current_step[0] != 5
    left, right = plot.axes.get_xlim()
    assert round(left + 0.05) == -1 and round(right - 0.05) == len(stack)  # beyond: clipped
    for x, frame in [(5.2, 5), (11.6, 12), (right - 0.05, len(stack) - 1), (left + 0.05, 0)]:
        _click(plot, x)
        assert viewer.dims.current_step[0] == frame, x
    _click(plot, 5.0, inside=False)  # outside the axes: nothing happens
    assert viewer.dims.current_step[0] == 0
    np.testing.assert_array_equal(layer.data, before)  # the input stack is untouched
    assert "ecc_stack_alignment" in aligned.metadata


def test_stack_cancel_leaves_the_viewer_untouched(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    stack, _ = _drift_stack(frames=60, shape=(256, 320), seed=1)
    viewer.add_image(stack, name="movie")
    widget.align_as.value = AS_PLANES
    widget.align_button.native.click()
    aborted = []  # the worker stopped at a frame instead of finishing the job
    widget._worker.aborted.connect(lambda: aborted.append(True), Qt.ConnectionType.DirectConnection)
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert aborted  # a count, not a time: a job that ran on and was discarded fails here
    assert [layer.name for layer in viewer.layers] == ["movie"]
    assert widget.align_button.enabled
