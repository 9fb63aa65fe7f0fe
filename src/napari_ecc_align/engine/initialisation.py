"""Global initialisation: a rough pose for ECC to refine.

ECC only refines; from the identity it fails beyond a few pixels or a degree or
two. Here candidate poses come from three classic estimators, all run on small
(``cv2.pyrDown``) versions of the images:

* ``"phase"``: windowed phase correlation for translation. The cross-power
  spectrum's strongest peaks are tried with every wrap-around reading.
* ``"fourier-mellin"``: phase correlation of the log-polar resampled magnitude
  spectra gives rotation and scale (:func:`log_polar`); both readings of the
  spectrum's 180° symmetry are tried, each followed by phase correlation for
  the translation.
* ``"features"``: ORB keypoints, ratio-tested matches and a RANSAC fit
  (``estimateAffinePartial2D``/``estimateAffine2D``/``findHomography``) for
  large rotations, perspective and low overlap.

Every candidate, the identity included, is refined briefly by ECC on the small
images and ranked by the correlation it reaches; the best one seeds the full
pyramid. Matrices follow the project convention: reference (x, y, 1) → moving.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .alignment import AlignmentError
from .ecc import from_level, full_correlation, project_to_motion, run_levels, to_level

# Long side of the images the global estimators work on.
_SMALL_SIDE = 256
# Features want more detail than the spectral methods.
_FEATURE_SIDE = 512
_PHASE_PEAKS = 3
_ORB_FEATURES = 800
_RATIO = 0.8
METHODS = ("phase", "fourier-mellin", "features")
SEARCHES = ("auto", *METHODS)
# Candidates per estimator that get an ECC refinement (ranked by raw correlation first).
_REFINE_PER_METHOD = 2
# Iterations for refining a candidate on the small levels.
_REFINE_ITERATIONS = 10
# "auto" stops searching once a candidate refines to this correlation.
_GOOD_CORRELATION = 0.95
# Candidates refining to within this of the best correlation score the same: the one
# that moves the image least wins, if it moves the corners at least _FARTHER_PX less.
# Images to be aligned usually start close, and a far pose that correlates just as well
# is a repeat of the content (a staff spacing, a grating period), not the answer.
NEAR_EQUAL = 0.01
_FARTHER_PX = 1.0
# The identity is also refined from the small level itself when the coarse levels took
# it further than this (small-level pixels).
_DIRECT_REACH_PX = 2.0
# Fourier–Mellin reads rotation and scale from a square spectrum. Beyond this ratio of
# the long side to the short one a rotation of more than about 2 / ratio radians (14°
# at 8:1) leaves the strip no overlap with itself, and the padded square would hold
# ratio times more pixels than the image: the estimator is skipped.
MAX_SPECTRAL_ASPECT = 8
# A phase-correlation grid (the two images padded to a common shape) may hold this many
# times the pixels of both images together (more only when their shapes differ wildly,
# e.g. a tall and a wide strip, which no translation can overlap) ...
_PHASE_GRID_FACTOR = 4
# ... or this many pixels, whichever is more.
_PHASE_GRID_FLOOR = 512 * 512
# Window taper only along axes at least this long: a Hann window over 2 rows is zero.
_MIN_TAPER = 8


@dataclass
class Candidate:
    """A rough pose and how well ECC could refine it."""

    method: str
    matrix: np.ndarray  # 3×3, full-resolution pixel coordinates
    correlation: float = float("nan")
    error: str = ""

    refined: np.ndarray | None = None
    path: str = ""  # how the identity was refined (it is refined two ways)
    skipped: str = ""  # why the estimator was not run (then ``error`` says it too)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}" if self.path else self.method

    def finish(self, steps) -> None:
        """Run ``steps`` (a :func:`~.ecc.run_levels`-style generator) to its end and keep
        the pose and correlation it returns, or the first clause of its error."""
        try:
            while True:
                next(steps)
        except StopIteration as stop:
            self.refined, _, self.correlation = stop.value
        except AlignmentError as exc:
            self.error = str(exc).split(";")[0]

    def describe(self) -> str:
        how = f", {self.path}" if self.path else ""
        if self.skipped:
            return f"{self.method} (skipped: {self.skipped})"
        if self.error:
            return f"{self.method} (failed{how}: {self.error})"
        return f"{self.method} (correlation {self.correlation:.3f}{how})"


@dataclass
class Initialisation:
    """The pose the pyramid starts from, and on which level."""

    matrix: np.ndarray  # full resolution
    method: str
    level: int
    tried: list[Candidate] = field(default_factory=list)


def with_skipped(method: str, tried) -> str:
    """``init_method`` with the estimators of ``tried`` that were skipped and why, e.g.
    ``"identity (fourier-mellin skipped: aspect ratio 2000:1)"``."""
    notes = "; ".join(f"{c.method} skipped: {c.skipped}" for c in tried if c.skipped)
    if not notes:
        return method
    return f"{method[:-1]}; {notes})" if method.endswith(")") else f"{method} ({notes})"


def choose_initialisation(ref_pyr, mov_pyr, levels, search, motion, params) -> Initialisation:
    """Run the global estimators named by ``search`` on a small pyramid level, refine
    their candidates there and return the best.

    ``"auto"`` tries the identity, then phase correlation, Fourier–Mellin and
    features, cheapest first, and stops as soon as a candidate refines to a
    correlation of at least 0.95: nothing else could do visibly better, and most
    pairs (a few pixels apart) need no more than the first step.
    """
    small = _level_at_most(ref_pyr, mov_pyr, levels, _SMALL_SIDE)
    ref, mov = ref_pyr[small].image, mov_pyr[small].image
    refine = {**params, "max_iterations": min(params["max_iterations"], _REFINE_ITERATIONS)}
    auto = search == "auto"
    tried = []
    if auto:
        # The identity goes through the coarse levels too, as init="identity" would:
        # that deep pyramid alone captures shifts of ~10 % of the image. It also starts
        # on the small level itself: on repetitive content (a grating, staff lines) the
        # coarse levels can drift by a period that correlates as well as the true pose.
        deep = Candidate("identity", np.eye(3), path="via the coarse levels")
        direct = Candidate("identity", np.eye(3), path=f"from pyramid level {small}")
        _refine([deep], ref_pyr, mov_pyr, small, motion, refine, top=levels - 1)
        tried = [deep]
        # Only worth it when the coarse levels moved the image further than ECC on the
        # small level reaches by itself; closer in, both end in the same place.
        if levels - 1 > small and (
            deep.refined is None
            or corner_displacement(to_level(deep.refined, small), ref.shape) > _DIRECT_REACH_PX
        ):
            _refine([direct], ref_pyr, mov_pyr, small, motion, refine)
            tried.append(direct)
    for method in METHODS if auto else (search,):
        if auto and _good_enough(tried):
            break
        try:
            found = _estimate(method, ref_pyr, mov_pyr, levels, small, motion)
        except Skipped as exc:
            if not auto:
                raise AlignmentError(
                    f"init={method!r} cannot be used on these images: {exc}; use "
                    "init='phase' (translation), 'features', 'identity' or a matrix"
                ) from None
            tried.append(Candidate(method, np.eye(3), error=str(exc), skipped=exc.reason))
            continue
        except _NoEstimate as exc:
            tried.append(Candidate(method, np.eye(3), error=str(exc)))
            continue
        found = [project_to_motion(m, motion) for m in found]
        found.sort(key=lambda m: -_score(ref, mov, m))
        new = [Candidate(method, from_level(m, small)) for m in found[:_REFINE_PER_METHOD]]
        tried.extend(new)
        _mark_duplicates(tried, ref.shape, small)
        _refine(new, ref_pyr, mov_pyr, small, motion, refine)
    chosen, method = choose_candidate(tried, ref_pyr[0].image.shape, "images show the same scene")
    return Initialisation(chosen.refined, method, small, tried)


def choose_candidate(tried, shape, same: str):
    """:func:`prefer_nearest_identity` over the candidates that refined, or an
    ``AlignmentError`` listing every one tried (``same``: what to check, in words)."""
    usable = [c for c in tried if not c.error and np.isfinite(c.correlation)]
    if not usable:
        raise AlignmentError(
            "no initialisation worked: tried "
            + ", ".join(c.describe() for c in tried)
            + f"; check that both {same}, or give an init matrix"
        )
    return prefer_nearest_identity(usable, shape)


def prefer_nearest_identity(cands, shape):
    """The best-correlating candidate, or among those within ``NEAR_EQUAL`` of it the one
    whose refined pose moves the reference's corners least; with what to report in
    ``init_method``. ``shape`` is the full-resolution reference's ``(rows, cols)``."""
    best = max(cands, key=lambda c: c.correlation)
    near = [c for c in cands if c.correlation >= best.correlation - NEAR_EQUAL]
    nearest = min(near, key=lambda c: corner_displacement(c.refined, shape))
    if corner_displacement(nearest.refined, shape) > (
        corner_displacement(best.refined, shape) - _FARTHER_PX
    ):
        return best, best.method
    return nearest, nearest_note(nearest.method, best.label, best.correlation - nearest.correlation)


def nearest_note(method: str, other: str, gap: float) -> str:
    """``init_method`` for a start kept over a farther one that correlated ``gap`` higher."""
    return f"{method} (nearest the identity; {other} correlated {gap:.3f} higher)"


def corner_displacement(matrix, shape, other=None) -> float:
    """How far ``matrix`` moves the corners of a ``shape`` image from where ``other``
    (default: the identity) puts them, at most, in pixels (inf: to infinity)."""
    if matrix.shape == (4, 4):  # a volume: the 8 corners of its (z, y, x) shape
        nz, ny, nx = shape[:3]
        corners = np.array([[x, y, z, 1.0] for z in (0, nz - 1) for y in (0, ny - 1)
                            for x in (0, nx - 1)]).T  # fmt: skip
    else:
        rows, cols = shape[:2]
        corners = np.array([[0, cols - 1, 0, cols - 1], [0, 0, rows - 1, rows - 1],
                            [1, 1, 1, 1.0]])  # fmt: skip
    moved = matrix @ corners
    target = corners if other is None else other @ corners
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = moved[:-1] / moved[-1] - target[:-1] / target[-1]
        distance = np.sqrt(np.sum(diff * diff, axis=0))
    value = float(distance.max())
    return value if math.isfinite(value) else math.inf


def _estimate(method, ref_pyr, mov_pyr, levels, small, motion) -> list[np.ndarray]:
    """Candidate matrices on level ``small`` from one estimator."""
    if method == "phase":
        return phase_candidates(ref_pyr[small].image, mov_pyr[small].image)
    if method == "fourier-mellin":
        return fourier_mellin(ref_pyr[small].image, mov_pyr[small].image)
    level = _level_at_most(ref_pyr, mov_pyr, levels, _FEATURE_SIDE)
    matrix = features(ref_pyr[level].image, mov_pyr[level].image, motion)
    return [to_level(matrix, small - level)]


def _refine(cands, ref_pyr, mov_pyr, small, motion, params, top=None) -> None:
    """A short ECC run from each candidate, from level ``top`` (default: ``small``) down to
    ``small``; records the correlation reached."""
    top = small if top is None else top
    for cand in cands:
        if cand.error:
            continue
        staged = top > small
        cand.finish(run_levels(ref_pyr, mov_pyr, cand.matrix, motion, params, top, small, staged))


def _good_enough(cands) -> bool:
    return any(not c.error and c.correlation >= _GOOD_CORRELATION for c in cands)


def _mark_duplicates(cands, shape, level) -> None:
    """Candidates within a pixel of an earlier one (on the small level) need no
    refinement of their own: ECC would end in the same place. The identity is no
    twin: it was refined through the coarse levels, a different path that can end
    elsewhere (on repetitive pages, one staff spacing off)."""
    corners = np.array([[0, shape[1] - 1, 0, shape[1] - 1], [0, 0, shape[0] - 1, shape[0] - 1],
                        [1, 1, 1, 1]], float)  # fmt: skip
    kept = []
    for cand in cands:
        if cand.error or cand.method == "identity":
            continue
        small = to_level(cand.matrix, level) @ corners
        small = small[:2] / small[2]
        twin = next((k for k, pts in kept if np.abs(pts - small).max() < 1.0), None)
        if twin is None:
            kept.append((cand, small))
        else:
            cand.error = f"same pose as {twin.method}"


def _level_at_most(ref_pyr, mov_pyr, levels, side) -> int:
    """The finest pyramid level whose images are at most ``side`` pixels long."""
    for k in range(levels):
        if max(*ref_pyr[k].image.shape, *mov_pyr[k].image.shape) <= side:
            return k
    return levels - 1


def _score(ref, mov, matrix) -> float:
    value = full_correlation(ref, None, mov, None, matrix)
    return value if np.isfinite(value) else -1.0


class _NoEstimate(Exception):
    """An estimator found nothing usable (said in the final error message)."""


class Skipped(_NoEstimate):
    """An estimator that means nothing (or would cost too much) for these shapes."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason} ({detail})")
        self.reason = reason


def aspect_ratio(*shapes) -> float:
    """The largest long-to-short side ratio of the given (rows, cols, ...) shapes."""
    return max(max(shape) / max(min(shape), 1) for shape in shapes)


def check_phase_grid(ref_shape, mov_shape) -> tuple[int, ...]:
    """The common padded grid of a phase correlation of two shapes, or ``Skipped`` when
    it would hold far more pixels than both images (shapes too different to overlap)."""
    grid = tuple(max(a, b) for a, b in zip(ref_shape, mov_shape, strict=True))
    pixels = math.prod(grid)
    inputs = math.prod(ref_shape) + math.prod(mov_shape)
    if pixels > max(_PHASE_GRID_FACTOR * inputs, _PHASE_GRID_FLOOR):
        raise Skipped(
            "image shapes too different",
            f"{tuple(ref_shape)} and {tuple(mov_shape)} pad to a {pixels}-pixel grid",
        )
    return grid


def _window(rows: int, cols: int) -> np.ndarray:
    """A Hann window (float32) tapering only the axes of at least ``_MIN_TAPER`` pixels."""
    if min(rows, cols) >= _MIN_TAPER:
        return cv2.createHanningWindow((cols, rows), cv2.CV_32F)
    taper = [np.hanning(n) if n >= _MIN_TAPER else np.ones(n) for n in (rows, cols)]
    return np.outer(*taper).astype(np.float32)


def _spectrum(image: np.ndarray, shape) -> np.ndarray:
    """Windowed, mean-padded FFT on a common ``shape``."""
    rows, cols = shape
    padded = np.full((rows, cols), float(image.mean()), np.float32)
    padded[: image.shape[0], : image.shape[1]] = image
    padded -= padded.mean()
    return np.fft.rfft2(padded * _window(rows, cols))


def phase_surface(ref: np.ndarray, mov: np.ndarray) -> np.ndarray:
    """The phase-correlation surface of two images on a common padded grid (float32,
    lightly blurred so a peak split between two pixels counts as one)."""
    rows, cols = check_phase_grid(ref.shape, mov.shape)
    cross = _spectrum(mov, (rows, cols)) * np.conj(_spectrum(ref, (rows, cols)))
    cross /= np.abs(cross) + 1e-12
    surface = np.fft.irfft2(cross, s=(rows, cols))
    return cv2.GaussianBlur(surface.astype(np.float32), (3, 3), 0)


def shift_peaks(ref: np.ndarray, mov: np.ndarray, peaks: int = _PHASE_PEAKS):
    """Translations (dx, dy) with mov(x + d) ≈ ref(x), strongest first, every
    wrap-around reading of each of the ``peaks`` strongest correlation peaks."""
    surface = phase_surface(ref, mov)
    rows, cols = surface.shape
    shifts = []
    for _ in range(peaks):
        py, px = np.unravel_index(int(np.argmax(surface)), surface.shape)
        # sub-pixel: centroid of the 3x3 neighbourhood (wrapping)
        ys = [(py + k) % rows for k in (-1, 0, 1)]
        xs = [(px + k) % cols for k in (-1, 0, 1)]
        patch = np.clip(surface[np.ix_(ys, xs)], 0, None)
        total = patch.sum() or 1.0
        fy = py + float((patch.sum(axis=1) * [-1, 0, 1]).sum() / total)
        fx = px + float((patch.sum(axis=0) * [-1, 0, 1]).sum() / total)
        for dy in (fy, fy - rows):
            for dx in (fx, fx - cols):
                shifts.append((dx, dy))
        surface[
            np.ix_([(py + k) % rows for k in range(-3, 4)], [(px + k) % cols for k in range(-3, 4)])
        ] = -np.inf
    return shifts


def phase_candidates(ref, mov) -> list[np.ndarray]:
    return [_translation(dx, dy) for dx, dy in _plausible(shift_peaks(ref, mov), ref, mov)]


def _plausible(shifts, ref, mov):
    """Keep shifts that leave at least a tenth of the reference overlapping."""
    keep = []
    for dx, dy in shifts:
        w = min(ref.shape[1], mov.shape[1] - dx) - max(0, -dx)
        h = min(ref.shape[0], mov.shape[0] - dy) - max(0, -dy)
        if w > 0 and h > 0 and w * h >= 0.1 * ref.size:
            keep.append((dx, dy))
    return keep


def _translation(dx, dy) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


# ------------------------------------------------------------------------------- Fourier–Mellin
def _log_polar_magnitude(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    # The window is the image's own, so it tapers the image's edges whatever its size: one
    # window over the padded square left a small reference (a crop of the moving image)
    # with hard edges, whose spectrum then pulled the rotation towards 0° or 90°.
    rows, cols = image.shape
    padded = np.zeros((size, size), np.float32)
    padded[:rows, :cols] = (image - image.mean()) * _window(rows, cols)
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(padded))).astype(np.float32)
    magnitude = np.log1p(magnitude)
    # Emphasise mid frequencies: the DC peak and the noise floor carry no rotation.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    radius = np.hypot(xx, yy) / (size / 2)
    magnitude *= np.clip(radius, 0, 1) * (1 - np.clip(radius, 0, 1)) * 4
    max_radius = size / 2
    return log_polar(magnitude, max_radius), max_radius


def log_polar(image: np.ndarray, max_radius: float) -> np.ndarray:
    """Bilinear log-polar resampling of a square image about its centre.

    Row k is the angle 360° k / size, column j the radius ``max_radius ** (j / size)``;
    outside the image is 0. ``cv2.remap`` on our own sampling grid rather than
    ``cv2.warpPolar``, whose output differs between OpenCV 4 and 5 enough to move the
    correlation peak: with it, Fourier–Mellin found the rotation of 30 of 45 seeded
    pairs under OpenCV 4.8 and 45 under 5.0; with this grid, 45 of 45 under both.
    """
    map_x, map_y = _log_polar_grid(image.shape[0], float(max_radius))
    return cv2.remap(
        np.asarray(image, np.float32), map_x, map_y, cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip


@functools.lru_cache(maxsize=2)
def _log_polar_grid(size: int, max_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each log-polar sample lies in the image: the same for every image of one size."""
    radius = np.exp(np.arange(size) * (math.log(max_radius) / size))
    angle = np.arange(size) * (2 * math.pi / size)
    map_x = (size / 2 + np.outer(np.cos(angle), radius)).astype(np.float32)
    map_y = (size / 2 + np.outer(np.sin(angle), radius)).astype(np.float32)
    return map_x, map_y


def fourier_mellin(ref, mov) -> list[np.ndarray]:
    """Similarity candidates (rotation, scale, then translation) reference → moving.

    Rotation and scale are read on copies at most ``_SMALL_SIDE`` pixels long (the
    pyramid level normally is; a shallow pyramid, as a narrow strip has, is not), so
    the padded square never exceeds ``_SMALL_SIDE``² whatever the input. Images more
    elongated than ``MAX_SPECTRAL_ASPECT`` raise ``Skipped``.
    """
    aspect = aspect_ratio(ref.shape, mov.shape)
    if aspect > MAX_SPECTRAL_ASPECT:
        raise Skipped(
            f"aspect ratio {aspect:.0f}:1",
            f"over {MAX_SPECTRAL_ASPECT}:1, rotation and scale cannot be read from the spectrum",
        )
    factor = min(1.0, _SMALL_SIDE / max(*ref.shape, *mov.shape))
    spectral = [_resized(image, factor) for image in (ref, mov)]
    size = int(2 ** math.ceil(math.log2(max(*spectral[0].shape, *spectral[1].shape))))
    polar_ref, max_radius = _log_polar_magnitude(spectral[0], size)
    polar_mov, _ = _log_polar_magnitude(spectral[1], size)
    (d_rho, d_phi), response = cv2.phaseCorrelate(polar_ref, polar_mov)
    if not np.isfinite(response) or response <= 0:
        raise _NoEstimate("no log-polar correlation peak")
    angle = 360.0 * d_phi / size  # rows of the log-polar image span 360°
    scale = math.exp(-d_rho * math.log(max_radius) / size)  # the spectrum scales by 1/s
    if not 0.25 < scale < 4:
        raise _NoEstimate(f"implausible scale {scale:.2f}")
    out = []
    center = ((mov.shape[1] - 1) / 2, (mov.shape[0] - 1) / 2)
    for theta in (angle, angle + 180.0):
        # A moving image rotated by theta and scaled by s about its centre: undo it,
        # then phase correlation finds the remaining translation.
        linear = _rotation_scale(theta, scale)
        about = _about(linear, center)
        upright = cv2.warpPerspective(
            mov, about, (ref.shape[1], ref.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        for dx, dy in _plausible(shift_peaks(ref, upright, peaks=1), ref, upright)[:4]:
            out.append(about @ _translation(dx, dy))
    if not out:
        raise _NoEstimate("no overlapping translation after rotation")
    return out


def _resized(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled by ``factor`` <= 1 (area averaging); itself when 1."""
    if factor >= 1.0:
        return image
    rows, cols = (max(2, round(n * factor)) for n in image.shape)
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)


def _rotation_scale(angle_deg: float, scale: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [
            [scale * math.cos(a), -scale * math.sin(a), 0],
            [scale * math.sin(a), scale * math.cos(a), 0],
            [0, 0, 1.0],
        ]
    )


def _about(linear: np.ndarray, center) -> np.ndarray:
    cx, cy = center
    return _translation(cx, cy) @ linear @ _translation(-cx, -cy)


# ------------------------------------------------------------------------------------ features
def features(ref, mov, motion: str) -> np.ndarray:
    """ORB keypoints, ratio-tested matches and a RANSAC fit of ``motion``."""
    orb = cv2.ORB_create(nfeatures=_ORB_FEATURES, fastThreshold=5)
    kp_ref, des_ref = orb.detectAndCompute(_to_u8(ref), None)
    kp_mov, des_mov = orb.detectAndCompute(_to_u8(mov), None)
    if des_ref is None or des_mov is None or len(kp_ref) < 8 or len(kp_mov) < 8:
        raise _NoEstimate("too few keypoints")
    matches = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_ref, des_mov, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
    if len(good) < 8:
        raise _NoEstimate(f"{len(good)} distinctive matches")
    src = np.float32([kp_ref[m.queryIdx].pt for m in good])
    dst = np.float32([kp_mov[m.trainIdx].pt for m in good])
    if motion == "homography":
        matrix, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 3.0)
    else:
        fit = cv2.estimateAffine2D if motion == "affine" else cv2.estimateAffinePartial2D
        matrix, inliers = fit(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0)
        if matrix is not None:
            matrix = np.vstack([matrix, [0, 0, 1]])
    if matrix is None or inliers is None or int(inliers.sum()) < 6:
        raise _NoEstimate("no consistent set of matches")
    return np.asarray(matrix, np.float64)


def _to_u8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
