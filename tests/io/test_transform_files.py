"""Transform files: ours (JSON) and ITK's, proved by SimpleITK itself.

Where SimpleITK resamples is measured with ramps: a moving image whose value is its own
x (y, z) coordinate comes back, through linear interpolation (exact on a ramp), as the
moving coordinate each reference pixel samples; it must be where our matrix sends that
pixel, to 0.01 px. Geometry: anisotropic spacing, non-zero origins, and in 3D a direction
that is not the identity.
"""

import math

import numpy as np
import pytest

from napari_ecc_align import Alignment, align, load_transform, save_transform
from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.io.itk_transform import euler_matrix

sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is in the testing-transforms extra")

DIRECTION = euler_matrix(0.3, -0.2, 0.5)  # a turned scanner frame (x, y, z)
GEOMETRY_3D = {"reference_spacing": (2.0, 0.5, 0.5), "reference_origin": (3.0, -2.0, 5.0),
               "moving_spacing": (2.0, 0.5, 0.5), "moving_origin": (1.0, 4.0, -3.0),
               "direction": DIRECTION}  # fmt: skip
GEOMETRY_2D = {"reference_spacing": (0.8, 0.5), "reference_origin": (10.0, -4.0),
               "moving_spacing": (0.8, 0.5), "moving_origin": (-2.0, 7.5)}  # fmt: skip


def _image(array, spacing, origin, direction=None):
    """A SimpleITK image of ``array`` with the geometry in array order."""
    image = sitk.GetImageFromArray(np.asarray(array, np.float64))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in origin[::-1]))
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, float).ravel()))
    return image


def _sampled_positions(transform, ref_shape, mov_shape, geometry):
    """Moving (x, y[, z]) coordinates SimpleITK samples for each reference pixel, from
    ramps, and where all of them lie inside the moving image."""
    n = len(ref_shape)
    direction = geometry.get("direction")
    fixed = _image(np.zeros(ref_shape), geometry["reference_spacing"],
                   geometry["reference_origin"], direction)  # fmt: skip
    positions, inside = [], np.ones(ref_shape, bool)
    for axis in range(n):  # x, y[, z]
        ramp = np.indices(mov_shape, dtype=np.float64)[n - 1 - axis]
        moving = _image(ramp, geometry["moving_spacing"], geometry["moving_origin"], direction)
        out = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, -1e9))
        inside &= out > -1e8
        positions.append(out)
    return positions, inside


def _expected_positions(matrix, ref_shape):
    n = len(ref_shape)
    grid = np.indices(ref_shape, dtype=np.float64)[::-1]  # x, y[, z]
    points = np.stack([*grid, np.ones(ref_shape)]).reshape(n + 1, -1)
    return (matrix @ points)[:n].reshape(n, *ref_shape)


def _assert_same_sampling(transform, alignment, geometry, tolerance=0.01):
    positions, inside = _sampled_positions(transform, alignment.reference_shape,
                                           alignment.moving_shape, geometry)  # fmt: skip
    expected = _expected_positions(alignment.matrix, alignment.reference_shape)
    # ITK samples up to half a pixel beyond the outer pixel centres (clamped): compare
    # within the centres.
    for want, n in zip(expected, alignment.moving_shape[::-1], strict=True):
        inside &= (want >= 0) & (want <= n - 1)
    assert inside.mean() > 0.3  # much of the grid is compared
    for got, want in zip(positions, expected, strict=True):
        assert np.abs(got[inside] - want[inside]).max() < tolerance


@pytest.fixture(scope="module")
def volume_alignments():
    pair = volume_pair((20, 48, 56), seed=3, spacing=(2.0, 0.5, 0.5))
    return {motion: align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion=motion)
            for motion in ("translation", "euclidean", "affine")}  # fmt: skip


@pytest.fixture(scope="module")
def image_alignments():
    reference, moving, _ = natural_pair((120, 150), seed=2)
    return {motion: align(reference, moving, motion=motion)
            for motion in ("translation", "euclidean", "affine")}  # fmt: skip


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine"])
@pytest.mark.parametrize("suffix", [".tfm", ".txt", ".mat"])
def test_simpleitk_resamples_where_our_3d_matrix_says(tmp_path, volume_alignments, motion,
                                                      suffix):  # fmt: skip
    alignment = volume_alignments[motion]
    path = save_transform(alignment, tmp_path / f"t{suffix}", **GEOMETRY_3D)
    transform = sitk.ReadTransform(str(path))
    kinds = {"translation": "TranslationTransform", "euclidean": "Euler3DTransform",
             "affine": "AffineTransform"}  # fmt: skip
    assert transform.GetName() == kinds[motion]
    _assert_same_sampling(transform, alignment, GEOMETRY_3D)
    loaded = load_transform(path, reference_shape=alignment.reference_shape, **GEOMETRY_3D)
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)
    assert loaded.motion == motion and loaded.init_method == "file"


@pytest.mark.parametrize("motion", ["translation", "euclidean", "affine"])
def test_simpleitk_resamples_where_our_2d_matrix_says(tmp_path, image_alignments, motion):
    alignment = image_alignments[motion]
    path = save_transform(alignment, tmp_path / "t.tfm", **GEOMETRY_2D)
    transform = sitk.ReadTransform(str(path))
    _assert_same_sampling(transform, alignment, GEOMETRY_2D)
    loaded = load_transform(path, reference_shape=alignment.reference_shape,
                            moving_shape=alignment.moving_shape, **GEOMETRY_2D)  # fmt: skip
    np.testing.assert_allclose(loaded.matrix, alignment.matrix, atol=1e-9)
    # Anisotropic pixels: a rotation of pixels is a physical affine map in the file, and
    # back in pixels it is a rotation again: the motion survives the round trip.
    assert loaded.motion == motion


def _sitk_transforms_3d():
    centre = (4.0, -1.0, 12.0)
    euler = sitk.Euler3DTransform(centre, 0.02, -0.03, 0.05, (1.5, -0.5, 2.0))
    zyx = sitk.Euler3DTransform(centre, 0.02, -0.03, 0.05, (1.5, -0.5, 2.0))
    zyx.SetComputeZYX(True)
    versor = sitk.VersorRigid3DTransform()
    versor.SetCenter(centre)
    versor.SetRotation((0.2, 0.3, 0.9), 0.04)
    versor.SetTranslation((0.5, 1.0, -1.0))
    affine = sitk.AffineTransform(3)
    affine.SetMatrix((1.01, 0.02, 0.0, -0.01, 0.99, 0.01, 0.0, 0.02, 1.0))
    affine.SetCenter(centre)
    affine.SetTranslation((1.0, 0.5, -0.5))
    composite = sitk.CompositeTransform([sitk.TranslationTransform(3, (0.5, 0.25, -1.0)), euler])
    return {"euler": euler, "euler-zyx": zyx, "versor": versor, "affine": affine,
            "composite": composite}  # fmt: skip


@pytest.mark.parametrize("name", ["euler", "euler-zyx", "versor", "affine", "composite"])
@pytest.mark.parametrize("suffix", [".tfm", ".h5"])
def test_files_simpleitk_writes_are_read_as_it_resamples(tmp_path, name, suffix):
    transform = _sitk_transforms_3d()[name]
    path = tmp_path / f"{name}{suffix}"
    sitk.WriteTransform(transform, str(path))
    shape = (20, 48, 56)
    loaded = load_transform(path, reference_shape=shape, **GEOMETRY_3D)
    assert loaded.ndim == 3 and loaded.moving_shape == shape
    assert loaded.motion == ("affine" if name == "affine" else "euclidean")
    _assert_same_sampling(transform, loaded, GEOMETRY_3D)


def test_a_loaded_transform_warps_as_simpleitk_resamples(tmp_path, volume_alignments):
    """The values too: our warp of a volume through a transform SimpleITK wrote is
    SimpleITK's own resampling (both trilinear), inside the overlap."""
    pair = volume_pair((20, 48, 56), seed=3, spacing=(2.0, 0.5, 0.5))
    transform = _sitk_transforms_3d()["euler"]
    sitk.WriteTransform(transform, str(tmp_path / "e.tfm"))
    loaded = load_transform(tmp_path / "e.tfm", reference_shape=pair.moving.shape, **GEOMETRY_3D)
    from napari_ecc_align import warp

    ours = warp(pair.moving.astype(np.float64), loaded, fill_value=np.nan)
    geometry = GEOMETRY_3D
    fixed = _image(np.zeros(pair.moving.shape), geometry["reference_spacing"],
                   geometry["reference_origin"], DIRECTION)  # fmt: skip
    moving = _image(pair.moving, geometry["moving_spacing"], geometry["moving_origin"], DIRECTION)
    theirs = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear,
                                                  math.nan))  # fmt: skip
    both = np.isfinite(ours) & np.isfinite(theirs)
    assert both.mean() > 0.3
    # OpenCV's linear weights come in 1/32 pixel steps: small differences on steep edges.
    diff = np.abs(ours[both] - theirs[both]) / np.ptp(pair.moving)
    assert np.median(diff) < 1e-3 and diff.max() < 1e-2


def test_json_round_trip_keeps_the_alignment(tmp_path, image_alignments):
    alignment = image_alignments["affine"]
    path = save_transform(alignment, tmp_path / "a.json")
    assert load_transform(path) == alignment


def test_clear_errors(tmp_path, image_alignments):
    homography = Alignment(np.array([[1, 0, 2], [0, 1, 3], [1e-4, 0, 1.0]]), "homography",
                           1.0, 0.5, (50, 60), (50, 60))  # fmt: skip
    with pytest.raises(ValueError, match="no projective"):
        save_transform(homography, tmp_path / "h.tfm")
    assert not (tmp_path / "h.tfm").exists()
    with pytest.raises(ValueError, match="cannot tell a transform format"):
        save_transform(image_alignments["affine"], tmp_path / "a.xyz")
    with pytest.raises(ValueError, match="format must be one of"):
        save_transform(image_alignments["affine"], tmp_path / "a.tfm", format="nifti")
    path = save_transform(image_alignments["affine"], tmp_path / "a.tfm")
    with pytest.raises(ValueError, match="holds no image sizes"):
        load_transform(path)
    with pytest.raises(ValueError, match="2D transform, but the shapes"):
        load_transform(path, reference_shape=(4, 5, 6))
    with pytest.raises(ValueError, match="reference_spacing must be 2 finite numbers"):
        save_transform(image_alignments["affine"], tmp_path / "b.tfm", reference_spacing=(1,))
    with pytest.raises(ValueError, match="direction must be orthonormal"):
        save_transform(image_alignments["affine"], tmp_path / "b.tfm", direction=[[1, 1], [0, 1]])
    (tmp_path / "junk.tfm").write_text("hello")
    with pytest.raises(ValueError, match="not an ITK transform file"):
        load_transform(tmp_path / "junk.tfm", reference_shape=(4, 5))
    (tmp_path / "bspline.tfm").write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: BSplineTransform_double_2_2\n"
        "Parameters: 0 0\nFixedParameters: 0 0\n"
    )
    with pytest.raises(ValueError, match="not a linear transform"):
        load_transform(tmp_path / "bspline.tfm", reference_shape=(4, 5))
    with pytest.raises(FileNotFoundError):
        load_transform(tmp_path / "missing.tfm", reference_shape=(4, 5))


def test_a_transform_another_tool_wrote_starts_an_estimate(tmp_path):
    """A rigid transform SimpleITK wrote, loaded, is ``init=`` for a volume pair."""
    pair = volume_pair((20, 48, 56), seed=3, spacing=(2.0, 0.5, 0.5))
    physical = np.diag([0.5, 0.5, 2.0, 1.0]) @ pair.matrix @ np.diag([2.0, 2.0, 0.5, 1.0])
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(physical[:3, :3].ravel()))
    transform.SetTranslation(tuple(physical[:3, 3] + [0.3, -0.2, 0.4]))  # a little off
    sitk.WriteTransform(transform, str(tmp_path / "start.tfm"))
    start = load_transform(tmp_path / "start.tfm", reference_shape=pair.reference.shape,
                           reference_spacing=pair.spacing)  # fmt: skip
    result = align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing, motion="euclidean",
                   init=start)  # fmt: skip
    assert result.init_method == "matrix"
    assert result.corner_error(pair.matrix) < 0.05
    with pytest.raises(ValueError, match="init is a 3D alignment, but this estimate is 2D"):
        align(pair.reference[5], pair.moving[5], init=start)
