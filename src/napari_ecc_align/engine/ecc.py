"""One pyramid level of inverse-compositional ECC, the coarse-to-fine loop, and the
full-resolution correlation.

On each level the Jacobian of the *reference* is computed once (Evangelidis &
Psarakis, TPAMI 2008, section 3.2; see :mod:`.reference_side`), so each iteration only
resamples the moving image at the sample points and solves a p×p system. Every
accepted step raises the correlation (a step that does not is halved).

Matrices follow ``cv2.findTransformECC``: reference (x, y, 1) → moving.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from collections.abc import Generator
from dataclasses import dataclass, field

import cv2
import numpy as np

from .alignment import AlignmentError
from .geometry import from_level, grid_corners, to_level
from .levels import STEP_TOLERANCE, coarse_to_fine
from .reference_side import N_PARAMS, centre_and_half_size, erode, level_margin, reference_side
from .warping import warp_plane

# Levels with at most this many samples (128x128 px) run one thread at a time (see
# _ecc_level): they barely gain from a second thread and lose a lot to GIL ping-pong.
_SERIAL_SAMPLES = 20_000
_SMALL_LEVEL_LOCK = threading.Lock()
# Halvings of an ECC step that lowers the correlation before the level gives up.
_MAX_HALVINGS = 6


def run_levels(
    ref_pyr, mov_pyr, matrix, motion, params, top: int, bottom: int = 0, staged: bool = True
) -> Generator[tuple[int, int, float], None, tuple[np.ndarray, list[int], float]]:
    """ECC from level ``top`` down to ``bottom``, starting at full-resolution ``matrix``.

    Yields ``(level, iterations, correlation)`` after each level and returns the
    full-resolution matrix, the iterations per level and the last correlation.
    With ``staged``, the top level fits translation, then euclidean, then the
    full model (see :func:`~.levels.coarse_to_fine`, the loop shared with volumes).
    """
    # Each level starts its sampling from the points the coarser level chose.
    seeds = {"previous": None, "chosen": None}

    def fit(level, matrix, stage, budget, tolerance):
        matrix, used, correlation, seeds["chosen"] = _ecc_level(
            ref_pyr[level], mov_pyr[level], matrix, stage,
            {**params, "max_iterations": budget}, level, seeds["previous"], tolerance,
        )  # fmt: skip
        return matrix, used, correlation

    def level_done(level):
        seeds["previous"], seeds["chosen"] = seeds["chosen"], None

    def descend(matrix, level):
        return from_level(matrix, 1)  # one level finer: S·W·S⁻¹, S = diag(2, 2, 1)

    steps = coarse_to_fine(
        fit, descend, to_level(matrix, top), motion, params["max_iterations"], top, bottom,
        staged, level_done,
    )  # fmt: skip
    matrix, iterations, correlation = yield from steps
    return from_level(matrix, bottom), iterations, correlation


# ------------------------------------------------------------------------------------- pyramid
@dataclass
class Level:
    image: np.ndarray  # float32, unblurred
    valid: np.ndarray | None  # bool, None = all valid
    # The reference side of ECC on this level (samples, Jacobians), filled on first
    # use: a pyramid kept for many moving images (a stack) computes it once.
    memo: dict = field(default_factory=dict, repr=False, compare=False)


def pyramid(image: np.ndarray, valid: np.ndarray | None, levels: int) -> list[Level]:
    """Gaussian pyramid. ``cv2.pyrDown`` centres its kernel on even pixels, so a
    level-k pixel x sits exactly at 2x on level k-1: no half-pixel offset."""
    out = [Level(image, valid)]
    for _ in range(levels - 1):
        prev = out[-1]
        small = cv2.pyrDown(prev.image)
        small_valid = None
        if prev.valid is not None:
            # Invalid pixels hold the mean value (see normalise), so a coarse pixel
            # whose footprint is mostly valid is still a fair sample of the image.
            small_valid = cv2.pyrDown(prev.valid.astype(np.float32)) > 0.75
        out.append(Level(small, small_valid))
    return out


# ------------------------------------------------------------------------------- one ECC level
def _ecc_level(
    ref: Level, mov: Level, matrix, motion, params, level, seeds=None,
    tolerance=STEP_TOLERANCE,
):  # fmt: skip
    """Run ECC on one pyramid level from ``matrix``.

    ``seeds`` are the (x, y) sample points chosen by gradient on the next coarser
    level; when given and this level is large, the samples here are their
    positions doubled, which spares a full-resolution gradient and selection pass.

    Returns the refined matrix, the iterations run, the final correlation on the
    samples, and this level's sample points (to seed the next finer level, or
    None when every pixel was used).
    """
    ksize = params["gauss_filter_size"]
    problem, selected = reference_side(ref, ksize, motion, level, seeds)
    mov_img = mov.image
    if ksize > 1:
        mov_img = cv2.GaussianBlur(mov_img, (ksize, ksize), 0)
    margin = level_margin(ksize)
    mov_ok = erode(mov.valid, margin)
    rows, cols = ref.image.shape
    n_samples = problem.template.size
    # The Jacobian is in normalised coordinates (see reference_side); updates map back by N⁻¹·ΔW·N.
    norm, norm_inv = _normaliser(rows, cols)

    corner_pts = grid_corners((rows, cols))
    min_overlap = max(4 * N_PARAMS[motion], n_samples // 20)

    def evaluate(candidate):
        """Correlation at ``candidate`` and the ECC update from there (None: no overlap)."""
        warped, inside, usable = problem.sample_moving(mov_img, mov_ok, candidate, margin)
        if usable < min_overlap:
            return None
        return problem.update(warped, inside, usable)

    # Small levels are almost all Python (GIL-bound) work: two threads running them at
    # once hand the GIL back and forth around every OpenCV call and both slow down
    # (2x in a test). Serialised, they interleave with the other threads' big levels.
    with _SMALL_LEVEL_LOCK if n_samples <= _SERIAL_SAMPLES else contextlib.nullcontext():
        state = evaluate(matrix)
        if state is None:
            raise AlignmentError(
                f"the images barely overlap at the initial pose (pyramid level {level}); "
                "give an init matrix close to the answer, or check which image is which"
            )

        def make_step(delta):
            step = norm_inv @ _delta_matrix(motion, delta) @ norm
            invertible, step_inv = cv2.invert(step)
            return step_inv, (_max_corner_shift(step, corner_pts) if invertible else math.inf)

        matrix, n_iter, corr = climb(evaluate, state, matrix, make_step, params, tolerance)
    return matrix, n_iter, corr, selected


def climb(evaluate, state, matrix, make_step, params, tolerance):
    """ECC's iterations on one level, for any dimensionality.

    ``state`` is ``(correlation, Δp)`` at ``matrix``; ``evaluate(matrix)`` returns the
    same at another matrix (None: no overlap left); ``make_step(Δp)`` returns the
    inverse of the update's warp (in pixel coordinates) and how far it moves the
    corners at most. Returns ``(matrix, iterations, correlation)``.
    """
    corr, delta = state
    n_iter = 0
    while n_iter < params["max_iterations"]:
        n_iter += 1
        # Backtracking: halve a step that lowers the correlation, so every accepted
        # step climbs. Plain ECC overshoots on coarse levels and walks off the image.
        for _ in range(_MAX_HALVINGS):
            step_inv, moved = make_step(delta)
            if moved < tolerance:
                break  # what is left of the step is below the tolerance
            new_state = None
            if math.isfinite(moved):
                candidate = matrix @ step_inv
                candidate /= candidate[-1, -1]
                new_state = evaluate(candidate)
            if new_state is not None and new_state[0] >= corr - 1e-12:
                break
            delta = 0.5 * delta
        else:
            break  # no step along this direction helps: converged as far as ECC can
        if moved < tolerance:
            break  # converged: a step this small is not worth an evaluation
        gain = new_state[0] - corr
        matrix, (corr, delta) = candidate, new_state
        if gain < params["eps"]:
            break
    return matrix, n_iter, corr


@functools.lru_cache(maxsize=64)
def _normaliser(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel → normalised coordinates (see ``centre_and_half_size``) as a matrix N, and
    N⁻¹ (read-only: shared between calls)."""
    cx, cy, half = centre_and_half_size(rows, cols)
    norm = np.array([[1 / half, 0, -cx / half], [0, 1 / half, -cy / half], [0, 0, 1]])
    norm_inv = np.array([[half, 0, cx], [0, half, cy], [0, 0, 1.0]])
    norm.flags.writeable = norm_inv.flags.writeable = False
    return norm, norm_inv


def usable_pixels(level: Level, margin: int) -> int:
    """Pixels of a level that ECC may sample: valid and away from the border."""
    rows, cols = level.image.shape
    if level.valid is None:
        return max(0, rows - 2 * margin) * max(0, cols - 2 * margin)
    return int(np.count_nonzero(erode(level.valid, margin)[margin:-margin, margin:-margin]))


def _delta_matrix(motion, p) -> np.ndarray:
    if motion == "translation":
        return np.array([[1, 0, p[0]], [0, 1, p[1]], [0, 0, 1]], float)
    if motion == "euclidean":
        c, s = math.cos(p[0]), math.sin(p[0])
        return np.array([[c, -s, p[1]], [s, c, p[2]], [0, 0, 1]], float)
    bottom = [p[6], p[7], 1] if motion == "homography" else [0, 0, 1]
    return np.array([[1 + p[0], p[2], p[4]], [p[1], 1 + p[3], p[5]], bottom], float)


def _max_corner_shift(step, corner_pts) -> float:
    """How far ``step`` moves the level's corners at most (inf: to infinity)."""
    if step[2, 0] == 0 and step[2, 1] == 0:
        # Affine: plain float arithmetic; numpy or OpenCV calls on 3x4 arrays cost more
        # in call overhead (with the GIL held) than the sums themselves.
        (a, b, c), (d, e, f) = (step[:2] / step[2, 2]).tolist()
        width, height = float(corner_pts[0, -1]), float(corner_pts[1, -1])
        dx, dy = (a - 1.0) * width, d * width  # the corner shift is affine in (x, y)
        ex, ey = b * height, (e - 1.0) * height
        if not math.isfinite(a + b + c + d + e + f):
            return math.inf
        return max(abs(c), abs(c + dx), abs(c + ex), abs(c + dx + ex),
                   abs(f), abs(f + dy), abs(f + ey), abs(f + dy + ey))  # fmt: skip
    moved = np.dot(step, corner_pts)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = moved / moved[2]
    shift = float(np.abs(moved[:2] - corner_pts[:2]).max())
    return shift if shift == shift else math.inf  # NaN: a corner at infinity


# ---------------------------------------------------------------------------------- correlation
# full_correlation works in bands of rows this size, so a band's warp, mask and sums
# stay in cache between the passes (about 10 % faster than whole-image passes at 1 MP).
_BAND_BYTES = 2 << 20
_IDENTITY = np.eye(3)


def full_correlation(ref, ref_valid, mov, mov_valid, matrix) -> float:
    """ECC of ``ref`` and ``mov`` warped by ``matrix`` over their overlap, at full resolution.

    Both images are non-negative (``normalise`` scales them to [0, 1]), so their L1
    norms are their sums. cv2.norm accumulates in double, one vectorised pass each
    (5-10x faster than cv2.mean or cv2.meanStdDev with a mask).
    """
    rows, cols = ref.shape
    identity = mov.shape == ref.shape and (matrix == _IDENTITY).all()
    source = mov
    if not identity and mov_valid is not None:
        source = mov.copy()
        source[~mov_valid] = np.nan
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    band = rows if identity else max(8, _BAND_BYTES // (4 * cols))  # nothing to cache
    sums = np.zeros(6)  # n, Σr, Σw, Σr², Σw², Σ(r - w)²
    for y0 in range(0, rows, band):
        y1 = min(rows, y0 + band)
        r = ref[y0:y1]
        if identity:  # no resampling
            w = mov[y0:y1]
            mask = None if mov_valid is None else mov_valid[y0:y1].view(np.uint8)
        else:
            # NaN fill marks every output pixel whose interpolation reached outside `mov`.
            shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])
            w = warp_plane(source, matrix @ shift, (y1 - y0, cols), flags, (float("nan"),) * 4)
            mask = cv2.compare(w, w, cv2.CMP_EQ)  # 0 where NaN
        if ref_valid is not None:
            valid = ref_valid[y0:y1].view(np.uint8)
            mask = valid if mask is None else cv2.bitwise_and(mask, valid)
        n = (y1 - y0) * cols if mask is None else cv2.countNonZero(mask)
        if n:
            sums += (
                n,
                cv2.norm(r, cv2.NORM_L1, mask=mask),
                cv2.norm(w, cv2.NORM_L1, mask=mask),
                cv2.norm(r, cv2.NORM_L2SQR, mask=mask),
                cv2.norm(w, cv2.NORM_L2SQR, mask=mask),
                cv2.norm(r, w, cv2.NORM_L2SQR, mask=mask),
            )
    count = sums[0]
    if count < 16:
        return float("nan")
    ref_mean, mov_mean = sums[1] / count, sums[2] / count
    ref_var = sums[3] / count - ref_mean**2
    mov_var = sums[4] / count - mov_mean**2
    if not (ref_var > 0 and mov_var > 0):
        return float("nan")
    # Σ(r - r̄)(w - w̄)/n from the mean squared difference: no product image needed.
    cov = 0.5 * (ref_var + mov_var + (ref_mean - mov_mean) ** 2 - sums[5] / count)
    return float(cov / math.sqrt(ref_var * mov_var))
