"""The volume half of ``bench_large.py``: OME-Zarr volume pairs written chunk by chunk,
aligned by napari-ecc-align, SimpleITK and multiview-stitcher, each in a fresh process.

The pair is :func:`napari_ecc_align.data.large.lazy_volume_pair` (uint16, voxels 2 x 0.5
x 0.5 µm, 1.5° about z, 0.3° about x and a (3.3, -2.6, 1.4) voxel shift; ``affine``
adds 0.3 % scale and a 0.2 % shear), written by ``write_ome_zarr`` as NGFF 0.5 stores in
64 x 256 x 256 chunks with their pyramids: ``reference.ome.zarr``,
``moving-euclidean.ome.zarr`` and ``moving-affine.ome.zarr``.

Runs (time and peak RSS above the process after its imports and, where the volumes are
loaded first, after loading them):

* ``ours``: ``align("reference.ome.zarr", "moving-….ome.zarr", motion=...)``: the stores
  by path, read lazily (stored levels and full-resolution blocks);
* ``ours-numpy``: both volumes loaded as numpy first, then ``align``: memory above the
  inputs;
* ``sitk``: SimpleITK's ``ImageRegistrationMethod`` as in ``bench_volume.py`` (shrink
  4-2-1, correlation on a fixed random 5 % of each level's voxels, Euler3D or Affine
  from ``CenteredTransformInitializer``) on the loaded volumes;
* ``mvs``: multiview-stitcher's ``register_pair_of_msims`` on the stores (its own
  reader), elastix (itk-elastix) at its automatic registration binning, Translation then
  Rigid stages (then Affine for ``affine``); run with ``--mvs-python`` (a separate
  environment: ``pip install "napari-ecc-align[bench-mvs]"``); its reader's zarr backend
  fails on zarr v3 arrays that name their dimensions (as NGFF 0.5 asks), so its dask
  backend reads the stores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
CHUNKS = (64, 256, 256)

PRELUDE = """
import json, re, sys, time
import numpy as np

def status_gb(key):
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\\s+(\\d+) kB", fh.read(), re.M).group(1)) / 2**20

def reset_peak():
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return status_gb("VmRSS")

folder, run, motion = sys.argv[1:4]
reference, moving = f"{folder}/reference.ome.zarr", f"{folder}/moving-{motion}.ome.zarr"
"""

OURS = """
from napari_ecc_align import align, read_ome_zarr
inputs = 0.0
if run == "ours-numpy":
    ref, mov = (read_ome_zarr(p) for p in (reference, moving))
    spacing = ref.spacing
    reference, moving = np.asarray(ref.levels[0]), np.asarray(mov.levels[0])
    inputs = (reference.nbytes + moving.nbytes) / 2**30
    kwargs = {"ndim": 3, "spacing": spacing}
else:
    kwargs = {}
before = reset_peak()
start = time.perf_counter()
result = align(reference, moving, motion=motion, **kwargs)
seconds, added = time.perf_counter() - start, status_gb("VmHWM") - before
print(json.dumps({"seconds": seconds, "added_gb": added, "inputs_gb": inputs,
                  "matrix": result.matrix.tolist(),
                  "scale": result.parameters.get("estimated_at_scale"),
                  "refined": result.parameters.get("refined_at_full_resolution")}))
"""

SITK = """
sys.path.insert(0, sys.argv[4])
import SimpleITK as sitk
from _sitk import registration_method
from napari_ecc_align import read_ome_zarr
ref, mov = (read_ome_zarr(p) for p in (reference, moving))
spacing = ref.spacing
ref, mov = np.asarray(ref.levels[0]), np.asarray(mov.levels[0])
inputs = (ref.nbytes + mov.nbytes) / 2**30
before = reset_peak()
start = time.perf_counter()
images = []
for volume in (ref, mov):
    image = sitk.Cast(sitk.GetImageFromArray(volume), sitk.sitkFloat32)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    images.append(image)
kind = sitk.AffineTransform(3) if motion == "affine" else sitk.Euler3DTransform()
initial = sitk.CenteredTransformInitializer(*images, kind,
                                            sitk.CenteredTransformInitializerFilter.GEOMETRY)
method = registration_method(sitk, "correlation", 0.05, 7)
method.SetInitialTransform(initial, inPlace=False)
final = method.Execute(*images).Downcast()
if isinstance(final, sitk.CompositeTransform):
    final = final.GetNthTransform(0).Downcast()
seconds, added = time.perf_counter() - start, status_gb("VmHWM") - before
a = np.array(final.GetMatrix(), float).reshape(3, 3)
c, t = np.array(final.GetCenter(), float), np.array(final.GetTranslation(), float)
physical = np.eye(4)
physical[:3, :3], physical[:3, 3] = a, c + t - a @ c
scale = np.diag([*spacing[::-1], 1.0])
matrix = np.linalg.inv(scale) @ physical @ scale
print(json.dumps({"seconds": seconds, "added_gb": added, "inputs_gb": inputs,
                  "matrix": matrix.tolist(), "scale": None, "refined": None}))
"""

MVS = """
import warnings
warnings.filterwarnings("ignore")
from multiview_stitcher import msi_utils, ngff_utils, registration
before = reset_peak()
start = time.perf_counter()
# Its zarr backend fails on zarr v3 arrays that name their dimensions: its dask one.
msims = [msi_utils.multiscale_sel_coords(ngff_utils.read_msim_from_ome_zarr(
    p, transform_key="stage", array_backend="dask"), {"t": 0, "c": 0})
    for p in (reference, moving)]
stages = ["Translation", "Rigid"] + (["Affine"] if motion == "affine" else [])
found = registration.register_pair_of_msims(
    *msims, transform_key="stage", pairwise_reg_func=registration.registration_ITKElastix,
    pairwise_reg_func_kwargs={"transform_types": stages})
found = found.compute() if hasattr(found, "compute") else found
affine = np.asarray(found["transform"]).reshape(-1, 4, 4)[0]  # physical (z, y, x)
seconds, added = time.perf_counter() - start, status_gb("VmHWM") - before
print(json.dumps({"seconds": seconds, "added_gb": added, "inputs_gb": 0.0,
                  "physical_zyx": affine.tolist(), "scale": None, "refined": None}))
"""


def write_stores(folder: Path, shape, motions=("euclidean", "affine")) -> None:
    """The reference and the moving stores of ``motions`` under ``folder``, chunk by
    chunk; stores already there are kept."""
    from napari_ecc_align import write_ome_zarr
    from napari_ecc_align.data.large import lazy_volume_pair

    for motion in motions:
        pair = lazy_volume_pair(shape, chunks=CHUNKS, motion=motion)
        names = {"reference": pair.reference, f"moving-{motion}": pair.moving}
        for name, volume in names.items():
            path = folder / f"{name}.ome.zarr"
            if not path.exists():
                write_ome_zarr(path, volume, ndim=3, spacing=pair.spacing, unit="micrometer")
    (folder / "pair.json").write_text(json.dumps({"volume": list(shape)}))


def measure(folder: Path, run: str, motion: str, python: str) -> dict:
    """One run in a fresh process (the interpreter ``python``)."""
    body = {"ours": OURS, "ours-numpy": OURS, "sitk": SITK, "mvs": MVS}[run]
    out = subprocess.run([python, "-c", PRELUDE + body, str(folder), run, motion, str(HERE)],
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def our_matrix(found: dict, spacing) -> np.ndarray:
    """A run's result as our 4×4 (reference voxel (x, y, z) → moving voxel)."""
    if "matrix" in found:
        return np.array(found["matrix"])
    swap = np.eye(4)[[2, 1, 0, 3]]  # (z, y, x) ↔ (x, y, z)
    voxels = np.diag([*spacing, 1.0])  # (dz, dy, dx)
    zyx = np.linalg.inv(voxels) @ np.array(found["physical_zyx"]) @ voxels
    return swap @ zyx @ swap


def run(folder: Path, shape, runs, motions, mvs_python: str | None) -> None:
    """Write (or reuse) the stores, run each method, print the table."""
    from napari_ecc_align.data.large import large_volume_matrix
    from napari_ecc_align.engine.alignment import corner_rms

    stamp = folder / "pair.json"
    if stamp.exists() and json.loads(stamp.read_text()).get("volume") != list(shape):
        raise SystemExit(f"{folder} holds a pair of another shape: pass another --data folder")
    missing = [m for m in motions if not (folder / f"moving-{m}.ome.zarr").exists()]
    if missing or not stamp.exists():
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_stores(folder, shape, motions)
        print(f"wrote the stores in {time.perf_counter() - start:.0f} s to {folder}", flush=True)
    spacing = (2.0, 0.5, 0.5)
    gib = np.prod(shape) * 2 / 2**30
    print(f"{' x '.join(map(str, shape))} uint16 volume pair ({gib:.2f} GiB each), OME-Zarr 0.5, "
          f"{' x '.join(map(str, CHUNKS))} chunks")  # fmt: skip
    print("| motion | run | seconds | added GB | × inputs | corner err voxel | estimated at |")
    print("|---|---|---|---|---|---|---|")
    for motion in motions:
        truth = large_volume_matrix(shape, spacing, motion)
        for name in runs:
            python = sys.executable if name != "mvs" else mvs_python
            if python is None:
                continue
            found = measure(folder, name, motion, python)
            if "error" in found:
                print(f"| {motion} | {name} | failed: {found['error']} | | | | |", flush=True)
                continue
            error = corner_rms(our_matrix(found, spacing), truth, tuple(shape))
            ratio = found["added_gb"] / found["inputs_gb"] if found["inputs_gb"] else None
            print(f"| {motion} | {name} | {found['seconds']:.1f} | {found['added_gb']:.2f} | "
                  f"{'' if ratio is None else f'{ratio:.2f}'} | {error:.4f} | "
                  f"{found['scale'] or ''} |", flush=True)  # fmt: skip
