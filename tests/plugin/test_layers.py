"""napari glue (layers.py, carry.py), checked against napari's data_to_world on real layers."""

import json

import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.plugin.carry import carry_layer
from napari_ecc_align.plugin.layers import (
    aligned_layer_kwargs,
    alignment_metadata,
    carry_coordinates,
    data_to_world_matrix,
    image_for_alignment,
    move_layer_onto_reference,
    world_moving_to_reference_data,
)

REF_SHAPE = (40, 50)
MOV_SHAPE = (45, 56)
# reference (x, y, 1) -> moving (x, y): a mild affine and a homography.
AFFINE = np.array([[0.95, 0.10, 3.0], [-0.08, 1.05, -2.0], [0.0, 0.0, 1.0]])
HOMOGRAPHY = np.array([[0.97, 0.05, 2.0], [-0.04, 1.02, 1.5], [2e-4, -1.5e-4, 1.0]])


def make_alignment(matrix=AFFINE, motion="affine"):
    return Alignment(matrix, motion, 1.0, 0.5, REF_SHAPE, MOV_SHAPE)


def ramp(shape):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return 2 * rows + 3 * cols


def ref_to_moving_rc(matrix, ref_rc):
    """Reference (row, col) -> moving (row, col) straight from the matrix (independent path)."""
    ref_rc = np.atleast_2d(np.asarray(ref_rc, float))
    xy1 = np.column_stack([ref_rc[:, 1], ref_rc[:, 0], np.ones(len(ref_rc))]) @ matrix.T
    return np.column_stack([xy1[:, 1] / xy1[:, 2], xy1[:, 0] / xy1[:, 2]])


def world(layer, coords):
    return np.array([layer.data_to_world(c) for c in np.atleast_2d(coords)], float)


def add(viewer, layer_data_tuple):
    from napari.layers import Layer

    return viewer.add_layer(Layer.create(*layer_data_tuple))


def snapshot(layer):
    data = layer.data
    data = [np.array(d) for d in data] if isinstance(data, list) else np.array(data)
    features = layer.features.copy() if hasattr(layer, "features") else None
    transforms = [
        np.array(layer.scale),
        np.array(layer.translate),
        np.array(layer.rotate),
        np.array(layer.shear),
        np.array(layer.affine.affine_matrix),
    ]
    return data, features, transforms


def assert_unchanged(layer, before):
    data, features, transforms = snapshot(layer)
    if isinstance(data, list):
        assert len(data) == len(before[0])
        for a, b in zip(data, before[0], strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_array_equal(data, before[0])
    if features is not None:
        assert features.equals(before[1])
    for a, b in zip(transforms, before[2], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def scene(make_napari_viewer):
    viewer = make_napari_viewer()
    reference = viewer.add_image(
        np.zeros(REF_SHAPE, np.float32), name="ref", scale=(0.5, 0.5), translate=(10, -5)
    )
    moving = viewer.add_image(
        ramp(MOV_SHAPE),
        name="mov",
        scale=(0.8, 1.2),
        translate=(3, 4),
        rotate=7,
        colormap="magma",
        contrast_limits=(0, 200),
        gamma=0.8,
        blending="additive",
        opacity=0.6,
    )
    return viewer, reference, moving


def test_data_to_world_matrix_matches_napari(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    layer = viewer.add_image(
        np.zeros((5, 6)), scale=(0.5, 2), translate=(1, 2), rotate=30, shear=[0.2]
    )
    layer.affine = np.array([[1.0, 0.1, 3.0], [0.05, 0.9, -1.0], [0, 0, 1]])
    pts = rng.uniform(-10, 10, (6, 2))
    mapped = (data_to_world_matrix(layer) @ np.column_stack([pts, np.ones(6)]).T).T[:, :2]
    np.testing.assert_allclose(mapped, world(layer, pts), atol=1e-9)

    stack_points = viewer.add_points(
        np.zeros((1, 3)), scale=(4, 0.5, 2), translate=(7, 1, 2), rotate=np.eye(3)
    )
    pts3 = np.column_stack([rng.uniform(0, 3, 6), pts])
    mapped = (data_to_world_matrix(stack_points) @ np.column_stack([pts, np.ones(6)]).T).T[:, :2]
    np.testing.assert_allclose(mapped, world(stack_points, pts3)[:, 1:], atol=1e-9)


def test_points_landmark_lands_on_reference_world(scene):
    viewer, reference, moving = scene
    alignment = make_alignment()
    ref_rc = np.array([[12.0, 20.0], [30.0, 5.0], [3.0, 44.0]])
    mov_rc = ref_to_moving_rc(AFFINE, ref_rc)
    expected_world = world(reference, ref_rc)

    same_grid = viewer.add_points(
        mov_rc, scale=moving.scale, translate=moving.translate, rotate=moving.rotate
    )
    plain = viewer.add_points(world(moving, mov_rc), features={"id": [1, 2, 3]}, name="plain")
    for layer in (same_grid, plain):
        before = snapshot(layer)
        out = add(viewer, carry_layer(layer, alignment, reference, moving))
        assert out.name == f"{layer.name} (aligned)"
        np.testing.assert_allclose(world(out, out.data), expected_world, atol=1e-6)
        assert_unchanged(layer, before)
    assert list(out.features["id"]) == [1, 2, 3]
    np.testing.assert_allclose(
        carry_coordinates(mov_rc, alignment, moving, reference, moving), ref_rc, atol=1e-9
    )


def test_points_keep_style_and_scale_size(scene):
    viewer, reference, moving = scene
    alignment = make_alignment()
    layer = viewer.add_points(
        [[5.0, 6.0], [7.0, 8.0]],
        size=[3, 5],
        symbol=["square", "star"],
        face_color=["red", "blue"],
        border_color="green",
    )
    data, meta, kind = carry_layer(layer, alignment, reference, moving)
    out = add(viewer, (data, meta, kind))
    assert kind == "points"
    np.testing.assert_allclose(out.face_color, layer.face_color)
    np.testing.assert_allclose(out.border_color, layer.border_color)
    assert [s.value for s in out.symbol] == ["square", "star"]
    # source data -> reference data is linear here: sizes scale by sqrt|det| of its 2x2 part.
    chain = (
        np.linalg.inv(alignment.matrix)[:2, :2]
        @ np.linalg.inv(data_to_world_matrix(moving)[:2, :2])
        @ data_to_world_matrix(layer)[:2, :2]
    )
    np.testing.assert_allclose(out.size, np.array([3, 5]) * np.sqrt(abs(np.linalg.det(chain))))


def test_move_layer_onto_reference(scene, rng):
    viewer, reference, moving = scene
    moving.shear = [0.1]
    alignment = make_alignment()
    a = alignment.napari_affine()
    scale, translate = np.array(moving.scale), np.array(moving.translate)
    move_layer_onto_reference(moving, reference, alignment)
    np.testing.assert_array_equal(moving.scale, scale)
    np.testing.assert_array_equal(moving.translate, translate)
    for p in rng.uniform(0, 40, (6, 2)):
        mapped = (a @ [p[0], p[1], 1.0])[:2]
        np.testing.assert_allclose(moving.data_to_world(p), reference.data_to_world(mapped))

    with pytest.raises(ValueError, match="cannot express a homography; use Aligned image"):
        move_layer_onto_reference(moving, reference, make_alignment(HOMOGRAPHY, "homography"))


def test_world_moving_to_reference_data(scene, rng):
    _, reference, moving = scene
    alignment = make_alignment()
    matrix = world_moving_to_reference_data(alignment, reference, moving)
    p = rng.uniform(0, 40, (5, 2))
    via_world = (matrix @ np.column_stack([world(moving, p), np.ones(5)]).T).T[:, :2]
    np.testing.assert_allclose(via_world, alignment.transform_points(p), atol=1e-9)


@pytest.mark.parametrize(
    ("matrix", "motion"), [(AFFINE, "affine"), (HOMOGRAPHY, "homography")], ids=["aff", "homog"]
)
def test_images_resampled_on_reference_grid(scene, matrix, motion):
    viewer, reference, moving = scene
    alignment = make_alignment(matrix, motion)
    before = snapshot(moving)
    data, meta, kind = carry_layer(moving, alignment, reference, moving)
    assert kind == "image" and data.shape == REF_SHAPE and data.dtype == np.float32
    assert_unchanged(moving, before)
    out = add(viewer, (data, meta, kind))
    assert out.colormap.name == "magma" and tuple(out.contrast_limits) == (0, 200)
    assert out.blending == "additive" and out.opacity == pytest.approx(0.6)
    np.testing.assert_allclose(data_to_world_matrix(out), data_to_world_matrix(reference))

    ref_rc = np.argwhere(np.ones(REF_SHAPE, bool)).astype(float)
    mov_rc = ref_to_moving_rc(matrix, ref_rc)
    inside = np.all((mov_rc >= 1) & (mov_rc <= np.array(MOV_SHAPE) - 2), axis=1)
    expected = 2 * mov_rc[:, 0] + 3 * mov_rc[:, 1]  # bilinear sampling of a ramp is exact
    got = data.reshape(-1)
    np.testing.assert_allclose(got[inside], expected[inside], atol=0.2)  # OpenCV's 1/32 px grid

    # The same content on a coarser grid of its own (2x pixels, shifted, rotated differently)
    # lands on the same reference pixels.
    coarse_d2w = np.diag([1.6, 2.4, 1.0])
    coarse_d2w[:2, 2] = (2.5, 1.0)
    coarse_rc = np.argwhere(np.ones((24, 30), bool)).astype(float)
    to_mov = np.linalg.inv(data_to_world_matrix(moving)) @ coarse_d2w
    m = coarse_rc @ to_mov[:2, :2].T + to_mov[:2, 2]
    coarse = viewer.add_image(
        (2 * m[:, 0] + 3 * m[:, 1]).reshape(24, 30).astype(np.float32),
        scale=(1.6, 2.4),
        translate=(2.5, 1.0),
    )
    coarse_data, _, _ = carry_layer(coarse, alignment, reference, moving)
    to_coarse = np.linalg.inv(coarse_d2w) @ data_to_world_matrix(moving)
    c = mov_rc @ to_coarse[:2, :2].T + to_coarse[:2, 2]
    covered = inside & np.all((c >= 1) & (c <= np.array([24, 30]) - 2), axis=1)
    assert covered.sum() > 500
    np.testing.assert_allclose(coarse_data.reshape(-1)[covered], expected[covered], atol=0.3)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_labels_keep_dtype_and_values(scene, rng, dtype):
    viewer, reference, moving = scene
    labels = viewer.add_labels(
        rng.choice([0, 3, 7, 250], size=MOV_SHAPE).astype(dtype),
        scale=moving.scale,
        translate=moving.translate,
        rotate=moving.rotate,
    )
    before = snapshot(labels)
    data, meta, kind = carry_layer(labels, make_alignment(), reference, moving)
    assert kind == "labels" and data.dtype == dtype and data.shape == REF_SHAPE
    assert set(np.unique(data)) <= {0, 3, 7, 250}
    assert len(np.unique(data)) == 4
    add(viewer, (data, meta, kind))
    assert_unchanged(labels, before)


def test_aligned_layer_kwargs(scene):
    viewer, reference, moving = scene
    reference.affine = np.array([[1.0, 0.05, 2.0], [0.0, 1.0, 0.5], [0, 0, 1]])
    kwargs = aligned_layer_kwargs(reference, moving)
    assert kwargs["colormap"].name == "magma" and kwargs["rgb"] is False
    assert kwargs["contrast_limits"] == (0.0, 200.0) and kwargs["gamma"] == pytest.approx(0.8)
    out = viewer.add_image(np.zeros(REF_SHAPE, np.float32), **kwargs)
    for p in ([0, 0], [12.5, 3], [39, 49]):
        np.testing.assert_allclose(out.data_to_world(p), reference.data_to_world(p), atol=1e-12)


def test_shapes_keep_types_and_features(scene):
    viewer, reference, moving = scene
    shapes = [
        np.array([[2.0, 2.0], [2.0, 10.0], [8.0, 10.0], [8.0, 2.0]]),
        np.array([[12.0, 12.0], [12.0, 20.0], [16.0, 20.0], [16.0, 12.0]]),
        np.array([[1.0, 1.0], [5.0, 9.0], [3.0, 14.0]]),
        np.array([[20.0, 3.0], [25.0, 8.0]]),
    ]
    kinds = ["rectangle", "ellipse", "polygon", "line"]
    layer = viewer.add_shapes(
        shapes, shape_type=kinds, features={"kind": kinds}, edge_width=[1, 2, 3, 4]
    )
    before = snapshot(layer)
    for matrix, motion, out_kinds in [
        (AFFINE, "affine", kinds),
        (HOMOGRAPHY, "homography", ["polygon", "polygon", "polygon", "line"]),
    ]:
        alignment = make_alignment(matrix, motion)
        out = add(viewer, carry_layer(layer, alignment, reference, moving))
        assert out.shape_type == out_kinds
        assert list(out.features["kind"]) == kinds and list(out.edge_width) == [1, 2, 3, 4]
        expected = carry_coordinates(shapes[2], alignment, layer, reference, moving)
        np.testing.assert_allclose(out.data[2], expected, atol=1e-4)  # napari stores float32
        assert len(out.data[1]) == (4 if motion == "affine" else 64)
    assert_unchanged(layer, before)


def test_vectors(scene):
    viewer, reference, moving = scene
    alignment = make_alignment()
    data = np.array([[[4.0, 5.0], [1.0, 2.0]], [[20.0, 30.0], [-3.0, 0.5]]])
    layer = viewer.add_vectors(data, features={"w": [1.0, 2.0]}, edge_width=2, length=1.5)
    before = snapshot(layer)
    out = add(viewer, carry_layer(layer, alignment, reference, moving))
    bases = carry_coordinates(data[:, 0], alignment, layer, reference, moving)
    tips = carry_coordinates(data[:, 0] + data[:, 1], alignment, layer, reference, moving)
    np.testing.assert_allclose(out.data[:, 0], bases)
    np.testing.assert_allclose(out.data[:, 1], tips - bases)
    assert list(out.features["w"]) == [1.0, 2.0]
    assert out.edge_width == 2 and out.length == 1.5
    assert_unchanged(layer, before)


def test_tracks_keep_ids_time_and_graph(scene):
    viewer, reference, moving = scene
    alignment = make_alignment()
    data = np.array([[0, 0, 10, 10], [0, 1, 11, 12], [1, 2, 5, 5], [2, 2, 6, 7]], float)
    layer = viewer.add_tracks(
        data, graph={1: [0], 2: [0]}, features={"speed": [1.0, 2.0, 3.0, 4.0]}, scale=(5, 1, 1)
    )
    before = snapshot(layer)
    out = add(viewer, carry_layer(layer, alignment, reference, moving))
    np.testing.assert_array_equal(out.data[:, :2], data[:, :2])
    expected = carry_coordinates(data[:, 1:], alignment, layer, reference, moving)
    np.testing.assert_allclose(out.data[:, 1:], expected)
    assert out.graph == {1: [0], 2: [0]}
    assert list(out.features["speed"]) == [1.0, 2.0, 3.0, 4.0]
    assert out.scale[0] == 5  # the time axis keeps its own scale
    # spatial world positions equal the reference world positions of the carried pixels
    np.testing.assert_allclose(
        world(out, out.data[:, 1:])[:, 1:], world(reference, expected[:, 1:]), atol=1e-6
    )
    assert_unchanged(layer, before)


def test_image_for_alignment(make_napari_viewer, rng):
    viewer = make_napari_viewer()
    gray = viewer.add_image(rng.random((20, 30)))
    rgb = viewer.add_image(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), rgb=True)
    pyramid = viewer.add_image([rng.random((40, 60)), rng.random((20, 30))], multiscale=True)
    assert image_for_alignment(gray, "reference").shape == (20, 30)
    assert image_for_alignment(rgb, "moving").shape == (20, 30, 3)
    # A multiscale layer reaches the engine as its levels, finest first, none loaded.
    levels = image_for_alignment(pyramid, "moving")
    assert isinstance(levels, list) and [level.shape for level in levels] == [(40, 60), (20, 30)]
    np.testing.assert_array_equal(levels[0], pyramid.data[0])
    import dask.array as da

    lazy = viewer.add_image(da.zeros((20, 30), chunks=10))
    assert image_for_alignment(lazy, "moving") is lazy.data  # dask stays dask

    stack = viewer.add_image(rng.random((3, 20, 30)), name="stack")
    with pytest.raises(ValueError, match=r"'stack' is a stack of shape \(3, 20, 30\)"):
        image_for_alignment(stack, "moving")
    points = viewer.add_points([[1.0, 2.0]], name="pts")
    with pytest.raises(TypeError, match="'pts' is a Points layer"):
        image_for_alignment(points, "moving")


def test_carry_rejects_stacks_and_unknown_layers(scene, rng):
    viewer, reference, moving = scene
    alignment = make_alignment()
    stack = viewer.add_image(rng.random((3, *MOV_SHAPE)), name="stack")
    with pytest.raises(ValueError, match="stack"):
        carry_layer(stack, alignment, reference, moving)
    with pytest.raises(ValueError, match="stack"):
        carry_layer(moving, alignment, stack, moving)
    surface = viewer.add_surface((np.zeros((3, 2)), np.array([[0, 1, 2]])), name="surf")
    with pytest.raises(TypeError, match="Surface"):
        carry_layer(surface, alignment, reference, moving)
    with pytest.raises(ValueError, match="swapped"):
        carry_layer(moving, alignment, moving, reference)


def test_alignment_metadata_is_json_safe(scene):
    _, reference, moving = scene
    alignment = make_alignment()
    meta = alignment_metadata(
        alignment, motion="affine", reference=reference, levels=np.int64(3), box=np.arange(2)
    )
    text = json.dumps(meta)
    assert json.loads(text)["widget_parameters"] == {
        "motion": "affine",
        "reference": "ref",
        "levels": 3,
        "box": [0, 1],
    }
    restored = Alignment.from_dict(json.loads(text))  # Alignment's == chokes on its ndarray
    np.testing.assert_array_equal(restored.matrix, alignment.matrix)
    assert restored.to_dict() == alignment.to_dict()
