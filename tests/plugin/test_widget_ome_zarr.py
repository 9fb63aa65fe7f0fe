"""OME-Zarr layers in a real viewer: stores made here, opened by napari-ome-zarr (as
multiscale dask layers) and aligned by the widget without loading them; outputs are lazy
pyramids, and Move layer only is the default for such layers."""

import numpy as np
import pytest

import napari_ecc_align as nea
from napari_ecc_align.data import natural_pair

pytestmark = pytest.mark.gui
# Skipped before any viewer exists (napari 0.5's viewer fixture fails a test skipped later).
pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr is in the testing-ome-zarr extra")
TIMEOUT_MS = 300_000


def _u8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def opened_pair(tmp_path, viewer_widget):
    pytest.importorskip(
        "napari_ome_zarr", reason="napari-ome-zarr is in the testing-ome-zarr extra"
    )
    viewer, widget = viewer_widget
    reference, moving, truth = natural_pair((700, 900), seed=7)
    reference, moving = _u8(reference), _u8(moving)
    for name, image in (("ref", reference), ("mov", moving)):
        nea.write_ome_zarr(tmp_path / f"{name}.ome.zarr", image, chunks=(256, 256), name=name)
    ref_layer = viewer.open(str(tmp_path / "ref.ome.zarr"), plugin="napari-ome-zarr")[0]
    mov_layer = viewer.open(str(tmp_path / "mov.ome.zarr"), plugin="napari-ome-zarr")[0]
    widget.reference.value, widget.moving.value = ref_layer, mov_layer
    return viewer, widget, ref_layer, mov_layer, reference, moving, truth


def _press_align(qtbot, widget):
    widget.align_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_an_ome_zarr_pair_is_moved_by_default(qtbot, opened_pair):
    viewer, widget, ref_layer, mov_layer, reference, moving, truth = opened_pair
    assert ref_layer.multiscale and mov_layer.multiscale
    assert not isinstance(mov_layer.data[0], np.ndarray)  # napari-ome-zarr keeps it lazy
    # A multiscale moving layer: its affine moves; nothing is resampled by default.
    assert widget.move_only.value and not widget.out_aligned.value
    assert not widget.out_difference.value
    before = len(viewer.layers)
    _press_align(qtbot, widget)
    alignment = widget.last_alignment
    assert alignment.corner_error(truth) < 0.05
    assert len(viewer.layers) == before
    # The moved layer overlays the reference: a reference pixel lands where its partner is.
    point = np.array([350.0, 450.0])
    moved_to = mov_layer.world_to_data(ref_layer.data_to_world(point))
    expected = (alignment.matrix @ np.array([point[1], point[0], 1.0]))[1::-1]
    np.testing.assert_allclose(moved_to, expected, atol=1e-6)


def test_asked_for_outputs_are_lazy_pyramids(qtbot, opened_pair):
    viewer, widget, ref_layer, mov_layer, reference, moving, truth = opened_pair
    widget.move_only.value = False
    widget.out_aligned.value = widget.out_difference.value = True
    _press_align(qtbot, widget)
    alignment = widget.last_alignment
    aligned = viewer.layers["mov aligned"] if "mov aligned" in viewer.layers else viewer.layers[-2]
    diff = viewer.layers[-1]
    for layer in (aligned, diff):
        assert layer.multiscale and len(layer.data) == len(ref_layer.data)
        assert all(hasattr(level, "dask") for level in layer.data)  # never computed whole
    np.testing.assert_allclose(np.asarray(aligned.data[0]), nea.warp(moving, alignment), atol=1)
    # A coarse level is the moving level warped by the level's matrix: close to the
    # 2 x 2 mean of the full-resolution result away from the borders.
    full = nea.warp(moving, alignment).astype(np.float64)
    mean = (full[0::2, 0::2] + full[1::2, 0::2] + full[0::2, 1::2] + full[1::2, 1::2]) / 4
    level1 = np.asarray(aligned.data[1]).astype(np.float64)
    inner = (slice(20, -20), slice(20, -20))
    assert np.median(np.abs(level1[inner] - mean[inner])) < 2
    expected = nea.difference(reference, nea.warp(moving, alignment), alignment=alignment,
                              mode="absolute")  # fmt: skip
    np.testing.assert_allclose(np.asarray(diff.data[0]), expected, atol=1)


@pytest.fixture
def opened_volumes(tmp_path, viewer_widget, monkeypatch):
    """Two OME-Zarr volumes opened by napari-ome-zarr (three levels each); the working
    budget lowered so that their 8.7 M voxels take the path a 1 G voxel pair takes by
    default."""
    from napari_ecc_align.data.large import lazy_volume_pair
    from napari_ecc_align.engine import volume_reduce

    monkeypatch.setattr(volume_reduce, "MAX_WORK_VOXELS", 600_000)
    viewer, widget = viewer_widget
    pair = lazy_volume_pair((32, 520, 520), chunks=(16, 128, 128), seed=3)
    for name, volume in (("ref", pair.reference), ("mov", pair.moving)):
        nea.write_ome_zarr(tmp_path / f"{name}.ome.zarr", volume, ndim=3, spacing=pair.spacing,
                           unit="micrometer", chunks=(16, 128, 128), name=name)  # fmt: skip
    ref_layer = viewer.open(str(tmp_path / "ref.ome.zarr"), plugin="napari-ome-zarr")[0]
    mov_layer = viewer.open(str(tmp_path / "mov.ome.zarr"), plugin="napari-ome-zarr")[0]
    widget.reference.value, widget.moving.value = ref_layer, mov_layer
    return viewer, widget, ref_layer, mov_layer, pair


def test_ome_zarr_volumes_align_from_their_levels_and_blocks(qtbot, opened_volumes):
    """Volume layers stay lazy: the worker reads a stored level and full-resolution
    blocks; the moving layer moves by default, and asked-for outputs are lazy pyramids of
    volumes."""
    viewer, widget, ref_layer, mov_layer, pair = opened_volumes
    assert ref_layer.multiscale and len(ref_layer.data) > 1
    assert widget.move_only.value and not widget.out_aligned.value
    _press_align(qtbot, widget)
    alignment = widget.last_alignment
    assert alignment.ndim == 3 and alignment.parameters["refined_at_full_resolution"] is True
    assert alignment.parameters["estimated_at_scale"] == [1, 0.25, 0.25]  # the stored level
    assert alignment.corner_error(pair.matrix) < 0.05
    assert alignment.parameters["spacing"] == list(pair.spacing)
    assert not isinstance(mov_layer.data[0], np.ndarray)  # still lazy
    widget.move_only.value = False
    widget.out_aligned.value = widget.out_difference.value = True
    _press_align(qtbot, widget)
    aligned, diff = viewer.layers[-2], viewer.layers[-1]
    for layer in (aligned, diff):
        assert layer.multiscale and len(layer.data) == len(ref_layer.data)
        assert all(hasattr(level, "dask") for level in layer.data)  # never computed whole
        assert tuple(layer.data[0].shape) == (32, 520, 520)
    moving = pair.moving.compute()
    expected = nea.warp(moving, widget.last_alignment).astype(float)
    got = np.asarray(aligned.data[0][12:18]).astype(float)
    assert np.abs(got - expected[12:18]).max() <= 2
