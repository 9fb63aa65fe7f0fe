"""`napari-ecc-align align` on 3D TIFF volumes: real files, real tifffile and OpenCV.

Pairs are sampled from one smooth scene on a physical (isotropic) grid: the reference
through voxel -> scene, the moving volume through that composed with the inverse of the
true 4x4, so reference(v) = moving(truth @ v) with v = (x, y, z, 1) in voxels.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial.transform import Rotation

from napari_ecc_align import Alignment
from napari_ecc_align.cli import main
from napari_ecc_align.io import read_volume, read_voxel_size, write_image

SHAPE = (24, 64, 64)  # (z, y, x)
SPACING = (1.5, 0.5, 0.5)  # µm: planes three times further apart than pixels
TOLERANCE_VOXELS = 0.05


def _rigid(angles_deg, shift, spacing=SPACING, shape=SHAPE):
    """Reference voxel -> moving voxel: a rotation about the centre, rigid in physical units."""
    scale = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    centre, turn, move = np.eye(4), np.eye(4), np.eye(4)
    centre[:3, 3] = scale[:3, :3] @ ((np.array(shape[::-1]) - 1) / 2)
    turn[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    move[:3, 3] = shift
    return move @ np.linalg.inv(scale) @ centre @ turn @ np.linalg.inv(centre) @ scale


def _pair(truth, spacing=SPACING, shape=SHAPE, seed=0, dtype=np.uint16):
    rng = np.random.default_rng(seed)
    unit = min(spacing)  # the scene's grid step
    margin = 12
    extent = tuple(int(n * s / unit + 2 * margin) for n, s in zip(shape, spacing, strict=True))
    # Smooth structure, longer along z like a microscope's point spread function.
    sigma = (1.5 * spacing[0] / unit, 2.5, 2.5)
    scene = ndimage.gaussian_filter(rng.random(extent, dtype=np.float32), sigma)
    to_scene = np.diag([spacing[2] / unit, spacing[1] / unit, spacing[0] / unit, 1.0])
    to_scene[:3, 3] = margin
    xyz = np.indices(shape).reshape(3, -1)[::-1]
    points = np.vstack([xyz, np.ones(xyz.shape[1])])
    volumes = []
    for matrix in (to_scene, to_scene @ np.linalg.inv(truth)):
        values = ndimage.map_coordinates(scene, (matrix @ points)[2::-1], order=1).reshape(shape)
        values = (values - scene.mean()) / scene.std() * 400 + 2000 + rng.normal(0, 20, shape)
        volumes.append(np.clip(values, 0, 65535).astype(dtype))
    return volumes


def _imagej(path, volume, spacing=SPACING, unit="micron"):
    dz, dy, dx = spacing
    metadata = {"axes": "ZYX", "spacing": dz, "unit": unit}
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / dx, 1 / dy), metadata=metadata)


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in Path(folder).iterdir()}


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def imagej_pair(tmp_path):
    """An anisotropic ImageJ hyperstack pair (no --ndim needed) and its true 4x4."""
    truth = _rigid((2.0, -1.5, 3.0), (1.5, -2.0, 0.7))
    reference, moving = _pair(truth)
    _imagej(tmp_path / "ref.tif", reference)
    _imagej(tmp_path / "mov.tif", moving)
    return tmp_path, truth


# -------------------------------------------------------------------------------------- success
def test_imagej_pair_aligns_rigidly_in_physical_units(imagej_pair, capsys):
    root, truth = imagej_pair
    inputs = _hashes(root)
    code, out, err = _run(capsys, "align", root / "ref.tif", root / "mov.tif", "-o",
                          root / "out.tif", "--motion", "euclidean", "--transform",
                          root / "t.json", "--difference", root / "d.tif")  # fmt: skip
    assert (code, err) == (0, "")
    assert out.startswith("euclidean (volume): correlation ")
    alignment = Alignment.from_json(root / "t.json")
    assert alignment.ndim == 3 and alignment.matrix.shape == (4, 4)
    assert alignment.corner_error(truth) <= TOLERANCE_VOXELS
    assert alignment.parameters["spacing"] == list(SPACING)  # from the ImageJ metadata

    aligned, voxels = read_volume(root / "out.tif")
    assert aligned.dtype == np.uint16 and aligned.shape == SHAPE
    assert (voxels.spacing, voxels.unit) == (SPACING, "µm")  # the reference's voxel size
    with tifffile.TiffFile(root / "out.tif") as tif:  # what Fiji reads
        assert tif.imagej_metadata["spacing"] == 1.5 and tif.imagej_metadata["unit"] == "micron"
        np.testing.assert_allclose(tif.pages.first.resolution, (2.0, 2.0))
    reference = tifffile.imread(root / "ref.tif").astype(np.float64)
    inner = (slice(4, -4), slice(8, -8), slice(8, -8))
    assert np.corrcoef(reference[inner].ravel(), aligned[inner].ravel())[0, 1] > 0.97
    diff, diff_voxels = read_volume(root / "d.tif")
    assert diff.shape == SHAPE and diff_voxels.spacing == SPACING
    assert np.abs(diff[inner].astype(float)).mean() < 0.2 * np.abs(reference[inner] - 2000).mean()
    assert {k: v for k, v in _hashes(root).items() if k in inputs} == inputs


def test_isotropic_spacing_would_be_wrong(imagej_pair, capsys):
    """--spacing overrides the metadata: taken as isotropic, the rigid fit misses."""
    root, truth = imagej_pair
    code, _, _ = _run(capsys, "align", root / "ref.tif", root / "mov.tif", "-o", root / "out.tif",
                      "--motion", "euclidean", "--transform", root / "t.json",
                      "--spacing", "1,1,1")  # fmt: skip
    assert code == 0
    alignment = Alignment.from_json(root / "t.json")
    assert alignment.parameters["spacing"] == [1.0, 1.0, 1.0]
    assert alignment.corner_error(truth) > 0.5
    # The outputs carry the spacing used, in the reference's unit.
    assert read_voxel_size(root / "out.tif").spacing == (1.0, 1.0, 1.0)


def test_ome_float_pair_spacing_from_physical_sizes(tmp_path, capsys):
    spacing = (3.0, 1.0, 1.0)
    truth = _rigid((-2.0, 1.0, 2.5), (-1.0, 1.5, 0.4), spacing)
    for name, volume in zip(("ref", "mov"), _pair(truth, spacing, dtype=np.float32), strict=True):
        metadata = {"axes": "ZYX", "PhysicalSizeZ": 3.0, "PhysicalSizeY": 1.0, "PhysicalSizeX": 1.0}
        tifffile.imwrite(tmp_path / f"{name}.ome.tif", volume, ome=True, metadata=metadata)
    code, _, err = _run(capsys, "align", tmp_path / "ref.ome.tif", tmp_path / "mov.ome.tif",
                        "-o", tmp_path / "out.tif", "--motion", "euclidean",
                        "--transform", tmp_path / "t.json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    alignment = Alignment.from_json(tmp_path / "t.json")
    assert alignment.parameters["spacing"] == [3.0, 1.0, 1.0]
    assert alignment.corner_error(truth) <= TOLERANCE_VOXELS
    aligned, voxels = read_volume(tmp_path / "out.tif")
    assert aligned.dtype == np.float32 and voxels.spacing == spacing and voxels.unit == "µm"


def test_plain_multipage_tiff_needs_ndim_3(tmp_path, capsys):
    truth = _rigid((0, 0, 0), (1.25, -0.75, 0.5))
    reference, moving = _pair(truth)
    tifffile.imwrite(tmp_path / "ref.tif", reference)  # no ImageJ or OME metadata
    tifffile.imwrite(tmp_path / "mov.tif", moving)
    args = ["align", tmp_path / "ref.tif", tmp_path / "mov.tif", "-o", tmp_path / "out.tif",
            "--transform", tmp_path / "t.json", "--motion", "translation"]  # fmt: skip
    code, _, err = _run(capsys, *args)
    assert code == 2 and err.count("\n") == 1
    assert "has shape (24, 64, 64): align() takes one 2D image" in err
    assert "For a (z, y, x) volume pass --ndim 3 (and --spacing dz,dy,dx)" in err
    assert not (tmp_path / "out.tif").exists()

    code, _, err = _run(capsys, *args, "--ndim", "3", "--spacing", "1.5,0.5,0.5")
    assert (code, err) == (0, "")
    alignment = Alignment.from_json(tmp_path / "t.json")
    assert alignment.corner_error(truth) <= TOLERANCE_VOXELS
    assert read_voxel_size(tmp_path / "out.tif").spacing == SPACING  # unit unknown: none
    assert read_voxel_size(tmp_path / "out.tif").unit is None


def test_init_takes_a_volume_transform(imagej_pair, capsys):
    root, truth = imagej_pair
    common = ["align", root / "ref.tif", root / "mov.tif", "-o", root / "out.tif", "-q"]
    assert _run(capsys, *common, "--motion", "translation", "--transform", root / "t0.json")[0] == 0
    code, _, err = _run(capsys, *common, "--motion", "euclidean", "--init", root / "t0.json",
                        "--transform", root / "t1.json")  # fmt: skip
    assert (code, err) == (0, "")
    refined = Alignment.from_json(root / "t1.json")
    assert refined.init_method == "matrix"
    assert refined.corner_error(truth) <= TOLERANCE_VOXELS


# -------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("value", ["-1,1,1", "1,1", "a,b,c", "0,1,1", "1,1,1,1", "nan,1,1"])
def test_bad_spacing_is_an_argparse_error(imagej_pair, capsys, value):
    root, _ = imagej_pair
    code, _, err = _run(capsys, "align", root / "ref.tif", root / "mov.tif", "-o", root / "o.tif",
                        f"--spacing={value}")  # fmt: skip
    assert code == 2
    assert f"argument --spacing: expected three positive numbers dz,dy,dx (e.g. 3,1,1), got " \
           f"'{value}'" in err  # fmt: skip


def test_spacing_without_a_volume_names_the_option(tmp_path, capsys):
    write_image(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    common = ["align", tmp_path / "a.png", tmp_path / "a.png", "-o", tmp_path / "o.png"]
    code, _, err = _run(capsys, *common, "--spacing", "3,1,1", "--ndim", "2")
    assert code == 2
    assert err == "napari-ecc-align: error: --spacing dz,dy,dx is the voxel size of volumes; " \
                  "it goes with --ndim 3, not --ndim 2\n"  # fmt: skip
    code, _, err = _run(capsys, *common, "--spacing", "3,1,1")
    assert code == 2
    assert "error: --spacing dz,dy,dx is the voxel size of volumes, but " in err
    assert "are read as 2D images; pass --ndim 3 to read multi-page TIFF files as volumes" in err


def test_homography_on_volumes_is_bad_input(imagej_pair, capsys):
    root, _ = imagej_pair
    code, _, err = _run(capsys, "align", root / "ref.tif", root / "mov.tif", "-o", root / "o.tif",
                        "--motion", "homography")  # fmt: skip
    assert code == 2
    assert err == (
        "napari-ecc-align: error: --motion homography is for 2D images only; volumes (--ndim 3) "
        "take ('translation', 'euclidean', 'affine')\n"
    )
    assert not (root / "o.tif").exists()


def test_volume_output_must_be_tiff_and_init_must_be_3d(imagej_pair, capsys):
    root, _ = imagej_pair
    common = ["align", root / "ref.tif", root / "mov.tif"]
    code, _, err = _run(capsys, *common, "-o", root / "o.png")  # found by the metadata
    assert code == 2 and err.endswith("o.png: PNG stores one 2D image; save volumes as .tif\n")
    code, _, err = _run(capsys, *common, "-o", root / "o.tif", "--difference", root / "d.jpg")
    assert code == 2 and "d.jpg: JPEG stores one 2D image; save volumes as .tif" in err
    flat = {"matrix": np.eye(3).tolist(), "motion": "affine", "reference_shape": [64, 64],
            "moving_shape": [64, 64]}  # fmt: skip
    Alignment.from_dict(flat).to_json(root / "flat.json")
    code, _, err = _run(capsys, *common, "-o", root / "o.tif", "--init", root / "flat.json")
    assert code == 2
    assert "holds a transform of 2D images (3x3) but the inputs are volumes" in err
    assert not (root / "o.tif").exists()


def test_moving_volume_with_another_voxel_size(imagej_pair, capsys):
    root, _ = imagej_pair
    _imagej(root / "other.tif", tifffile.imread(root / "mov.tif"), spacing=(2.0, 0.5, 0.5))
    common = ["align", root / "ref.tif", root / "other.tif", "-o", root / "o.tif", "-q"]
    code, _, err = _run(capsys, *common)
    assert code == 2
    assert "the moving volume's voxel size (2, 0.5, 0.5) µm (ImageJ) differs from the " \
           "reference's (1.5, 0.5, 0.5) µm (ImageJ)" in err  # fmt: skip
    assert "or pass --spacing dz,dy,dx to use one for both (with --motion affine" in err
    assert not (root / "o.tif").exists()
    assert _run(capsys, *common, "--spacing", "1.5,0.5,0.5")[0] == 0


def test_transform_out_writes_an_itk_file_simpleitk_reads(imagej_pair, capsys):
    """`--transform-out t.tfm`: the volume's alignment as an ITK transform in µm (the
    voxel size of the files, zero origin), read back by SimpleITK and by us."""
    sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is in the testing-transforms extra")
    from napari_ecc_align import load_transform

    root, truth = imagej_pair
    files = ("align", root / "ref.tif", root / "mov.tif", "-o", root / "o.tif", "-q")
    code, _, err = _run(capsys, *files, "--motion", "euclidean", "--transform-out", root / "t.tfm")
    assert (code, err) == (0, "")
    transform = sitk.ReadTransform(str(root / "t.tfm"))
    assert transform.GetName() == "Euler3DTransform"
    loaded = load_transform(root / "t.tfm", reference_shape=SHAPE, reference_spacing=SPACING)
    assert loaded.corner_error(truth) <= TOLERANCE_VOXELS
    # SimpleITK maps the reference's centre, in µm, where our matrix sends it.
    centre = (np.array(SHAPE[::-1], float) - 1) / 2
    expected = (loaded.matrix @ np.append(centre, 1))[:3] * np.array(SPACING[::-1])
    np.testing.assert_allclose(transform.TransformPoint(tuple(centre * SPACING[::-1])), expected,
                               atol=1e-9)  # fmt: skip
    code, _, err = _run(capsys, "align", root / "ref.tif", root / "mov.tif", "-o", root / "o.tif",
                        "--transform-out", root / "t.nii")  # fmt: skip
    assert code != 0 and "cannot tell a transform format" in err
