"""Images bigger than memory: ``align`` on a pair of large 2D images stored as zarr
pyramids, each run in a fresh process for an honest peak memory (issue 22's targets).

The pair is written chunk by chunk, never held whole (``--data DIR`` keeps it for the
next run): a smooth random scene (two fields, 48 and 6 pixels across, cubic
interpolation of small random grids) is the reference; the moving image is the same
scene seen through a known affine (0.3 degrees, 0.2 % scale, a 0.1 % shear, a
(6.5, -4) pixel shift about the centre), both uint8, in 1024 x 1024 chunks. Each
level of the pyramid is the one before halved by ``cv2.pyrDown``, region by region.

Runs (each in its own process; time and peak RSS above the process after its imports):

* ``pyramid``: ``align([level0, level1, ...], [...])``, the stored levels as napari
  hands a multiscale layer over (zarr arrays, read on demand);
* ``finest``: ``align(level0, level0)``: the zarr arrays alone, halved region by region.

Corner RMS error (px) is against the known affine. The time includes reading what the
estimate needs from the stores (zstd-compressed, on this machine's disk).

    python benchmarks/bench_large.py                    # 40 000 x 40 000, 1.5 GiB each
    python benchmarks/bench_large.py --side 20000 --data /tmp/large20k
    python benchmarks/bench_large.py --volume 256,2048,2048 --data /tmp/vol256 \\
        --mvs-python .venv-mvs/bin/python                # volumes: see _large_volumes.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

CHUNK = 1024
ANGLE, SHIFT, SCALE = 0.3, (6.5, -4.0), 1.002


def true_matrix(side: int) -> np.ndarray:
    """Reference pixel (x, y) → moving pixel, the affine both images were made with."""
    c, s = math.cos(math.radians(ANGLE)) * SCALE, math.sin(math.radians(ANGLE)) * SCALE
    centre = (side - 1) / 2
    matrix = np.array([[c, -s * 1.001, 0], [s, c, 0], [0, 0, 1.0]])
    matrix[:2, 2] = [centre + SHIFT[0], centre + SHIFT[1]] - matrix[:2, :2] @ [centre, centre]
    return matrix


def write_pair(folder: Path, side: int) -> None:
    """The reference and moving pyramids as zarr arrays under ``folder``, chunk by chunk."""
    import zarr

    rng = np.random.default_rng(0)
    coarse = rng.random((side // 48 + 8, side // 48 + 8), dtype=np.float32)
    fine = rng.random((side // 6 + 8, side // 6 + 8), dtype=np.float32)
    # moving pixel m = T r: the moving image at m shows the scene at r = T⁻¹ m.
    to_scene = {"reference": np.eye(3), "moving": np.linalg.inv(true_matrix(side))}
    for name, matrix in to_scene.items():
        level0 = zarr.open_array(str(folder / name / "0"), mode="w", shape=(side, side),
                                 chunks=(CHUNK, CHUNK), dtype=np.uint8)  # fmt: skip
        for y0 in range(0, side, CHUNK):
            for x0 in range(0, side, CHUNK):
                y1, x1 = min(side, y0 + CHUNK), min(side, x0 + CHUNK)
                ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
                sx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
                sy = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
                value = 0.6 * _field(coarse, sx, sy, 48) + 0.4 * _field(fine, sx, sy, 6)
                level0[y0:y1, x0:x1] = np.clip(value * 255, 0, 255).astype(np.uint8)
        _write_levels(folder / name, level0)
    (folder / "pair.json").write_text(json.dumps({"side": side}))


def _field(grid, sx, sy, step):
    maps = ((sx / step + 4).astype(np.float32), (sy / step + 4).astype(np.float32))
    return cv2.remap(grid, *maps, cv2.INTER_CUBIC)


def _write_levels(folder: Path, level0) -> None:
    import zarr

    from napari_ecc_align.engine.lazy import halved_lazily

    level, k = level0, 1
    while min(level.shape) > 2 * CHUNK:
        halved = halved_lazily(level, 1)  # one level: a quarter of the last, in memory
        stored = zarr.open_array(str(folder / str(k)), mode="w", shape=halved.shape,
                                 chunks=(CHUNK, CHUNK), dtype=halved.dtype)  # fmt: skip
        stored[:] = halved
        level, k = stored, k + 1


PROBE = """
import json, re, sys, time
import numpy as np, zarr
from napari_ecc_align import align

def status_gb(key):
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{key}:\\s+(\\d+) kB", fh.read(), re.M).group(1)) / 2**20

folder, run = sys.argv[1], sys.argv[2]
def pyramid(name):
    levels, k = [], 0
    while True:
        try:
            levels.append(zarr.open_array(f"{folder}/{name}/{k}", mode="r"))
        except Exception:
            return levels
        k += 1
ref, mov = pyramid("reference"), pyramid("moving")
if run == "finest":
    ref, mov = ref[0], mov[0]
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
before = status_gb("VmRSS")
start = time.perf_counter()
result = align(ref, mov)
seconds, added = time.perf_counter() - start, status_gb("VmHWM") - before
parameters = result.parameters
print(json.dumps({"seconds": seconds, "added_gb": added, "matrix": result.matrix.tolist(),
                  "refined": parameters.get("refined_at_full_resolution"),
                  "scale": parameters.get("estimated_at_scale")}))
"""


def measure(folder: Path, run: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(folder), run],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=40_000, help="pixels per side")
    parser.add_argument("--data", type=Path, help="folder for the stores, reused if present")
    parser.add_argument("--runs", nargs="*", help="default: pyramid finest (2D); ours "
                        "ours-numpy sitk mvs (volumes)")  # fmt: skip
    parser.add_argument("--volume", help="Z,Y,X: a uint16 volume pair instead (see "
                        "_large_volumes.py), e.g. 256,2048,2048")  # fmt: skip
    parser.add_argument("--motion", nargs="*", default=["euclidean", "affine"])
    parser.add_argument("--mvs-python", help="an interpreter with multiview-stitcher and "
                        "itk-elastix, for the 'mvs' run")  # fmt: skip
    args = parser.parse_args(argv)
    folder = args.data or Path(tempfile.mkdtemp(prefix="bench_large_"))
    if args.volume:
        import _large_volumes

        shape = tuple(int(v) for v in args.volume.split(","))
        runs = args.runs or ["ours", "ours-numpy", "sitk", "mvs"]
        _large_volumes.run(folder, shape, runs, args.motion, args.mvs_python)
        return
    args.runs = args.runs or ["pyramid", "finest"]
    stamp = folder / "pair.json"
    if not (stamp.exists() and json.loads(stamp.read_text())["side"] == args.side):
        start = time.perf_counter()
        write_pair(folder, args.side)
        print(f"wrote the pair in {time.perf_counter() - start:.0f} s to {folder}", flush=True)
    from napari_ecc_align.engine.alignment import corner_rms

    truth = true_matrix(args.side)
    gib = args.side**2 / 2**30
    print(f"{args.side} x {args.side} uint8 pair ({gib:.2f} GiB each), zarr, {CHUNK}² chunks")
    print("| run | seconds | added GB | corner err px | estimated at | refined |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        found = measure(folder, run)
        error = corner_rms(np.array(found["matrix"]), truth, (args.side, args.side))
        print(f"| {run} | {found['seconds']:.1f} | {found['added_gb']:.2f} | {error:.4f} | "
              f"{found['scale']} | {found['refined']} |", flush=True)  # fmt: skip
    if not args.data:
        print(f"(the stores stay in {folder}: remove it, or pass --data to reuse them)")
    os.sync()


if __name__ == "__main__":
    main()
