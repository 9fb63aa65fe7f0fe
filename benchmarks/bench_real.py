"""Real data: ``align`` next to SimpleITK and OpenCV's ECC on images nobody here made.

Reads ``../shared/realdata/`` (relative to the repository root; ``--data DIR``), whose
README gives each file's origin and terms; nothing is copied into the repository. The
pairs (built in ``_real_cases.py``):

* ``itk``: ITK's 2D MRI slices (8-bit PNG, read as grayscale), fixed
  ``BrainProtonDensitySliceBorder20`` against ``Shifted13x17y`` (translation),
  ``Rotated10`` and ``R10X13Y17`` (euclidean) and ``R10X13Y17S12`` (affine). The truths
  are what ITK's own examples report (Software Guide, ImageRegistration5/6/7), not the
  round numbers of the description ("10 degrees, (13, 17)"), which the images do not
  match exactly: the ``truth check`` table warps each moving image through both and
  prints the correlation with the fixed image (the description ends 0.5-1.1 px away).
  ITK's transforms map fixed to moving points, as ours do; signs were checked the same
  way (the opposite sign correlates at 0.4-0.9).
* ``multimodal``: PD ``Border20`` against T1 ``Border20`` (identity) and, as in ITK's
  ImageRegistration2, T1 ``Border20`` against PD ``Shifted13x17y`` (translation (13, 17):
  the moving content sits 13 px right and 17 px down).
* ``cycle``: PD ``Border20`` -> ``Rotated10`` -> ``R10X13Y17`` -> ``Border20``, each pair
  aligned (euclidean) and the three matrices composed: the corner RMS of the composition
  against the identity (0 for a consistent method).
* ``page``: the CC0 manuscript page (707 x 441): reference = its luminance, moving =
  each binarisation (hand-made ground truth and six algorithms) warped through a known
  affine (0.4 deg, scale 1.003, shear 0.001, shift (3.3, -2.1) px about the centre) as
  float32 with bilinear interpolation, then thresholded at 0.5 (still binary).
* ``page-gray``: the gray page against its own cubic-interpolated copy under that affine
  (precision on a clean pair; issue 21 asks for 0.003 px).
* ``rigid``, ``aniso``, ``affine``, ``remap``, ``mni``: the Colin27 volume (ch2, read with
  SimpleITK, averaged over 2x2x2 blocks by default: ``--volume-scale``) against itself
  through a known pose (rotations 4, -3, 5 deg about x, y, z through the centre, shift
  (3.5, -2.5, 4) mm; cubic spline), gain 0.8, bias and noise (1 % of the range):
  ``aniso`` keeps every third plane of both volumes (spacing 3x in z), ``affine`` adds
  +-3 % scale/shear, ``remap`` maps the moving intensities through sin(pi v / vmax)
  (non-monotonic: a multimodal pair); ``mni`` aligns ch2 to the MNI152 template
  (reoriented to ch2's axes; inter-subject affine, no truth: the error column is then
  the corner distance to SimpleITK MI's answer).
* ``volume-cycle``: ch2 on the 3x z grid and two noisy rigid copies of it (the pose
  above and rotations -3, 2, -4 deg, shift (-2, 3, 1.5) mm), aligned in a cycle.

Methods: ``align`` (defaults, the pair's motion; ``ndim=3`` and ``spacing`` for volumes);
SimpleITK ``ImageRegistrationMethod`` with Mattes mutual information (32 bins) and with
the correlation metric: shrink 4-2-1, smoothing 2-1-0 voxels, regular-step gradient
descent (step 1 -> 1e-4, relaxation 0.5, 200 iterations) with scales from the physical
shift, linear interpolation, ``CenteredTransformInitializer`` (GEOMETRY) of an
Euler2D/3D (euclidean), Similarity or Affine transform (translation: a
TranslationTransform), the metric on a fixed random share of each level's pixels
(``--sitk-sampling``: every pixel in 2D, a random 10 % in 3D by default, seed 1;
with 50 bins or a random 25-50 % in 2D, MI ends 8-20 px off on the ITK pairs); OpenCV's recipe
(``cv2.findTransformECC`` at full resolution, 100 iterations, eps 1e-7, gaussFiltSize 5,
from the identity) and ``cv2.findTransformECCMultiScale`` (OpenCV >= 5, uint8 input)
for 2D pairs. SimpleITK's transform maps fixed physical points to moving ones; with
origin 0 and identity direction, our voxel matrix is S^-1 T S, S = diag(spacing x, y, z).

Columns: time (best of ``--repeats`` for ``align`` and OpenCV, SimpleITK once); error =
corner RMS against the truth in pixels/voxels; corr = Pearson correlation of the
reference with the moving image resampled through the method's matrix by our ``warp``
(bilinear/trilinear), over the pixels inside both, the same for every method. A method
that raises is reported as failed.

Usage::

    python benchmarks/bench_real.py                 # everything, ~1.5 min on 2 cores
    python benchmarks/bench_real.py --quick         # a ~25 s subset
    python benchmarks/bench_real.py --cases itk multimodal --methods ours sitk-mi
    python benchmarks/bench_real.py --volume-scale 1   # full-res volumes: ~7 min
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import _real_cases as rc
import cv2
import numpy as np
from _sitk import registration_method

from napari_ecc_align import align, warp

try:
    import SimpleITK as sitk
except ImportError:  # the bench extra is not installed
    sitk = None

GROUPS_2D = ("itk", "multimodal", "cycle", "page", "page-gray")
VOLUME_CASES = ("rigid", "aniso", "affine", "remap", "mni")
CASES = GROUPS_2D + VOLUME_CASES + ("volume-cycle",)
QUICK = ("itk", "multimodal", "cycle", "page-gray", "rigid", "remap")
METHODS = ("ours", "sitk-mi", "sitk-cc", "opencv", "opencv-ms")
LABELS = {
    "ours": "align",
    "sitk-mi": "SimpleITK MI",
    "sitk-cc": "SimpleITK corr",
    "opencv": "findTransformECC",
    "opencv-ms": "ECC multiscale",
}
CV_MOTION = {
    "translation": cv2.MOTION_TRANSLATION,
    "euclidean": cv2.MOTION_EUCLIDEAN,
    "affine": cv2.MOTION_AFFINE,
}
SITK_SEED = 1
MULTIMODAL = set()  # names of the pairs whose correlation after is not the criterion
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata"


# --------------------------------------------------------------------------- metrics


def corner_rms(matrix, true, shape) -> float:
    """RMS distance (pixels/voxels) between where two matrices send the grid's corners."""
    axes = [(0, n - 1) for n in shape[::-1]]  # x first
    corners = np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(shape), -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    diff = (np.asarray(matrix, float) @ corners) - (np.asarray(true, float) @ corners)
    return float(np.sqrt(np.mean(np.sum(diff[:-1] ** 2, axis=0))))


def correlation_after(reference, moving, matrix) -> float:
    """Pearson correlation of the reference and the moving image resampled onto its grid
    through ``matrix`` (our ``warp``, linear), over the pixels that fall inside both."""
    resampled = warp(
        np.asarray(moving, np.float32), matrix, output_shape=reference.shape, fill_value=np.nan
    )
    inside = np.isfinite(resampled)
    a = np.asarray(reference, np.float64)[inside]
    b = resampled[inside].astype(np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------- methods


def run_ours(pair):
    if pair.spacing is None:
        return np.asarray(align(pair.reference, pair.moving, motion=pair.motion).matrix, float)
    result = align(pair.reference, pair.moving, motion=pair.motion, ndim=3, spacing=pair.spacing)
    return np.asarray(result.matrix, float)


def sitk_image(array, spacing):
    image = sitk.GetImageFromArray(np.asarray(array, np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))  # SimpleITK: (x, y[, z])
    return image  # origin 0, identity direction: physical = index * spacing


def sitk_matrix(transform, dim) -> np.ndarray:
    """The (dim+1)^2 physical map T(p) = A (p - c) + c + t of a linear SimpleITK transform."""
    transform = transform.Downcast()
    if isinstance(transform, sitk.CompositeTransform):
        if transform.GetNumberOfTransforms() != 1:
            raise ValueError("expected one transform in the composite")
        transform = transform.GetNthTransform(0).Downcast()
    matrix = np.eye(dim + 1)
    if isinstance(transform, sitk.TranslationTransform):
        matrix[:dim, dim] = transform.GetOffset()
        return matrix
    a = np.array(transform.GetMatrix(), float).reshape(dim, dim)
    c = np.array(transform.GetCenter(), float)
    matrix[:dim, :dim] = a
    matrix[:dim, dim] = c + np.array(transform.GetTranslation(), float) - a @ c
    return matrix


def sitk_kind(motion, dim):
    if motion == "translation":
        return sitk.TranslationTransform(dim)
    if motion == "euclidean":
        return sitk.Euler2DTransform() if dim == 2 else sitk.Euler3DTransform()
    if motion == "similarity":
        return sitk.Similarity2DTransform() if dim == 2 else sitk.Similarity3DTransform()
    return sitk.AffineTransform(dim)


def run_sitk(pair, metric, sampling):
    dim = pair.reference.ndim
    spacing = pair.spacing or (1.0,) * dim
    fixed, moved = sitk_image(pair.reference, spacing), sitk_image(pair.moving, spacing)
    initial = sitk_kind(pair.motion, dim)
    if pair.motion != "translation":
        initial = sitk.CenteredTransformInitializer(
            fixed, moved, initial, sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
    kind = "mi" if metric == "mi" else "correlation"
    method = registration_method(sitk, kind, sampling, SITK_SEED)
    method.SetInitialTransform(initial, inPlace=False)
    final = method.Execute(fixed, moved)  # fixed physical -> moving physical
    scale = np.diag([*map(float, spacing[::-1]), 1.0])
    return np.linalg.inv(scale) @ sitk_matrix(final, dim) @ scale  # S^-1 T S


def run_opencv(pair):
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-7)
    _, found = cv2.findTransformECC(
        pair.reference.astype(np.float32),
        pair.moving.astype(np.float32),
        np.eye(2, 3, dtype=np.float32),
        CV_MOTION[pair.motion],
        criteria,
        None,
        5,
    )
    return np.vstack([found, [0, 0, 1]]).astype(float)  # template (reference) -> input


def to_u8(image):
    image = image.astype(np.float32)
    lo, hi = float(image.min()), float(image.max())
    return np.round((image - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)


def run_opencv_ms(pair):
    params = cv2.ECCParameters()
    params.motionType = CV_MOTION[pair.motion]
    _, found = cv2.findTransformECCMultiScale(
        to_u8(pair.reference), to_u8(pair.moving), np.eye(2, 3, dtype=np.float32), params
    )
    return np.vstack([found, [0, 0, 1]]).astype(float)


def runners(wanted, sampling_2d, sampling_3d):
    available = {
        "ours": True,
        "sitk-mi": sitk is not None,
        "sitk-cc": sitk is not None,
        "opencv": True,
        "opencv-ms": hasattr(cv2, "findTransformECCMultiScale"),
    }
    for name in wanted:
        if not available[name]:
            print(f"note: {LABELS[name]} is not available here; left out")

    def sitk_runner(metric):
        def run(pair):
            sampling = sampling_2d if pair.reference.ndim == 2 else sampling_3d
            return run_sitk(pair, metric, sampling)

        return run

    table = {
        "ours": run_ours,
        "sitk-mi": sitk_runner("mi"),
        "sitk-cc": sitk_runner("cc"),
        "opencv": run_opencv,
        "opencv-ms": run_opencv_ms,
    }
    return {name: table[name] for name in wanted if available[name]}


def call(runner, pair, repeats):
    """``(best seconds, matrix or None, error text)``; a failure ends the repeats."""
    best, matrix = math.inf, None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        try:
            matrix = runner(pair)
        except Exception as exc:  # noqa: BLE001 - a method that fails is reported, not fatal
            lines = str(exc).strip().splitlines()
            return (
                time.perf_counter() - start,
                None,
                f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:60],
            )
        best = min(best, time.perf_counter() - start)
    return best, matrix, ""


def applies(method, pair):
    return not (method.startswith("opencv") and pair.reference.ndim != 2)


# --------------------------------------------------------------------------- tables


def run_group(title, pairs, methods, repeats, results, reference_method="sitk-mi"):
    """One table: a row per pair and method. Fills ``results[(title, pair, method)]``."""
    unit = "vox" if pairs and pairs[0].spacing is not None else "px"
    no_truth = any(p.true is None for p in pairs)
    err_head = f"error {unit}" + (
        f" (vs {LABELS[reference_method]} if no truth)" if no_truth else ""
    )
    print(f"\n### {title}\n")
    print(f"| pair | method | time s | {err_head} | corr after |")
    print("|---|---|---|---|---|")
    for pair in pairs:
        found = {}
        for method, runner in methods.items():
            if not applies(method, pair):
                continue
            n = 1 if method.startswith("sitk") else repeats
            seconds, matrix, error = call(runner, pair, n)
            found[method] = (seconds, matrix, error)
        anchor = found.get(reference_method, (0, None, ""))[1] if pair.true is None else pair.true
        for method, (seconds, matrix, error) in found.items():
            if matrix is None:
                cells = [f"{seconds:.2f}", f"failed ({error})", "-"]
                err = corr = math.nan
            else:
                err = (
                    corner_rms(matrix, anchor, pair.reference.shape)
                    if anchor is not None
                    else math.nan
                )
                corr = correlation_after(pair.reference, pair.moving, matrix)
                cells = [f"{seconds:.3f}", f"{err:.4f}" if np.isfinite(err) else "-", f"{corr:.5f}"]
            # the summary's errors are truth errors only: agreement stays in this table
            truth_err = err if pair.true is not None else math.nan
            results[(title, pair.name, method)] = (seconds, truth_err, corr)
            if pair.multimodal:
                MULTIMODAL.add(pair.name)
            print(f"| {pair.name} | {LABELS[method]} | " + " | ".join(cells) + " |", flush=True)


def run_cycle(title, images, methods, results, spacing=None):
    """Cycle A -> B -> C -> A (euclidean): corner RMS of the composition vs the identity.

    ``images``: ``(name, array, truth)``, each truth mapping the first image's grid to
    that image's, so the truth from a to b is T_b T_a^-1."""
    names = " -> ".join(n for n, _, _ in images) + f" -> {images[0][0]}"
    unit = "px" if spacing is None else "vox"
    print(f"\n### cycle consistency, {title}: {names} (euclidean)\n")
    print(f"| method | time s (3 pairs) | cycle error {unit} | pair errors vs truth {unit} |")
    print("|---|---|---|---|")
    identity = np.eye(images[0][1].ndim + 1)
    for method, runner in methods.items():
        if spacing is not None and method.startswith("opencv"):
            continue
        total, composed, errors, failed = 0.0, identity, [], ""
        for i in range(3):
            (na, a, ta), (nb, b, tb) = images[i], images[(i + 1) % 3]
            true = tb @ np.linalg.inv(ta)  # a pixel -> b pixel
            pair = rc.Pair(f"{na} -> {nb}", a, b, true, "euclidean", spacing)
            seconds, matrix, error = call(runner, pair, 1)
            total += seconds
            if matrix is None:
                failed = error
                break
            composed = matrix @ composed
            errors.append(corner_rms(matrix, true, a.shape))
        if failed:
            print(f"| {LABELS[method]} | {total:.2f} | failed ({failed}) | - |")
            continue
        cycle = corner_rms(composed, identity, images[0][1].shape)
        results[(f"cycle, {title}", names, method)] = (total, cycle, math.nan)
        pair_errors = " / ".join(f"{e:.3f}" for e in errors)
        print(f"| {LABELS[method]} | {total:.2f} | {cycle:.4f} | {pair_errors} |", flush=True)


def itk_truth_check(root):
    """Correlation of the fixed slice with each moving slice warped through the
    described truth and through the one used (ITK's reported result)."""
    print("\n### truth check (ITK slices): correlation after warping through each truth\n")
    print("| moving | described | corr | reported (used) | corr | corner distance px |")
    print("|---|---|---|---|---|---|")
    described = {p.name: p for p in rc.itk_pairs(root, rc.ITK_DESCRIBED)}
    for pair in rc.itk_pairs(root):
        d = described[pair.name]
        a, s, _, t = rc.ITK_DESCRIBED[pair.name.split()[-1]]
        a2, s2, _, t2 = rc.ITK_REPORTED[pair.name.split()[-1]]
        print(
            f"| {pair.name.split()[-1]} | {a:g} deg x{s:.4g} ({t[0]:g}, {t[1]:g}) "
            f"| {correlation_after(d.reference, d.moving, d.true):.4f} "
            f"| {a2:.3f} deg x{s2:.4g} ({t2[0]:.3f}, {t2[1]:.3f}) "
            f"| {correlation_after(pair.reference, pair.moving, pair.true):.4f} "
            f"| {corner_rms(d.true, pair.true, pair.reference.shape):.3f} |"
        )


def summary(results, methods):
    """Per group and method: median and worst error, mean correlation, total time."""
    print("\n### summary\n")
    print("| cases | method | pairs | median error | worst error | mean corr | total time s |")
    print("|---|---|---|---|---|---|---|")
    groups = list(dict.fromkeys(key[0] for key in results))
    for group in groups:
        for method in methods:
            rows = [v for k, v in results.items() if k[0] == group and k[2] == method]
            if not rows:
                continue
            errs = np.array([r[1] for r in rows], float)
            corrs = np.array([r[2] for r in rows], float)
            finite = errs[np.isfinite(errs)]
            med = f"{np.median(finite):.4f}" if finite.size else "-"
            worst = f"{finite.max():.4f}" if finite.size else "-"
            mean_corr = f"{np.nanmean(corrs):.4f}" if np.isfinite(corrs).any() else "-"
            total = sum(r[0] for r in rows)
            cells = [group, LABELS[method], str(len(rows)), med, worst, mean_corr, f"{total:.2f}"]
            print("| " + " | ".join(cells) + " |")
    pairs = {  # cycles have no correlation; multimodal pairs are not judged by it
        (k[0], k[1])
        for k, v in results.items()
        if k[2] == "ours" and k[1] not in MULTIMODAL and np.isfinite(v[2])
    }
    higher = [
        p
        for p in pairs
        if np.isfinite(results[(*p, "ours")][2])
        and any(
            results.get((*p, m), (0, 0, -1))[2] > results[(*p, "ours")][2] + 1e-4
            for m in ("sitk-mi", "sitk-cc")
        )
    ]
    if pairs and any(m.startswith("sitk") for m in methods):
        print(
            f"\nSimpleITK (either metric) ends with a higher correlation than align on "
            f"{len(higher)} of {len(pairs)} same-modality pairs (by more than 1e-4; on "
            "multimodal pairs correlation is not the criterion: see the error column)."
        )


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the realdata folder")
    parser.add_argument("--cases", nargs="*", choices=CASES, default=list(CASES))
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--quick", action="store_true", help="a ~2 minute subset: " + " ".join(QUICK)
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of N for align and OpenCV")
    parser.add_argument("--volume-scale", type=int, default=2, help="average NxNxN voxel blocks")
    parser.add_argument(
        "--sitk-sampling",
        type=float,
        nargs=2,
        default=(1.0, 0.10),
        metavar=("2D", "3D"),
        help="share of each level's pixels in SimpleITK's metric",
    )
    parser.add_argument("--seed", type=int, default=0, help="the volumes' noise")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    if not (data / "README.md").is_file():
        print(f"no real data at {data} (see its README in the shared folder); nothing to do")
        return 0
    cases = [c for c in CASES if c in (QUICK if args.quick else args.cases)]

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"{cv2.getNumberOfCPUs()} cores, OpenCV {cv2.__version__}, numpy {np.__version__}, "
        + (f"SimpleITK {sitk.Version_VersionString()} " if sitk else "")
        + (f"({sitk.ProcessObject_GetGlobalDefaultNumberOfThreads()} threads), " if sitk else "")
        + f"Python {platform.python_version()}"
    )
    print(
        f"data: {data}; SimpleITK metric samples: {args.sitk_sampling[0]:.0%} (2D) / "
        f"{args.sitk_sampling[1]:.0%} (3D) random of each level, seed {SITK_SEED}; "
        f"volumes averaged over {args.volume_scale}^3 blocks"
    )
    methods = runners(args.methods, *args.sitk_sampling)
    results = {}
    start = time.perf_counter()
    if "itk" in cases:
        itk_truth_check(data)
        run_group(
            "ITK slices (PD Border20 vs ...)", rc.itk_pairs(data), methods, args.repeats, results
        )
    if "multimodal" in cases:
        run_group(
            "ITK multimodal (T1 / PD)",
            rc.itk_multimodal_pairs(data),
            methods,
            args.repeats,
            results,
        )
    if "cycle" in cases:
        run_cycle("ITK slices", rc.itk_cycle(data), methods, results)
    if "page" in cases:
        run_group("page: gray vs binarised", rc.page_pairs(data), methods, args.repeats, results)
    if "page-gray" in cases:
        run_group("page: gray vs gray", [rc.page_gray_pair(data)], methods, args.repeats, results)
    volume_cases = [c for c in VOLUME_CASES if c in cases]
    if volume_cases:
        if sitk is None:
            print("\nnote: the volumes need SimpleITK to be read; skipped")
        else:
            pairs = rc.volume_pairs(data, volume_cases, args.volume_scale, args.seed)
            run_group("brain volumes (Colin27, MNI152)", pairs, methods, args.repeats, results)
    if "volume-cycle" in cases and sitk is not None:
        images, spacing = rc.volume_cycle(data, args.volume_scale, args.seed)
        run_cycle("ch2, 3x z spacing", images, methods, results, spacing)
    summary(results, methods)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
