"""``align(..., ndim=3)``: ECC for two volumes, coarse to fine on an anisotropic pyramid.

The same recipe as in 2D, and the same shared parts (:func:`~.ecc.climb`'s iterations,
:class:`~.reference_side.Samples`' moment algebra, :func:`~.initialisation.
prefer_nearest_identity`'s ranking): a pyramid from :func:`~.volume.plan_levels`, a
rough pose from 3D phase correlation (windowed, every wrap-around reading, sub-voxel
peak) and the identity, each refined briefly on a small level; then inverse-compositional
ECC on gradient-selected voxels, level by level, with translation → rigid → full model
on the coarsest level when starting from the identity.

Matrices are 4×4: reference voxel (x, y, z, 1) → moving voxel (x, y, z).
"""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
from scipy import ndimage

from .alignment import Alignment, AlignmentError
from .ecc import climb
from .finishing import check_outcome, check_plausible
from .geometry import from_level, grid_corners, project_to_motion, to_level
from .initialisation import Candidate, choose_candidate, with_skipped
from .levels import coarse_to_fine
from .options import VOLUME_SEARCHES, check_volume_motion, initial_matrix
from .reference_side import level_margin
from .spectral import Skipped, check_phase_grid
from .structure import content_depth, first_level_that_works, fixes
from .volume import (
    blurred,
    check_spacing,
    delta_matrix,
    level_spacing,
    normalise_volume,
    normaliser,
    plan_levels,
    reference_samples,
    volume_pyramid,
)

# The rough pose is searched on the finest level at most this long on every axis.
VOLUME_SEARCH_SIDE = 64
_REFINE_ITERATIONS = 10
_PHASE_PEAKS = 2
# Phase-correlation readings refined by ECC (ranked by their raw correlation first), and
# the identity's refined correlation that makes the search unnecessary.
_REFINE_PHASE = 2
_GOOD_CORRELATION = 0.95
# The reported correlations are measured on every stride-th voxel along each axis, the
# stride chosen so at most this many voxels are resampled (scipy's trilinear warp of a
# whole 96x192x192 volume took 0.5 s, a third of the estimate).
_CORRELATION_VOXELS = 500_000


def iter_align_volume(reference, moving, params, spacing, reference_mask=None, moving_mask=None):
    """Generator behind ``iter_align(..., ndim=3)``: yields ``(level, levels, done,
    iterations, correlation)`` tuples after each level, then the :class:`Alignment`."""
    start = time.perf_counter()
    motion = params["motion"]
    check_volume_motion(motion)
    spacing = check_spacing(spacing)
    ref, ref_valid = normalise_volume(reference, "reference", reference_mask, "reference_mask")
    mov, mov_valid = normalise_volume(moving, "moving", moving_mask, "moving_mask")
    grid = correlation_grid(ref, ref_valid)  # before the prefilter overwrites ``ref``
    factors = plan_levels(ref.shape, mov.shape, spacing, params["pyramid_levels"])
    ref_pyr = volume_pyramid(ref, ref_valid, factors)
    mov_pyr = volume_pyramid(mov, mov_valid, factors)
    levels = len(factors)
    if not params["pyramid_levels"]:  # automatic: drop coarsest levels flat for ECC
        levels = content_depth(levels, _fixes_translation(ref_pyr, factors, spacing, params))
        del factors[levels:], ref_pyr[levels:], mov_pyr[levels:]
    init = params["init"]
    if isinstance(init, str) and init in VOLUME_SEARCHES:
        matrix, init_method, top = _initialise(ref_pyr, mov_pyr, factors, spacing, motion,
                                               params, init)  # fmt: skip
        staged, before = False, np.eye(4)
    else:  # raises for another name, with the searches volumes have
        matrix, init_method = initial_matrix(init, motion, ndim=3, spacing=spacing)
        top, staged, before = levels - 1, True, matrix
    steps = run_volume_levels(ref_pyr, mov_pyr, matrix, motion, params, factors, spacing,
                              top, 0, staged, release=True)  # fmt: skip
    done = 0
    while True:
        try:
            level, n_iter, correlation = next(steps)
        except StopIteration as stop:
            matrix, iterations, _ = stop.value
            break
        done += 1
        yield level, top + 1, done, n_iter, correlation
    matrix = project_volume(matrix, motion, spacing)
    for level in (*ref_pyr, *mov_pyr):  # blurred copies and samples: not needed any more
        if level is not None:
            level.memo.clear()
    ref_grid, grid_valid, stride = grid
    ref_shape = ref.shape
    del ref, mov, ref_pyr, mov_pyr  # blurred in place at full resolution: see _ecc_level
    mov, mov_valid = normalise_volume(moving, "moving", moving_mask, "moving_mask")
    corr_before = volume_correlation(ref_grid, grid_valid, mov, mov_valid, before, stride)
    corr_after = volume_correlation(ref_grid, grid_valid, mov, mov_valid, matrix, stride)
    check_plausible(matrix)
    check_outcome(corr_before, corr_after, images="volumes", scene="sample")
    parameters = {k: v for k, v in params.items() if k != "init"}
    parameters["spacing"] = list(spacing)
    yield Alignment(
        matrix=matrix,
        motion=motion,
        correlation=corr_after,
        correlation_before=corr_before,
        reference_shape=ref_shape,
        moving_shape=mov.shape,
        elapsed=time.perf_counter() - start,
        levels=top + 1,
        init_method=init_method,
        iterations=tuple(iterations),
        parameters=parameters,
    )


def _fixes_translation(ref_pyr, factors, spacing, params):
    """``level -> bool``: whether the reference can fix a translation on that level."""
    ksize = params["gauss_filter_size"]
    margin = level_margin(ksize)

    def probe(k):
        spaced = level_spacing(spacing, factors[k])
        return fixes(lambda: reference_samples(ref_pyr[k], ksize, "translation", k, spaced, margin))

    return probe


def project_volume(matrix, motion, spacing=None) -> np.ndarray:
    """:func:`~.geometry.project_to_motion` for a 4×4, with ``spacing`` checked
    (None: isotropic)."""
    return project_to_motion(matrix, motion, check_spacing(spacing))


# --------------------------------------------------------------------------------- levels
def run_volume_levels(ref_pyr, mov_pyr, matrix, motion, params, factors, spacing, top,
                      bottom=0, staged=True, release=False):  # fmt: skip
    """ECC from level ``top`` down to ``bottom`` from the full-resolution ``matrix``;
    yields ``(level, iterations, correlation)``, returns the full-resolution matrix,
    the iterations per level and the last correlation (the loop is
    :func:`~.levels.coarse_to_fine`, shared with images). With ``release``, the
    pyramids' levels are dropped from the lists once passed (for the final run)."""

    def fit(level, matrix, stage, budget, tolerance):
        return _ecc_level(
            ref_pyr[level], mov_pyr[level], matrix, stage,
            {**params, "max_iterations": budget}, level,
            level_spacing(spacing, factors[level]), tolerance,
        )  # fmt: skip

    def descend(matrix, level):
        return to_level(from_level(matrix, factors[level + 1]), factors[level])

    def level_done(level):
        if level > bottom:  # nothing runs on this level again: free its samples and copies
            ref_pyr[level].memo.clear()
            mov_pyr[level].memo.clear()
            if release:  # the last run over this pyramid: free the level's volumes too
                ref_pyr[level] = mov_pyr[level] = None

    steps = coarse_to_fine(
        fit, descend, to_level(matrix, factors[top]), motion, params["max_iterations"], top,
        bottom, staged, level_done,
    )  # fmt: skip
    matrix, iterations, correlation = yield from steps
    return from_level(matrix, factors[bottom]), iterations, correlation


def _ecc_level(ref, mov, matrix, motion, params, level, spacing, tolerance):
    ksize = params["gauss_filter_size"]
    margin = level_margin(ksize)
    # At full resolution nothing reads the plain values again (the correlations use a
    # strided copy of the reference and a fresh copy of the moving volume), so the
    # prefilter overwrites them: a blurred copy of each would be the memory peak.
    problem = reference_samples(ref, ksize, motion, level, spacing, margin, level == 0)
    mov_img = blurred(mov, ksize, spacing, level == 0)
    key = ("usable", margin)
    if key not in mov.memo:
        usable = mov.valid
        if usable is not None:
            usable = ndimage.binary_erosion(usable, iterations=margin, border_value=1)
        mov.memo[key] = usable
    mov_ok = mov.memo[key]
    norm, norm_inv = normaliser(ref.image.shape, spacing)
    corners = grid_corners(ref.image.shape)
    min_overlap = max(4 * problem.n_params, problem.n // 20)

    def evaluate(candidate):
        values, inside, usable = problem.sample_moving(mov_img, mov_ok, candidate, margin)
        return None if usable < min_overlap else problem.update(values, inside, usable)

    def make_step(delta):
        step = norm_inv @ delta_matrix(motion, delta) @ norm
        try:
            step_inv = np.linalg.inv(step)
        except np.linalg.LinAlgError:
            return None, math.inf
        moved = float(np.abs((step @ corners - corners)[:3]).max())
        return step_inv, (moved if math.isfinite(moved) else math.inf)

    state = evaluate(matrix)
    if state is None:
        raise AlignmentError(
            f"the volumes barely overlap at the initial pose (pyramid level {level}); "
            "give an init matrix close to the answer, or check which volume is which"
        )
    return climb(evaluate, state, matrix, make_step, params, tolerance)


def correlation_grid(ref, ref_valid):
    """``(grid, valid, stride)``: copies of every stride-th reference voxel (and of its
    mask), with at most about ``_CORRELATION_VOXELS`` of them, for :func:`volume_correlation`."""
    stride = max(1, math.ceil((ref.size / _CORRELATION_VOXELS) ** (1 / 3)))
    step = np.s_[::stride, ::stride, ::stride]
    valid = None if ref_valid is None else ref_valid[step].copy()
    return ref[step].copy(), valid, stride


def volume_correlation(grid, grid_valid, mov, mov_valid, matrix, stride=1) -> float:
    """ECC of the reference voxels ``grid`` (every ``stride``-th, see
    :func:`correlation_grid`) and ``mov`` warped by ``matrix``, over their overlap
    (trilinear)."""
    on_grid = matrix @ np.diag([float(stride)] * 3 + [1.0])
    zyx = _zyx(on_grid)
    source = mov if mov_valid is None else np.where(mov_valid, mov, np.nan).astype(np.float32)
    warped = ndimage.affine_transform(source, zyx[:3, :3], zyx[:3, 3], output_shape=grid.shape,
                                      order=1, mode="constant", cval=np.nan)  # fmt: skip
    ok = np.isfinite(warped)
    if grid_valid is not None:
        ok &= grid_valid
    if np.count_nonzero(ok) < 16:
        return float("nan")
    r, w = grid[ok].astype(np.float64), warped[ok].astype(np.float64)
    r -= r.mean()
    w -= w.mean()
    denominator = math.sqrt(float(np.dot(r, r)) * float(np.dot(w, w)))
    return float(np.dot(r, w) / denominator) if denominator > 0 else float("nan")


def _zyx(matrix) -> np.ndarray:
    """A 4×4 over (x, y, z) as the same map over (z, y, x) indices (scipy's order)."""
    perm = np.eye(4)[[2, 1, 0, 3]]
    return perm @ matrix @ perm


# ------------------------------------------------------------------------- initialisation
def _initialise(ref_pyr, mov_pyr, factors, spacing, motion, params, search):
    small = next(
        (k for k in range(len(factors))
         if max(*ref_pyr[k].image.shape, *mov_pyr[k].image.shape) <= VOLUME_SEARCH_SIDE),
        len(factors) - 1,
    )  # fmt: skip
    refine = {**params, "max_iterations": min(params["max_iterations"], _REFINE_ITERATIONS)}
    # A search level that cannot fix the motion moves to the next finer one (.structure).
    return first_level_that_works(
        lambda level: _search(ref_pyr, mov_pyr, factors, spacing, motion, refine, search, level),
        small,
    )


def _search(ref_pyr, mov_pyr, factors, spacing, motion, refine, search, small):
    """The start search on level ``small``: ``(matrix, init_method, small)``."""
    tried = []
    if search == "auto":
        tried.append(Candidate("identity", np.eye(4), path="via the coarse levels"))
        _refine(tried[-1], ref_pyr, mov_pyr, factors, spacing, motion, refine, len(factors) - 1,
                small)  # fmt: skip
    if not (tried and tried[0].correlation >= _GOOD_CORRELATION):
        ref_small, mov_small = ref_pyr[small], mov_pyr[small]
        ranked, shifts = [], []
        try:
            shifts = phase_shifts(ref_small.image, mov_small.image)
        except Skipped as exc:
            if search != "auto":
                raise AlignmentError(
                    f"init='phase' cannot be used on these volumes: {exc}; use "
                    "init='identity' or a 4x4 matrix"
                ) from None
            tried.append(Candidate("phase", np.eye(4), error=str(exc), skipped=exc.reason))
        for shift in shifts:
            on_level = np.eye(4)
            on_level[:3, 3] = shift
            score = volume_correlation(ref_small.image, ref_small.valid, mov_small.image,
                                       mov_small.valid, on_level)  # fmt: skip
            ranked.append((score if np.isfinite(score) else -1.0, shift))
        ranked.sort(key=lambda item: -item[0])
        for _, shift in ranked[:_REFINE_PHASE]:
            matrix = np.eye(4)
            matrix[:3, 3] = np.asarray(shift) * np.array(factors[small][::-1], float)
            tried.append(Candidate("phase", matrix))
            _refine(tried[-1], ref_pyr, mov_pyr, factors, spacing, motion, refine, small, small)
    shape = ref_pyr[0].image.shape
    chosen, method = choose_candidate(tried, shape, "volumes show the same sample")
    return chosen.refined, with_skipped(method, tried), small


def _refine(cand, ref_pyr, mov_pyr, factors, spacing, motion, params, top, small):
    cand.finish(run_volume_levels(ref_pyr, mov_pyr, cand.matrix, motion, params, factors,
                                  spacing, top, small, staged=True))  # fmt: skip


def phase_shifts(ref: np.ndarray, mov: np.ndarray, peaks: int = _PHASE_PEAKS):
    """Shifts (dx, dy, dz) with mov(v + d) ≈ ref(v), strongest peaks first, each with
    every wrap-around reading that leaves a tenth of the reference overlapping."""
    shape = check_phase_grid(ref.shape, mov.shape)  # raises Skipped for a wasteful grid
    window = np.ones(shape, np.float32)
    for axis, n in enumerate(shape):
        taper = np.hanning(n).astype(np.float32) if n > 2 else np.ones(n, np.float32)
        window *= taper.reshape([-1 if k == axis else 1 for k in range(3)])

    def spectrum(image):
        padded = np.full(shape, float(image.mean()), np.float32)
        padded[tuple(slice(0, n) for n in image.shape)] = image
        return np.fft.rfftn((padded - padded.mean()) * window)

    cross = spectrum(mov) * np.conj(spectrum(ref))
    cross /= np.abs(cross) + 1e-12
    correlation = np.fft.irfftn(cross, s=shape, axes=(0, 1, 2))
    surface = ndimage.uniform_filter(correlation, size=3, mode="wrap")
    shifts = []
    for _ in range(peaks):
        peak = np.unravel_index(int(np.argmax(surface)), shape)
        around = [[(p + k) % n for k in (-1, 0, 1)] for p, n in zip(peak, shape, strict=True)]
        patch = np.clip(surface[np.ix_(*around)], 0, None)
        total = patch.sum() or 1.0
        offsets = [float((patch.sum(axis=tuple(a for a in range(3) if a != axis)) * [-1, 0, 1])
                         .sum() / total) for axis in range(3)]  # fmt: skip
        fine = [p + o for p, o in zip(peak, offsets, strict=True)]
        for reading in itertools.product(*[(f, f - n) for f, n in zip(fine, shape, strict=True)]):
            dz, dy, dx = reading
            overlap = np.prod([max(0.0, min(r, m - d) - max(0.0, -d)) for r, m, d in
                               zip(ref.shape, mov.shape, reading, strict=True)])  # fmt: skip
            if overlap >= 0.1 * ref.size:
                shifts.append((dx, dy, dz))
        blank = [[(p + k) % n for k in range(-2, 3)] for p, n in zip(peak, shape, strict=True)]
        surface[np.ix_(*blank)] = -np.inf
    return shifts
