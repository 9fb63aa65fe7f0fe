"""Transforms that travel, in the dock widget (real napari viewer): Save transform… and
Apply transform… in every format, with the layers' scale and translate as the images'
geometry; a file that does not fit is refused; and the "points" start from two Points
layers, clicked to within a pixel, aligns a half-turned pair."""

import numpy as np
import pytest

from napari_ecc_align import Alignment, load_transform
from napari_ecc_align.data import natural_image
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.plugin.layers import points_in_layer

TIMEOUT_MS = 300_000  # guards against a hang only


def _press_align(qtbot, widget):
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _shifted_pair(shape=(200, 260)):
    scene = natural_image((shape[0] + 40, shape[1] + 40), seed=3)
    reference = np.ascontiguousarray(scene[20:-20, 20:-20])
    moving = np.ascontiguousarray(scene[22 : 22 + shape[0], 15 : 15 + shape[1]])
    return reference, moving  # reference pixel (x, y) is moving pixel (x + 5, y - 2)


def _digests(viewer):
    return [(layer.name, hash(np.asarray(layer.data).tobytes())) for layer in viewer.layers]


@pytest.mark.parametrize(
    "name", ["t.json", "t.tfm", "TransformParameters.0.txt", "t.ngff.json", "t.csv",
             "t.transformj.txt"],
)  # fmt: skip
def test_save_then_apply_in_every_format(qtbot, viewer_widget, tmp_path, name):
    viewer, widget = viewer_widget
    reference, moving = _shifted_pair()
    # Scaled and shifted layers: the physical formats carry this geometry.
    viewer.add_image(reference, name="ref", scale=(0.5, 0.8), translate=(10.0, -4.0))
    viewer.add_image(moving, name="mov", scale=(0.5, 0.8), translate=(-3.0, 7.0))
    widget.out_difference.value = False
    _press_align(qtbot, widget)
    estimated = widget.last_alignment
    path = widget.save_transform(str(tmp_path / name))
    assert path is not None, widget.message.value
    if name != "t.json":  # what the file holds, read with the layers' geometry
        loaded = load_transform(path, reference_shape=reference.shape,
                                reference_spacing=(0.5, 0.8), reference_origin=(10.0, -4.0),
                                moving_spacing=(0.5, 0.8), moving_origin=(-3.0, 7.0))  # fmt: skip
        np.testing.assert_allclose(loaded.matrix, estimated.matrix, atol=1e-9)
    viewer.layers.remove("mov (aligned)")
    widget.apply_transform(path)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    applied = viewer.layers["mov (aligned)"].metadata["ecc_alignment"]["matrix"]
    np.testing.assert_allclose(applied, estimated.matrix, atol=1e-9)


def test_apply_refuses_a_file_of_another_dimensionality(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    reference, moving = _shifted_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    volume = Alignment(np.eye(4), "translation", 0.9, 0.5, (10, 20, 30), (10, 20, 30))
    from napari_ecc_align import save_transform

    path = save_transform(volume, tmp_path / "volume.tfm")
    before = _digests(viewer)
    widget.apply_transform(str(path))
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "holds a 3D transform" in widget.message.value
    assert _digests(viewer) == before and widget.last_alignment is None


def test_a_stack_result_is_saved_only_as_json(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    frames = np.stack([_shifted_pair((96, 120))[i] for i in (0, 1, 0)])
    viewer.add_image(frames, name="stack")
    widget.moving.value = viewer.layers["stack"]
    if widget.align_as.visible:
        widget.align_as.value = widget.align_as.choices[-1]
    assert widget.stack_mode
    assert "points" not in widget.init.choices  # landmarks mark one pair, not a stack
    _press_align(qtbot, widget)
    assert widget.save_transform(str(tmp_path / "frames.json")) is not None
    assert widget.save_transform(str(tmp_path / "frames.tfm")) is None
    assert "saved as .json" in widget.message.value
    assert not (tmp_path / "frames.tfm").exists()


def _half_turned_pair():
    scene = natural_image((240, 300), seed=8)
    reference = np.ascontiguousarray(scene[20:-20, 20:-20])
    moving = np.ascontiguousarray(np.rot90(scene, 2)[12:-28, 25:-15])  # turned, then shifted
    rows, cols = reference.shape
    # reference pixel (x, y) shows scene (x + 20, y + 20), which the turned scene holds at
    # (299 - x - 20, 239 - y - 20), i.e. moving pixel (279 - x - 25, 219 - y - 12).
    true = np.array([[-1.0, 0, 279 - 25], [0, -1.0, 219 - 12], [0, 0, 1]])
    assert moving.shape == (rows, cols)
    return reference, moving, true


def test_points_start_aligns_a_half_turned_pair(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, true = _half_turned_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    clicked = np.array([[30.0, 40.0], [170.0, 60.0], [100.0, 230.0], [20.0, 240.0]])  # (row, col)
    xy1 = np.column_stack([clicked[:, ::-1], np.ones(4)]) @ true.T
    on_moving = xy1[:, 1::-1] + np.random.default_rng(0).normal(0, 0.7, (4, 2))  # hand clicks
    viewer.add_points(clicked, name="ref points")
    viewer.add_points(on_moving, name="mov points")
    widget.show_advanced.value = True
    widget.init.value = "points"
    assert widget.reference_points.visible and widget.moving_points.visible
    assert widget.reference_points.value is viewer.layers["ref points"]
    assert widget.moving_points.value is viewer.layers["mov points"]
    widget.motion.value = "euclidean"
    _press_align(qtbot, widget)
    alignment = widget.last_alignment
    assert alignment.init_method == "landmarks"
    assert corner_rms(alignment.matrix, true, reference.shape) < 0.1
    assert "landmarks: 4 pairs, fit residual" in widget.result.value


def test_points_start_says_what_is_missing(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, _ = _half_turned_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    viewer.add_points([[10.0, 10.0]], name="one")
    widget.init.value = "points"
    widget.moving_points.value = widget.reference_points.value
    widget.align_button.native.click()
    assert "two different Points layers" in widget.message.value
    viewer.add_points([[12.0, 14.0]], name="another")
    widget.moving_points.value = viewer.layers["another"]
    widget.align_button.native.click()
    assert "needs at least 3 point pairs" in widget.message.value
    assert widget.last_alignment is None


def test_points_land_on_the_pixels_of_scaled_layers():
    from napari.layers import Image, Points

    image = Image(np.zeros((50, 60)), scale=(2.0, 0.5), translate=(10.0, -3.0))
    points = Points(np.array([[5.0, 8.0]]), scale=(4.0, 1.0), translate=(2.0, 1.0))
    # world (22, 9) is image pixel ((22 - 10) / 2, (9 + 3) / 0.5)
    np.testing.assert_allclose(points_in_layer(points, image, 2), [[6.0, 24.0]])


@pytest.mark.parametrize(
    ("name", "chosen", "expected"),
    [
        ("t.tfm", "json", "itk"),  # the name says: the default filter does not override it
        ("pts.csv", "json", "bigwarp"),
        ("m.txt", "transformj", "transformj"),  # ambiguous names follow the filter
        ("t.json", "ngff", "ngff"),
        ("t.json", None, None),  # reading: the contents decide
        ("transform", "itk", "itk"),  # no suffix: the filter
    ],
)
def test_the_file_name_decides_unless_it_is_ambiguous(name, chosen, expected):
    from napari_ecc_align.plugin._qt.dialogs import chosen_format

    assert chosen_format(name, chosen) == expected
