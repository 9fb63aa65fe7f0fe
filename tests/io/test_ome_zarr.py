"""OME-Zarr in and out (io/ome_zarr.py, io/ngff.py): lazy reading with the stated voxel
size, chunked writes with a pyramid, atomic finishes, and the engine's entry points
taking paths and groups, on small stores made here."""

import json
import os

import numpy as np
import pytest
import zarr

import napari_ecc_align as nea
from napari_ecc_align.data import natural_pair
from napari_ecc_align.data.volumes import volume_pair


def _u8(image):
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def pair2d():
    reference, moving, truth = natural_pair((700, 900), seed=3)
    return _u8(reference), _u8(moving), truth


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_2d_round_trip_keeps_values_calibration_and_halving_levels(tmp_path, pair2d, version):
    reference = pair2d[0]
    path = nea.write_ome_zarr(
        tmp_path / "r.ome.zarr", reference, spacing=(0.25, 0.5), unit="µm", origin=(10, 20),
        version=version, chunks=(256, 256),
    )  # fmt: skip
    image = nea.read_ome_zarr(path)
    assert (image.version, image.ndim, image.unit) == (version, 2, "µm")
    assert image.spacing == (0.25, 0.5) and image.origin == (10.0, 20.0)
    np.testing.assert_array_equal(image.levels[0].compute(), reference)
    shapes = [level.shape for level in image.levels]
    assert shapes == [(700, 900), (350, 450), (175, 225)]
    # Each level is the rounded 2 x 2 mean of the one before.
    level0 = reference.astype(np.float64)
    mean = (level0[0::2, 0::2] + level0[1::2, 0::2] + level0[0::2, 1::2] + level0[1::2, 1::2]) / 4
    np.testing.assert_array_equal(image.levels[1].compute(), np.rint(mean).astype(np.uint8))
    # The stored scale grows with the level, and the centre of a level's first pixel moves.
    attrs = zarr.open_group(path, mode="r").attrs.asdict()
    entry = (attrs["ome"] if version == "0.5" else attrs)["multiscales"][0]
    scale, shift = (t for t in entry["datasets"][1]["coordinateTransformations"])
    assert scale["scale"] == [0.5, 1.0] and shift["translation"] == [10.125, 20.25]
    assert isinstance(image.image, list) and len(image.image) == 3


def test_rgb_and_volumes_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    image = nea.read_ome_zarr(nea.write_ome_zarr(tmp_path / "rgb.ome.zarr", rgb))
    np.testing.assert_array_equal(image.levels[0].compute(), rgb)
    # NGFF orders axes channel first; the store holds (c, y, x).
    assert zarr.open_group(image_path := tmp_path / "rgb.ome.zarr")["0"].shape == (3, 300, 400)
    assert os.path.isdir(image_path)
    volume = rng.integers(0, 4000, (20, 600, 520), dtype=np.uint16)
    path = nea.write_ome_zarr(tmp_path / "v.ome.zarr", volume, ndim=3, spacing=(2, 0.5, 0.5),
                              unit="micrometer")  # fmt: skip
    image = nea.read_ome_zarr(path)
    assert image.ndim == 3 and image.spacing == (2.0, 0.5, 0.5) and image.unit == "µm"
    np.testing.assert_array_equal(image.levels[0].compute(), volume)
    # z (4x coarser) is not halved until the plane's pixels have grown to match it.
    assert [level.shape for level in image.levels] == [(20, 600, 520), (20, 300, 260),
                                                       (20, 150, 130)]  # fmt: skip


def test_paths_and_groups_align_as_the_arrays_do(tmp_path, pair2d):
    reference, moving, truth = pair2d
    ref_path = nea.write_ome_zarr(tmp_path / "r.ome.zarr", reference)
    mov_path = nea.write_ome_zarr(tmp_path / "m.ome.zarr", moving, version="0.4")
    from_arrays = nea.align(reference, moving)
    from_paths = nea.align(ref_path, zarr.open_group(mov_path, mode="r"))
    assert from_paths.corner_error(truth) < 0.05
    assert from_paths.corner_error(from_arrays.matrix) < 0.02
    warped = nea.warp(mov_path, from_paths)
    assert hasattr(warped, "dask")  # lazy
    np.testing.assert_allclose(warped.compute(), nea.warp(moving, from_paths), atol=1)
    diff = nea.difference(ref_path, warped, alignment=from_paths)
    np.testing.assert_allclose(
        diff.compute(), nea.difference(reference, nea.warp(moving, from_paths),
                                       alignment=from_paths), atol=1)  # fmt: skip


def test_a_volume_takes_its_voxel_size_from_the_metadata(tmp_path):
    pair = volume_pair()
    ref = nea.write_ome_zarr(tmp_path / "r.ome.zarr", pair.reference, ndim=3, spacing=pair.spacing)
    mov = nea.write_ome_zarr(tmp_path / "m.ome.zarr", pair.moving, ndim=3, spacing=pair.spacing,
                             version="0.4")  # fmt: skip
    from_paths = nea.align(ref, mov, motion="euclidean")  # ndim and spacing from the stores
    assert from_paths.ndim == 3
    from_arrays = nea.align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing,
                            motion="euclidean")  # fmt: skip
    np.testing.assert_allclose(from_paths.matrix, from_arrays.matrix, atol=1e-9)
    assert from_paths.corner_error(pair.matrix) < 0.05
    # Another stated voxel size for the moving volume: refused unless spacing is given.
    other = nea.write_ome_zarr(tmp_path / "o.ome.zarr", pair.moving, ndim=3, spacing=(1, 0.5, 0.5))
    with pytest.raises(ValueError, match="voxel size"):
        nea.align(ref, other, motion="euclidean")
    given = nea.align(ref, other, motion="euclidean", spacing=pair.spacing)
    assert given.corner_error(pair.matrix) < 0.05


def test_stated_voxel_sizes_are_compared_in_one_unit(tmp_path):
    pair = volume_pair()
    ref = nea.write_ome_zarr(tmp_path / "r.ome.zarr", pair.reference, ndim=3,
                             spacing=pair.spacing, unit="µm")  # fmt: skip
    in_nm = tuple(1000 * s for s in pair.spacing)
    mov = nea.write_ome_zarr(tmp_path / "m.ome.zarr", pair.moving, ndim=3, spacing=in_nm,
                             unit="nanometer")  # fmt: skip
    assert nea.read_ome_zarr(mov).voxel_spacing == pytest.approx(pair.spacing)
    # The same voxels in nm and in µm agree: aligned with that spacing, not refused.
    assert nea.align(ref, mov, motion="euclidean").corner_error(pair.matrix) < 0.05
    # The CLI and batch choose by the same rule, keeping the reference's unit.
    from napari_ecc_align.io.sources import open_pair

    *_, geometry = open_pair(str(ref), str(mov))
    assert geometry.spacing == pytest.approx(pair.spacing) and geometry.unit == "µm"
    other = nea.write_ome_zarr(tmp_path / "o.ome.zarr", pair.moving, ndim=3, spacing=in_nm,
                               unit="micrometer")  # fmt: skip
    with pytest.raises(ValueError, match="voxel size"):
        open_pair(str(ref), str(other))


def _store_with(tmp_path, attrs, shape=(64, 64), name="bad.zarr"):
    group = zarr.open_group(tmp_path / name, mode="w", zarr_format=2)
    group.create_array("0", shape=shape, dtype=np.uint8, chunks=(32,) * len(shape))
    group.attrs.update(attrs)
    return str(tmp_path / name)


def _ngff(axes=("y", "x"), scale=(1.0, 1.0), path="0", version="0.4", **extra):
    axes = [{"name": a, "type": "space"} if isinstance(a, str) else a for a in axes]
    transforms = [{"type": "scale", "scale": list(scale)}]
    datasets = [{"path": path, "coordinateTransformations": transforms}]
    return {"multiscales": [{"version": version, "axes": axes, "datasets": datasets, **extra}]}


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "without OME-NGFF 'multiscales'"),
        (_ngff(version="0.3"), "version '0.3'"),
        (_ngff(scale=(1.0, -2.0)), r"scale' must be positive"),
        (_ngff(scale=(1.0,)), "list of 2 finite numbers"),
        (_ngff(path="../../etc"), "relative path inside the group"),
        (_ngff(path="9"), "'9' named by 'multiscales' is missing"),
        (_ngff(axes=("x", "x")), "repeat"),
        ({"multiscales": "yes"}, "non-empty list"),
        ({"ome": {"version": "0.5", "multiscales": [{"axes": 3}]}}, "axes' must be a list"),
    ],
)
def test_wrong_metadata_is_a_value_error_naming_the_field(tmp_path, attrs, message):
    path = _store_with(tmp_path, attrs)
    with pytest.raises(ValueError, match=message):
        nea.read_ome_zarr(path)
    with pytest.raises(ValueError, match=message):  # the engine's entry points say the same
        nea.align(path, path)


def test_channels_and_time_points_are_chosen_or_refused(tmp_path):
    axes = ({"name": "t", "type": "time"}, {"name": "c", "type": "channel"}, "y", "x")
    path = _store_with(tmp_path, _ngff(axes, (1, 1, 1, 1)), shape=(3, 2, 40, 50))
    data = np.arange(3 * 2 * 40 * 50).reshape(3, 2, 40, 50).astype(np.uint8)
    zarr.open_array(os.path.join(path, "0"), mode="r+")[:] = data
    with pytest.raises(ValueError, match="3 entries on its 't' axis; pick one with timepoint="):
        nea.read_ome_zarr(path)
    with pytest.raises(ValueError, match="pick one with channel="):
        nea.read_ome_zarr(path, timepoint=1)
    image = nea.read_ome_zarr(path, timepoint=2, channel=1)
    np.testing.assert_array_equal(image.levels[0].compute(), data[2, 1])
    with pytest.raises(ValueError, match=r"channel must be an integer in \[0, 2\)"):
        nea.read_ome_zarr(path, timepoint=0, channel=2)


def test_a_plain_zarr_array_is_one_uncalibrated_level(tmp_path, pair2d):
    stored = zarr.open_array(tmp_path / "plain.zarr", mode="w", shape=(700, 900), dtype=np.uint8)
    stored[:] = pair2d[0]
    image = nea.read_ome_zarr(tmp_path / "plain.zarr")
    assert len(image.levels) == 1 and image.voxel_spacing is None
    assert nea.align(tmp_path / "plain.zarr", pair2d[1]).corner_error(pair2d[2]) < 0.05


def test_a_folder_that_is_no_store_is_never_replaced(tmp_path, pair2d):
    folder = tmp_path / "out.ome.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="is not an OME-Zarr store; it is never replaced"):
        nea.write_ome_zarr(folder, pair2d[0])
    assert (folder / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["out.ome.zarr"]


def test_a_failed_write_leaves_the_old_store_and_no_temporary(tmp_path, pair2d):
    import dask.array as da

    path = nea.write_ome_zarr(tmp_path / "out.ome.zarr", pair2d[0])

    def explode(block):
        raise RuntimeError("disk on fire")

    broken = da.from_array(pair2d[1], chunks=256).map_blocks(explode, dtype=np.uint8)
    with pytest.raises(RuntimeError, match="disk on fire"):
        nea.write_ome_zarr(path, broken)
    assert sorted(os.listdir(tmp_path)) == ["out.ome.zarr"]
    np.testing.assert_array_equal(nea.read_ome_zarr(path).levels[0].compute(), pair2d[0])
    # A complete write replaces it, and leaves nothing else behind either.
    nea.write_ome_zarr(path, pair2d[1])
    assert sorted(os.listdir(tmp_path)) == ["out.ome.zarr"]
    np.testing.assert_array_equal(nea.read_ome_zarr(path).levels[0].compute(), pair2d[1])


def test_writes_on_a_running_dask_scheduler(tmp_path, pair2d):
    import distributed

    reference, moving, _ = pair2d
    alignment = nea.align(reference, moving)
    lazy = nea.warp(nea.write_ome_zarr(tmp_path / "m.ome.zarr", moving), alignment)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:  # fmt: skip
        address = cluster.scheduler_address
        path = nea.write_ome_zarr(tmp_path / "a.ome.zarr", lazy, scheduler=address)
        ran = dict(cluster.scheduler.task_prefixes)  # the chunks ran on that scheduler
    assert any("store" in name for name in ran), sorted(ran)
    np.testing.assert_allclose(nea.read_ome_zarr(path).levels[0].compute(),
                               nea.warp(moving, alignment), atol=1)  # fmt: skip


def test_a_scheduler_that_is_not_there_is_a_connection_error(tmp_path, pair2d):
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(ConnectionError, match="cannot connect to the Dask scheduler"),
    ):
        nea.write_ome_zarr(tmp_path / "a.ome.zarr", pair2d[0], scheduler="tcp://127.0.0.1:9")
    assert not os.listdir(tmp_path)


def test_written_metadata_is_valid_json_naming_units(tmp_path, pair2d):
    path = nea.write_ome_zarr(tmp_path / "a.ome.zarr", pair2d[0], spacing=(2, 2), unit="nm")
    with open(os.path.join(path, "zarr.json")) as fh:
        meta = json.load(fh)
    axes = meta["attributes"]["ome"]["multiscales"][0]["axes"]
    assert axes == [{"name": "y", "type": "space", "unit": "nanometer"},
                    {"name": "x", "type": "space", "unit": "nanometer"}]  # fmt: skip
