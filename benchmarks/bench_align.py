"""Speed and accuracy of ``align`` next to OpenCV's own ECC calls, in one process.

For each pair it runs, on the same images:

* ``align`` (napari-ecc-align, affine, defaults);
* the seed recipe: ``cv2.findTransformECC`` at full resolution, 100 iterations,
  eps 1e-7 (what a new user writes first);
* ``cv2.findTransformECCMultiScale`` (OpenCV >= 5, default ECCParameters), given
  uint8 images because it converts its input to 8 bit without scaling.

and prints time, corner RMS error in pixels against the known transform and the
time ratios. ``--memory`` measures the peak RSS of ``align`` on an 8 MP pair in a
fresh subprocess.

Usage::

    python benchmarks/bench_align.py              # 1, 4, 8, 16 MP + 3400x2400 page
    python benchmarks/bench_align.py --sizes 1 4  --no-seed
    python benchmarks/bench_align.py --memory
"""

from __future__ import annotations

import argparse
import functools
import math
import platform
import subprocess
import sys
import time

import cv2
import numpy as np

from napari_ecc_align import align
from napari_ecc_align.data import natural_image, score_pair
from napari_ecc_align.engine.alignment import corner_rms

# The article's misalignment: 0.3 degrees, 6.5 px, 0.2 % scale (about the centre).
ANGLE, SHIFT, SCALE = 0.3, (6.5, -4.0), 1.002


def affine_pair(megapixels: float, seed: int = 0):
    """A natural-image pair of about ``megapixels`` (4:3) with a known small affine."""
    rows = int(round(math.sqrt(megapixels * 1e6 * 3 / 4)))
    cols = int(round(rows * 4 / 3))
    margin = 32
    scene = natural_image((rows + 2 * margin, cols + 2 * margin), seed=seed)
    c, s = math.cos(math.radians(ANGLE)) * SCALE, math.sin(math.radians(ANGLE)) * SCALE
    cx, cy = (cols - 1) / 2, (rows - 1) / 2
    true = np.array([[c, -s * 1.001, 0], [s, c, 0], [0, 0, 1.0]])  # slight shear: really affine
    true[:2, 2] = [cx + SHIFT[0], cy + SHIFT[1]] - true[:2, :2] @ [cx, cy]
    to_scene = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
    reference = cv2.warpAffine(
        scene, (to_scene @ true)[:2], (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    rng = np.random.default_rng(seed)
    moving = scene[margin:-margin, margin:-margin] * 0.8 + 0.1
    moving = moving + rng.normal(0, 0.01, moving.shape).astype(np.float32)
    return f"affine {rows}x{cols}", reference, np.ascontiguousarray(moving, np.float32), true


def page_pair():
    """3400x2400 binarised reference vs grayscale moving page (the article's case)."""
    reference, moving, true = score_pair(
        (3400, 2400), seed=0, angle_deg=ANGLE, shift=SHIFT, scale=SCALE
    )
    return "page 3400x2400 (binary vs gray)", reference, moving, true


def to_u8(image):
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.round((image - lo) / (hi - lo) * 255).astype(np.uint8)


def timed(fn):
    start = time.perf_counter()
    try:
        out = fn()
    except cv2.error as exc:
        return time.perf_counter() - start, None, str(exc).strip().splitlines()[-1][:60]
    return time.perf_counter() - start, out, ""


def run_ours(reference, moving):
    return align(reference, moving, motion="affine").matrix


def run_seed(reference, moving):
    ref32, mov32 = reference.astype(np.float32), moving.astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-7)
    _, warp = cv2.findTransformECC(
        ref32, mov32, np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE, criteria, None, 5
    )
    return warp


def run_multiscale(reference, moving):
    params = cv2.ECCParameters()
    params.motionType = cv2.MOTION_AFFINE
    _, warp = cv2.findTransformECCMultiScale(
        to_u8(reference), to_u8(moving), np.eye(2, 3, dtype=np.float32), params
    )
    return warp


def measure(pairs, with_seed: bool, repeats: int):
    has_ms = hasattr(cv2, "findTransformECCMultiScale")
    rows = []
    for name, reference, moving, true in pairs:
        entry = {"pair": name}
        methods = [("ours", run_ours)]
        if has_ms:
            methods.append(("multiscale", run_multiscale))
        if with_seed:
            methods.append(("seed", run_seed))
        for label, fn in methods:
            n = repeats if label != "seed" else 1  # the seed recipe takes tens of seconds
            best = math.inf
            for _ in range(n):
                elapsed, warp, error = timed(functools.partial(fn, reference, moving))
                best = min(best, elapsed)
            err = corner_rms(warp, true, reference.shape) if warp is not None else math.nan
            entry[label] = (best, err, error)
        rows.append(entry)
        print_row(entry, has_ms, with_seed)
    return rows


def _fmt(result):
    if result is None:
        return "-", "-"
    seconds, err, error = result
    return f"{seconds:.2f} s", (f"{err:.3f}" if np.isfinite(err) else f"failed ({error})")


def print_header(has_ms, with_seed):
    cols = ["pair", "ours", "err px"]
    if has_ms:
        cols += ["MultiScale", "err px", "ours/MS"]
    if with_seed:
        cols += ["seed recipe", "err px", "ours/seed"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))


def print_row(entry, has_ms, with_seed):
    cells = [entry["pair"], *_fmt(entry["ours"])]
    ours = entry["ours"][0]
    if has_ms:
        cells += [*_fmt(entry["multiscale"]), f"{ours / entry['multiscale'][0]:.2f}"]
    if with_seed:
        cells += [*_fmt(entry["seed"]), f"{ours / entry['seed'][0]:.3f}"]
    print("| " + " | ".join(cells) + " |", flush=True)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_probe(megapixels: float) -> None:
    """Run in a fresh process: what align() adds to the peak RSS on one pair.

    Building the inputs peaks higher than what stays (a larger scene is cut and freed),
    so the peak counter (VmHWM) is reset once the inputs exist: otherwise that freed
    memory would hide align's own peak.
    """
    name, reference, moving, true = affine_pair(megapixels)
    built_peak = _status_mb("VmHWM")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = _status_mb("VmRSS")
    result = align(reference, moving, motion="affine")
    peak = _status_mb("VmHWM")
    print(
        f"{name}: peak RSS {peak:.0f} MB (inputs and interpreter {before:.0f} MB, "
        f"{built_peak:.0f} MB while building them; align added {peak - before:.0f} MB); "
        f"corner error {result.corner_error(true):.3f} px"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="*", default=[1, 4, 8, 16], help="megapixels")
    parser.add_argument("--no-page", action="store_true", help="skip the 3400x2400 page pair")
    parser.add_argument(
        "--no-seed", action="store_true", help="skip the slow full-resolution recipe"
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of N for the fast methods")
    parser.add_argument("--memory", action="store_true", help="peak RSS of align on an 8 MP pair")
    parser.add_argument("--memory-probe", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        memory_probe(args.memory_probe)
        return 0
    if args.memory:
        subprocess.run([sys.executable, __file__, "--memory-probe", "8"], check=True)
        return 0

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{cv2.getNumberOfCPUs()} cores, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}"
    )
    pairs = [affine_pair(mp) for mp in args.sizes]
    if not args.no_page:
        pairs.append(page_pair())
    has_ms = hasattr(cv2, "findTransformECCMultiScale")
    print_header(has_ms, not args.no_seed)
    measure(pairs, with_seed=not args.no_seed, repeats=args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
