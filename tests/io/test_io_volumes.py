"""3D TIFF volumes: voxel size from ImageJ and OME metadata, writing it back, read_pair."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_ecc_align.io import (
    VoxelSize,
    check_writable,
    read_pair,
    read_volume,
    read_voxel_size,
    write_image,
    write_volume,
)

SHAPE = (5, 12, 16)


def _volume(dtype=np.uint16):
    values = np.arange(np.prod(SHAPE)).reshape(SHAPE) % 251
    return values.astype(dtype)


def _imagej(path, volume, spacing=(1.5, 0.5, 0.25), unit="micron"):
    dz, dy, dx = spacing
    metadata = {"axes": "ZYX", "spacing": dz, "unit": unit}
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / dx, 1 / dy), metadata=metadata)


# --------------------------------------------------------------------------------- reading
def test_imagej_spacing_comes_from_description_and_resolution_tags(tmp_path):
    _imagej(tmp_path / "v.tif", _volume(), spacing=(1.5, 0.5, 0.25))
    volume, voxels = read_volume(tmp_path / "v.tif")
    assert volume.dtype == np.uint16 and volume.shape == SHAPE
    np.testing.assert_array_equal(volume, _volume())
    assert voxels == VoxelSize((1.5, 0.5, 0.25), "µm", True, "ImageJ")
    assert voxels.describe() == "(1.5, 0.5, 0.25) µm (ImageJ)"


@pytest.mark.parametrize("unit", ["\\u00B5m", "um", "micron", "microns"])  # Fiji's, and others
def test_imagej_micron_spellings_are_one_unit(tmp_path, unit):
    _imagej(tmp_path / "v.tif", _volume(), unit=unit)
    assert read_voxel_size(tmp_path / "v.tif") == VoxelSize((1.5, 0.5, 0.25), "µm", True, "ImageJ")


def test_ome_physical_sizes_in_mixed_units_become_micrometres(tmp_path):
    metadata = {"axes": "ZYX", "PhysicalSizeZ": 2000.0, "PhysicalSizeZUnit": "nm",
                "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.25}  # fmt: skip
    tifffile.imwrite(tmp_path / "v.ome.tif", _volume(np.float32), ome=True, metadata=metadata)
    volume, voxels = read_volume(tmp_path / "v.ome.tif")
    assert volume.dtype == np.float32 and volume.shape == SHAPE
    assert voxels.source == "OME" and voxels.z_stack and voxels.unit == "µm"
    np.testing.assert_allclose(voxels.spacing, (2.0, 0.5, 0.25))


def test_ome_without_z_size_states_no_spacing(tmp_path):
    metadata = {"axes": "ZYX", "PhysicalSizeY": 0.5, "PhysicalSizeX": 0.5}
    tifffile.imwrite(tmp_path / "v.ome.tif", _volume(), ome=True, metadata=metadata)
    assert read_voxel_size(tmp_path / "v.ome.tif") == VoxelSize(None, None, True, "OME")


def test_plain_multipage_and_2d_files_say_nothing(tmp_path):
    tifffile.imwrite(tmp_path / "plain.tif", _volume())
    write_image(tmp_path / "flat.png", _volume(np.uint8)[0])
    assert read_voxel_size(tmp_path / "plain.tif") == VoxelSize()
    assert read_voxel_size(tmp_path / "flat.png") == VoxelSize()
    volume, voxels = read_volume(tmp_path / "plain.tif")  # a volume when told so
    assert volume.shape == SHAPE and voxels.spacing is None


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("flat.png", lambda p: write_image(p, _volume(np.uint8)[0]), "holds one 2D image"),
        ("flat.tif", lambda p: tifffile.imwrite(p, _volume()[0]), "holds one 2D image"),
        ("channels.tif", lambda p: tifffile.imwrite(p, np.stack([_volume()] * 2, 1), imagej=True,
                                                     metadata={"axes": "ZCYX"}), "axes ZCYX"),
    ],
)  # fmt: skip
def test_read_volume_refuses_what_is_no_single_volume(tmp_path, name, write, message):
    write(tmp_path / name)
    with pytest.raises(ValueError, match=message):
        read_volume(tmp_path / name)


# --------------------------------------------------------------------------------- writing
@pytest.mark.parametrize(
    ("dtype", "source"),
    [(np.uint8, "ImageJ"), (np.uint16, "ImageJ"), (np.int16, "ImageJ"), (np.float32, "ImageJ"),
     (np.float64, "OME"), (np.int32, "OME"), (np.bool_, "OME")],
)  # fmt: skip
def test_write_volume_keeps_dtype_and_voxel_size(tmp_path, dtype, source):
    volume = _volume(dtype)
    write_volume(tmp_path / "out.tif", volume, spacing=(3.0, 0.5, 0.5), unit="µm")
    back, voxels = read_volume(tmp_path / "out.tif")
    assert back.dtype == volume.dtype
    np.testing.assert_array_equal(back, volume)
    assert voxels.source == source and voxels.unit == "µm"
    np.testing.assert_allclose(voxels.spacing, (3.0, 0.5, 0.5))
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["out.tif"]  # no temporaries


def test_imagej_output_reads_like_fijis_own_files(tmp_path):
    write_volume(tmp_path / "out.tif", _volume(), spacing=(3.0, 0.5, 0.25), unit="µm")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        assert tif.imagej_metadata["spacing"] == 3.0 and tif.imagej_metadata["unit"] == "micron"
        assert tif.imagej_metadata["slices"] == SHAPE[0]
        np.testing.assert_allclose(tif.pages.first.resolution, (4.0, 2.0))  # 1/dx, 1/dy


def test_write_volume_without_spacing_and_bad_arguments(tmp_path):
    write_volume(tmp_path / "bare.tif", _volume())
    assert read_voxel_size(tmp_path / "bare.tif") == VoxelSize(None, None, True, "ImageJ")
    with pytest.raises(ValueError, match="PNG stores one 2D image; save volumes as .tif"):
        write_volume(tmp_path / "out.png", _volume(np.uint8))
    with pytest.raises(ValueError, match="spacing must be three positive numbers"):
        write_volume(tmp_path / "out.tif", _volume(), spacing=(0, 1, 1))
    with pytest.raises(ValueError, match=r"a volume has shape \(z, y, x\), got \(12, 16\)"):
        write_volume(tmp_path / "out.tif", _volume()[0])
    assert not (tmp_path / "out.tif").exists() and not (tmp_path / "out.png").exists()
    assert check_writable(tmp_path / "v.tiff", np.float64, SHAPE, volume=True) == "TIFF"


# ------------------------------------------------------------------------------- read_pair
def test_read_pair_decides_ndim_and_spacing(tmp_path):
    _imagej(tmp_path / "ref.tif", _volume(), spacing=(1.5, 0.5, 0.5))
    tifffile.imwrite(tmp_path / "mov.tif", _volume())  # plain: says nothing
    pair = read_pair(tmp_path / "ref.tif", tmp_path / "mov.tif")  # the reference is a z-stack
    assert (pair.ndim, pair.spacing, pair.unit) == (3, (1.5, 0.5, 0.5), "µm")
    assert pair.align_keywords == {"ndim": 3, "spacing": (1.5, 0.5, 0.5)}
    assert pair.aligned_shape == SHAPE and pair.same_channels
    # Only the moving file states a voxel size: it is used.
    swapped = read_pair(tmp_path / "mov.tif", tmp_path / "ref.tif")
    assert (swapped.spacing, swapped.unit) == ((1.5, 0.5, 0.5), "µm")
    # spacing= overrides, in the reference's unit.
    given = read_pair(tmp_path / "ref.tif", tmp_path / "mov.tif", spacing=(3, 1, 1))
    assert (given.spacing, given.unit) == ((3.0, 1.0, 1.0), "µm")
    plain = read_pair(tmp_path / "mov.tif", tmp_path / "mov.tif")  # no metadata: 2D, as before
    assert plain.ndim == 2 and plain.reference.shape == SHAPE and plain.align_keywords == {}
    assert read_pair(tmp_path / "mov.tif", tmp_path / "mov.tif", ndim=3).spacing is None


def test_read_pair_refuses_disagreeing_voxel_sizes_unless_told(tmp_path):
    _imagej(tmp_path / "ref.tif", _volume(), spacing=(1.5, 0.5, 0.5))
    _imagej(tmp_path / "near.tif", _volume(), spacing=(1.505, 0.5, 0.5))  # within 1 %
    _imagej(tmp_path / "mov.tif", _volume(), spacing=(2.0, 0.5, 0.5), unit="nm")
    assert read_pair(tmp_path / "ref.tif", tmp_path / "near.tif").spacing == (1.5, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"voxel size \(2, 0.5, 0.5\) nm \(ImageJ\) differs from "
                       r"the reference's \(1.5, 0.5, 0.5\) µm"):  # fmt: skip
        read_pair(tmp_path / "ref.tif", tmp_path / "mov.tif")
    pair = read_pair(tmp_path / "ref.tif", tmp_path / "mov.tif", spacing=(1.5, 0.5, 0.5))
    assert pair.spacing == (1.5, 0.5, 0.5)


def test_read_pair_argument_errors(tmp_path):
    write_image(tmp_path / "a.png", _volume(np.uint8)[0])
    tifffile.imwrite(tmp_path / "v.tif", _volume())
    with pytest.raises(ValueError, match=r"spacing=\(dz, dy, dx\) is the voxel size of volumes"):
        read_pair(tmp_path / "a.png", tmp_path / "a.png", spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="a.png holds one 2D image: volumes are read from"):
        read_pair(tmp_path / "a.png", tmp_path / "v.tif", ndim=3)
    with pytest.raises(ValueError, match="ndim must be 2"):
        read_pair(tmp_path / "v.tif", tmp_path / "v.tif", ndim=4)
    with pytest.raises(ValueError, match="spacing must be three positive numbers"):
        read_pair(tmp_path / "v.tif", tmp_path / "v.tif", ndim=3, spacing=(1, -1, 1))
    with pytest.raises(FileNotFoundError):
        read_pair(tmp_path / "missing.tif", tmp_path / "v.tif", ndim=3)
