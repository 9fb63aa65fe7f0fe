"""`napari-ecc-align apply` and `batch --transform-out`: a transform saved in any format,
applied by the command line to real files (PNG, ImageJ TIFF volumes, OME-Zarr stores),
gives the image `align` wrote; a transform that does not fit is refused, nothing written."""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_ecc_align as nea
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.io import read_image, read_volume, write_image

SPACING = (1.5, 0.5, 0.5)


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _u8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    reference, moving, truth = natural_pair((160, 200), seed=4)
    write_image(root / "ref.png", _u8(reference))
    write_image(root / "mov.png", _u8(moving))
    return root, truth


@pytest.mark.parametrize("name", ["t.json", "t.tfm", "TransformParameters.0.txt",
                                  "t.ngff.json", "t.csv", "t.transformj.txt"])  # fmt: skip
def test_apply_reproduces_the_aligned_image_from_every_format(tmp_path, images, capsys, name):
    root, _ = images
    code, _, err = _run(capsys, "align", root / "ref.png", root / "mov.png", tmp_path / "a.png",
                        "--transform-out", tmp_path / name, "-q")  # fmt: skip
    assert (code, err) == (0, "")
    code, out, err = _run(capsys, "apply", tmp_path / name, root / "mov.png", tmp_path / "b.png",
                          "--reference", root / "ref.png")  # fmt: skip
    assert (code, err) == (0, "") and out.startswith("applied affine transform")
    aligned = read_image(tmp_path / "a.png")
    applied = read_image(tmp_path / "b.png")
    # Round trips through text (17 digits) and the landmark fit move a pixel by < 1e-9 px:
    # the same picture, at most one grey level apart where a value sits on a rounding edge.
    assert np.abs(applied.astype(int) - aligned.astype(int)).max() <= 1


def test_apply_to_volumes_keeps_the_voxel_size(tmp_path, capsys):
    pair = volume_pair((20, 48, 56), seed=3, spacing=SPACING)
    for name, volume in (("ref.tif", pair.reference), ("mov.tif", pair.moving)):
        tifffile.imwrite(tmp_path / name, volume, imagej=True, resolution=(2.0, 2.0),
                         metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"})  # fmt: skip
    files = (tmp_path / "ref.tif", tmp_path / "mov.tif")
    elastix = tmp_path / "TransformParameters.0.txt"
    code, _, err = _run(capsys, "align", *files, tmp_path / "a.tif", "--motion", "euclidean",
                        "--transform-out", elastix, "-q")  # fmt: skip
    assert (code, err) == (0, "")
    # elastix files carry the reference's grid: no --reference needed.
    code, _, err = _run(capsys, "apply", elastix, files[1], tmp_path / "b.tif", "-q")
    assert (code, err) == (0, "")
    aligned, _ = read_volume(tmp_path / "a.tif")
    applied, voxels = read_volume(tmp_path / "b.tif")
    assert applied.shape == aligned.shape and voxels.spacing == SPACING
    assert np.abs(applied.astype(int) - aligned.astype(int)).max() <= 1


def test_apply_on_stores_writes_a_store(tmp_path, capsys):
    reference, moving, _ = natural_pair((300, 400), seed=5)
    ref = nea.write_ome_zarr(tmp_path / "ref.ome.zarr", _u8(reference), spacing=(0.5, 0.5),
                             unit="µm", origin=(3.0, 4.0))  # fmt: skip
    mov = nea.write_ome_zarr(tmp_path / "mov.ome.zarr", _u8(moving), spacing=(0.5, 0.5),
                             unit="µm", origin=(-2.0, 1.0))  # fmt: skip
    code, _, err = _run(capsys, "align", ref, mov, tmp_path / "a.ome.zarr", "--transform-out",
                        tmp_path / "t.ngff.json", "-q")  # fmt: skip
    assert (code, err) == (0, "")
    code, _, err = _run(capsys, "apply", tmp_path / "t.ngff.json", mov, tmp_path / "b.ome.zarr",
                        "--reference", ref, "-q")  # fmt: skip
    assert (code, err) == (0, "")
    aligned, applied = (nea.read_ome_zarr(tmp_path / n) for n in ("a.ome.zarr", "b.ome.zarr"))
    assert (applied.spacing, applied.unit, applied.origin) == ((0.5, 0.5), "µm", (3.0, 4.0))
    difference = applied.levels[0].compute().astype(int) - aligned.levels[0].compute()
    assert np.abs(difference).max() <= 1


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in Path(folder).iterdir() if p.is_file()}  # fmt: skip


def test_apply_refuses_a_transform_that_does_not_fit(tmp_path, images, capsys):
    root, _ = images
    code, _, err = _run(capsys, "align", root / "ref.png", root / "mov.png", tmp_path / "a.png",
                        "--transform", tmp_path / "t.json", "-q")  # fmt: skip
    assert code == 0, err
    before = _hashes(tmp_path)
    small = tmp_path / "small.png"
    write_image(small, np.zeros((50, 60), np.uint8))
    code, _, err = _run(capsys, "apply", tmp_path / "t.json", small, tmp_path / "o.png")
    assert code == 2 and "was estimated for a moving image of (160, 200); MOVING is (50, 60)" in err
    code, _, err = _run(capsys, "apply", tmp_path / "t.json", root / "mov.png", tmp_path / "o.png",
                        "--reference", small)  # fmt: skip
    assert code == 2 and "--reference is (50, 60)" in err
    volume = tmp_path / "v.tif"
    tifffile.imwrite(volume, np.zeros((6, 160, 200), np.uint8), imagej=True,
                     metadata={"axes": "ZYX"})  # fmt: skip
    code, _, err = _run(capsys, "apply", tmp_path / "t.json", volume, tmp_path / "o.tif",
                        "--ndim", "3")  # fmt: skip
    assert code == 2 and "holds a transform of 2D images, but MOVING is a volume" in err
    code, _, err = _run(capsys, "apply", tmp_path / "t.json", root / "mov.png", tmp_path / "t.json")
    assert code == 2 and "would overwrite TRANSFORM" in err
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.tif").exists()
    assert {k: v for k, v in _hashes(tmp_path).items() if k in before} == before


def test_batch_writes_the_transforms_in_the_format_asked_for(tmp_path, capsys):
    for folder in ("refs", "movs"):
        (tmp_path / folder).mkdir()
    for index in range(2):
        reference, moving, _ = natural_pair((120, 150), seed=10 + index)
        write_image(tmp_path / "refs" / f"p{index}.png", _u8(reference))
        write_image(tmp_path / "movs" / f"p{index}.png", _u8(moving))
    folders = (tmp_path / "refs", tmp_path / "movs", tmp_path / "out")
    code, _, err = _run(capsys, "batch", *folders, "--workers", "1", "-q",
                        "--transform-out", ".tfm")  # fmt: skip
    assert code == 0, err
    for index in range(2):
        ours = nea.Alignment.from_json(tmp_path / "out" / f"p{index}.transform.json")
        itk = nea.load_transform(tmp_path / "out" / f"p{index}.tfm", reference_shape=(120, 150))
        np.testing.assert_allclose(itk.matrix, ours.matrix, atol=1e-9)
    # Asked for later, on complete pairs: the missing files make the pairs run again.
    code, _, err = _run(capsys, "batch", *folders, "--workers", "1", "-q",
                        "--transform-out", ".csv")  # fmt: skip
    assert code == 0, err
    with open(tmp_path / "out" / "alignment.csv") as handle:
        assert [row["status"] for row in csv.DictReader(handle)] == ["ok", "ok"]
    assert (tmp_path / "out" / "p1.csv").is_file()
    code, _, err = _run(capsys, "batch", *folders, "--transform-out", "t.tfm")
    assert code == 2 and "must be a file suffix" in err
    code, _, err = _run(capsys, "batch", *folders, "--transform-out", ".nii")
    assert code == 2 and "cannot tell a transform format" in err


def test_init_takes_a_transform_of_any_format(tmp_path, images, capsys):
    root, truth = images
    pair = (root / "ref.png", root / "mov.png")
    code, _, err = _run(capsys, "align", *pair, tmp_path / "a.png", "--transform",
                        tmp_path / "t.tfm", "--motion", "euclidean", "-q")  # fmt: skip
    assert code == 0, err
    code, _, err = _run(capsys, "align", root / "ref.png", root / "mov.png", tmp_path / "b.png",
                        "--init", tmp_path / "t.tfm", "--transform", tmp_path / "b.json",
                        "-q")  # fmt: skip
    assert code == 0, err
    refined = nea.Alignment.from_json(tmp_path / "b.json")
    assert refined.init_method == "matrix" and refined.corner_error(truth) < 0.05
    bad = tmp_path / "bad.csv"
    bad.write_text('"Pt-0","true","1","2","3","4"\n')
    code, _, err = _run(capsys, "align", root / "ref.png", root / "mov.png", tmp_path / "c.png",
                        "--init", bad)  # fmt: skip
    assert code == 2 and "--init must be a transform file" in err and "at least 3" in err
    assert not (tmp_path / "c.png").exists()


def test_transform_goes_inside_the_aligned_store(tmp_path, capsys):
    reference, moving, truth = natural_pair((300, 400), seed=5)
    ref = nea.write_ome_zarr(tmp_path / "ref.ome.zarr", _u8(reference), spacing=(0.5, 0.5),
                             origin=(3.0, 4.0))  # fmt: skip
    mov = nea.write_ome_zarr(tmp_path / "mov.ome.zarr", _u8(moving), spacing=(0.5, 0.5))
    store = tmp_path / "a.ome.zarr"
    code, _, err = _run(capsys, "align", ref, mov, store, "--transform-out", store, "-q")
    assert code == 0, err
    assert (store / "transform.ngff.json").is_file() and nea.read_ome_zarr(store).shape == (
        300,
        400,
    )
    loaded = nea.load_transform(store, reference_shape=(300, 400), reference_spacing=(0.5, 0.5),
                                reference_origin=(3.0, 4.0), moving_spacing=(0.5, 0.5))  # fmt: skip
    assert loaded.corner_error(truth) < 0.05
    code, _, err = _run(capsys, "align", ref, mov, tmp_path / "b.ome.zarr", "--transform-out",
                        tmp_path / "other.zarr")  # fmt: skip
    assert code == 2 and "a store gets the OME-NGFF document inside" in err
    assert not (tmp_path / "other.zarr").exists() and not (tmp_path / "b.ome.zarr").exists()


def test_stores_with_different_pixel_sizes_keep_each_in_the_file(tmp_path, capsys):
    reference, moving, _ = natural_pair((240, 320), seed=6)
    ref = nea.write_ome_zarr(tmp_path / "ref.ome.zarr", _u8(reference), spacing=(0.5, 0.5))
    mov = nea.write_ome_zarr(tmp_path / "mov.ome.zarr", _u8(moving), spacing=(2.0, 2.0))
    code, _, err = _run(capsys, "align", ref, mov, tmp_path / "a.ome.zarr", "--transform-out",
                        tmp_path / "t.tfm", "-q")  # fmt: skip
    assert code == 0, err
    ours = nea.load_transform(tmp_path / "t.tfm", reference_shape=(240, 320),
                              reference_spacing=(0.5, 0.5), moving_spacing=(2.0, 2.0))  # fmt: skip
    code, _, err = _run(capsys, "apply", tmp_path / "t.tfm", mov, tmp_path / "b.ome.zarr",
                        "--reference", ref, "-q")  # fmt: skip
    assert code == 0, err
    aligned, applied = (nea.read_ome_zarr(tmp_path / n) for n in ("a.ome.zarr", "b.ome.zarr"))
    assert np.abs(applied.levels[0].compute().astype(int) - aligned.levels[0].compute()).max() <= 1
    assert ours.reference_shape == (240, 320)


def test_apply_reads_the_format_from_the_contents(tmp_path, images, capsys):
    root, _ = images
    pair = (root / "ref.png", root / "mov.png")
    code, _, err = _run(capsys, "align", *pair, tmp_path / "a.png", "--transform",
                        tmp_path / "TransformParameters.0.txt", "-q")  # fmt: skip
    assert code == 0, err
    renamed = tmp_path / "elastix_result.txt"  # no longer elastix by its name
    renamed.write_text((tmp_path / "TransformParameters.0.txt").read_text())
    small = tmp_path / "small.png"
    write_image(small, nea.io.read_image(root / "mov.png")[:150, :190])
    code, _, err = _run(capsys, "apply", renamed, small, tmp_path / "b.png", "-q")
    assert code == 0, err
    assert read_image(tmp_path / "b.png").shape == (160, 200)  # the file's grid, not MOVING's
    code, _, err = _run(capsys, "align", *pair, tmp_path / "c.png", "--transform",
                        tmp_path / "t.ngff.json", "-q")  # fmt: skip
    plain = tmp_path / "plain.json"
    plain.write_text((tmp_path / "t.ngff.json").read_text())
    code, _, err = _run(capsys, "apply", plain, root / "mov.png", tmp_path / "d.png", "-q")
    assert code == 0, err
    difference = read_image(tmp_path / "d.png").astype(int) - read_image(tmp_path / "c.png")
    assert np.abs(difference).max() <= 1


def test_apply_labels_a_volume_with_the_grid_of_an_elastix_file(tmp_path, capsys):
    pair = volume_pair((20, 48, 56), seed=3, spacing=SPACING)
    tifffile.imwrite(tmp_path / "mov.tif", pair.moving, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 1.5, "unit": "micron"})  # fmt: skip
    alignment = nea.align(pair.reference, pair.moving, ndim=3, spacing=SPACING)
    path = nea.save_transform(alignment, tmp_path / "TransformParameters.0.txt",
                              reference_spacing=(3.0, 1.0, 1.0), reference_origin=(2.0, 0, 0),
                              moving_spacing=SPACING)  # fmt: skip
    code, _, err = _run(capsys, "apply", path, tmp_path / "mov.tif", tmp_path / "b.tif", "-q")
    assert code == 0, err
    _, voxels = read_volume(tmp_path / "b.tif")
    assert voxels.spacing == (3.0, 1.0, 1.0)  # the file's grid, not MOVING's voxel size
