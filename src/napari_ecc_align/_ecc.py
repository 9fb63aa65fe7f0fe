"""One pyramid level of inverse-compositional ECC, and the coarse-to-fine loop.

On each level the Jacobian of the *reference* is computed once (Evangelidis &
Psarakis, TPAMI 2008, section 3.2), so each iteration only resamples the moving
image at the sample points and solves a p×p system. On large levels the sample
points are the pixels with the strongest x and y gradients, which carry almost
all of ECC's information; coarse levels use every valid pixel. Every accepted
step raises the correlation (a step that does not is halved).

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

from ._alignment import AlignmentError
from ._warp import warp_plane

_N_PARAMS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
_STAGES = {
    "translation": ("translation",),
    "euclidean": ("translation", "euclidean"),
    "affine": ("translation", "euclidean", "affine"),
    "homography": ("translation", "euclidean", "affine", "homography"),
}
# Sample points per level; more buys little accuracy for linear cost.
_MAX_SAMPLES = 30_000
# A level stops once an update moves every corner by less than this (level pixels).
_STEP_TOLERANCE = 1e-3
# ... on a coarse level, whose result the next finer level refines anyway: 0.05 px
# here is 0.1 px there, well inside ECC's capture range. Most of a stack frame's
# iterations were spent polishing coarse levels to 0.001 px.
_COARSE_STEP_TOLERANCE = 0.05
# Levels with at most this many samples (128x128 px) run one thread at a time (see
# _ecc_level): they barely gain from a second thread and lose a lot to GIL ping-pong.
_SERIAL_SAMPLES = 20_000
_SMALL_LEVEL_LOCK = threading.Lock()
# Halvings of an ECC step that lowers the correlation before the level gives up.
_MAX_HALVINGS = 6


def to_level(matrix: np.ndarray, level: int) -> np.ndarray:
    """A full-resolution matrix on pyramid level ``level`` (S⁻¹·W·S, S = diag(2^k, 2^k, 1))."""
    return _rescale(matrix, 2.0**-level)


def from_level(matrix: np.ndarray, level: int) -> np.ndarray:
    """A matrix on pyramid level ``level`` at full resolution."""
    return _rescale(matrix, 2.0**level)


def _rescale(matrix, s: float) -> np.ndarray:
    """D·W·D⁻¹ with D = diag(s, s, 1), elementwise (two 3x3 products cost more)."""
    out = np.array(matrix, dtype=np.float64)
    out[:2, 2] *= s
    out[2, :2] /= s
    return out


def run_levels(
    ref_pyr, mov_pyr, matrix, motion, params, top: int, bottom: int = 0, staged: bool = True
) -> Generator[tuple[int, int, float], None, tuple[np.ndarray, list[int], float]]:
    """ECC from level ``top`` down to ``bottom``, starting at full-resolution ``matrix``.

    Yields ``(level, iterations, correlation)`` after each level and returns the
    full-resolution matrix, the iterations per level and the last correlation.
    With ``staged``, the top level fits translation, then euclidean, then the
    full model: fewer parameters, wider capture range.
    """
    matrix = to_level(matrix, top)
    iterations: list[int] = []
    correlation = float("nan")
    seeds = None
    for level in range(top, bottom - 1, -1):
        if level != top:
            matrix = from_level(matrix, 1)  # one level finer: S·W·S⁻¹, S = diag(2, 2, 1)
        n_iter = 0
        selected = None
        stages = _STAGES[motion] if staged and level == top and top > bottom else (motion,)
        for stage in stages:
            try:
                matrix, stage_iter, correlation, selected = _ecc_level(
                    ref_pyr[level], mov_pyr[level], matrix, stage, params, level, seeds,
                    _STEP_TOLERANCE if level == 0 else _COARSE_STEP_TOLERANCE,
                )  # fmt: skip
            except AlignmentError:
                if level == bottom:
                    raise
                break  # a coarse level with too little overlap or structure: refine finer
            n_iter += stage_iter
        seeds = selected
        iterations.append(n_iter)
        yield level, n_iter, correlation
    return from_level(matrix, bottom), iterations, correlation


# ------------------------------------------------------------------------------------- pyramid
@dataclass
class _Level:
    image: np.ndarray  # float32, unblurred
    valid: np.ndarray | None  # bool, None = all valid
    # The reference side of ECC on this level (samples, Jacobians), filled on first
    # use: a pyramid kept for many moving images (a stack) computes it once.
    memo: dict = field(default_factory=dict, repr=False, compare=False)


def pyramid(image: np.ndarray, valid: np.ndarray | None, levels: int) -> list[_Level]:
    """Gaussian pyramid. ``cv2.pyrDown`` centres its kernel on even pixels, so a
    level-k pixel x sits exactly at 2x on level k-1: no half-pixel offset."""
    out = [_Level(image, valid)]
    for _ in range(levels - 1):
        prev = out[-1]
        small = cv2.pyrDown(prev.image)
        small_valid = None
        if prev.valid is not None:
            # Invalid pixels hold the mean value (see normalise), so a coarse pixel
            # whose footprint is mostly valid is still a fair sample of the image.
            small_valid = cv2.pyrDown(prev.valid.astype(np.float32)) > 0.75
        out.append(_Level(small, small_valid))
    return out


# ------------------------------------------------------------------------------- one ECC level
def _ecc_level(
    ref: _Level, mov: _Level, matrix, motion, params, level, seeds=None,
    tolerance=_STEP_TOLERANCE,
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
    problem, selected = _reference_side(ref, ksize, motion, level, seeds)
    mov_img = mov.image
    if ksize > 1:
        mov_img = cv2.GaussianBlur(mov_img, (ksize, ksize), 0)
    margin = level_margin(ksize)
    mov_ok = _erode(mov.valid, margin)
    rows, cols = ref.image.shape
    n_samples = problem.template.size
    # Jacobian in normalised coordinates (see _reference_side); updates map back by N⁻¹·ΔW·N.
    norm, norm_inv = _normaliser(rows, cols)

    corner_pts = np.array(
        [[0, cols - 1, 0, cols - 1], [0, 0, rows - 1, rows - 1], [1, 1, 1, 1]], float
    )
    min_overlap = max(4 * _N_PARAMS[motion], n_samples // 20)

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
        corr, delta = state
        n_iter = 0
        while n_iter < params["max_iterations"]:
            n_iter += 1
            # Backtracking: halve a step that lowers the correlation, so every accepted
            # step climbs. Plain ECC overshoots on coarse levels and walks off the image.
            for _ in range(_MAX_HALVINGS):
                step = norm_inv @ _delta_matrix(motion, delta) @ norm
                invertible, step_inv = cv2.invert(step)
                candidate = matrix @ step_inv
                candidate /= candidate[2, 2]
                moved = _max_corner_shift(step, corner_pts) if invertible else math.inf
                if moved < tolerance:
                    break  # what is left of the step is below the tolerance
                new_state = evaluate(candidate) if math.isfinite(moved) else None
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
    return matrix, n_iter, corr, selected


@functools.lru_cache(maxsize=64)
def _normaliser(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel → normalised coordinates (centre 0, half-size 1), which keeps the Hessian
    well conditioned, and its inverse (read-only: shared between calls)."""
    cx, cy, half = (cols - 1) / 2.0, (rows - 1) / 2.0, max(rows, cols) / 2.0
    norm = np.array([[1 / half, 0, -cx / half], [0, 1 / half, -cy / half], [0, 0, 1]])
    norm_inv = np.array([[half, 0, cx], [0, half, cy], [0, 0, 1.0]])
    norm.flags.writeable = norm_inv.flags.writeable = False
    return norm, norm_inv


def _reference_side(ref: _Level, ksize: int, motion: str, level: int, seeds):
    """The level's :class:`_Samples` for ``motion`` and its sample points (to seed the next
    finer level; None when every pixel is used), memoised on ``ref``.

    Everything here depends on the reference alone, so a stack aligned to one frame
    computes it once per level. Memo keys hold ``id(seeds)``; the entry keeps ``seeds``
    alive, so the id cannot be reused while the entry exists. Two threads may compute
    an entry at once; ``setdefault`` keeps the first, so both use the same objects.
    """
    seeds_key = None if seeds is None else id(seeds)
    key = ("problem", ksize, motion, seeds_key)
    found = ref.memo.get(key)
    if found is not None:
        return found[0], found[1]
    points = _reference_points(ref, ksize, level, seeds)
    idx, xs, ys, template, grad_x_s, grad_y_s, selected = points
    if idx.size < 4 * _N_PARAMS[motion]:
        raise AlignmentError(
            f"the reference has too few valid pixels on pyramid level {level} "
            f"({idx.size}); use fewer pyramid_levels or a larger reference_mask"
        )
    rows, cols = ref.image.shape
    cx, cy, half = (cols - 1) / 2.0, (rows - 1) / 2.0, max(rows, cols) / 2.0  # as _normaliser
    xn, yn = (xs - cx) / half, (ys - cy) / half
    gx = grad_x_s.astype(np.float64) * (0.5 * half)
    gy = grad_y_s.astype(np.float64) * (0.5 * half)
    jac_t = _jacobian(motion, xn, yn, gx, gy)  # (parameters, samples)
    problem = _Samples(template, jac_t, xs, ys, level)
    found = ref.memo.setdefault(key, (problem, selected, seeds))
    return found[0], found[1]


def _reference_points(ref: _Level, ksize: int, level: int, seeds):
    """Sample points of one reference level (motion-independent part), memoised on ``ref``.

    ``seeds`` are the (x, y) points chosen by gradient on the next coarser level; when
    given and this level is large, the samples here are their positions doubled, which
    spares a full-resolution gradient and selection pass.
    """
    key = ("points", ksize, None if seeds is None else id(seeds))
    found = ref.memo.get(key)
    if found is not None:
        return found[0]
    ref_img = ref.image
    if ksize > 1:
        ref_img = cv2.GaussianBlur(ref_img, (ksize, ksize), 0)
    # The blur spreads masked (and reflected border) pixels by ksize // 2 and the
    # gradient by one more.
    margin = level_margin(ksize)
    ref_ok = _erode(ref.valid, margin)
    rows, cols = ref_img.shape
    flat = ref_img.ravel()
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    if seeds is not None and inner > _MAX_SAMPLES:
        idx = _seeded_samples(seeds, rows, cols, margin, ref_ok)
        # 2·gradient at the samples only (halved with the Jacobian).
        grad_x_s = flat[idx + 1] - flat[idx - 1]
        grad_y_s = flat[idx + cols] - flat[idx - cols]
    else:
        grad_x, grad_y = _central_gradients(ref_img)
        idx = _select_samples(grad_x, grad_y, ref_ok, margin)
        grad_x_s, grad_y_s = grad_x.ravel()[idx], grad_y.ravel()[idx]
    ys, xs = np.divmod(idx, cols)
    xs = xs.astype(np.float64)
    ys = ys.astype(np.float64)
    template = flat[idx].astype(np.float64)
    selected = (xs, ys) if inner > _MAX_SAMPLES else None
    points = (idx, xs, ys, template, grad_x_s, grad_y_s, selected)
    return ref.memo.setdefault(key, (points, seeds))[0]


def _seeded_samples(seeds, rows, cols, margin, valid) -> np.ndarray:
    """Flat indices of the coarser level's samples on this level (x → 2x, exact for pyrDown)."""
    xs, ys = (2 * seeds[0]).astype(np.intp), (2 * seeds[1]).astype(np.intp)
    keep = (xs >= margin) & (xs < cols - margin) & (ys >= margin) & (ys < rows - margin)
    idx = ys[keep] * cols + xs[keep]
    if valid is not None:
        idx = idx[valid.ravel()[idx]]
    return idx


class _Samples:
    """One level's sample points with what inverse-compositional ECC precomputes.

    The rows r = (g₁ … g_p, t, 1) per point (Jacobian of the reference, template
    value, one) hold everything fixed for the level: their moment matrix Σrrᵀ
    contains Σggᵀ, Σg·t, Σg, Σt², Σt and n. Each iteration needs one product
    Σr·w (Σg·w, Σt·w, Σw) and Σw². When some points fall outside the moving image,
    their share of the moments is subtracted (one small product). Few, large numpy
    and OpenCV calls per iteration matter when stack frames run in threads: the
    Python between them holds the GIL. (np.dot, not @: matmul on 1-D float64 takes a
    slow path in numpy 2.)
    """

    def __init__(self, template, jac_t, xs, ys, level):
        n = template.size
        self.n, self.level, self.n_params = n, level, jac_t.shape[0]
        self.rows = np.vstack([jac_t, template, np.ones(n)])
        self.moments = np.dot(self.rows, self.rows.T)
        # cv2.remap takes one (rows, width, 2) float32 map; it refuses sides of 32767+.
        self.width = n if n < 32767 else 1024
        padded = -(-n // self.width) * self.width
        self.points = np.zeros((padded, 3))  # x, y, 1 per row; the padding is ignored
        self.points[:n, 0], self.points[:n, 1], self.points[:, 2] = xs, ys, 1.0
        # The same points as a float32 map for cv2.transform (exact: integer pixels).
        # float32 keeps 5e-4 px at 8000 px; cv2.remap rounds positions to 1/32 px anyway.
        self.map = self.points[:, :2].astype(np.float32).reshape(-1, self.width, 2)
        # With every point usable, the Hessian and the template terms are fixed too.
        self.full = self._fixed_terms(self.moments)

    @property
    def template(self) -> np.ndarray:
        return self.rows[-2]

    def sample_moving(self, mov_img, mov_ok, matrix, margin):
        """Moving-image values at W·(x, y) (bilinear, float64), a uint8 mask of the usable
        points (nonzero) and their count. Points within ``margin`` pixels of the moving
        image's edge are not usable: the blur there mixes in reflected pixels."""
        rows, cols = mov_img.shape
        if matrix[2, 0] != 0 or matrix[2, 1] != 0:
            mapped = np.dot(self.points, matrix.T)
            with np.errstate(divide="ignore", invalid="ignore"):
                xy = mapped[:, :2] / mapped[:, 2:]
            xy[~(mapped[:, 2] > 0) | ~np.isfinite(xy).all(axis=1)] = -1  # never usable
            xy = xy.astype(np.float32).reshape(self.map.shape)
        else:
            xy = cv2.transform(self.map, matrix[:2])
        values = cv2.remap(mov_img, xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.inRange(xy, (margin, margin), (cols - 1 - margin, rows - 1 - margin))
        if mov_ok is not None:
            valid = cv2.remap(mov_ok.view(np.uint8), xy, None, cv2.INTER_NEAREST)
            inside = cv2.bitwise_and(inside, inside, mask=valid)
        inside = inside.reshape(-1)[: self.n]
        values = values.reshape(-1)[: self.n].astype(np.float64)
        return values, inside, cv2.countNonZero(inside)

    def _fixed_terms(self, moments):
        """What the template side contributes, from the moments of the usable points:
        Σg(t - t̄), Σ(t - t̄)², H⁻¹, H⁻¹Σg(t - t̄), the paper's e, Σr and n."""
        p = self.n_params
        sums = moments[-1]  # Σg, Σt, n
        n = sums[-1]
        centred = moments - sums[:, None] * (sums / n)  # Σ(r - r̄)(r - r̄)ᵀ
        tt = centred[p, p]
        if not tt > 1e-10 * moments[p, p]:  # relative: rounding error of a flat template
            raise AlignmentError(
                f"one image is flat where they overlap (pyramid level {self.level}); "
                "use a mask around the textured region or a different init"
            )
        t_proj = centred[:p, p]
        invertible, h_inv = cv2.invert(centred[:p, :p].copy())  # LU, as np.linalg.inv
        if not invertible:
            raise AlignmentError(
                f"the reference has no structure that fixes this motion on pyramid level "
                f"{self.level}; try a simpler motion model or fewer pyramid_levels"
            )
        h_t = np.dot(h_inv, t_proj)
        return t_proj, tt, h_inv, h_t, tt - np.dot(t_proj, h_t), sums, n

    def update(self, warped, inside, usable):
        """The correlation now and the ECC parameter update Δp, over the points where
        ``inside`` is nonzero (``usable`` of them). ``warped`` may be changed."""
        rows = self.rows
        if usable == self.n:
            terms = self.full
        elif 2 * usable >= self.n:  # a few points lost: subtract their share
            bad = np.flatnonzero(inside == 0)
            warped[bad] = 0.0  # so the products below sum over the usable points only
            left_out = rows[:, bad]
            terms = self._fixed_terms(self.moments - np.dot(left_out, left_out.T))
        else:  # most points lost: sum over the usable ones
            good = np.flatnonzero(inside)
            rows, warped = rows[:, good], warped[good]
            terms = self._fixed_terms(np.dot(rows, rows.T))
        t_proj, tt, h_inv, h_t, e, sums, n = terms
        p = self.n_params
        products = np.dot(rows, warped)  # Σg·w, Σt·w, Σw
        w_sum = products[-1]
        centred = products - sums * (w_sum / n)  # Σg(w - w̄), Σt(w - w̄), 0
        ww_sum = float(np.dot(warped, warped))
        ww = ww_sum - w_sum * w_sum / n
        if not ww > 1e-10 * ww_sum:
            raise AlignmentError(
                f"one image is flat where they overlap (pyramid level {self.level}); "
                "use a mask around the textured region or a different init"
            )
        tw, w_proj = centred[p], centred[:p]
        corr = float(tw / math.sqrt(tt * ww))
        # Δp = H⁻¹Gᵀ(λw - t) moves the linearised template towards the gain-matched
        # warped image. The best λ is e/c (the paper's closed form); when c <= 0 the
        # linearised correlation rises monotonically with λ and any λ > 0 ascends, so
        # take the paper's fallback λ = sqrt(e / d) instead of giving up.
        h_w = np.dot(h_inv, w_proj)
        c = tw - np.dot(t_proj, h_w)
        d = np.dot(w_proj, h_w)
        if c > 0:
            lam = e / c
        elif d > 0:
            lam = math.sqrt(max(e, 0.0) / d)
        else:
            raise AlignmentError(
                f"ECC found no correlation on pyramid level {self.level} (correlation "
                f"{corr:.3f}): the images may be unrelated or too far apart; try an init "
                "matrix, a mask, or another motion model"
            )
        return corr, lam * h_w - h_t


def _central_gradients(image):
    """Twice the central-difference gradient, I(x+1) - I(x-1), along x and y.

    The factor 1/2 is applied to the sampled values only, which saves two passes
    over a full-resolution image. Border pixels are never sampled.
    """
    grad_x = np.empty_like(image)
    grad_y = np.empty_like(image)
    np.subtract(image[:, 2:], image[:, :-2], out=grad_x[:, 1:-1])
    np.subtract(image[2:], image[:-2], out=grad_y[1:-1])
    grad_x[:, [0, -1]] = 0
    grad_y[[0, -1]] = 0
    return grad_x, grad_y


def level_margin(ksize: int) -> int:
    return max(ksize, 1) // 2 + 1


def usable_pixels(level: _Level, margin: int) -> int:
    """Pixels of a level that ECC may sample: valid and away from the border."""
    rows, cols = level.image.shape
    if level.valid is None:
        return max(0, rows - 2 * margin) * max(0, cols - 2 * margin)
    return int(np.count_nonzero(_erode(level.valid, margin)[margin:-margin, margin:-margin]))


def _erode(valid: np.ndarray | None, margin: int) -> np.ndarray | None:
    if valid is None:
        return None
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.erode(valid.astype(np.uint8), kernel, borderValue=1).astype(bool)


def _select_samples(grad_x, grad_y, valid, margin) -> np.ndarray:
    """Flat indices of the pixels ECC uses on one level.

    Small levels use every valid pixel away from the border; large ones the
    strongest |gx| and the strongest |gy| pixels (about half each, so that e.g.
    the horizontal staff lines of a score do not crowd out the stems that fix x).
    """
    rows, cols = grad_x.shape
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    if inner <= 0:
        return np.empty(0, np.intp)
    chosen = np.zeros((rows, cols), bool)
    if inner <= _MAX_SAMPLES:
        chosen[margin:-margin, margin:-margin] = True
        if valid is not None:
            chosen &= valid
        return np.flatnonzero(chosen)
    rng = np.random.default_rng(0)  # deterministic: same inputs, same samples
    n_probe = 30_000
    probe_rows = rng.integers(margin, rows - margin, size=n_probe)
    probe_cols = rng.integers(margin, cols - margin, size=n_probe)
    keep = 0.5 * _MAX_SAMPLES / inner  # fraction of pixels each direction keeps
    kth = min(n_probe - 1, int(n_probe * (1.0 - keep)))
    mag = np.empty_like(grad_x)
    for grad in (grad_x, grad_y):
        np.abs(grad, out=mag)
        threshold = np.partition(mag[probe_rows, probe_cols], kth)[kth]
        chosen |= mag >= max(float(threshold), 1e-12)
    for border in (chosen[:margin], chosen[-margin:], chosen[:, :margin], chosen[:, -margin:]):
        border[...] = False
    if valid is not None:
        chosen &= valid
    idx = np.flatnonzero(chosen)
    if idx.size > _MAX_SAMPLES:  # ties, e.g. the flat gradients of a binary image
        idx = np.sort(rng.choice(idx, size=_MAX_SAMPLES, replace=False))
    elif idx.size < 64:  # almost flat image: use a regular grid of pixels instead
        chosen[margin:-margin:4, margin:-margin:4] = True
        idx = np.flatnonzero(chosen if valid is None else chosen & valid)
    return idx


def _jacobian(motion, x, y, gx, gy) -> np.ndarray:
    """∂template(W(x; p))/∂p at p = 0, one column per parameter."""
    if motion == "translation":
        cols = [gx, gy]
    elif motion == "euclidean":
        cols = [x * gy - y * gx, gx, gy]
    else:
        cols = [x * gx, x * gy, y * gx, y * gy, gx, gy]
        if motion == "homography":
            radial = x * gx + y * gy
            cols += [-x * radial, -y * radial]
    return np.stack(cols)


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


def project_to_motion(matrix: np.ndarray, motion: str) -> np.ndarray:
    """The closest matrix of the ``motion`` family (drops what the model cannot express)."""
    matrix = np.asarray(matrix, dtype=np.float64) / matrix[2, 2]
    out = np.eye(3)
    out[:2, 2] = matrix[:2, 2]
    if motion == "euclidean":
        u, _, vt = np.linalg.svd(matrix[:2, :2])
        rot = u @ vt
        if np.linalg.det(rot) < 0:  # a reflection is not a rotation
            u[:, -1] *= -1
            rot = u @ vt
        out[:2, :2] = rot
    elif motion == "affine":
        out[:2, :2] = matrix[:2, :2]
    elif motion == "homography":
        out = matrix.copy()
    return out


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
