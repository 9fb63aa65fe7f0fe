"""`napari-ecc-align batch` on 3D TIFF volume pairs, on a real Dask LocalCluster.

Each moving volume is its reference's scene shifted by a known sub-voxel (dx, dy, dz), so
the true reference -> moving 4x4 is a translation.
"""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from napari_ecc_align import Alignment
from napari_ecc_align.cli import main
from napari_ecc_align.io import read_volume, read_voxel_size

SHAPE = (24, 64, 64)  # (z, y, x)
SPACING = (1.5, 0.5, 0.5)  # µm
SHIFTS = {"a.tif": (1.5, -2.25, 0.75), "day2/b.tif": (-2.5, 1.0, -0.5)}  # (dx, dy, dz) voxels
TOLERANCE_VOXELS = 0.05


def _shifted_pair(shift_xyz, seed):
    """uint16 volumes with gain, bias and noise; moving(v + shift) = reference(v)."""
    rng = np.random.default_rng(seed)
    scene = ndimage.gaussian_filter(rng.random(SHAPE, dtype=np.float32), (1.2, 2.5, 2.5))
    scene = (scene - scene.mean()) / scene.std()
    moving = ndimage.shift(scene, shift_xyz[::-1], order=3, mode="grid-wrap")
    pair = (scene * 400 + 2000, moving * 320 + 2500)
    return [np.clip(v + rng.normal(0, 20, SHAPE), 0, 65535).astype(np.uint16) for v in pair]


def _imagej(path, volume, spacing=SPACING):
    dz, dy, dx = spacing
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"axes": "ZYX", "spacing": dz, "unit": "micron"}
    tifffile.imwrite(path, volume, imagej=True, resolution=(1 / dx, 1 / dy), metadata=metadata)


def _translation(shift_xyz):
    truth = np.eye(4)
    truth[:3, 3] = shift_xyz
    return truth


def _hashes(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def _rows(out):
    with open(out / "alignment.csv", newline="", encoding="utf-8") as fh:
        return {row["pair"]: row for row in csv.DictReader(fh)}


@pytest.fixture
def volumes(tmp_path):
    for seed, (rel, shift) in enumerate(SHIFTS.items()):
        reference, moving = _shifted_pair(shift, seed)
        _imagej(tmp_path / "ref" / rel, reference)
        _imagej(tmp_path / "mov" / rel, moving)
    return tmp_path


def test_volume_pairs_align_write_tiffs_and_resume(volumes, capsys):
    root, out = volumes, volumes / "out"
    inputs = {name: _hashes(root / name) for name in ("ref", "mov")}
    batch = ["batch", str(root / "ref"), str(root / "mov"), str(out), "--workers", "1"]
    # The ImageJ metadata says z-stack: no --ndim needed.
    assert main([*batch, "--motion", "translation", "--difference", "-q"]) == 0

    rows = _rows(out)
    assert {pair: row["status"] for pair, row in rows.items()} == dict.fromkeys(SHIFTS, "ok")
    for rel, shift in SHIFTS.items():
        stem = out / rel[: -len(".tif")]
        alignment = Alignment.from_json(f"{stem}.transform.json")
        assert alignment.ndim == 3 and alignment.matrix.shape == (4, 4)
        assert alignment.corner_error(_translation(shift)) <= TOLERANCE_VOXELS
        assert alignment.parameters["spacing"] == list(SPACING)
        assert float(rows[rel]["correlation_after"]) > float(rows[rel]["correlation_before"])
        aligned, voxels = read_volume(out / rel)
        assert aligned.dtype == np.uint16 and aligned.shape == SHAPE
        assert (voxels.spacing, voxels.unit, voxels.source) == (SPACING, "µm", "ImageJ")
        assert read_voxel_size(f"{stem}.difference.tif").spacing == SPACING
    assert not [p for p in out.rglob(".*")], "temporary files left behind"

    # Interrupted before b's JSON was written: the next run redoes b only, with a third pair
    # that has no metadata (so --ndim 3, and --spacing for its voxel size).
    first = _hashes(out)
    (out / "day2" / "b.transform.json").unlink()
    reference, moving = _shifted_pair((0.5, 1.5, -1.25), 7)
    tifffile.imwrite(root / "ref" / "c.tif", reference)
    tifffile.imwrite(root / "mov" / "c.tif", moving)
    inputs = {name: _hashes(root / name) for name in ("ref", "mov")}
    code = main([*batch, "--motion", "translation", "--ndim", "3", "--spacing", "1.5,0.5,0.5"])
    assert code == 0
    assert capsys.readouterr().out.strip().startswith("3 pairs: 2 ok, 1 skipped, 0 failed")
    rows = _rows(out)
    assert {p: r["status"] for p, r in rows.items()} == {
        "a.tif": "skipped",
        "day2/b.tif": "ok",
        "c.tif": "ok",
    }
    assert _hashes(out)["a.tif"] == first["a.tif"]  # the complete pair is left alone
    third = Alignment.from_json(out / "c.transform.json")
    assert third.corner_error(_translation((0.5, 1.5, -1.25))) <= TOLERANCE_VOXELS
    assert read_voxel_size(out / "c.tif").spacing == SPACING
    assert {name: _hashes(root / name) for name in ("ref", "mov")} == inputs


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ndim", "2", "--spacing", "3,1,1"],
         "error: --spacing dz,dy,dx is the voxel size of volumes; it goes with --ndim 3, not"),
        (["--ndim", "3", "--motion", "homography"],
         "error: --motion homography is for 2D images only; volumes (--ndim 3) take"),
        (["--spacing", "3,-1,1"], "argument --spacing: expected three positive numbers"),
        (["--ndim", "3", "--init", "FLAT"], "init must be a finite 4x4 or 3x4 matrix, got shape "
                                            "(3, 3)"),
    ],
)  # fmt: skip
def test_bad_volume_options_exit_2_before_writing(volumes, capsys, options, message):
    flat = {"matrix": np.eye(3).tolist(), "motion": "affine", "reference_shape": [64, 64],
            "moving_shape": [64, 64]}  # fmt: skip
    Alignment.from_dict(flat).to_json(volumes / "flat.json")
    options = [str(volumes / "flat.json") if o == "FLAT" else o for o in options]
    args = ["batch", str(volumes / "ref"), str(volumes / "mov"), str(volumes / "out")]
    assert main([*args, *options]) == 2
    assert message in capsys.readouterr().err
    assert not (volumes / "out").exists()
