"""The dock widget in a real napari viewer (Xvfb on CI)."""

import hashlib
import json
import math
import time

import cv2
import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_ecc_align import Alignment, align, difference, warp
from napari_ecc_align.data import natural_image, natural_pair
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.plugin._qt.widget import AlignWidget
from napari_ecc_align.plugin.sample_data import score_pair

TIMEOUT_MS = 300_000  # guards against a hang only: generous for slow machines


def _load_score(viewer):
    return [viewer.add_image(data, **meta) for data, meta, _ in score_pair()]


def _digest(layer) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(layer.data)).tobytes()).hexdigest()


def _press_align(qtbot, widget):
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _natural_pair(shift=(3.0, -2.0), shape=(240, 320)):
    scene = natural_image((shape[0] + 40, shape[1] + 40), seed=3)
    reference = np.ascontiguousarray(scene[20:-20, 20:-20])
    dy, dx = int(shift[1]), int(shift[0])
    moving = np.ascontiguousarray(scene[20 - dy : 20 - dy + shape[0], 20 - dx : 20 - dx + shape[1]])
    # reference pixel (x, y) shows scene (x+20, y+20) = moving (x + dx, y + dy)
    true = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
    return reference, moving, true


def test_align_button_on_score_sample(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving = _load_score(viewer)
    assert widget.reference.value is reference and widget.moving.value is moving
    hashes = (_digest(reference), _digest(moving))
    _press_align(qtbot, widget)

    aligned = viewer.layers[f"{moving.name} (aligned)"]
    diff = viewer.layers[f"{moving.name} (difference)"]
    alignment = widget.last_alignment
    assert alignment.correlation > alignment.correlation_before + 0.3
    true = np.array(moving.metadata["ecc_true_matrix"])
    assert corner_rms(alignment.matrix, true, reference.data.shape) <= 0.1
    saved = Alignment.from_dict(aligned.metadata["ecc_alignment"])
    np.testing.assert_allclose(saved.matrix, alignment.matrix)
    json.dumps(diff.metadata["ecc_alignment"])  # JSON-safe
    assert aligned.data.dtype == moving.data.dtype and aligned.data.shape == reference.data.shape
    assert "→" in widget.result.value and widget.save_button.enabled
    assert (_digest(reference), _digest(moving)) == hashes  # inputs untouched
    # a nearly empty normalized difference inside the overlap
    assert np.median(diff.data) < 0.2

    # re-running updates the same layers in place
    n_layers = len(viewer.layers)
    _press_align(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers[f"{moving.name} (aligned)"] is aligned


def test_pickers_follow_the_layer_list(viewer_widget):
    viewer, widget = viewer_widget
    assert "two image layers" in widget.message.value
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    assert widget.message.visible
    b = viewer.add_image(np.ones((8, 8)), name="b")
    assert widget.reference.value is a and widget.moving.value is b
    assert not widget.message.visible
    b.name = "renamed"
    assert "renamed" in [name for name, _ in widget._image_layers()]
    assert "renamed" in widget.moving.native.currentText()
    widget.moving.value = a
    assert "same layer" in widget.message.value
    viewer.layers.remove(b)
    assert b not in widget.moving.choices


def test_homography_disables_move_layer_only(viewer_widget):
    _, widget = viewer_widget
    widget.move_only.value = True
    widget.motion.value = "homography"
    assert not widget.move_only.enabled and not widget.move_only.value
    assert "homography" in widget.move_only.tooltip
    widget.motion.value = "affine"
    assert widget.move_only.enabled


def _pair_whose_job_lasts(seconds, widget):
    """A reference/moving pair whose alignment job (the engine calls the worker makes, with
    the widget's settings) took at least ``seconds`` in this process: the image grows until
    it does, so the job is long on any machine without any assertion on time."""
    shape, cap = (2000, 2600), 100_000_000  # memory, not time, bounds the growth
    while True:
        big = natural_image((shape[0] + 8, shape[1] + 8), seed=5)
        reference, moving = big[:-8, :-8], big[5:-3, 3:-5]
        tic = time.perf_counter()
        result = align(reference, moving, **widget.parameters())
        difference(reference, warp(moving, result, interpolation=widget.interpolation.value))
        took = time.perf_counter() - tic
        pixels = shape[0] * shape[1]
        if took >= seconds or pixels >= cap:
            return reference, moving
        area = min(np.clip(1.3 * seconds / took, 1.5, 8.0), cap / pixels)  # x1.5..8 a round
        shape = (math.ceil(shape[0] * np.sqrt(area)), math.ceil(shape[1] * np.sqrt(area)))


def test_event_loop_never_stalls_while_the_worker_aligns(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving = _pair_whose_job_lasts(1.0, widget)
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    qtbot.wait(200)  # let the new layers render before measuring
    # A 2 ms timer ticks whenever the event loop is free; each tick notes whether the
    # result has reached the main thread (last_alignment is set when it arrives).
    ticks = []
    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(lambda: ticks.append((time.perf_counter(), widget.last_alignment)))
    timer.start()
    start = time.perf_counter()
    widget.align_button.native.click()
    assert widget.running and not widget.align_button.enabled
    widget.align_button.native.click()  # a second press while running starts nothing
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    timer.stop()

    # While the worker estimates, resamples and takes the difference (before its result
    # is handed to napari, one layer per event-loop turn), the loop must keep turning.
    # The gaps are measured over whatever time the job took; the job lasts about a second
    # by construction (the same calls took >= 1 s above). If the worker ran on the main
    # thread, the longest gap would be the whole job and few ticks would come; if it held
    # the GIL through a long call, the gap would be that call.
    working = np.array([start] + [t for t, result in ticks if result is None])
    worker_seconds = working[-1] - start
    assert len(working) >= 100, f"only {len(working)} ticks in {worker_seconds:.2f} s"
    longest_gap = np.diff(working).max()  # the first gap is the click itself
    assert longest_gap <= 0.25, (
        f"the event loop stalled {longest_gap * 1000:.0f} ms while the worker ran "
        f"({len(working)} ticks in {worker_seconds:.2f} s)"
    )
    assert widget.align_button.enabled
    assert [layer.name for layer in viewer.layers].count("mov (aligned)") == 1


def test_cancel_leaves_layers_untouched(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    big = natural_image((2000, 2600), seed=6)
    ref = viewer.add_image(big[:-8, :-8], name="ref")
    mov = viewer.add_image(big[5:-3, 3:-5], name="mov")
    names = [layer.name for layer in viewer.layers]
    widget.align_button.native.click()
    assert widget.cancel_button.visible
    aborted = []  # the worker stopped at a step instead of finishing the job
    widget._worker.aborted.connect(lambda: aborted.append(True), Qt.ConnectionType.DirectConnection)
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert aborted  # a count, not a time: a job that ran on and was discarded fails here
    assert [layer.name for layer in viewer.layers] == names
    assert widget.align_button.enabled and not widget.cancel_button.visible
    assert ref.affine.affine_matrix.tolist() == mov.affine.affine_matrix.tolist()


def test_error_is_notified_and_nothing_added(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((120, 120)), name="noise a")
    viewer.add_image(rng.random((120, 120)), name="noise b")
    _press_align(qtbot, widget)
    assert len(viewer.layers) == 2
    assert widget.last_alignment is None
    assert "unrelated" in widget.message.value or "correlation" in widget.message.value
    assert widget.align_button.enabled


def test_stack_layer_gives_clear_message(viewer_widget):
    viewer, widget = viewer_widget
    viewer.add_image(np.zeros((3, 20, 20)), name="stack")
    viewer.add_image(np.zeros((20, 20)), name="flat")
    widget.reference.value = viewer.layers["stack"]
    widget.moving.value = viewer.layers["flat"]
    widget.run()
    assert not widget.running
    assert "stack" in widget.message.value


def test_move_layer_only_and_reference_scale(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair(shift=(4.0, -3.0))
    ref = viewer.add_image(reference, name="ref", scale=(0.5, 0.5), translate=(10, -5))
    mov = viewer.add_image(moving, name="mov", scale=(2.0, 2.0))
    widget.motion.value = "translation"
    widget.move_only.value = True
    _press_align(qtbot, widget)
    aligned = viewer.layers["mov (aligned)"]
    np.testing.assert_allclose(aligned.scale, ref.scale)
    np.testing.assert_allclose(aligned.translate, ref.translate)
    # landmark: reference pixel (row 50, col 60) is moving pixel (50 + dy, 60 + dx)
    ref_world = np.asarray(ref.data_to_world((50, 60)))
    mov_world = np.asarray(mov.data_to_world((50 + true[1, 2], 60 + true[0, 2])))
    np.testing.assert_allclose(mov_world, ref_world, atol=0.05)
    np.testing.assert_allclose(np.asarray(aligned.data_to_world((50, 60))), ref_world)


def test_points_and_labels_are_carried(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair(shift=(5.0, 2.0))
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    labels = np.zeros(moving.shape, np.uint16)
    labels[100:120, 150:170] = 7
    viewer.add_labels(labels, name="cells")
    pts = viewer.add_points([[110.0, 160.0]], name="spots", features={"id": [42]})
    widget.motion.value = "translation"
    widget.also.value = [viewer.layers["cells"], pts]
    _press_align(qtbot, widget)
    carried_pts = viewer.layers["spots (aligned)"]
    # moving (row, col) -> reference (row - dy, col - dx)
    np.testing.assert_allclose(carried_pts.data[0], [110 - 2, 160 - 5], atol=0.05)
    assert carried_pts.features["id"].tolist() == [42]
    carried_labels = viewer.layers["cells (aligned)"]
    assert carried_labels.data.dtype == np.uint16
    assert set(np.unique(carried_labels.data)) == {0, 7}
    assert carried_labels.data[100 - 2, 150 - 5] == 7 and carried_labels.data[99 - 2, 150 - 5] == 0


def test_save_and_apply_transform(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    widget.out_difference.value = False
    _press_align(qtbot, widget)
    path = widget.save_transform(str(tmp_path / "t.json"))
    saved = Alignment.from_json(path)
    viewer.layers.remove("mov (aligned)")
    widget.apply_transform(path)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    np.testing.assert_allclose(
        viewer.layers["mov (aligned)"].metadata["ecc_alignment"]["matrix"], saved.matrix
    )
    assert "mov (difference)" not in viewer.layers


def test_plain_function_returns_layer_data():
    from napari_ecc_align.plugin.commands import align_images

    reference, moving, true = _natural_pair()
    (aligned, meta, kind), (diff, diff_meta, _) = align_images(reference, moving)
    assert kind == "image" and aligned.shape == reference.shape
    matrix = np.array(meta["metadata"]["ecc_alignment"]["matrix"])
    assert corner_rms(matrix, true, reference.shape) < 0.05


def test_plain_function_aligns_volumes():
    from napari_ecc_align.data import volume_pair
    from napari_ecc_align.plugin.commands import align_images

    pair = volume_pair((24, 64, 64), seed=1, spacing=(1.0, 1.0, 1.0))
    (aligned, meta, _), (diff, _, _) = align_images(pair.reference, pair.moving, ndim=3)
    assert aligned.shape == diff.shape == pair.reference.shape
    matrix = np.array(meta["metadata"]["ecc_alignment"]["matrix"])
    assert matrix.shape == (4, 4) and corner_rms(matrix, pair.matrix, pair.reference.shape) < 0.05


def test_rgb_stays_rgb_and_takes_moving_look(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair()
    viewer.add_image(reference, name="ref")
    rgb = (np.stack([moving, 0.8 * moving, 0.6 * moving], axis=-1) * 255).astype(np.uint8)
    mov = viewer.add_image(rgb, name="mov", rgb=True, opacity=0.7, blending="additive")
    widget.out_difference.value = False
    _press_align(qtbot, widget)
    aligned = viewer.layers["mov (aligned)"]
    assert aligned.rgb and aligned.data.shape == reference.shape + (3,)
    assert aligned.data.dtype == np.uint8
    assert aligned.opacity == mov.opacity and aligned.blending == "additive"
    assert corner_rms(widget.last_alignment.matrix, true, reference.shape) < 0.05


def test_widget_is_in_the_layers_register_menu(make_napari_viewer):
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-ecc-align")
    menu = manifest.contributions.menus["napari/layers/register"]
    assert [item.command for item in menu] == ["napari-ecc-align.make_align_widget"]
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-ecc-align", "ECC Align")
    assert isinstance(widget, AlignWidget)


def test_labels_mask_excludes_a_corrupted_region(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair(shift=(3.0, 2.0))
    corrupted = reference.copy()
    corrupted[:, :90] = np.random.default_rng(1).random((reference.shape[0], 90))
    viewer.add_image(corrupted, name="ref")
    viewer.add_image(moving, name="mov")
    mask = np.ones(reference.shape, np.uint8)
    mask[:, :90] = 0
    viewer.add_labels(mask, name="valid region")
    widget.mask.reset_choices()
    widget.mask.value = viewer.layers["valid region"]
    _press_align(qtbot, widget)
    assert corner_rms(widget.last_alignment.matrix, true, reference.shape) < 0.05


def test_initialisation_choice_and_result_panel(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    scene = natural_image((600, 600), seed=8)
    c = 299.5
    a = np.deg2rad(35)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    true = (
        np.array([[1, 0, c], [0, 1, c], [0, 0, 1]])
        @ rot
        @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1]])
    )
    moving = cv2.warpPerspective(scene, np.linalg.inv(true), (600, 600),
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)  # fmt: skip
    viewer.add_image(scene[150:450, 150:450], name="ref")
    viewer.add_image(moving, name="mov")
    widget.motion.value = "euclidean"
    widget.init.value = "fourier-mellin"
    _press_align(qtbot, widget)
    assert widget.last_alignment.init_method == "fourier-mellin"
    assert "init: fourier-mellin" in widget.result.value
    offset = np.array([[1, 0, 150], [0, 1, 150], [0, 0, 1.0]])
    assert corner_rms(widget.last_alignment.matrix, true @ offset, (300, 300)) < 0.1


def test_intensities_choice_reaches_the_estimate(qtbot, viewer_widget):
    """A second modality (mid grays brightest): auto maps it, linear does not."""
    viewer, widget = viewer_widget
    reference, moving, truth = natural_pair((240, 240), 2, angle_deg=1.0)
    remapped = np.sin(np.pi * (moving - moving.min()) / np.ptp(moving)).astype(np.float32)
    viewer.add_image(reference, name="ref")
    viewer.add_image(remapped, name="mov")
    assert widget.intensity.value == "auto"
    _press_align(qtbot, widget)
    assert widget.last_alignment.parameters["intensity_mapped"] is not None
    assert corner_rms(widget.last_alignment.matrix, truth, (240, 240)) < 0.15
    widget.intensity.value = "linear"
    _press_align(qtbot, widget)
    assert widget.last_alignment.parameters["intensity"] == "linear"
    assert widget.last_alignment.parameters["intensity_mapped"] is None


def _two_motion_pair(shape=(240, 360), left=(3.0, -2.0), right=(-4.0, 3.0)):
    """A moving image whose left third shows the scene shifted by ``left`` and the rest by
    ``right``: (reference, moving, left matrix, right matrix, first column of the right part)."""
    scene = natural_image((shape[0] + 40, shape[1] + 40), seed=11)
    reference = np.ascontiguousarray(scene[20:-20, 20:-20])

    def shifted(dx, dy):  # reference (x, y) -> moving (x + dx, y + dy)
        dx, dy = int(dx), int(dy)
        return scene[20 - dy : 20 - dy + shape[0], 20 - dx : 20 - dx + shape[1]]

    seam = shape[1] // 3
    moving = np.ascontiguousarray(shifted(*right))
    moving[:, :seam] = shifted(*left)[:, :seam]
    matrices = [np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]]) for dx, dy in (left, right)]
    return reference, moving, *matrices, seam


def test_shapes_mask_makes_the_result_follow_the_masked_region(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    reference, moving, left, right, seam = _two_motion_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    widget.motion.value = "translation"
    widget.out_difference.value = False
    _press_align(qtbot, widget)  # no mask: a compromise between the two parts
    assert corner_rms(widget.last_alignment.matrix, left, reference.shape) > 2

    # Rectangles on the reference grid, well inside each part (the moving image's seam
    # lies at reference column seam - 3 for the left shift, seam + 4 for the right one).
    rows, cols = reference.shape
    for name, (c0, c1), truth in [
        ("left part", (10.0, seam - 20.0), left),
        ("right part", (seam + 20.0, cols - 10.0), right),
    ]:
        box = np.array([[10.0, c0], [10.0, c1], [rows - 10.0, c1], [rows - 10.0, c0]])
        viewer.add_shapes([box], shape_type="rectangle", name=name)
        widget.mask.value = viewer.layers[name]
        _press_align(qtbot, widget)
        assert corner_rms(widget.last_alignment.matrix, truth, reference.shape) < 0.1, name
    assert corner_rms(left, right, reference.shape) > 8  # two clearly different answers


def _state(viewer):
    return [(layer.name, _digest(layer), np.array(layer.affine.affine_matrix).tolist())
            for layer in viewer.layers]  # fmt: skip


def _last_error():
    from napari.utils.notifications import NotificationSeverity, notification_manager

    errors = [n for n in notification_manager.records if n.severity == NotificationSeverity.ERROR]
    return errors[-1].message if errors else ""


@pytest.mark.parametrize(
    "text",
    ['{"matrix": [[1, 0, 0], [0, 1', '{"not": "an alignment"}', ""],
    ids=["truncated", "not-an-alignment", "empty"],
)
def test_apply_transform_with_a_malformed_json(qtbot, viewer_widget, tmp_path, text):
    viewer, widget = viewer_widget
    reference, moving, _ = _natural_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    before = _state(viewer)
    path = tmp_path / "broken.json"
    path.write_text(text)
    widget.apply_transform(str(path))
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.message.value.startswith(f"cannot load the transform from {path}: ")
    assert _last_error() == widget.message.value  # shown as an error notification
    assert _state(viewer) == before  # no layer changed or added
    assert widget.last_alignment is None and widget.align_button.enabled


def test_apply_transform_estimated_for_another_image_size(qtbot, viewer_widget, tmp_path):
    viewer, widget = viewer_widget
    reference, moving, true = _natural_pair()
    viewer.add_image(reference, name="ref")
    viewer.add_image(moving, name="mov")
    before = _state(viewer)
    path = tmp_path / "other.json"
    Alignment(true, "translation", 0.99, 0.5, (100, 120), (110, 130)).to_json(path)
    widget.apply_transform(str(path))
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    expected = (
        "the transform was estimated for a moving image of 110x130 pixels, but this one is "
        f"{moving.shape[0]}x{moving.shape[1]}; choose the matching moving layer or estimate "
        "a new transform"
    )
    assert widget.message.value == expected
    assert _last_error() == expected
    assert _state(viewer) == before
    assert widget.last_alignment is None and widget.align_button.enabled
