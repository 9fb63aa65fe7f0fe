"""The 3D samples through napari's sample-data mechanism (File > Open Sample): layers in
µm with the voxel size as their scale, the look of the 2D pairs, and true 4×4s in their
metadata that the engine recovers from the layers alone."""

import numpy as np

from napari_ecc_align import align
from napari_ecc_align.engine.alignment import corner_rms

PLUGIN = "napari-ecc-align"
SPACING = (2.0, 0.5, 0.5)


def test_the_volume_pair_opens_as_two_channels_in_micrometres(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "volume_pair")
    reference, moving = viewer.layers
    assert (reference.name, moving.name) == (
        "volume reference (channel 1)",
        "volume moving (channel 2)",
    )
    for layer in (reference, moving):
        assert layer.ndim == 3 and layer.data.shape == (32, 128, 128)
        assert layer.data.dtype == np.uint16
        np.testing.assert_allclose(layer.scale, SPACING)
        assert [str(u) for u in layer.units] == ["micrometer"] * 3
        low, high = layer.contrast_limits
        assert layer.data.min() < low < high <= layer.data.max()
    assert (reference.colormap.name, reference.blending) == ("green", "translucent")
    assert (moving.colormap.name, moving.blending) == ("magenta", "additive")
    # The world extent is the physical one: a 64 µm cube (voxel centres 0 to 62 / 63.5).
    np.testing.assert_allclose(viewer.layers.extent.world[1], [62.0, 63.5, 63.5])

    truth = np.array(moving.metadata["ecc_true_matrix"])
    np.testing.assert_array_equal(truth, reference.metadata["ecc_true_matrix"])
    assert truth.shape == (4, 4)
    found = align(reference.data, moving.data, ndim=3, spacing=tuple(reference.scale),
                  motion="euclidean")  # fmt: skip
    assert found.corner_error(truth) <= 0.05
    assert corner_rms(np.eye(4), truth, reference.data.shape) > 3  # misaligned as it comes


def test_the_drifting_volume_opens_as_a_time_lapse_of_volumes(make_napari_viewer):
    viewer = make_napari_viewer()
    (layer,) = viewer.open_sample(PLUGIN, "drift_volume")
    assert layer.name == "drifting 3D time-lapse" and layer.ndim == 4
    assert layer.data.shape == (12, 32, 96, 96) and layer.data.dtype == np.uint16
    np.testing.assert_allclose(layer.scale, (1.0, *SPACING))
    assert viewer.dims.nsteps[0] == 12  # a time slider over the frames

    truths = np.array(layer.metadata["ecc_true_matrices"])
    assert truths.shape == (12, 4, 4)
    np.testing.assert_allclose(truths[0], np.eye(4))
    frame = layer.data.shape[1:]
    found = align(layer.data[0], layer.data[-1], ndim=3, spacing=tuple(layer.scale[1:]),
                  motion="euclidean")  # fmt: skip
    assert found.corner_error(truths[-1]) <= 0.05
    assert corner_rms(np.eye(4), truths[-1], frame) > 5  # the last frame drifted
