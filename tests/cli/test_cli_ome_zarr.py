"""`napari-ecc-align align` with OME-Zarr stores in and out (cli/stores.py): real stores,
real files, a real Dask scheduler."""

import json
import os

import numpy as np
import pytest
import tifffile

import napari_ecc_align as nea
from napari_ecc_align.cli import main
from napari_ecc_align.data import natural_pair
from napari_ecc_align.data.volumes import volume_pair


def _u8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stores")
    reference, moving, truth = natural_pair((600, 800), seed=5)
    reference, moving = _u8(reference), _u8(moving)
    ref = nea.write_ome_zarr(folder / "ref.ome.zarr", reference, spacing=(0.5, 0.5), unit="µm",
                             origin=(3.0, 4.0))  # fmt: skip
    mov = nea.write_ome_zarr(folder / "mov.ome.zarr", moving, version="0.4")
    return ref, mov, reference, moving, truth


def test_stores_in_stores_out(tmp_path, stores, capsys):
    ref, mov, reference, moving, truth = stores
    out, diff = tmp_path / "aligned.ome.zarr", tmp_path / "diff.ome.zarr"
    code = main(["align", ref, mov, str(out), "--difference", str(diff),
                 "--transform", str(tmp_path / "t.json")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    alignment = nea.Alignment.from_json(tmp_path / "t.json")
    assert alignment.corner_error(truth) < 0.05
    aligned = nea.read_ome_zarr(out)
    # The reference's grid: its voxel size, unit and origin; a pyramid.
    assert (aligned.spacing, aligned.unit, aligned.origin) == ((0.5, 0.5), "µm", (3.0, 4.0))
    assert aligned.shape == reference.shape and len(aligned.levels) >= 2
    np.testing.assert_allclose(aligned.levels[0].compute(), nea.warp(moving, alignment), atol=1)
    expected = nea.difference(reference, nea.warp(moving, alignment), alignment=alignment)
    np.testing.assert_allclose(nea.read_ome_zarr(diff).levels[0].compute(), expected, atol=1)
    assert sorted(os.listdir(tmp_path)) == ["aligned.ome.zarr", "diff.ome.zarr", "t.json"]


def test_tiff_volumes_to_a_store_keep_the_voxel_size(tmp_path, capsys):
    pair = volume_pair()
    for name, volume in (("ref.tif", pair.reference), ("mov.tif", pair.moving)):
        nea.io.write_volume(tmp_path / name, volume, spacing=pair.spacing, unit="µm")
    out = tmp_path / "aligned.ome.zarr"
    files = [str(tmp_path / "ref.tif"), str(tmp_path / "mov.tif")]
    code = main(["align", *files, "-o", str(out), "--ndim", "3", "--motion", "euclidean",
                 "--transform", str(tmp_path / "t.json")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    aligned = nea.read_ome_zarr(out)
    assert aligned.ndim == 3 and aligned.spacing == pytest.approx(pair.spacing)
    assert aligned.unit == "µm"
    alignment = nea.Alignment.from_json(tmp_path / "t.json")
    assert alignment.corner_error(pair.matrix) < 0.05
    np.testing.assert_array_equal(aligned.levels[0].compute(), nea.warp(pair.moving, alignment))


def test_stores_to_files(tmp_path, stores, capsys):
    ref, mov, reference, moving, truth = stores
    outputs = [str(tmp_path / "a.tif"), "--difference", str(tmp_path / "d.png")]
    code = main(["align", ref, mov, *outputs, "--transform", str(tmp_path / "t.json")])
    assert code == 0, capsys.readouterr().err
    alignment = nea.Alignment.from_json(tmp_path / "t.json")
    np.testing.assert_allclose(tifffile.imread(tmp_path / "a.tif"), nea.warp(moving, alignment),
                               atol=1)  # fmt: skip
    assert (tmp_path / "d.png").stat().st_size > 0


def test_writes_on_a_scheduler(tmp_path, stores, capsys):
    import distributed

    ref, mov, *_ = stores
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:  # fmt: skip
        code = main(["align", ref, mov, str(tmp_path / "a.ome.zarr"), "-q",
                     "--scheduler", cluster.scheduler_address])  # fmt: skip
        ran = dict(cluster.scheduler.task_prefixes)
    assert code == 0, capsys.readouterr().err
    assert any("store" in name for name in ran)
    assert nea.read_ome_zarr(tmp_path / "a.ome.zarr").shape == (600, 800)


def test_a_failure_writes_nothing_and_replaces_nothing(tmp_path, stores, capsys):
    ref, mov, *_ = stores
    keep = tmp_path / "keep.ome.zarr"
    keep.mkdir()
    (keep / "data.txt").write_text("not a store")
    code = main(["align", ref, mov, str(tmp_path / "a.ome.zarr"), "--difference", str(keep)])
    assert code == 2
    assert "is not an OME-Zarr store; it is never replaced" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["keep.ome.zarr"]
    assert (keep / "data.txt").read_text() == "not a store"


@pytest.mark.parametrize(
    ("extra", "message"),
    [([], "give the aligned image's name"), (["x.ome.zarr", "-o", "y.ome.zarr"], "differ")],
)
def test_the_output_is_named_once(tmp_path, stores, capsys, extra, message):
    ref, mov, *_ = stores
    assert main(["align", ref, mov, *extra]) == 2
    assert message in capsys.readouterr().err


def test_metadata_written_by_the_cli_names_the_reference_grid(tmp_path, stores, capsys):
    ref, mov, *_ = stores
    assert main(["align", ref, mov, str(tmp_path / "a.ome.zarr"), "-q"]) == 0
    with open(tmp_path / "a.ome.zarr" / "zarr.json") as fh:
        entry = json.load(fh)["attributes"]["ome"]["multiscales"][0]
    first = entry["datasets"][0]["coordinateTransformations"]
    assert first == [{"type": "scale", "scale": [0.5, 0.5]},
                     {"type": "translation", "translation": [3.0, 4.0]}]  # fmt: skip
