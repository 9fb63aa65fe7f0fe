"""3D alignment speed, accuracy and memory: ``align(..., ndim=3)`` next to SimpleITK's
multi-resolution registration and scikit-image's phase correlation, in one process.

Each pair is made here (no files, no network): a smooth textured scene (three blurred
random fields and a few thousand blurred blobs, ``scipy.ndimage``) gives the reference
by plain slicing (voxel centres on scene voxels, so no interpolation), and the moving
volume is the scene resampled through a known transform
(``scipy.ndimage.affine_transform``, cubic spline), then given a gain/bias change and
Gaussian noise; both are stored as uint16. Cases:

* ``rigid``: a rotation of 2-4 degrees about a random axis through the centre and a
  shift of up to 4 voxels per axis (``motion="euclidean"``);
* ``affine``: the same with up to ±3 % scale/shear on top (``motion="affine"``);
* ``anisotropic``: rigid in physical units with spacing (dz, dy, dx) = (3, 1, 1): the
  scene is sampled every third plane in z (``motion="euclidean"``);
* ``translation`` (not run by default): a pure subvoxel shift, the case that phase
  correlation can solve, to check its sign and conversion.

For each pair it runs, on the same uint16 volumes:

* ``align(reference, moving, ndim=3, spacing=..., motion=...)`` (napari-ecc-align);
* SimpleITK's ``ImageRegistrationMethod``: correlation metric, shrink factors
  [4, 2, 1] with smoothing sigmas [2, 1, 0] voxels, regular-step gradient descent
  (step 1 -> 1e-4 physical units, relaxation 0.5) with scales from the physical shift,
  linear interpolation, an ``Euler3DTransform`` (rigid; a ``TranslationTransform`` for
  ``translation``) or an ``AffineTransform`` initialised by
  ``CenteredTransformInitializer`` (GEOMETRY). The metric runs on a fixed random 5 %
  of each level's voxels (``--sitk-sampling``; 1 = every voxel, about 5x slower on
  2 cores for the same error);
* ``skimage.registration.phase_cross_correlation(reference, moving,
  upsample_factor=10)``, and the same on zero-mean copies under a separable Hann window
  (``PCC + Hann``): on these smooth volumes the plain call locks onto the volume faces
  (a shift near 0). Translation only, so its error on the rotated cases is the rotation
  it cannot see.

Every result is turned into our 4x4 convention: reference voxel (x, y, z, 1) -> moving
voxel (x, y, z), x = column, y = row, z = plane. The error is the RMS over the 8
corners of the reference volume of the distance, in voxels, between where the result
and the true transform send them. Times are best of N (``--repeats``; SimpleITK once,
``--sitk-repeats``). The memory table runs each method again in a fresh process
(multiprocessing, spawn) that receives the two volumes, calls the method once on a small
pair (one-time set-up: lazy imports, thread pools), resets its peak-RSS counter (VmHWM)
and reads it after the call: the method's own peak above the inputs, and that peak over
the size of the two input volumes.

Targets printed next to the numbers: on the 96x192x192 rigid pair ``align`` takes
<= 0.12x SimpleITK's time at <= 0.02 voxel; it is never slower than SimpleITK; its own
peak memory is <= 4x the two input volumes.

Usage::

    python benchmarks/bench_volume.py                     # 96x192x192 and 128x256x256
    python benchmarks/bench_volume.py --quick             # only the 96x192x192 rigid pair
    python benchmarks/bench_volume.py --sizes 48x96x96 --cases rigid translation --noise 0
    python benchmarks/bench_volume.py --methods sitk --quick --no-memory

Needs the ``bench`` extra (``pip install -e .[bench]``: SimpleITK, scikit-image); a
method whose package is missing is left out.
"""

from __future__ import annotations

import argparse
import functools
import math
import multiprocessing
import platform
import sys
import time

import cv2
import numpy as np
import scipy
from _sitk import registration_method
from scipy import ndimage

from napari_ecc_align import align

try:
    import SimpleITK as sitk
except ImportError:  # the bench extra is not installed
    sitk = None
try:
    import skimage
    from skimage.registration import phase_cross_correlation
except ImportError:
    skimage = phase_cross_correlation = None

CASES = ("rigid", "affine", "anisotropic", "translation")
DEFAULT_CASES = ("rigid", "affine", "anisotropic")
MOTION = {
    "rigid": "euclidean",
    "affine": "affine",
    "anisotropic": "euclidean",
    "translation": "translation",
}
METHODS = ("ours", "sitk", "skimage", "skimage-hann")
LABELS = {
    "ours": "align",
    "sitk": "SimpleITK",
    "skimage": "skimage PCC",
    "skimage-hann": "PCC + Hann",
}
SITK_SAMPLING, SITK_SEED = 0.05, 1  # fraction of each level's voxels in the metric; its seed
MARGIN = 24  # scene voxels around the reference: the moving volume never samples outside
TARGET_PAIR, TARGET_RATIO, TARGET_ERR, TARGET_MEMORY = ((96, 192, 192), "rigid"), 0.12, 0.02, 4.0

# Reverses the first three homogeneous coordinates: (x, y, z, 1) <-> (z, y, x, 1).
SWAP = np.eye(4)[[2, 1, 0, 3]]


# --------------------------------------------------------------------------- pairs


def rotation(axis, angle_rad) -> np.ndarray:
    """Rodrigues: the 3x3 rotation by ``angle_rad`` about the unit vector ``axis``."""
    x, y, z = axis / np.linalg.norm(axis)
    k = np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1 - math.cos(angle_rad)) * k @ k


def random_pose(rng, case, centre) -> np.ndarray:
    """A 4x4 physical (x, y, z) reference -> moving map about ``centre``."""
    linear = np.eye(3)
    if case != "translation":
        angle = math.radians(rng.uniform(2, 4) * rng.choice([-1, 1]))
        linear = rotation(rng.normal(size=3), angle)
    if case == "affine":
        linear = linear @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3)))
    pose = np.eye(4)
    pose[:3, :3] = linear
    pose[:3, 3] = centre + rng.uniform(-4, 4, 3) - linear @ centre
    return pose


def textured_scene(shape, rng) -> np.ndarray:
    """Smooth texture in [0, 1] (float32): blurred random fields at three scales + blobs."""
    scene = np.zeros(shape, np.float32)
    for sigma, weight in ((1.5, 0.3), (3.0, 0.6), (6.0, 1.0)):
        field = rng.standard_normal(shape, dtype=np.float32)
        ndimage.gaussian_filter(field, sigma, output=field, truncate=3.0)
        scene += weight / float(field.std()) * field
    blobs = np.zeros(shape, np.float32)
    count = max(1, scene.size // 3000)
    blobs[tuple(rng.integers(0, n, count) for n in shape)] = 1.0
    ndimage.gaussian_filter(blobs, 2.0, output=blobs, truncate=3.0)
    scene += 1.5 / float(blobs.max()) * blobs
    lo, hi = np.percentile(scene[::4, ::4, ::4], [0.1, 99.9])
    scene -= lo
    scene /= hi - lo
    return np.clip(scene, 0, 1, out=scene)


def make_pair(shape, case, seed=0, noise=0.01):
    """``(name, reference, moving, true 4x4 voxel matrix, spacing (dz, dy, dx))``."""
    rng = np.random.default_rng(seed)
    spacing = (3.0, 1.0, 1.0) if case == "anisotropic" else (1.0, 1.0, 1.0)
    nz, ny, nx = shape
    step = int(spacing[0])
    scale = np.diag([*spacing[::-1], 1.0])  # S: voxel (x, y, z) -> physical
    centre = (scale[:3, :3] @ [(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2]).astype(float)
    true = np.linalg.inv(scale) @ random_pose(rng, case, centre) @ scale  # S^-1 T S

    m = MARGIN
    scene = textured_scene((step * (nz - 1) + 1 + 2 * m, ny + 2 * m, nx + 2 * m), rng)
    # reference(p) = scene(o + S p), p a reference voxel (x, y, z), o = (m, m, m)
    reference = scene[m : m + step * (nz - 1) + 1 : step, m : m + ny, m : m + nx]
    # moving(M p) = reference(p)  =>  moving(u) = scene(o + S M^-1 u)
    to_scene = np.eye(4)
    to_scene[:3, 3] = m
    sample = SWAP @ (to_scene @ scale @ np.linalg.inv(true)) @ SWAP  # scipy's (z, y, x) order
    moving = ndimage.affine_transform(
        scene, sample, output_shape=shape, order=3, mode="nearest", output=np.float32
    )
    gain, bias = rng.uniform(0.7, 0.9), rng.uniform(0.03, 0.08)
    moving = gain * moving + bias
    if noise:
        moving += rng.normal(0, noise, shape).astype(np.float32)

    def u16(volume):
        return np.round(np.clip(volume, 0, 1) * 60000 + 2000).astype(np.uint16)

    name = f"{case} {nz}x{ny}x{nx}" + (" (3,1,1)" if case == "anisotropic" else "")
    return name, u16(reference), u16(moving), true, spacing


def corner_rms(matrix, true, shape) -> float:
    """RMS distance in voxels between where two 4x4 voxel maps send the 8 corners."""
    nz, ny, nx = shape
    corners = np.array(
        [[x, y, z, 1.0] for z in (0, nz - 1) for y in (0, ny - 1) for x in (0, nx - 1)]
    ).T
    diff = (np.asarray(matrix, float) @ corners)[:3] - (np.asarray(true, float) @ corners)[:3]
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=0))))


# --------------------------------------------------------------------------- methods


def run_ours(reference, moving, spacing, motion):
    return np.asarray(
        align(reference, moving, ndim=3, spacing=spacing, motion=motion).matrix, float
    )


def sitk_image(volume, spacing):
    image = sitk.Cast(sitk.GetImageFromArray(volume), sitk.sitkFloat32)
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK: (x, y, z)
    return image


def sitk_transform_matrix(transform) -> np.ndarray:
    """The 4x4 physical map T(p) = A (p - c) + c + t of a linear SimpleITK transform."""
    transform = transform.Downcast()
    if isinstance(transform, sitk.CompositeTransform):
        if transform.GetNumberOfTransforms() != 1:
            raise ValueError("expected one transform in the composite")
        transform = transform.GetNthTransform(0).Downcast()
    matrix = np.eye(4)
    if isinstance(transform, sitk.TranslationTransform):
        matrix[:3, 3] = transform.GetOffset()
        return matrix
    a = np.array(transform.GetMatrix(), float).reshape(3, 3)
    c = np.array(transform.GetCenter(), float)
    t = np.array(transform.GetTranslation(), float)
    matrix[:3, :3] = a
    matrix[:3, 3] = c + t - a @ c
    return matrix


def run_sitk(reference, moving, spacing, motion, sampling=None):
    sampling = SITK_SAMPLING if sampling is None else sampling
    fixed, moved = sitk_image(reference, spacing), sitk_image(moving, spacing)
    if motion == "translation":
        initial = sitk.TranslationTransform(3)  # same geometry: GEOMETRY would give 0 too
    else:
        kind = sitk.AffineTransform(3) if motion == "affine" else sitk.Euler3DTransform()
        initial = sitk.CenteredTransformInitializer(
            fixed, moved, kind, sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
    method = registration_method(sitk, "correlation", sampling, SITK_SEED)
    method.SetInitialTransform(initial, inPlace=False)
    final = method.Execute(fixed, moved)  # fixed (reference) physical -> moving physical
    scale = np.diag([*spacing[::-1], 1.0])
    return np.linalg.inv(scale) @ sitk_transform_matrix(final) @ scale  # S^-1 T S


def shift_matrix(shift) -> np.ndarray:
    """Our 4x4 from a phase-correlation shift (z, y, x) that registers moving to reference.

    ``ndimage.shift(moving, shift)`` matches the reference: reference(p) = moving(p - shift),
    so a reference voxel p lands on moving voxel p - shift.
    """
    matrix = np.eye(4)
    matrix[:3, 3] = -np.asarray(shift, float)[::-1]
    return matrix


def run_skimage(reference, moving, spacing, motion):
    shift, _, _ = phase_cross_correlation(reference, moving, upsample_factor=10)
    return shift_matrix(shift)


def hann_windowed(volume) -> np.ndarray:
    """Zero-mean, unit-std float32 copy tapered to 0 at the faces (separable Hann window)."""
    out = volume.astype(np.float32)
    out -= out.mean()
    out /= out.std() or 1.0
    for axis, n in enumerate(out.shape):
        shape = [1] * out.ndim
        shape[axis] = n
        out *= np.hanning(n).astype(np.float32).reshape(shape)
    return out


def run_skimage_hann(reference, moving, spacing, motion):
    # The volume faces are a sharp edge at the same place in both volumes: after the
    # phase normalisation they outweigh the smooth texture and pull the peak to 0.
    shift, _, _ = phase_cross_correlation(
        hann_windowed(reference), hann_windowed(moving), upsample_factor=10
    )
    return shift_matrix(shift)


RUNNERS = {
    "ours": run_ours,
    "sitk": run_sitk,
    "skimage": run_skimage,
    "skimage-hann": run_skimage_hann,
}


def available_methods(wanted):
    no_skimage = phase_cross_correlation is None
    missing = {"sitk": sitk is None, "skimage": no_skimage, "skimage-hann": no_skimage}
    for name in wanted:
        if missing.get(name):
            print(f"note: {LABELS[name]} is not installed; left out (pip install -e .[bench])")
    return [name for name in wanted if not missing.get(name)]


def call(runner, reference, moving, spacing, motion):
    """``(seconds, matrix or None, error text)``."""
    start = time.perf_counter()
    try:
        matrix = runner(reference, moving, spacing, motion)
    except Exception as exc:  # noqa: BLE001 - a method that fails is reported, not fatal
        text = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        return time.perf_counter() - start, None, f"{type(exc).__name__}: {text}"[:70]
    return time.perf_counter() - start, matrix, ""


# --------------------------------------------------------------------------- timing


def measure(pairs, runners, repeats, sitk_repeats, verbose):
    methods = list(runners)
    print("| pair | " + " | ".join(_time_columns(methods)) + " |")
    print("|---|" + "---|" * len(_time_columns(methods)))
    for name, reference, moving, true, spacing in pairs:
        motion = MOTION[name.split()[0]]
        results = {}
        for method in methods:
            n = sitk_repeats if method == "sitk" else repeats
            best, matrix, error = math.inf, None, ""
            for _ in range(max(1, n)):
                seconds, matrix, error = call(runners[method], reference, moving, spacing, motion)
                best = min(best, seconds)
                if matrix is None:
                    break
            err = corner_rms(matrix, true, reference.shape) if matrix is not None else math.nan
            results[method] = (best, err, error)
            if verbose and matrix is not None:
                print(f"  {LABELS[method]} on {name}: {best:.2f} s, {err:.4f} vox\n{matrix}")
            elif verbose:
                print(f"  {LABELS[method]} on {name}: failed: {error}")
        print("| " + " | ".join([name, *_time_cells(name, reference.shape, results)]) + " |")
        sys.stdout.flush()


def _time_columns(methods):
    cols = []
    for method in methods:
        cols += [LABELS[method], "err vox"]
        if method == "sitk" and "ours" in methods:
            cols += ["ours/SimpleITK", "target"]
    return cols


def _time_cells(name, shape, results):
    cells = []
    for method, (seconds, err, error) in results.items():
        if np.isfinite(err):
            cells += [f"{seconds:.2f} s", f"{err:.3f}"]
        else:
            cells += ["-", f"failed ({error})"]
        if method == "sitk" and "ours" in results:
            cells += list(_ratio_cells(name, shape, results["ours"], results["sitk"]))
    return cells


def _ratio_cells(name, shape, ours, theirs):
    if not (np.isfinite(ours[1]) and np.isfinite(theirs[1])):
        return "-", "-"
    ratio = ours[0] / theirs[0]
    if (tuple(shape), name.split()[0]) == TARGET_PAIR:
        met = ratio <= TARGET_RATIO and ours[1] <= TARGET_ERR
        goal = f"<= {TARGET_RATIO}x at <= {TARGET_ERR} vox"
    else:
        met, goal = ratio <= 1.0, "<= 1x"
    return f"{ratio:.3f}", f"{goal}: {'met' if met else 'MISSED'}"


# --------------------------------------------------------------------------- memory


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_child(runner, reference, moving, spacing, motion, queue):
    """In a fresh (spawned) process: the method's own peak RSS above its inputs.

    One call on a small pair first loads what a method sets up once per process (lazy
    imports, thread pools, library buffers): the peak is what one call adds on top.
    """
    _, small_ref, small_mov, _, small_spacing = make_pair((24, 48, 48), "rigid", seed=1)
    call(runner, small_ref, small_mov, small_spacing, motion)
    del small_ref, small_mov
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS: the inputs and the interpreter
    before = _status_mb("VmRSS")
    _, matrix, error = call(runner, reference, moving, spacing, motion)
    queue.put((_status_mb("VmHWM") - before, before, error if matrix is None else ""))


def measure_memory(pairs, runners):
    methods = list(runners)
    context = multiprocessing.get_context("spawn")
    cols = ["inputs MB"]
    for method in methods:
        cols += [f"{LABELS[method]} MB", "x inputs"] + (["target"] if method == "ours" else [])
    print("\nPeak memory of each method above its inputs (fresh process per run):\n")
    print("| pair | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, reference, moving, _, spacing in pairs:
        inputs = (reference.nbytes + moving.nbytes) / 2**20
        cells = [name, f"{inputs:.0f}"]
        for method in methods:
            queue = context.Queue()
            motion = MOTION[name.split()[0]]
            args = (runners[method], reference, moving, spacing, motion, queue)
            child = context.Process(target=memory_child, args=args)
            child.start()
            own, _, error = queue.get()
            child.join()
            if error:
                cells += ["-", f"failed ({error})"] + (["-"] if method == "ours" else [])
                continue
            ratio = own / inputs
            cells += [f"{own:.0f}", f"{ratio:.2f}"]
            if method == "ours":
                verdict = "met" if ratio <= TARGET_MEMORY else "MISSED"
                cells.append(f"<= {TARGET_MEMORY:g}x: {verdict}")
        print("| " + " | ".join(cells) + " |", flush=True)


# --------------------------------------------------------------------------- main


def parse_size(text: str):
    parts = tuple(int(p) for p in text.lower().split("x"))
    if len(parts) != 3 or min(parts) < 8:
        raise argparse.ArgumentTypeError(f"expected ZxYxX with each >= 8, got {text!r}")
    return parts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="*",
        default=[(96, 192, 192), (128, 256, 256)],
        help="volume sizes ZxYxX (planes x rows x columns)",
    )
    parser.add_argument("--cases", nargs="*", choices=CASES, default=list(DEFAULT_CASES))
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument("--quick", action="store_true", help="only the 96x192x192 rigid pair")
    parser.add_argument("--repeats", type=int, default=3, help="best of N for align and skimage")
    parser.add_argument("--sitk-repeats", type=int, default=1, help="best of N for SimpleITK")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    parser.add_argument(
        "--noise", type=float, default=0.01, help="noise std on the moving volume (1 = range)"
    )
    parser.add_argument(
        "--sitk-sampling",
        type=float,
        default=SITK_SAMPLING,
        help="fraction of each level's voxels in SimpleITK's metric (random, fixed seed); "
        "1 = every voxel",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every matrix")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.cases = [(96, 192, 192)], ["rigid"]

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{cv2.getNumberOfCPUs()} cores, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, "
        + (f"SimpleITK {sitk.Version_VersionString()} " if sitk else "")
        + (f"({sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()} threads), " if sitk else "")
        + (f"scikit-image {skimage.__version__}, " if skimage else "")
        + f"Python {platform.python_version()}"
    )
    runners = {name: RUNNERS[name] for name in available_methods(args.methods)}
    if "sitk" in runners:
        runners["sitk"] = functools.partial(run_sitk, sampling=args.sitk_sampling)
    start = time.perf_counter()
    pairs = [
        make_pair(size, case, seed=args.seed, noise=args.noise)
        for size in args.sizes
        for case in args.cases
    ]
    print(
        f"{len(pairs)} pairs built in {time.perf_counter() - start:.1f} s (uint16, moving noise "
        f"std {args.noise:g} of the range); error = corner RMS in voxels"
    )
    if "sitk" in runners:
        share = "every voxel" if args.sitk_sampling >= 1 else f"{args.sitk_sampling:.0%} random"
        print(f"SimpleITK metric samples: {share} of each level")
    print()
    measure(pairs, runners, args.repeats, args.sitk_repeats, args.verbose)
    if not args.no_memory:
        measure_memory(pairs, runners)
    return 0


if __name__ == "__main__":
    sys.exit(main())
