"""The plugin's npe2 contributions as napari uses them: every sample through
``viewer.open_sample`` and ``align_images`` through npe2's command registry."""

from importlib.resources import files

import numpy as np
import pytest
import yaml

from napari_ecc_align import align
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine.alignment import corner_rms

PLUGIN = "napari-ecc-align"


def _sample_keys():
    manifest = yaml.safe_load((files("napari_ecc_align") / "napari.yaml").read_text("utf-8"))
    return [sample["key"] for sample in manifest["contributions"]["sample_data"]]


# What each sample must add: (name, shape, dtype) per layer, and how accurately the known
# transform in its metadata is recovered (corner RMS, px).
EXPECTED = {
    "score_pair": (
        [
            ("score reference (binarised)", (1200, 900), np.uint8),
            ("score moving (grayscale)", (1200, 900), np.uint8),
        ],
        0.1,
    ),
    "natural_pair": (
        [
            ("natural reference", (512, 512), np.float32),
            ("natural moving", (512, 512), np.float32),
        ],
        0.05,
    ),
    "drift_stack": ([("drifting time-lapse", (40, 256, 320), np.float32)], 0.1),
    # Volumes: their spacing and 4x4 transforms are checked in test_sample_volumes.py.
    "volume_pair": (
        [
            ("volume reference (channel 1)", (32, 128, 128), np.uint16),
            ("volume moving (channel 2)", (32, 128, 128), np.uint16),
        ],
        None,
    ),
    "drift_volume": ([("drifting 3D time-lapse", (12, 32, 96, 96), np.uint16)], None),
}


@pytest.mark.parametrize("key", _sample_keys())
def test_every_sample_opens_with_its_known_transform(make_napari_viewer, key):
    assert key in EXPECTED, f"new sample {key!r}: say here what it must add"
    layers_expected, tolerance = EXPECTED[key]
    viewer = make_napari_viewer()
    added = viewer.open_sample(PLUGIN, key)
    assert [layer.name for layer in viewer.layers] == [name for name, _, _ in layers_expected]
    assert [layer.name for layer in added] == [name for name, _, _ in layers_expected]
    for layer, (name, shape, dtype) in zip(viewer.layers, layers_expected, strict=True):
        assert type(layer).__name__ == "Image", name
        assert layer.data.shape == shape and layer.data.dtype == dtype, name
    if tolerance is None:
        return

    if key == "drift_stack":
        (layer,) = viewer.layers
        truth = np.array(layer.metadata["ecc_true_matrices"])
        assert truth.shape == (40, 3, 3)
        np.testing.assert_allclose(truth[0], np.eye(3))  # frame 0 is the reference grid
        for t in (7, 39):
            found = align(layer.data[0], layer.data[t], motion="euclidean")
            assert corner_rms(found.matrix, truth[t], shape[1:]) < tolerance, t
            assert corner_rms(np.eye(3), truth[t], shape[1:]) > 1  # it did drift
    else:
        reference, moving = viewer.layers
        truth = np.array(moving.metadata["ecc_true_matrix"])
        np.testing.assert_array_equal(truth, reference.metadata["ecc_true_matrix"])
        found = align(reference.data, moving.data)
        assert corner_rms(found.matrix, truth, shape) < tolerance
        assert corner_rms(np.eye(3), truth, shape) > 3  # misaligned as it comes


def test_align_images_through_the_npe2_command_registry(make_napari_viewer):
    from napari.layers import Layer
    from npe2 import PluginManager

    reference, moving, truth = natural_pair((300, 360), seed=4, scale=1.0)  # a rigid motion
    command = PluginManager.instance().get_command(f"{PLUGIN}.align_images")
    assert command.python_name == "napari_ecc_align.plugin.commands:align_images"
    result = command.exec(kwargs={"reference": reference, "moving": moving, "motion": "euclidean"})

    (aligned, meta, kind), (diff, diff_meta, diff_kind) = result
    assert (kind, diff_kind) == ("image", "image")
    assert (meta["name"], diff_meta["name"]) == ("aligned", "difference")
    alignment = meta["metadata"]["ecc_alignment"]
    assert alignment["motion"] == "euclidean"
    assert corner_rms(np.array(alignment["matrix"]), truth, reference.shape) < 0.05
    assert aligned.shape == diff.shape == reference.shape and aligned.dtype == moving.dtype
    # The tuples become layers as napari makes them from a command's result.
    viewer = make_napari_viewer()
    for data, kwargs, layer_type in result:
        viewer.add_layer(Layer.create(data, kwargs, layer_type))
    assert [layer.name for layer in viewer.layers] == ["aligned", "difference"]
    inner = (slice(20, -20), slice(20, -20))

    def correlation(a):
        return np.corrcoef(a[inner].ravel(), reference[inner].ravel())[0, 1]

    assert correlation(viewer.layers["aligned"].data) > 0.995 > 0.96 > correlation(moving)
