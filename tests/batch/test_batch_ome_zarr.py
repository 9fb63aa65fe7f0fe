"""`batch` on folders of OME-Zarr stores: each store is one image, aligned lazily on a
real Dask cluster, its outputs written as stores; clean-up owns only its own folders."""

import os

import numpy as np

import napari_ecc_align as nea
from napari_ecc_align.batch.run import remove_temporary_files
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine import new_owner, temporary_name


def _u8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def test_a_folder_of_stores(tmp_path):
    refs, movs, out = tmp_path / "refs", tmp_path / "movs", tmp_path / "out"
    truths = {}
    for k in range(2):
        reference, moving, truth = natural_pair((400, 500), seed=10 + k)
        name = f"p{k}.ome.zarr"
        nea.write_ome_zarr(refs / name, _u8(reference), spacing=(0.5, 0.5), unit="µm")
        nea.write_ome_zarr(movs / name, _u8(moving))
        truths[name] = (truth, _u8(moving))
    report = nea.batch_align(refs, movs, out, workers=1, difference=True, progress=False)
    assert [row["status"] for row in report.rows] == ["ok", "ok"], report.rows
    for name, (truth, moving) in truths.items():
        alignment = nea.Alignment.from_json(out / name.replace(".ome.zarr", ".transform.json"))
        assert alignment.corner_error(truth) < 0.05
        aligned = nea.read_ome_zarr(out / name)
        assert aligned.spacing == (0.5, 0.5) and aligned.unit == "µm"
        np.testing.assert_allclose(aligned.levels[0].compute(), nea.warp(moving, alignment), atol=1)
        assert nea.read_ome_zarr(out / name.replace(".ome.zarr", ".difference.ome.zarr")).shape == (
            400, 500)  # fmt: skip
    # A second run finds every pair complete and skips it.
    again = nea.batch_align(refs, movs, out, workers=1, difference=True, progress=False)
    assert [row["status"] for row in again.rows] == ["skipped", "skipped"]


def test_clean_up_removes_its_own_half_written_stores_only(tmp_path):
    owner, stranger = new_owner(), new_owner()
    ours = tmp_path / temporary_name(str(tmp_path / "a.ome.zarr"), owner)
    theirs = tmp_path / temporary_name(str(tmp_path / "b.ome.zarr"), stranger)
    plain = tmp_path / ".hidden.zarr"
    for folder in (ours, theirs, plain):
        (folder / "0").mkdir(parents=True)
        (folder / "zarr.json").write_text("{}")
    link = tmp_path / temporary_name(str(tmp_path / "c.ome.zarr"), owner)
    os.symlink(plain, link)
    removed = remove_temporary_files(tmp_path, [owner])
    assert removed == [str(ours)]
    assert theirs.is_dir() and plain.is_dir() and link.is_symlink()
