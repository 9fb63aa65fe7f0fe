"""OME-NGFF (RFC-5) transformations, BigWarp landmarks and TransformJ matrices.

No NGFF, BigWarp or TransformJ implementation runs in Python, so each file is read here
as its own documentation says and applied independently of our code: the NGFF affine is
inverted to render the moving image on the reference (the specification's rendering
rule), BigWarp's landmarks are fitted by least squares (its affine) and by a thin-plate
spline (its default), and TransformJ's matrix is applied as ImageScience's ``Affine``
samples. Each must sample the moving image where our matrix says.
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.interpolate import RBFInterpolator

from napari_ecc_align import Alignment, align, load_transform, save_transform, warp
from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.io import write_ome_zarr

# The moving image's pixels differ from the reference's: a swap of the two would show.
GEOMETRY_3D = {"reference_spacing": (2.0, 0.5, 0.6), "reference_origin": (3.0, -2.0, 5.0),
               "moving_spacing": (2.5, 0.4, 0.7), "moving_origin": (1.0, 4.0, -3.0)}  # fmt: skip
GEOMETRY_2D = {"reference_spacing": (0.8, 0.5), "reference_origin": (10.0, -4.0),
               "moving_spacing": (0.6, 0.9), "moving_origin": (-2.0, 7.5)}  # fmt: skip


@pytest.fixture(scope="module")
def volume_alignment():
    pair = volume_pair((20, 40, 48), seed=3, spacing=(2.0, 0.5, 0.6))
    alignment = align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion="affine")
    return alignment, pair


@pytest.fixture(scope="module")
def image_alignment():
    reference, moving, _ = natural_pair((96, 120), seed=5)
    return align(reference, moving, motion="affine"), reference, moving


def _case(ndim, image_alignment, volume_alignment):
    """The estimated alignment and the geometry of the ``ndim`` case."""
    if ndim == 2:
        return image_alignment[0], GEOMETRY_2D
    return volume_alignment[0], GEOMETRY_3D


def _expected(alignment):
    """Moving voxel (x, y[, z]) each reference voxel samples under our matrix."""
    shape = alignment.reference_shape
    n = len(shape)
    grid = np.indices(shape, dtype=np.float64)[::-1]
    points = np.stack([*grid, np.ones(shape)]).reshape(n + 1, -1)
    sent = alignment.matrix @ points
    return (sent[:n] / sent[n]).reshape(n, *shape)


def _physical_grid(shape, spacing, origin):
    """Physical coordinates of every voxel, array order, shape (n, *shape)."""
    index = np.indices(shape, dtype=np.float64)
    return np.stack([o + s * i for i, s, o in zip(index, spacing, origin, strict=True)])


# --------------------------------------------------------------------------------- OME-NGFF
def _ngff_sampling(document, shape, geometry):
    """Moving voxel (x, y[, z]) each reference voxel samples, rendering by the rule of
    the specification: invert the moving → reference affine and apply it to reference
    points (array order, physical units)."""
    (step,) = document["coordinateTransformations"]
    assert step["input"] == {"name": "moving"} and step["output"] == {"name": "reference"}
    n = len(shape)
    forward = np.eye(n + 1)
    if step["type"] == "translation":
        forward[:n, n] = step["translation"]
    else:
        forward[:n] = step["affine"]
    backward = np.linalg.inv(forward)
    points = _physical_grid(shape, geometry["reference_spacing"], geometry["reference_origin"])
    flat = np.vstack([points.reshape(n, -1), np.ones((1, points[0].size))])
    moving = (backward @ flat)[:n]
    spacing, origin = np.asarray(geometry["moving_spacing"]), np.asarray(geometry["moving_origin"])
    voxels = (moving - origin[:, None]) / spacing[:, None]
    return voxels[::-1].reshape(n, *shape)  # (x, y[, z])


def test_ngff_volume_file_renders_the_moving_volume_where_our_matrix_says(
    tmp_path, volume_alignment
):
    alignment, pair = volume_alignment
    path = save_transform(alignment, tmp_path / "pair.ngff.json", **GEOMETRY_3D)
    document = json.loads(path.read_text())
    assert [s["name"] for s in document["coordinateSystems"]] == ["reference", "moving"]
    assert [a["name"] for a in document["coordinateSystems"][0]["axes"]] == ["z", "y", "x"]
    positions = _ngff_sampling(document, alignment.reference_shape, GEOMETRY_3D)
    assert np.abs(positions - _expected(alignment)).max() < 1e-9
    # Rendered by scipy from the file alone, it is our warp (linear interpolation both;
    # OpenCV's remap weighs in 1/32 voxel steps, hence a tolerance of 1 % of the range).
    rendered = ndimage.map_coordinates(pair.moving.astype(np.float64), positions[::-1], order=1,
                                       mode="constant", cval=np.nan)  # fmt: skip
    ours = warp(pair.moving.astype(np.float64), alignment, fill_value=np.nan)
    both = np.isfinite(rendered) & np.isfinite(ours)
    value_range = np.ptp(ours[both])
    assert both.mean() > 0.5 and np.abs(rendered[both] - ours[both]).max() < 0.01 * value_range
    loaded = load_transform(path, reference_shape=alignment.reference_shape, **GEOMETRY_3D)
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)
    assert loaded.motion == "affine" and loaded.parameters["format"] == "ngff"


def test_ngff_image_shift_is_a_translation(tmp_path):
    matrix = np.array([[1.0, 0, 3.5], [0, 1, -2.25], [0, 0, 1]])
    alignment = Alignment(matrix=matrix, motion="translation", correlation=0.9,
                          correlation_before=0.5, reference_shape=(30, 40),
                          moving_shape=(30, 40))  # fmt: skip
    same_pixels = GEOMETRY_2D | {"moving_spacing": GEOMETRY_2D["reference_spacing"]}
    path = save_transform(alignment, tmp_path / "shift.ngff.json", **same_pixels)
    document = json.loads(path.read_text())
    assert document["coordinateTransformations"][0]["type"] == "translation"
    positions = _ngff_sampling(document, (30, 40), same_pixels)
    assert np.abs(positions - _expected(alignment)).max() < 1e-9
    loaded = load_transform(path, reference_shape=(30, 40), **same_pixels)
    assert loaded.motion == "translation"
    np.testing.assert_allclose(loaded.matrix, matrix, atol=1e-12)


def test_ngff_document_lives_inside_an_ome_zarr_store(tmp_path, image_alignment):
    alignment, reference, moving = image_alignment
    store = Path(write_ome_zarr(tmp_path / "aligned.ome.zarr", warp(moving, alignment)))
    written = save_transform(alignment, store)
    assert written == store / "transform.ngff.json" and written.is_file()
    loaded = load_transform(store, reference_shape=reference.shape)
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)
    with pytest.raises(ValueError, match="no OME-Zarr store"):
        save_transform(alignment, tmp_path / "missing.zarr")


def _foreign(tmp_path, transform, systems=None):
    document = {"coordinateTransformations": [transform]}
    if systems is not None:
        document["coordinateSystems"] = [{"name": name, "axes": [{"name": "y"}, {"name": "x"}]}
                                         for name in systems]  # fmt: skip
    path = tmp_path / "foreign.json"  # plain .json: recognised by its contents
    path.write_text(json.dumps(document))
    return path


def test_ngff_homogeneous_affine_without_coordinate_systems_is_2d(tmp_path):
    step = {"type": "affine", "affine": [[1, 0, 4.0], [0, 1, -1.0], [0, 0, 1]], "input": "m",
            "output": "r"}  # fmt: skip
    loaded = load_transform(_foreign(tmp_path, step), reference_shape=(10, 12))
    np.testing.assert_allclose(loaded.matrix[:2, 2], [1.0, -4.0])  # inverted, (x, y)


def test_hostile_documents_and_landmarks_get_clear_errors(tmp_path):
    path = tmp_path / "axes.ngff.json"
    path.write_text(
        json.dumps(
            {
                "coordinateSystems": [{"name": "a", "axes": 5}],
                "coordinateTransformations": [{"type": "identity"}],
            }
        )
    )
    with pytest.raises(ValueError, match='axes.ngff.json: a coordinate system\'s "axes"'):
        load_transform(path, reference_shape=(10, 12))
    huge = tmp_path / "huge.csv"
    huge.write_text('"Pt-0","true","' + "1" * 200_000 + '","2","3","4"\n')
    with pytest.raises(ValueError, match="not a BigWarp landmarks CSV"):
        load_transform(huge, reference_shape=(10, 12))


def test_ngff_files_of_other_writers_are_read_in_either_direction(tmp_path):
    shift = {"type": "sequence", "input": "fixed", "output": "moving",
             "transformations": [{"type": "scale", "scale": [1.0, 1.0]},
                                 {"type": "translation", "translation": [2.0, -3.0]}]}  # fmt: skip
    loaded = load_transform(_foreign(tmp_path, shift), reference_shape=(10, 12))
    # fixed → moving, (y, x): the moving pixel of reference pixel (x, y) is (x - 3, y + 2)
    np.testing.assert_allclose(loaded.matrix[:2, 2], [-3.0, 2.0])
    # The first coordinate system is the reference, whatever the names say.
    inverse = {"type": "translation", "translation": [2.0, -3.0], "input": {"name": "b"},
               "output": {"name": "a"}}  # fmt: skip
    loaded = load_transform(_foreign(tmp_path, inverse, ["a", "b"]), reference_shape=(10, 12))
    np.testing.assert_allclose(loaded.matrix[:2, 2], [3.0, -2.0])
    wrapped = {"type": "inverseOf", "input": "a", "output": "b",
               "transformation": {"type": "affine", "affine": [[2, 0, 0], [0, 2, 0]]}}  # fmt: skip
    loaded = load_transform(_foreign(tmp_path, wrapped, ["a", "b"]), reference_shape=(10, 12))
    np.testing.assert_allclose(loaded.matrix, np.diag([0.5, 0.5, 1.0]), atol=1e-12)


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        ({"type": "affine", "path": "coordinateTransformations/a", "input": "m", "output": "r"},
         "in a zarr array"),
        ({"type": "displacements", "path": "field", "input": "m", "output": "r"},
         "'displacements' transformation is not read"),
        ({"type": "translation", "translation": [1, 2, 3, 4], "input": "m", "output": "r"},
         "4-dimensional"),
        ({"type": "affine", "affine": [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]], "input": "m",
          "output": "r"}, "must have shape"),
        ({"type": "scale", "scale": [0.0, 1.0], "input": "m", "output": "r"}, "singular"),
        ({"type": "scale", "scale": [0.0, 1.0], "input": "reference", "output": "moving"},
         "singular"),
        ({"type": "affine", "affine": [[1, 0, 0], [0, 1, 0], [0.1, 0, 1]], "input": "m",
          "output": "r"}, "last row must be"),
    ],
)  # fmt: skip
def test_ngff_transformations_we_cannot_apply_are_refused_by_name(tmp_path, transform, message):
    with pytest.raises(ValueError, match=message):
        load_transform(_foreign(tmp_path, transform), reference_shape=(10, 12), format="ngff")


# ----------------------------------------------------------------------------------- BigWarp
def _bigwarp_rows(path):
    rows = list(csv.reader(path.open()))
    values = np.array([[float(v) for v in row[2:]] for row in rows])
    n = values.shape[1] // 2
    assert all(row[0].startswith("Pt-") and row[1] == "true" for row in rows)
    return values[:, :n], values[:, n:]  # moving, fixed: physical (x, y[, z])


@pytest.mark.parametrize("ndim", [2, 3])
def test_bigwarp_landmarks_reproduce_the_alignment(tmp_path, ndim, image_alignment,
                                                   volume_alignment):  # fmt: skip
    alignment, geometry = _case(ndim, image_alignment, volume_alignment)
    path = save_transform(alignment, tmp_path / "landmarks.csv", **geometry)
    moving, fixed = _bigwarp_rows(path)
    assert len(fixed) == 2**ndim  # the reference's corners
    # BigWarp's affine: least squares from fixed to moving physical points.
    design = np.column_stack([fixed, np.ones(len(fixed))])
    fitted = np.linalg.lstsq(design, moving, rcond=None)[0]
    shape = alignment.reference_shape
    points = _physical_grid(shape, geometry["reference_spacing"], geometry["reference_origin"])
    xyz = points[::-1].reshape(ndim, -1).T
    sent = np.column_stack([xyz, np.ones(len(xyz))]) @ fitted
    spacing = np.asarray(geometry["moving_spacing"][::-1])
    origin = np.asarray(geometry["moving_origin"][::-1])
    voxels = ((sent - origin) / spacing).T.reshape(ndim, *shape)
    assert np.abs(voxels - _expected(alignment)).max() < 1e-9
    loaded = load_transform(path, reference_shape=shape, **geometry)
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)
    assert loaded.parameters["landmark_residual"] < 1e-9
    assert loaded.parameters["landmarks"] == 2**ndim


def test_bigwarp_gets_a_grid_for_a_homography_its_thin_plate_spline_follows(tmp_path):
    # A strong perspective: the scale changes by 5 % across the image.
    matrix = np.array([[1.01, -0.02, 4.8], [0.018, 0.99, -3.9], [2e-4, -1.5e-4, 1.0]])
    homography = Alignment(matrix=matrix, motion="homography", correlation=0.9,
                           correlation_before=0.5, reference_shape=(120, 150),
                           moving_shape=(120, 150))  # fmt: skip
    path = save_transform(homography, tmp_path / "landmarks.csv")
    moving_points, fixed_points = _bigwarp_rows(path)
    assert len(fixed_points) == 81
    spline = RBFInterpolator(fixed_points, moving_points, kernel="thin_plate_spline", degree=1)
    grid = np.indices((120, 150), dtype=np.float64)[::-1].reshape(2, -1).T
    error = np.abs(spline(grid).T.reshape(2, 120, 150) - _expected(homography)).max()
    assert error < 0.05  # 0.027 px measured (0.078 px through a 5×5 grid)
    loaded = load_transform(path, reference_shape=(120, 150), motion="homography")
    assert loaded.motion == "homography" and loaded.parameters["landmark_residual"] < 1e-6
    np.testing.assert_allclose(loaded.matrix, matrix, rtol=1e-6, atol=1e-9)


def test_bigwarp_files_from_fiji_are_fitted_with_the_motion_asked_for(tmp_path):
    path = tmp_path / "from_fiji.csv"
    path.write_text(
        '"Pt-0","true","12.0","10.0","10.0","10.0"\n'
        '"Pt-1","false","500.0","500.0","0.0","0.0"\n'  # switched off in BigWarp
        '"Pt-2","true","Infinity","Infinity","40.0","10.0"\n'  # no partner yet
        '"Pt-3","true","42.0","10.0","40.0","10.0"\n'
        '"Pt-4","true","12.0","50.0","10.0","50.0"\n'
    )
    loaded = load_transform(path, reference_shape=(64, 64), motion="translation")
    np.testing.assert_allclose(loaded.matrix[:2, 2], [2.0, 0.0])
    assert loaded.motion == "translation" and loaded.parameters["landmarks"] == 3
    with pytest.raises(ValueError, match="homography start needs at least 4"):
        load_transform(path, reference_shape=(64, 64), motion="homography")
    bad = tmp_path / "bad.csv"
    bad.write_text('"Pt-0","true","1","2","3"\n')
    with pytest.raises(ValueError, match="has 5 columns"):
        load_transform(bad, reference_shape=(64, 64))


# -------------------------------------------------------------------------------- TransformJ
def _transformj_sampling(forward, moving_shape, spacing_xyz):
    """Input voxel (x, y[, z]) each output voxel samples, as ImageScience's Affine:
    output position centred on the output image, through the inverse matrix, un-centred
    on the input image, divided by the pixel size."""
    n = len(moving_shape)
    spacing = np.ones(3)
    spacing[:n] = spacing_xyz
    size = np.ones(3)
    size[:n] = np.asarray(moving_shape)[::-1]
    centre = 0.5 * spacing * (size - 1)
    backward = np.linalg.inv(forward)
    grid = np.indices(moving_shape, dtype=np.float64)[::-1].reshape(n, -1)
    position = np.zeros((3, grid.shape[1]))
    position[:n] = grid * spacing[:n, None] - centre[:n, None]
    sampled = backward[:3, :3] @ position + backward[:3, 3:]
    return ((sampled + centre[:, None]) / spacing[:, None])[:n].reshape(n, *moving_shape)


@pytest.mark.parametrize("ndim", [2, 3])
def test_transformj_matrix_samples_where_our_matrix_says(tmp_path, ndim, image_alignment,
                                                         volume_alignment):  # fmt: skip
    alignment, geometry = _case(ndim, image_alignment, volume_alignment)
    path = save_transform(alignment, tmp_path / "matrix.transformj.txt", **geometry)
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    forward = np.array(rows, dtype=float)
    assert forward.shape == (4, 4)
    spacing_xyz = np.asarray(geometry["moving_spacing"][::-1])
    positions = _transformj_sampling(forward, alignment.moving_shape, spacing_xyz)
    assert np.abs(positions - _expected(alignment)).max() < 1e-9
    plain = tmp_path / "matrix.txt"  # TransformJ's own name: recognised by its contents
    plain.write_text(path.read_text().replace("\t", ", "))
    loaded = load_transform(plain, reference_shape=alignment.reference_shape, **geometry)
    assert loaded.parameters["format"] == "transformj"
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)


def test_transformj_keeps_the_moving_grid_where_the_shapes_differ(tmp_path):
    matrix = np.array([[0.98, 0.05, 3.0], [-0.04, 1.01, -2.0], [0, 0, 1]])
    alignment = Alignment(matrix=matrix, motion="affine", correlation=0.9,
                          correlation_before=0.5, reference_shape=(60, 80),
                          moving_shape=(70, 90))  # fmt: skip
    path = save_transform(alignment, tmp_path / "m.transformj.txt", **GEOMETRY_2D)
    forward = np.loadtxt(path)
    positions = _transformj_sampling(forward, (70, 90), GEOMETRY_2D["moving_spacing"][::-1])
    # TransformJ's output has the moving image's size: each of its pixels samples where
    # our matrix sends the same pixel of the reference grid.
    grid = np.indices((70, 90), dtype=np.float64)[::-1].reshape(2, -1)
    expected = (matrix @ np.vstack([grid, np.ones(grid.shape[1])]))[:2].reshape(2, 70, 90)
    assert np.abs(positions - expected).max() < 1e-9
    loaded = load_transform(path, reference_shape=(60, 80), moving_shape=(70, 90),
                            **GEOMETRY_2D)  # fmt: skip
    np.testing.assert_allclose(loaded.matrix, matrix, atol=1e-12)


def test_transformj_refuses_what_it_cannot_hold(tmp_path, image_alignment):
    reference, moving, _ = natural_pair((80, 90), seed=2)
    homography = align(reference, moving, motion="homography")
    with pytest.raises(ValueError, match="TransformJ applies affine maps only"):
        save_transform(homography, tmp_path / "h.transformj.txt")
    assert not (tmp_path / "h.transformj.txt").exists()
    tilted = tmp_path / "tilt.transformj.txt"
    tilted.write_text("1 0 0 0\n0 1 0.2 0\n0 0 1 0\n0 0 0 1\n")
    with pytest.raises(ValueError, match="moves z; it does not fit a 2D image"):
        load_transform(tilted, reference_shape=(80, 90))


def test_a_file_declaring_a_huge_grid_is_refused_before_any_work(tmp_path):
    from napari_ecc_align.engine import PixelBudgetError

    path = tmp_path / "TransformParameters.0.txt"
    path.write_text('(Transform "TranslationTransform")\n(NumberOfParameters 2)\n'
                    "(TransformParameters 1 2)\n(FixedImageDimension 2)\n"
                    "(Size 200000 200000)\n")  # fmt: skip
    with pytest.raises(PixelBudgetError, match="TransformParameters.0.txt"):
        load_transform(path)
    assert load_transform(path, max_pixels=math.inf).reference_shape == (200000, 200000)
    with pytest.raises(ValueError, match="reference_shape\\[0\\]"):
        load_transform(path, reference_shape=(0, 5))
