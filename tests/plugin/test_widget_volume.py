"""Volumes in the dock widget (issue 14), in a real viewer: two 3D layers align as
volumes by default, an ambiguous 3D layer makes the widget ask, 4D layers are 3D
time-lapses, and stacks can grow their canvas.

Accuracy is corner RMS in voxels against the generators' known 4×4 matrices.
"""

import hashlib

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment, warp
from napari_ecc_align.data import drift_volume, volume_pair
from napari_ecc_align.plugin.modes import AS_PLANES, AS_TIMELAPSE, AS_VOLUME, Mode

TIMEOUT_MS = 300_000  # guards against a hang only: generous for slow machines
TOLERANCE_VOXELS = 0.05
SHAPE = (24, 64, 64)
SPACING = (3.0, 1.0, 1.0)  # z planes 3x further apart than pixels


def _digest(layer) -> str:
    return hashlib.sha1(np.ascontiguousarray(np.asarray(layer.data)).tobytes()).hexdigest()


def _press_align(qtbot, widget):
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def pair():
    return volume_pair(SHAPE, seed=2, spacing=SPACING)


def _add_pair(viewer, pair, translate=(0.0, 0.0, 0.0)):
    reference = viewer.add_image(pair.reference, name="channel 1", scale=pair.spacing)
    moving = viewer.add_image(
        pair.moving, name="channel 2", scale=pair.spacing, translate=translate
    )
    return reference, moving


def _voxels_xyz(points_zyx):
    return np.column_stack([np.asarray(points_zyx, float)[:, ::-1], np.ones(len(points_zyx))])


def _truth_zyx(matrix, points_zyx):
    """Reference (z, y, x) points → moving (z, y, x) points through a 4×4 over (x, y, z)."""
    return (_voxels_xyz(points_zyx) @ np.asarray(matrix).T)[:, 2::-1]


LANDMARKS = np.array([[4.0, 10.0, 12.0], [12.0, 32.0, 40.0], [19.5, 50.0, 20.0], [8.0, 55.0, 58.0]])


def test_two_volume_layers_align_as_volumes_by_default(qtbot, viewer_widget, pair):
    viewer, widget = viewer_widget
    reference, moving = _add_pair(viewer, pair)
    hashes = (_digest(reference), _digest(moving))
    assert widget.reference.value is reference and widget.moving.value is moving
    assert widget.align_as.visible and widget.align_as.value == AS_VOLUME
    assert widget.reference.enabled and not widget.stack.visible
    assert "homography" not in widget.motion.choices and widget.motion.value == "affine"
    assert not widget.message.visible
    _press_align(qtbot, widget)

    alignment = widget.last_alignment
    assert alignment is not None and alignment.ndim == 3
    assert alignment.corner_error(pair.matrix) <= TOLERANCE_VOXELS
    assert alignment.parameters["spacing"] == list(SPACING)
    aligned = viewer.layers["channel 2 (aligned)"]
    diff = viewer.layers["channel 2 (difference)"]
    stored = Alignment.from_dict(aligned.metadata["ecc_alignment"])
    assert stored.matrix.shape == (4, 4) and stored.ndim == 3
    assert stored.corner_error(pair.matrix) <= TOLERANCE_VOXELS
    for layer in (aligned, diff):  # on the reference grid, with its world transform
        assert layer.data.shape == SHAPE
        np.testing.assert_allclose(layer.scale, reference.scale)
        np.testing.assert_allclose(layer.affine.affine_matrix, reference.affine.affine_matrix)
    assert aligned.data.dtype == moving.data.dtype
    # the aligned volume matches warping with the known matrix (away from the border)
    expected = warp(pair.moving, pair.matrix).astype(float)
    inner = (slice(3, -3), slice(6, -6), slice(6, -6))
    error = np.abs(aligned.data[inner].astype(float) - expected[inner])
    assert np.median(error) < 0.02 * np.ptp(expected[inner])
    assert (_digest(reference), _digest(moving)) == hashes  # inputs untouched
    # the result panel shows the correlation, the voxel size and the 4x4 matrix
    assert (
        "volume" in widget.result.value
        and "voxel size (dz, dy, dx): 3, 1, 1" in widget.result.value
    )
    assert "(x, y, z, 1)" in widget.matrix_view.value
    assert widget.matrix_view.value.count("[") == 5  # 4 rows in one outer bracket


def test_move_layer_only_overlays_volume_landmarks(qtbot, viewer_widget, pair):
    viewer, widget = viewer_widget
    reference, moving = _add_pair(viewer, pair, translate=(5.0, -7.0, 3.0))
    widget.move_only.value = True
    widget.out_aligned.value = widget.out_difference.value = False
    _press_align(qtbot, widget)

    assert moving.affine.affine_matrix.shape == (4, 4)
    assert [layer.name for layer in viewer.layers] == ["channel 1", "channel 2"]
    # a landmark at reference voxel p is at moving voxel truth(p): both must now sit at
    # the same world position
    on_moving = _truth_zyx(pair.matrix, LANDMARKS)
    for ref_point, mov_point in zip(LANDMARKS, on_moving, strict=True):
        world = np.asarray(moving.data_to_world(mov_point))
        back = np.asarray(reference.world_to_data(world))  # in reference voxels
        assert np.linalg.norm(back - ref_point) <= TOLERANCE_VOXELS


def test_3d_points_and_labels_are_carried(qtbot, viewer_widget, pair):
    viewer, widget = viewer_widget
    reference, moving = _add_pair(viewer, pair)
    on_moving = _truth_zyx(pair.matrix, LANDMARKS)
    points = viewer.add_points(on_moving, name="nuclei", scale=pair.spacing, size=2.0)
    labels_data = np.zeros(SHAPE, np.uint16)
    labels_data[8:16, 20:40, 24:44] = 7
    labels = viewer.add_labels(labels_data, name="cells", scale=pair.spacing)
    widget.also.value = [points, labels]
    _press_align(qtbot, widget)

    carried_points = viewer.layers["nuclei (aligned)"]
    assert carried_points.ndim == 3
    np.testing.assert_allclose(carried_points.data, LANDMARKS, atol=TOLERANCE_VOXELS)
    np.testing.assert_allclose(carried_points.scale, reference.scale)
    carried_labels = viewer.layers["cells (aligned)"]
    assert carried_labels.data.dtype == np.uint16 and carried_labels.data.shape == SHAPE
    assert set(np.unique(carried_labels.data)) == {0, 7}  # nearest neighbour: no new labels
    # the carried box holds what the known transform maps into it (up to a voxel layer)
    expected = warp(labels_data, pair.matrix, interpolation="nearest")
    overlap = np.count_nonzero((carried_labels.data == 7) & (expected == 7))
    assert overlap >= 0.9 * np.count_nonzero(expected == 7)
    np.testing.assert_array_equal(labels.data, labels_data)


def test_an_ambiguous_3d_layer_asks_how_to_align(qtbot, viewer_widget, pair):
    viewer, widget = viewer_widget
    viewer.add_image(pair.reference[0], name="one plane")
    moving = viewer.add_image(pair.moving, name="volume")
    widget.moving.value = moving
    widget.reference.value = viewer.layers["one plane"]
    # a 3D moving layer over a 2D reference: a volume or a stack? The widget asks.
    assert widget.align_as.visible and widget.align_as.value is None
    assert "choose Align as" in widget.message.value and widget.message.visible
    widget.align_button.native.click()
    assert not widget.running and len(viewer.layers) == 2
    widget.align_as.value = AS_VOLUME  # a volume needs a 3D reference: said so
    assert "is not a volume" in widget.message.value
    widget.align_as.value = AS_PLANES
    assert widget.stack_mode and widget.stack.visible and not widget.message.visible
    assert "homography" in widget.motion.choices  # planes are 2D images
    # the answer is kept for that layer: choosing another moving layer and coming back
    # does not ask again
    widget.moving.value = viewer.layers["one plane"]
    assert widget.mode is Mode.IMAGES and not widget.align_as.visible
    widget.moving.value = moving
    assert widget.align_as.value == AS_PLANES and widget.stack_mode


def test_4d_time_lapse_with_a_failed_frame(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    movie, spacing, matrices = drift_volume(frames=6, shape=(16, 48, 48), seed=1)
    movie = movie.copy()
    movie[4] = movie[4].mean()  # a blank volume: it must fail alone and be flagged
    layer = viewer.add_image(movie, name="movie", scale=(1.0, *spacing))
    before = movie.copy()
    assert widget.align_as.value == AS_TIMELAPSE and widget.stack_mode
    assert widget.stack.visible and widget.stack.axis.max == 0
    assert widget.motion.value == "euclidean" and "homography" not in widget.motion.choices
    widget.stack.reference.value = "first"
    _press_align(qtbot, widget)

    result = widget.last_stack_alignment
    assert result.ndim == 3 and result.matrices.shape == (6, 4, 4)
    assert not result.ok[4] and result.ok.sum() == 5
    for t in np.flatnonzero(result.ok):  # frame t against frame 0
        truth = np.linalg.solve(matrices[0], matrices[t])
        error = Alignment(result.matrices[t], "euclidean", 1.0, 1.0, (16, 48, 48), (16, 48, 48))
        assert error.corner_error(truth) <= 0.3
    aligned = viewer.layers["movie (aligned)"]
    assert aligned.data.shape == movie.shape
    assert "1 failed: 4" in widget.result.value
    labels = [line.get_label() for line in widget.drift_plot.axes.get_lines()]
    assert {"dx", "dy", "dz"} <= set(labels)
    np.testing.assert_array_equal(layer.data, before)


def test_grow_the_canvas_keeps_every_frame_whole(qtbot, viewer_widget):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(4)
    frames, shape, shifts = 5, (64, 80), [(0, 0), (3, 6), (-4, 9), (-7, 2), (5, -8)]
    scene = cv2.GaussianBlur(
        rng.random((shape[0] + 40, shape[1] + 40), dtype=np.float32), (0, 0), 1.5
    )
    stack = np.stack([scene[20 + dy : 20 + dy + shape[0], 20 + dx : 20 + dx + shape[1]]
                      for dy, dx in shifts])  # fmt: skip
    viewer.add_image(
        stack, name="drift", translate=(0, 10.0, -4.0), scale=(1, 0.5, 0.5),
        units=("s", "µm", "µm"),
    )  # fmt: skip
    widget.align_as.value = AS_PLANES
    widget.motion.value = "translation"
    widget.stack.reference.value = "first"
    widget.stack.extent.value = "all frames (grow canvas)"
    _press_align(qtbot, widget)

    aligned = viewer.layers["drift (aligned)"]
    assert [str(u) for u in aligned.units] == ["second", "micrometer", "micrometer"]
    data = np.asarray(aligned.data)
    assert data.shape == (frames, shape[0] + 7 + 5, shape[1] + 8 + 9)  # every shift fits
    for t in range(frames):  # nothing of any frame is cropped
        np.testing.assert_allclose(data[t].sum(), stack[t].sum(), rtol=0.01)
    # the reference frame's pixel (0, 0) is at the same world position as before
    origin_world = aligned.data_to_world((0, 7, 8))
    np.testing.assert_allclose(origin_world, viewer.layers["drift"].data_to_world((0, 0, 0)))
    # the reference-frame extent crops the drifting frames
    widget.stack.extent.value = "reference frame"
    _press_align(qtbot, widget)
    cropped = np.asarray(viewer.layers["drift (aligned)"].data)
    assert cropped.shape == stack.shape
    assert cropped[3].sum() < 0.95 * stack[3].sum()


def test_iterations_and_eps_fields_reject_nonsense(viewer_widget):
    _, widget = viewer_widget
    spin = widget.eps.native
    assert spin.text() == "1e-06" and widget.eps.value == pytest.approx(1e-6)
    state = spin.validate("abc", 0)[0]
    assert state == type(state).Invalid
    spin.lineEdit().setText("2.5e-7")
    spin.interpretText()
    assert widget.eps.value == pytest.approx(2.5e-7) and widget.parameters()["eps"] == 2.5e-7
    spin.stepBy(1)
    assert spin.text() == "2.5e-06"
    with pytest.raises(ValueError, match="outside of the allowed range"):
        widget.eps.value = 5.0
    assert widget.max_iterations.min == 1 and widget.max_iterations.value == 100
    widget.max_iterations.native.lineEdit().setText("0")
    widget.max_iterations.native.interpretText()
    assert widget.max_iterations.value >= 1
    assert isinstance(widget.parameters()["max_iterations"], int)


def test_3d_shapes_vectors_and_tracks_are_carried(make_napari_viewer, pair):
    from napari_ecc_align.plugin.carry import carry_layer

    viewer = make_napari_viewer()
    reference, moving = _add_pair(viewer, pair, translate=(2.0, 0.0, -3.0))
    alignment = Alignment(pair.matrix, "euclidean", 1.0, 0.5, SHAPE, SHAPE)
    # overlays of the moving volume, drawn in its own world space
    on_moving = _truth_zyx(pair.matrix, LANDMARKS)
    kwargs = {"scale": pair.spacing, "translate": (2.0, 0.0, -3.0)}
    polygon = np.vstack([on_moving[:3], on_moving[:1]])
    shapes = viewer.add_shapes([polygon], shape_type=["path"], **kwargs)
    vectors = viewer.add_vectors(
        np.stack([on_moving[:2], on_moving[2:] - on_moving[:2]], axis=1), **kwargs
    )
    track = np.column_stack([np.zeros(4), np.arange(4.0), on_moving])  # (id, t, z, y, x)
    tracks = viewer.add_tracks(track, scale=(1.0, *pair.spacing), translate=(0, 2.0, 0, -3.0))

    data, meta, kind = carry_layer(shapes, alignment, reference, moving)
    assert kind == "shapes" and meta["ndim"] == 3
    np.testing.assert_allclose(data[0], np.vstack([LANDMARKS[:3], LANDMARKS[:1]]), atol=1e-6)
    data, _, kind = carry_layer(vectors, alignment, reference, moving)
    np.testing.assert_allclose(data[:, 0], LANDMARKS[:2], atol=1e-6)
    np.testing.assert_allclose(data[:, 0] + data[:, 1], LANDMARKS[2:], atol=1e-6)
    data, meta, kind = carry_layer(tracks, alignment, reference, moving)
    np.testing.assert_array_equal(data[:, :2], track[:, :2])  # ids and time pass through
    np.testing.assert_allclose(data[:, 2:], LANDMARKS, atol=1e-6)
    assert tuple(meta["scale"]) == (1.0, *pair.spacing)
    # in world space the carried points sit on the reference's landmarks
    out = viewer.add_tracks(data, **{k: meta[k] for k in ("scale", "translate", "affine")})
    for row, landmark in zip(data, LANDMARKS, strict=True):
        world = np.asarray(out.data_to_world(row[1:]))[1:]
        np.testing.assert_allclose(world, reference.data_to_world(landmark), atol=1e-6)


def test_volume_cancel_and_errors_leave_the_viewer_untouched(qtbot, viewer_widget, pair):
    viewer, widget = viewer_widget
    reference, moving = _add_pair(viewer, pair)
    hashes = (_digest(reference), _digest(moving))
    widget.align_button.native.click()
    assert widget.cancel_button.visible
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert [layer.name for layer in viewer.layers] == ["channel 1", "channel 2"]
    assert widget.align_button.enabled
    # an unrelated moving volume: the engine's AlignmentError, shown, nothing added
    noise = np.random.default_rng(0).integers(0, 4000, SHAPE).astype(np.uint16)
    widget.moving.value = viewer.add_image(noise, name="noise", scale=pair.spacing)
    assert widget.align_as.value == AS_VOLUME
    _press_align(qtbot, widget)
    assert "noise (aligned)" not in viewer.layers
    assert widget.message.visible and "the volumes look unrelated" in widget.message.value
    widget.moving.value = moving
    # a 2D layer cannot follow a volume alignment: said before anything runs
    flat = viewer.add_points([[1.0, 2.0]], name="flat points")
    widget.also.value = [flat]
    widget.align_button.native.click()
    assert "'flat points' has 2 dimensions" in widget.message.value
    assert not widget.running and "channel 2 (aligned)" not in viewer.layers
    assert (_digest(reference), _digest(moving)) == hashes


def test_choices_follow_the_mode_and_fall_back_to_the_defaults(viewer_widget, pair, tmp_path):
    viewer, widget = viewer_widget
    viewer.add_image(pair.reference[0], name="plane a")
    viewer.add_image(pair.moving[0], name="plane b")
    widget.motion.value, widget.init.value = "homography", "fourier-mellin"
    reference, moving = _add_pair(viewer, pair)
    widget.reference.value, widget.moving.value = reference, moving
    assert widget.mode.ndim == 3
    # what volumes do not offer falls back to the defaults, not to the first entry
    assert widget.motion.value == "affine" and "homography" not in widget.motion.choices
    assert widget.init.value == "auto"
    assert "fourier-mellin" not in widget.init.choices and "features" not in widget.init.choices
    assert "phase" in widget.init.choices
    # a saved 2D transform applied to volumes: said, nothing added
    plane_alignment = Alignment(np.eye(3), "affine", 1.0, 1.0, SHAPE[1:], SHAPE[1:])
    plane_alignment.to_json(tmp_path / "plane.json")
    widget.apply_transform(str(tmp_path / "plane.json"))
    assert "this transform is for 2D images (3×3); these layers align as volumes" in (
        widget.message.value
    )
    assert not widget.running and len(viewer.layers) == 4


def test_volumes_of_other_voxel_sizes_need_an_affine(viewer_widget, pair):
    viewer, widget = viewer_widget
    viewer.add_image(pair.reference, name="fine", scale=pair.spacing)
    coarse = viewer.add_image(pair.moving[::2], name="coarse", scale=(6.0, 1.0, 1.0))
    widget.moving.value = coarse
    assert widget.mode.ndim == 3
    widget.motion.value = "euclidean"
    widget.align_button.native.click()
    assert "voxel size (scale) (6.0, 1.0, 1.0) and the reference (3.0, 1.0, 1.0)" in (
        widget.message.value
    )
    assert not widget.running and len(viewer.layers) == 2
    widget.motion.value = "affine"
    assert widget.parameters()["motion"] == "affine"  # an affine fit may bridge them


def test_rgb_movies_are_stacks_of_planes(viewer_widget):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    movie = rng.integers(0, 255, (5, 32, 40, 3)).astype(np.uint8)
    viewer.add_image(movie, name="rgb a", rgb=True)
    viewer.add_image(movie.copy(), name="rgb b", rgb=True)
    # RGB frames are planes: no volume is offered, nothing is asked
    assert not widget.align_as.visible and widget.stack_mode
    assert widget.stack.visible and not widget.message.visible
    assert widget.mode.ndim == 2


def test_progress_bar_is_sized_by_the_engine_for_volumes(qtbot, viewer_widget, pair):
    # The bar was sized with the 2D rule on the planes (3 levels for 64×64); the
    # volume engine searches on its small level and runs 1 here.
    viewer, widget = viewer_widget
    _add_pair(viewer, pair)
    widget.out_difference.value = False
    _press_align(qtbot, widget)
    alignment = widget.last_alignment
    assert alignment.ndim == 3 and alignment.levels == 1
    assert widget._expected_levels == alignment.levels
