"""elastix transform parameter files, proved by transformix and elastix themselves
(itk-elastix): transformix resamples our files where our matrix says, and files elastix
writes are read as transformix applies them. Ramps as in ``test_transform_files.py``."""

import numpy as np
import pytest

from napari_ecc_align import align, load_transform, save_transform
from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.io.itk_transform import euler_matrix, rotation_2d

itk = pytest.importorskip("itk", reason="itk-elastix is in the testing-transforms extra")
if not hasattr(itk, "transformix_filter"):
    pytest.skip("itk-elastix is not installed (itk alone has no transformix)",
                allow_module_level=True)  # fmt: skip

SHAPE = (20, 48, 56)
GEOMETRY = {"reference_spacing": (2.0, 0.5, 0.5), "reference_origin": (3.0, -2.0, 5.0),
            "moving_spacing": (2.0, 0.5, 0.5), "moving_origin": (1.0, 4.0, -3.0),
            "direction": euler_matrix(0.3, -0.2, 0.5)}  # fmt: skip
GEOMETRY_2D = {"reference_spacing": (0.8, 0.5), "reference_origin": (10.0, -4.0),
               "moving_spacing": (0.8, 0.5), "moving_origin": (-2.0, 7.5),
               "direction": rotation_2d(0.4)}  # fmt: skip


def _image(array, spacing, origin, direction):
    image = itk.image_view_from_array(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing([float(v) for v in spacing[::-1]])
    image.SetOrigin([float(v) for v in origin[::-1]])
    image.SetDirection(itk.matrix_from_array(np.asarray(direction, float)))
    return image


def _transformix_positions(parameter_file, moving_shape, geometry):
    """Moving (x, y[, z]) each reference voxel samples under transformix, from ramps."""
    parameters = itk.ParameterObject.New()
    parameters.ReadParameterFile(str(parameter_file))
    # Linear, exact on a ramp (elastix writes cubic B-splines, whose border effects reach
    # several voxels in)
    parameters.SetParameter("ResampleInterpolator", "FinalLinearInterpolator")
    positions, n = [], len(moving_shape)
    for axis in range(n):
        ramp = np.indices(moving_shape, dtype=np.float64)[n - 1 - axis]
        moving = _image(ramp, geometry["moving_spacing"], geometry["moving_origin"],
                        geometry["direction"])  # fmt: skip
        positions.append(np.asarray(itk.transformix_filter(moving, parameters)))
    return positions


def _assert_transformix_agrees(parameter_file, alignment, geometry=GEOMETRY):
    positions = _transformix_positions(parameter_file, alignment.moving_shape, geometry)
    n = alignment.ndim
    grid = np.indices(alignment.reference_shape, dtype=np.float64)[::-1]
    points = np.stack([*grid, np.ones(alignment.reference_shape)]).reshape(n + 1, -1)
    expected = (alignment.matrix @ points)[:n].reshape(n, *alignment.reference_shape)
    inside = np.ones(alignment.reference_shape, bool)
    for want, n in zip(expected, alignment.moving_shape[::-1], strict=True):
        inside &= (want >= 0.5) & (want <= n - 1.5)  # away from transformix's border rule
    assert inside.mean() > 0.3
    for got, want in zip(positions, expected, strict=True):
        assert np.abs(got[inside] - want[inside]).max() < 0.01  # float32 images: ~2e-6


@pytest.fixture(scope="module")
def pair():
    return volume_pair(SHAPE, seed=3, spacing=(2.0, 0.5, 0.5))


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine"])
def test_transformix_resamples_our_file_where_our_matrix_says(tmp_path, pair, motion):
    alignment = align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion=motion)
    path = save_transform(alignment, tmp_path / "TransformParameters.0.txt", **GEOMETRY)
    _assert_transformix_agrees(path, alignment)
    moving_geometry = {k: v for k, v in GEOMETRY.items() if k.startswith("moving")}
    loaded = load_transform(path, **moving_geometry)  # the grid comes from the file
    assert loaded.reference_shape == SHAPE and loaded.motion == motion
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine"])
def test_transformix_resamples_our_2d_file_where_our_matrix_says(tmp_path, motion):
    reference, moving, _ = natural_pair((96, 120), seed=5)
    alignment = align(reference, moving, motion=motion)
    path = save_transform(alignment, tmp_path / "TransformParameters.0.txt", **GEOMETRY_2D)
    _assert_transformix_agrees(path, alignment, GEOMETRY_2D)
    moving_geometry = {k: v for k, v in GEOMETRY_2D.items() if k.startswith("moving")}
    loaded = load_transform(path, **moving_geometry)
    assert loaded.reference_shape == (96, 120) and loaded.motion == motion
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)


def test_a_file_elastix_wrote_is_read_as_transformix_applies_it(tmp_path, pair):
    fixed = _image(pair.reference, GEOMETRY["reference_spacing"], GEOMETRY["reference_origin"],
                   GEOMETRY["direction"])  # fmt: skip
    moving = _image(pair.moving, GEOMETRY["moving_spacing"], GEOMETRY["moving_origin"],
                    GEOMETRY["direction"])  # fmt: skip
    parameters = itk.ParameterObject.New()
    parameters.AddParameterMap(parameters.GetDefaultParameterMap("rigid", 2))
    _, result = itk.elastix_registration_method(fixed, moving, parameter_object=parameters,
                                                log_to_console=False)  # fmt: skip
    path = tmp_path / "TransformParameters.0.txt"
    itk.ParameterObject.WriteParameterFile(result.GetParameterMap(0), str(path))
    loaded = load_transform(path, moving_spacing=GEOMETRY["moving_spacing"],
                            moving_origin=GEOMETRY["moving_origin"])  # fmt: skip
    assert loaded.reference_shape == SHAPE and loaded.motion == "euclidean"
    assert np.abs(loaded.matrix - np.eye(4)).max() > 0.01  # elastix moved: a real test
    _assert_transformix_agrees(path, loaded)


def test_unread_elastix_files_are_refused(tmp_path):
    chained = tmp_path / "TransformParameters.1.txt"
    chained.write_text(
        '(Transform "EulerTransform")\n(TransformParameters 0 0 0 0 0 0)\n'
        '(InitialTransformParametersFileName "TransformParameters.0.txt")\n'
    )
    with pytest.raises(ValueError, match="chained elastix files are not read"):
        load_transform(chained)
    bspline = tmp_path / "TransformParameters.2.txt"
    bspline.write_text('(Transform "BSplineTransform")\n(TransformParameters 0 0)\n')
    with pytest.raises(ValueError, match="BSplineTransform .* is not a transform this reads"):
        load_transform(bspline)
