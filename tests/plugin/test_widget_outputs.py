"""Output layers from the dock widget: the moving layer's whole look, and outputs
recognised by their metadata marker rather than by their names (real viewer)."""

import numpy as np
import pytest

from napari_ecc_align.data import natural_image
from napari_ecc_align.plugin.modes import AS_PLANES
from napari_ecc_align.plugin.outputs import OUTPUT_KEY, is_output

TIMEOUT_MS = 120_000


def _press_align(qtbot, widget):
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _pair(shape=(160, 200), dx=3, dy=-2):
    scene = natural_image((shape[0] + 20, shape[1] + 20), seed=5)
    reference = np.ascontiguousarray(scene[10:-10, 10:-10])
    moving = np.ascontiguousarray(scene[10 - dy : 10 - dy + shape[0], 10 - dx : 10 - dx + shape[1]])
    return reference, moving


def _custom_colormap():
    from napari.utils.colormaps import Colormap

    colors = np.array([[0.0, 0.0, 0.0, 1.0], [0.1, 0.8, 0.6, 1.0], [1.0, 0.9, 0.2, 1.0]])
    return Colormap(colors, name="ecc-test-custom")


def _assert_whole_look(out, cmap):
    np.testing.assert_allclose(out.colormap.colors, cmap.colors)
    assert out.colormap.name == cmap.name
    assert out.gamma == pytest.approx(0.5)
    assert out.opacity == pytest.approx(0.7)
    assert out.blending == "additive"


def test_pair_output_keeps_custom_colormap_gamma_and_opacity(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving = _pair()
    cmap = _custom_colormap()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov", colormap=cmap, gamma=0.5, opacity=0.7,
                     blending="additive")  # fmt: skip
    _press_align(qtbot, widget)
    aligned = viewer.layers["mov (aligned)"]
    _assert_whole_look(aligned, cmap)
    assert aligned.metadata[OUTPUT_KEY] == "aligned"
    assert viewer.layers["mov (difference)"].metadata[OUTPUT_KEY] == "difference"


def test_stack_output_keeps_custom_colormap_gamma_and_opacity(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    scene = natural_image((100, 120), seed=2)
    stack = np.stack([np.roll(scene, (t, -t), axis=(0, 1))[10:-10, 10:-10] for t in range(6)])
    cmap = _custom_colormap()
    viewer.add_image(stack, name="movie", colormap=cmap, gamma=0.5, opacity=0.7,
                     blending="additive")  # fmt: skip
    widget.align_as.value = AS_PLANES
    assert widget.stack_mode
    _press_align(qtbot, widget)
    aligned = viewer.layers["movie (aligned)"]
    assert aligned.data.shape == stack.shape
    _assert_whole_look(aligned, cmap)
    assert aligned.metadata[OUTPUT_KEY] == "stack" and "ecc_stack_alignment" in aligned.metadata


def test_a_renamed_output_stays_an_output(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving = _pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    widget.out_difference.value = False
    _press_align(qtbot, widget)
    output = viewer.layers["mov (aligned)"]
    output.name = "my result"
    assert is_output(output)
    # not offered to carry along, nor picked as the moving image
    assert output not in widget.also.choices
    viewer.layers.remove("mov")
    assert widget.moving.value is widget.reference.value  # nothing else to pick
    assert widget.moving.value is not output


def test_an_input_named_like_an_output_stays_an_input(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving = _pair()
    ref = viewer.add_image(reference, name="ref")
    # The user's own layers, named the way the widget names its outputs.
    mine = viewer.add_image(moving, name="mov (aligned)")
    marks = viewer.add_points(np.array([[20.0, 30.0]]), name="marks (aligned)")
    assert widget.reference.value is ref and widget.moving.value is mine
    assert marks in widget.also.choices
    mov = viewer.add_image(moving, name="mov")
    widget.moving.value = mov
    widget.out_difference.value = False
    kept = np.array(mine.data, copy=True)
    _press_align(qtbot, widget)
    # the input kept its data and is no output; the output got a name of its own
    np.testing.assert_array_equal(mine.data, kept)
    assert not is_output(mine) and mine.name == "mov (aligned)"
    outputs = [layer for layer in viewer.layers if is_output(layer)]
    assert len(outputs) == 1 and outputs[0] is not mine
    assert outputs[0].data.shape == reference.shape
