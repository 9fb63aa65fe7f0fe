"""The ECC engine: coarse-to-fine inverse-compositional ECC on a Gaussian pyramid.

Why not just call ``cv2.findTransformECC``? At full resolution one call costs
seconds per iteration on a page scan and converges to the wrong pose when the
images are a few pixels apart. Here the pose is estimated on a ``cv2.pyrDown``
pyramid, coarse to fine. On each level we run the inverse-compositional form of
ECC (Evangelidis & Psarakis, TPAMI 2008, section 3.2): the Jacobian of the
*reference* is computed once per level, so each iteration only resamples the
moving image at the sample points and solves a p×p system. On large levels the
sample points are the pixels with the strongest x and y gradients, which carry
almost all of ECC's information; coarse levels use every valid pixel.

The matrix convention is ``cv2.findTransformECC``'s: reference (x, y, 1) →
moving coordinates (see ``_alignment.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ._alignment import MOTIONS, Alignment, AlignmentError
from ._images import normalise
from ._warp import warp_plane

# Parameters per motion model, in the order of the Jacobian columns below.
_N_PARAMS = {"translation": 2, "euclidean": 3, "affine": 6, "homography": 8}
_STAGES = {
    "translation": ("translation",),
    "euclidean": ("translation", "euclidean"),
    "affine": ("translation", "euclidean", "affine"),
    "homography": ("translation", "euclidean", "affine", "homography"),
}
# The coarsest automatic level keeps at least this many pixels on its shorter side:
# small enough that a shift of 10 % of the image is about a pixel there.
_COARSEST_MIN_SIDE = 12
_MAX_AUTO_LEVELS = 8
# A coarsest level with fewer usable pixels than this is dropped.
_MIN_COARSE_PIXELS = 32
# Below this final correlation the "alignment" fits noise: unrelated blurred-noise
# images reach 0.15-0.23 with an affine model by distorting one of them.
_MIN_CORRELATION = 0.25
# Sample points per level; more buys little accuracy for linear cost.
_MAX_SAMPLES = 30_000
# A level stops once an update moves every corner by less than this (level pixels).
_STEP_TOLERANCE = 1e-3
# Halvings of an ECC step that lowers the correlation before the level gives up.
_MAX_HALVINGS = 6


@dataclass(frozen=True)
class Progress:
    """Reported by :func:`iter_align` after each pyramid level."""

    level: int  # 0 = full resolution
    levels: int
    done: int  # levels finished so far
    iterations: int
    correlation: float


def align(
    reference,
    moving,
    *,
    motion: str = "affine",
    max_iterations: int = 100,
    eps: float = 1e-6,
    gauss_filter_size: int = 5,
    pyramid_levels: int | None = None,
    init=None,
    reference_mask=None,
    moving_mask=None,
) -> Alignment:
    """Estimate the transform that maps ``reference`` pixels onto ``moving`` pixels.

    Parameters
    ----------
    reference, moving : array_like
        2D images, grayscale ``(rows, cols)`` or colour ``(rows, cols, 3|4)``.
        They may differ in size and dtype (bool, any integer, float in any
        range). Estimation runs on float32 luminance scaled to [0, 1]; NaN and
        infinite pixels, and fully transparent RGBA pixels, are masked out.
    motion : {"translation", "euclidean", "affine", "homography"}
        The motion model (degrees of freedom: 2, 3, 6, 8).
    max_iterations : int
        ECC iterations allowed on *each* pyramid level.
    eps : float
        ECC stops on a level when the correlation rises by less than ``eps``
        between two iterations (or when an update moves the image corners by
        less than 0.001 pixel). Applies per level.
    gauss_filter_size : int
        Size of the Gaussian blur applied to both images on every level before
        ECC (odd; 0 or 1 disables it), as in ``cv2.findTransformECC``.
    pyramid_levels : int or None
        Number of pyramid levels (1 = full resolution only). None chooses it from
        the image size so the coarsest level is about 40-80 pixels on its
        shorter side, which tolerates misalignments of roughly 5-10 % of the image.
    init : None, "identity" or array_like (3, 3) or (2, 3)
        Initial reference→moving matrix (same convention as the result). It is
        projected onto ``motion`` (e.g. rotation only for "euclidean").
    reference_mask, moving_mask : array_like of bool, optional
        True where a pixel counts, with each image's ``(rows, cols)`` shape.

    Returns
    -------
    Alignment
        ``alignment.matrix`` is the 3×3 ``cv2.findTransformECC`` warp matrix.

    Raises
    ------
    TypeError, ValueError
        For invalid arguments; the message names the argument.
    AlignmentError
        When ECC cannot align the images (no overlap, no correlation, no
        convergence); the message says what to try.

    Examples
    --------
    >>> import cv2, numpy as np
    >>> from napari_ecc_align import align
    >>> rng = np.random.default_rng(0)
    >>> scene = cv2.GaussianBlur(rng.random((140, 140), dtype=np.float32), (0, 0), 2)
    >>> reference, moving = scene[10:130, 10:130], scene[7:127, 12:132]
    >>> result = align(reference, moving, motion="translation")
    >>> np.round(result.matrix[:2, 2], 2)  # reference (x, y) -> moving (x + 2, y + 3)
    array([-2.,  3.])
    """
    result = None
    for step in iter_align(
        reference,
        moving,
        motion=motion,
        max_iterations=max_iterations,
        eps=eps,
        gauss_filter_size=gauss_filter_size,
        pyramid_levels=pyramid_levels,
        init=init,
        reference_mask=reference_mask,
        moving_mask=moving_mask,
    ):
        result = step
    return result


def iter_align(reference, moving, **kwargs) -> Iterator[Progress | Alignment]:
    """Generator form of :func:`align` for progress reporting and cancellation.

    Yields a :class:`Progress` after each pyramid level and finally the
    :class:`Alignment`. Closing the generator early abandons the estimate.
    Takes the same arguments as :func:`align`.
    """
    start = time.perf_counter()
    params = _validate_params(**kwargs)
    motion = params["motion"]
    ref, ref_valid = normalise(
        reference, "reference", kwargs.get("reference_mask"), "reference_mask"
    )
    mov, mov_valid = normalise(moving, "moving", kwargs.get("moving_mask"), "moving_mask")
    init_matrix, init_method = _initial_matrix(params["init"], motion)

    levels = params["pyramid_levels"] or auto_levels(ref.shape, mov.shape)
    levels = _fit_levels(levels, ref.shape, mov.shape)
    ref_pyr = _pyramid(ref, ref_valid, levels)
    mov_pyr = _pyramid(mov, mov_valid, levels)
    # Masks and NaN holes can leave a coarse level with too little to fit: drop it.
    margin = _margin(params["gauss_filter_size"])
    while (
        levels > 1
        and min(
            _usable_pixels(ref_pyr[levels - 1], margin), _usable_pixels(mov_pyr[levels - 1], margin)
        )
        < _MIN_COARSE_PIXELS
    ):
        levels -= 1

    scale = 2.0 ** (levels - 1)
    to_coarsest = np.diag([scale, scale, 1.0])
    matrix = np.linalg.inv(to_coarsest) @ init_matrix @ to_coarsest
    iterations = []
    correlation = float("nan")
    seeds = None
    for done, level in enumerate(range(levels - 1, -1, -1)):
        if level != levels - 1:
            matrix = _HALF_INV @ matrix @ _HALF  # S·W·S⁻¹ with S = diag(2, 2, 1)
        n_iter = 0
        selected = None
        # On the coarsest level, fit the few-parameter models first: a translation
        # has a wider capture range than six or eight free parameters.
        stages = _STAGES[motion] if level == levels - 1 and levels > 1 else (motion,)
        for stage in stages:
            try:
                matrix, stage_iter, correlation, selected = _ecc_level(
                    ref_pyr[level], mov_pyr[level], matrix, stage, params, level, seeds
                )
            except AlignmentError:
                if level == 0:
                    raise
                break  # a coarse level with too little overlap or structure: refine finer
            n_iter += stage_iter
        seeds = selected
        iterations.append(n_iter)
        yield Progress(level, levels, done + 1, n_iter, correlation)

    matrix = _normalise_matrix(matrix, motion)
    _check_plausible(matrix, ref.shape, mov.shape)
    corr_after = full_correlation(ref, ref_valid, mov, mov_valid, matrix)
    corr_before = full_correlation(ref, ref_valid, mov, mov_valid, init_matrix)
    if not np.isfinite(corr_after):
        raise AlignmentError(
            "after alignment the images no longer overlap; try motion='euclidean' or "
            "'translation', fewer pyramid_levels, or an init matrix close to the answer"
        )
    if corr_after < _MIN_CORRELATION:
        raise AlignmentError(
            f"the images look unrelated: their correlation is {corr_after:.3f} even after "
            "alignment; check that both show the same scene, then try an init matrix close "
            "to the answer, a mask around the common content, or more pyramid_levels"
        )
    if np.isfinite(corr_before) and corr_after < corr_before - 0.05:
        raise AlignmentError(
            f"ECC made the match worse (correlation {corr_before:.3f} -> {corr_after:.3f}): "
            "the images may be too far apart or unrelated; try an init matrix, a mask "
            "around the common content, or a simpler motion model"
        )
    yield Alignment(
        matrix=matrix,
        motion=motion,
        correlation=corr_after,
        correlation_before=corr_before,
        reference_shape=ref.shape,
        moving_shape=mov.shape,
        elapsed=time.perf_counter() - start,
        levels=levels,
        init_method=init_method,
        iterations=tuple(iterations),
        parameters={k: v for k, v in params.items() if k != "init"},
    )


# ------------------------------------------------------------------------------------ arguments
def _validate_params(
    *,
    motion="affine",
    max_iterations=100,
    eps=1e-6,
    gauss_filter_size=5,
    pyramid_levels=None,
    init=None,
    reference_mask=None,
    moving_mask=None,
) -> dict:
    if not isinstance(motion, str):
        raise TypeError(f"motion must be a string, one of {MOTIONS}, got {type(motion).__name__}")
    motion = motion.lower()
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    max_iterations = _as_int(max_iterations, "max_iterations", minimum=1)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps must be a number, got {type(eps).__name__}")
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    gauss_filter_size = _as_int(gauss_filter_size, "gauss_filter_size", minimum=0)
    if gauss_filter_size > 1 and gauss_filter_size % 2 == 0:
        raise ValueError(
            f"gauss_filter_size must be odd (or 0 to disable), got {gauss_filter_size}"
        )
    if gauss_filter_size > 31:
        raise ValueError(f"gauss_filter_size must be at most 31, got {gauss_filter_size}")
    if pyramid_levels is not None:
        pyramid_levels = _as_int(pyramid_levels, "pyramid_levels", minimum=1)
        if pyramid_levels > 16:
            raise ValueError(f"pyramid_levels must be at most 16, got {pyramid_levels}")
    return {
        "motion": motion,
        "max_iterations": max_iterations,
        "eps": eps,
        "gauss_filter_size": gauss_filter_size,
        "pyramid_levels": pyramid_levels,
        "init": init,
    }


def _as_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _initial_matrix(init, motion: str) -> tuple[np.ndarray, str]:
    if init is None or (isinstance(init, str) and init == "identity"):
        return np.eye(3), "identity"
    if isinstance(init, str):
        raise ValueError(f"init must be None, 'identity' or a 3x3 matrix, got {init!r}")
    try:
        matrix = np.array(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"init must be a 3x3 matrix, got {type(init).__name__}") from None
    if matrix.shape == (2, 3):
        matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix.shape != (3, 3):
        raise ValueError(f"init must be a 3x3 (or 2x3) matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError("init must be a finite, invertible matrix")
    return project_to_motion(matrix, motion), "matrix"


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


def auto_levels(ref_shape, mov_shape) -> int:
    """Pyramid depth keeping the coarsest level at least 40 px on its shorter side."""
    side = min(min(ref_shape), min(mov_shape))
    if side < 2 * _COARSEST_MIN_SIDE:
        return 1
    return min(_MAX_AUTO_LEVELS, int(math.log2(side / _COARSEST_MIN_SIDE)) + 1)


def _fit_levels(levels: int, ref_shape, mov_shape) -> int:
    """Reduce ``levels`` so no level is smaller than 8 px on a side."""
    side = min(min(ref_shape), min(mov_shape))
    while levels > 1 and side / 2 ** (levels - 1) < 8:
        levels -= 1
    return levels


# ------------------------------------------------------------------------------------- pyramid
_HALF = np.diag([0.5, 0.5, 1.0])
_HALF_INV = np.diag([2.0, 2.0, 1.0])


@dataclass
class _Level:
    image: np.ndarray  # float32, unblurred
    valid: np.ndarray | None  # bool, None = all valid


def _pyramid(image: np.ndarray, valid: np.ndarray | None, levels: int) -> list[_Level]:
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
def _ecc_level(ref: _Level, mov: _Level, matrix, motion, params, level, seeds=None):
    """Run ECC on one pyramid level from ``matrix``.

    ``seeds`` are the (x, y) sample points chosen by gradient on the next coarser
    level; when given and this level is large, the samples here are their
    positions doubled, which spares a full-resolution gradient and selection pass.

    Returns the refined matrix, the iterations run, the final correlation on the
    samples, and this level's sample points (to seed the next finer level, or
    None when every pixel was used).
    """
    ksize = params["gauss_filter_size"]
    ref_img, mov_img = ref.image, mov.image
    if ksize > 1:
        ref_img = cv2.GaussianBlur(ref_img, (ksize, ksize), 0)
        mov_img = cv2.GaussianBlur(mov_img, (ksize, ksize), 0)
    # The blur spreads masked (and reflected border) pixels by ksize // 2 and the
    # gradient by one more.
    margin = _margin(ksize)
    ref_ok = _erode(ref.valid, margin)
    mov_ok = _erode(mov.valid, margin)

    rows, cols = ref_img.shape
    flat = ref_img.ravel()
    inner = (rows - 2 * margin) * (cols - 2 * margin)
    if seeds is not None and inner > _MAX_SAMPLES:
        idx = _seeded_samples(seeds, rows, cols, margin, ref_ok)
        # 2·gradient at the samples only (halved below with the others).
        grad_x_s = flat[idx + 1] - flat[idx - 1]
        grad_y_s = flat[idx + cols] - flat[idx - cols]
    else:
        grad_x, grad_y = _central_gradients(ref_img)
        idx = _select_samples(grad_x, grad_y, ref_ok, margin)
        grad_x_s, grad_y_s = grad_x.ravel()[idx], grad_y.ravel()[idx]
    if idx.size < 4 * _N_PARAMS[motion]:
        raise AlignmentError(
            f"the reference has too few valid pixels on pyramid level {level} "
            f"({idx.size}); use fewer pyramid_levels or a larger reference_mask"
        )
    ys, xs = np.divmod(idx, cols)
    xs = xs.astype(np.float64)
    ys = ys.astype(np.float64)
    template = flat[idx].astype(np.float64)

    # Jacobian in normalised coordinates (centre 0, half-size 1) keeps the Hessian
    # well conditioned; the update is mapped back to pixels by N⁻¹·ΔW·N.
    cx, cy, half = (cols - 1) / 2.0, (rows - 1) / 2.0, max(rows, cols) / 2.0
    norm = np.array([[1 / half, 0, -cx / half], [0, 1 / half, -cy / half], [0, 0, 1]])
    norm_inv = np.linalg.inv(norm)
    xn, yn = (xs - cx) / half, (ys - cy) / half
    gx = grad_x_s.astype(np.float64) * (0.5 * half)
    gy = grad_y_s.astype(np.float64) * (0.5 * half)
    jac_t = _jacobian(motion, xn, yn, gx, gy)  # (parameters, samples)
    problem = _Samples(template, jac_t, np.stack([xs, ys, np.ones_like(xs)]), level)

    corner_pts = np.array(
        [[0, cols - 1, 0, cols - 1], [0, 0, rows - 1, rows - 1], [1, 1, 1, 1]], float
    )
    min_overlap = max(4 * _N_PARAMS[motion], idx.size // 20)

    def evaluate(candidate):
        """Correlation at ``candidate`` and the ECC update from there (None: no overlap)."""
        warped, ok = problem.sample_moving(mov_img, mov_ok, candidate, margin)
        if ok is not None and int(np.count_nonzero(ok)) < min_overlap:
            return None
        return problem.update(warped, ok)

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
            candidate = matrix @ np.linalg.inv(step)
            candidate = candidate / candidate[2, 2]
            moved = _max_corner_shift(step, corner_pts)
            new_state = evaluate(candidate) if np.isfinite(moved) else None
            if new_state is not None and new_state[0] >= corr - 1e-12:
                break
            delta = 0.5 * delta
        else:
            break  # no step along this direction helps: converged as far as ECC can
        gain = new_state[0] - corr
        matrix, (corr, delta) = candidate, new_state
        if moved < _STEP_TOLERANCE or gain < params["eps"]:
            break
    selected = (xs, ys) if inner > _MAX_SAMPLES else None
    return matrix, n_iter, corr, selected


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

    The Jacobian of the reference (``jac_t``, one row per parameter) and its Gram
    matrix are fixed for the level; when some points fall outside the moving
    image, their contribution is subtracted instead of re-forming the sums.
    (np.dot, not @: matmul on 1-D float64 takes a slow path in current numpy.)
    """

    def __init__(self, template, jac_t, points, level):
        self.template = template
        self.jac_t = jac_t
        self.points = points  # (3, n): x, y, 1
        self.level = level
        self.gram = np.dot(jac_t, jac_t.T)
        self.jac_sum = jac_t.sum(axis=1)

    def sample_moving(self, mov_img, mov_ok, matrix, margin):
        """Moving-image values at W·(x, y) (bilinear), and a mask of the usable ones
        (None when all are). Points within ``margin`` pixels of the moving image's
        edge are not usable: the blur there mixes in reflected pixels."""
        rows, cols = mov_img.shape
        mapped = np.dot(matrix, self.points)
        if matrix[2, 0] != 0 or matrix[2, 1] != 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                mapped = mapped / mapped[2]
            mapped[:, ~(mapped[2] > 0) | ~np.isfinite(mapped[0]) | ~np.isfinite(mapped[1])] = -1
        mx, my = mapped[0], mapped[1]
        ok = (mx >= margin) & (mx <= cols - 1 - margin) & (my >= margin) & (my <= rows - 1 - margin)
        maps = _remap_layout(mx, my)
        values = cv2.remap(mov_img, *maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if mov_ok is not None:
            inside = cv2.remap(mov_ok.view(np.uint8), *maps, cv2.INTER_NEAREST)
            ok &= inside.ravel()[: mx.size] > 0
        values = values.ravel()[: mx.size].astype(np.float64)
        return values, (None if ok.all() else ok)

    def update(self, warped, ok):
        """The correlation now and the ECC parameter update Δp."""
        template, jac_t, level = self.template, self.jac_t, self.level
        if ok is None:
            n, jac_sum, gram = template.size, self.jac_sum, self.gram
            t = template - template.mean()
            w = warped - warped.mean()
        else:
            bad = jac_t[:, np.flatnonzero(~ok)]
            n = int(np.count_nonzero(ok))
            jac_sum = self.jac_sum - bad.sum(axis=1)
            gram = self.gram - np.dot(bad, bad.T)
            # Centre over the usable points and zero the rest: then full-length dot
            # products with jac_t sum over the usable points only.
            t = np.where(ok, template - template[ok].mean(), 0.0)
            w = np.where(ok, warped - warped[ok].mean(), 0.0)
        tt, ww, tw = np.dot(t, t), np.dot(w, w), np.dot(t, w)
        if tt <= 0 or ww <= 0:
            raise AlignmentError(
                f"one image is flat where they overlap (pyramid level {level}); "
                "use a mask around the textured region or a different init"
            )
        corr = tw / math.sqrt(tt * ww)
        # With t and w centred, Σ(g - ḡ)t = Σ g t: only the Hessian needs ḡ taken out.
        hessian = gram - np.outer(jac_sum, jac_sum) / n
        try:
            h_inv = np.linalg.inv(hessian)
        except np.linalg.LinAlgError:
            raise AlignmentError(
                f"the reference has no structure that fixes this motion on pyramid level "
                f"{level}; try a simpler motion model or fewer pyramid_levels"
            ) from None
        t_proj = np.dot(jac_t, t)
        w_proj = np.dot(jac_t, w)
        # Δp = H⁻¹Gᵀ(λw - t) moves the linearised template towards the gain-matched
        # warped image. The best λ is e/c (the paper's closed form); when c <= 0 the
        # linearised correlation rises monotonically with λ and any λ > 0 ascends, so
        # take the paper's fallback λ = sqrt(e / d) instead of giving up.
        e = tt - t_proj @ h_inv @ t_proj
        c = tw - t_proj @ h_inv @ w_proj
        d = w_proj @ h_inv @ w_proj
        if c > 0:
            lam = e / c
        elif d > 0:
            lam = math.sqrt(max(e, 0.0) / d)
        else:
            raise AlignmentError(
                f"ECC found no correlation on pyramid level {level} (correlation {corr:.3f}): "
                "the images may be unrelated or too far apart; try an init matrix, a mask, "
                "or another motion model"
            )
        return corr, h_inv @ (lam * w_proj - t_proj)


def _remap_layout(mx, my):
    """float32 maps for cv2.remap, which refuses maps 32767 or more wide."""
    n = mx.size
    if n < 32767:
        return mx.astype(np.float32)[None], my.astype(np.float32)[None]
    width = 1024
    rows = -(-n // width)
    map_x = np.zeros(rows * width, np.float32)
    map_y = np.zeros(rows * width, np.float32)
    map_x[:n], map_y[:n] = mx, my
    return map_x.reshape(rows, width), map_y.reshape(rows, width)


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


def _margin(ksize: int) -> int:
    return max(ksize, 1) // 2 + 1


def _usable_pixels(level: _Level, margin: int) -> int:
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
    moved = step @ corner_pts
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = moved[:2] / moved[2]
    return float(np.max(np.abs(moved - corner_pts[:2])))


def _normalise_matrix(matrix, motion) -> np.ndarray:
    matrix = matrix / matrix[2, 2]
    if motion != "homography":
        matrix = matrix.copy()
        matrix[2] = [0.0, 0.0, 1.0]
    return matrix


def _check_plausible(matrix, ref_shape, mov_shape) -> None:
    det = np.linalg.det(matrix[:2, :2])
    if not np.all(np.isfinite(matrix)) or det <= 1e-4 or det >= 1e4:
        raise AlignmentError(
            f"ECC converged to a degenerate transform (area scale {det:.3g}); try a simpler "
            "motion model (euclidean or translation), an init matrix, or a mask"
        )


# ---------------------------------------------------------------------------------- correlation
def full_correlation(ref, ref_valid, mov, mov_valid, matrix) -> float:
    """ECC of ``ref`` and ``mov`` warped by ``matrix`` over their overlap, at full resolution."""
    rows, cols = ref.shape
    if mov.shape == ref.shape and np.array_equal(matrix, np.eye(3)):
        warped = mov  # the identity needs no resampling
        valid = mov_valid
    else:
        source = mov
        if mov_valid is not None:
            source = mov.copy()
            source[~mov_valid] = np.nan
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        # NaN fill marks every output pixel whose interpolation reached outside `mov`.
        warped = warp_plane(source, matrix, (rows, cols), flags, (float("nan"),) * 4)
        valid = warped == warped
    if ref_valid is not None:
        valid = ref_valid if valid is None else valid & ref_valid
    mask = None if valid is None else valid.view(np.uint8)
    count = rows * cols if valid is None else int(np.count_nonzero(valid))
    if count < 16:
        return float("nan")
    # OpenCV's (masked) reductions accumulate in double: one pass each, no temporaries.
    ref_mean = cv2.mean(ref, mask=mask)[0]
    mov_mean = cv2.mean(warped, mask=mask)[0]
    ref_sq = cv2.norm(ref, cv2.NORM_L2SQR, mask=mask)
    mov_sq = cv2.norm(warped, cv2.NORM_L2SQR, mask=mask)
    diff_sq = cv2.norm(ref, warped, cv2.NORM_L2SQR, mask=mask)
    cross = 0.5 * (ref_sq + mov_sq - diff_sq) / count
    ref_var = ref_sq / count - ref_mean**2
    mov_var = mov_sq / count - mov_mean**2
    if ref_var <= 0 or mov_var <= 0:
        return float("nan")
    return (cross - ref_mean * mov_mean) / math.sqrt(ref_var * mov_var)
