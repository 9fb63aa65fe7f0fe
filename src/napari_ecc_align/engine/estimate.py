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
moving coordinates (see :mod:`.alignment`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .alignment import Alignment, AlignmentError
from .bilevel import bilevel_side, is_inverted, refine_bilevel, turned_over
from .ecc import (
    full_correlation,
    level_margin,
    pyramid,
    run_levels,
    usable_pixels,
)
from .finishing import (
    Pair,
    check_outcome,
    check_plausible,
    finish_runner_ups,
    nearer_identity,
    normalise_matrix,
)
from .geometry import from_level, to_level
from .initialisation import SEARCHES, choose_initialisation, with_skipped
from .options import check_dimensions, check_volume_motion, initial_matrix, validate_params
from .preprocess import as_array, normalise, shrink, split_channels
from .reference_side import check_thick_enough, reference_side
from .structure import content_depth, fixes
from .template import Template
from .volume_estimate import iter_align_volume

# The coarsest automatic level keeps at least this many pixels on its shorter side:
# small enough that a shift of 10 % of the image is about a pixel there.
_COARSEST_MIN_SIDE = 12
_MAX_AUTO_LEVELS = 8
# A coarsest level with fewer usable pixels than this is dropped.
_MIN_COARSE_PIXELS = 32
# Larger images are estimated on a copy halved (in their own dtype) until they fit.
_MAX_WORK_PIXELS = 40_000_000


@dataclass(frozen=True)
class Progress:
    """Reported by :func:`iter_align` after each pyramid level.

    Attributes
    ----------
    level : int
        The pyramid level just finished; 0 is full resolution.
    levels : int
        How many levels this estimate runs (so ``done / levels`` is the share done).
    done : int
        Levels finished so far, this one included.
    iterations : int
        ECC iterations this level took.
    correlation : float
        The correlation ECC reached on this level (on that level's images).
    """

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
    init="auto",
    reference_mask=None,
    moving_mask=None,
    ndim: int = 2,
    spacing=None,
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
        the image size so the coarsest level is about 12-25 pixels on its
        shorter side, which tolerates misalignments of roughly 5-10 % of the image.
    init : "auto", "identity", "phase", "fourier-mellin", "features", None or array_like
        Where ECC starts. ``"auto"`` (default) estimates candidate poses on a
        small pyramid level — phase correlation (translation), Fourier–Mellin
        (rotation and scale), ORB features + RANSAC (large rotations,
        perspective, low overlap) and the identity — refines each briefly with
        ECC and keeps the one with the highest correlation (of those within 0.01
        of it, the one that moves the image least); the name of one
        estimator forces it. Fourier–Mellin needs images at most 8 times longer
        than wide: beyond, ``"auto"`` skips it (``init_method`` says so) and
        ``"fourier-mellin"`` raises ``AlignmentError``. ``None`` or ``"identity"``
        starts from the identity. A 3×3 (or 2×3) matrix in the result's convention is used as
        given (projected onto ``motion``). ``Alignment.init_method`` says which
        start was used.
    reference_mask, moving_mask : array_like of bool, optional
        True where a pixel counts, with each image's ``(rows, cols)`` shape.
    ndim : {2, 3}
        2 (default): images as above. 3: ``reference`` and ``moving`` are volumes
        ``(z, y, x)`` (any dtype, shapes may differ; masks and NaN as in 2D); the
        motion is ``"translation"`` (3 parameters), ``"euclidean"`` (rigid in
        physical units, 6) or ``"affine"`` (12); ``init`` is ``"auto"``,
        ``"phase"``, ``"identity"``/None or a 4×4 matrix.
    spacing : (dz, dy, dx), optional
        Voxel size of both volumes (``ndim=3`` only; default isotropic). The
        pyramid does not halve z while z is coarser than y and x.

    Returns
    -------
    Alignment
        ``alignment.matrix`` is the 3×3 ``cv2.findTransformECC`` warp matrix; for
        volumes the 4×4 matrix mapping a reference voxel ``(x, y, z, 1)`` to
        moving-voxel coordinates.

    Raises
    ------
    TypeError, ValueError
        For invalid arguments; the message names the argument.
    AlignmentError
        When ECC cannot align the images (no overlap, no correlation, no
        convergence); the message says what to try.

    Notes
    -----
    When exactly one image is bilevel (bool, two-valued, or 99 % of its valid
    pixels at its two extremes: a binarised scan, a mask, a segmentation), plain
    ECC is biased by the different edge profiles. The pyramid's pose is then
    refined once more at full resolution with the grayscale image mapped through
    ``E[binary | gray]`` (measured at that pose), and a bilevel image that marks
    the other image's dark class is turned over first.
    ``alignment.parameters["bilevel"]`` (``"reference"`` or ``"moving"``) and
    ``["bilevel_inverted"]`` record it. ``python benchmarks/bench_binarised.py``
    measures it against OpenCV's calls on 144 binarised-vs-grayscale pairs.

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
        ndim=ndim,
        spacing=spacing,
    ):
        result = step
    return result


def iter_align(reference, moving, **kwargs) -> Iterator[Progress | Alignment]:
    """Generator form of :func:`align` for progress reporting and cancellation.

    Parameters
    ----------
    reference, moving : array_like or Template
        As for :func:`align`; ``reference`` may be a :class:`Template`.
    **kwargs
        The keyword arguments of :func:`align` (``motion``, ``max_iterations``,
        ``eps``, ``gauss_filter_size``, ``pyramid_levels``, ``init``,
        ``reference_mask``, ``moving_mask``), checked before any work starts.

    Yields
    ------
    Progress
        After each pyramid level, coarse to fine.
    Alignment
        Last, the result, exactly what :func:`align` returns.

    Raises
    ------
    TypeError, ValueError, AlignmentError
        As :func:`align`. Closing the generator early abandons the estimate.

    Examples
    --------
    >>> from napari_ecc_align import Progress, iter_align
    >>> from napari_ecc_align.data import natural_pair
    >>> reference, moving, truth = natural_pair((256, 256), seed=0)
    >>> steps = list(iter_align(reference, moving, motion="affine"))
    >>> all(isinstance(step, Progress) for step in steps[:-1])
    True
    >>> steps[-1].corner_error(truth) < 0.1
    True
    """
    ndim, spacing = check_dimensions(kwargs.pop("ndim", 2), kwargs.pop("spacing", None))
    if ndim == 3:
        yield from _iter_align_volume(reference, moving, spacing, kwargs)
        return
    start = time.perf_counter()
    params = validate_params(**kwargs)
    motion = params["motion"]
    if isinstance(reference, Template):
        if kwargs.get("reference_mask") is not None:
            raise ValueError(
                "reference_mask cannot be given with a Template reference: pass the mask "
                "to Template(reference, mask=...) instead"
            )
        prepared = reference
    else:
        prepared = Template(reference, kwargs.get("reference_mask"))
    moving = as_array(moving, "moving")
    ref_full = prepared.shape
    mov_full, _ = split_channels(moving, "moving")
    mov_mask = kwargs.get("moving_mask")
    # Images too large for float32 work within the memory budget are estimated on a
    # reduced copy (halved in their own dtype); the matrix is scaled back exactly.
    halvings = halvings_for_budget(ref_full, mov_full)
    if halvings:
        moving, mov_mask = shrink(moving, mov_mask, halvings)
    ref, ref_valid = prepared.normalised(halvings)
    mov, mov_valid = normalise(moving, "moving", mov_mask, "moving_mask")
    for name, shape in (("reference", ref.shape), ("moving", mov.shape)):
        check_thick_enough(name, shape, params["gauss_filter_size"])
    levels = params["pyramid_levels"] or auto_levels(ref.shape, mov.shape)
    levels = fit_levels(levels, ref.shape, mov.shape)
    ref_pyr = prepared.pyramid(halvings, levels)
    mov_pyr = pyramid(mov, mov_valid, levels)
    # One image binarised, the other not: a last pass on intensity-matched images, and a
    # mask of the dark class is turned over first (ECC climbs to positive correlation).
    bilevel = bilevel_side(ref, ref_valid, mov, mov_valid)
    inverted = bilevel is not None and is_inverted(ref_pyr, mov_pyr)
    if inverted and bilevel == "reference":
        ref_pyr = turned_over(ref_pyr)
        ref = ref_pyr[0].image
    elif inverted:
        mov_pyr = turned_over(mov_pyr)
        mov = mov_pyr[0].image
    # Masks and NaN holes can leave a coarse level with too little to fit: drop it.
    margin = level_margin(params["gauss_filter_size"])
    while (
        levels > 1
        and min(
            usable_pixels(ref_pyr[levels - 1], margin), usable_pixels(mov_pyr[levels - 1], margin)
        )
        < _MIN_COARSE_PIXELS
    ):
        levels -= 1
    if not params["pyramid_levels"]:  # automatic: drop coarsest levels flat for ECC
        ksize = params["gauss_filter_size"]
        levels = content_depth(levels, lambda k: fixes(
            lambda: reference_side(ref_pyr[k], ksize, "translation", k, None)))  # fmt: skip

    init = params["init"]
    if halvings and init is not None and not isinstance(init, str):
        init = to_level(initial_matrix(init, motion)[0], halvings)  # full-res matrix given
    top, staged, tried = levels - 1, True, ""
    if isinstance(init, str) and init in SEARCHES:
        # A global search on a small level, then the pyramid from that level down.
        found = choose_initialisation(ref_pyr, mov_pyr, levels, init, motion, params)
        init_matrix, init_method, top = found.matrix, found.method, found.level
        tried = ", ".join(c.describe() for c in found.tried)
        staged = False
        before_matrix = np.eye(3)
    else:
        init_matrix, init_method = initial_matrix(init, motion)
        before_matrix = init_matrix
    total = top + 1 + (bilevel is not None)  # the bilevel pass reports as one more level
    steps = run_levels(ref_pyr, mov_pyr, init_matrix, motion, params, top, 0, staged)
    done = 0
    failure = None
    matrix, iterations = init_matrix, []
    while True:
        try:
            level, n_iter, correlation = next(steps)
        except StopIteration as stop:
            matrix, iterations, correlation = stop.value
            break
        except AlignmentError as exc:
            if not tried:
                raise
            failure = exc
            break
        done += 1
        yield Progress(level, total, done, n_iter, correlation)

    corr_before = full_correlation(ref, ref_valid, mov, mov_valid, before_matrix)
    corr_after = -np.inf
    if failure is None:
        matrix = normalise_matrix(matrix, motion)
        corr_after = full_correlation(ref, ref_valid, mov, mov_valid, matrix)
        corr_after = corr_after if np.isfinite(corr_after) else -np.inf  # no overlap left
    pair = Pair(ref, ref_valid, mov, mov_valid, ref_pyr, mov_pyr, motion, params)
    if tried and not corr_after >= corr_before:
        # The small level can prefer a start that the full-resolution levels then make
        # worse than doing nothing: finish the runner-up starts and keep the best.
        best = finish_runner_ups(pair, found, (matrix, init_method, iterations, corr_after))
        matrix, init_method, iterations, corr_after = best
        if not np.isfinite(corr_after) and failure is not None:
            raise failure
    if tried and np.isfinite(corr_after):
        best = nearer_identity(pair, found, (matrix, init_method, iterations, corr_after))
        matrix, init_method, iterations, corr_after = best
    if bilevel is not None and np.isfinite(corr_after):
        refined = refine_bilevel(bilevel, ref_pyr[0], mov_pyr[0], matrix, motion, params)
        n_iter, correlation = 0, corr_after
        if refined is not None:
            candidate = normalise_matrix(refined[0], motion)
            value = full_correlation(ref, ref_valid, mov, mov_valid, candidate)
            if np.isfinite(value):  # else the pass slid off the overlap: keep the pose
                matrix, corr_after = candidate, value
                n_iter, correlation = refined[1], refined[2]
                iterations = [*iterations, n_iter]
        yield Progress(0, total, total, n_iter, correlation)
    check_plausible(matrix)
    check_outcome(corr_before, corr_after, tried=tried)
    if tried:
        init_method = with_skipped(init_method, found.tried)
    parameters = {k: v for k, v in params.items() if k != "init"}
    if bilevel is not None:
        parameters["bilevel"], parameters["bilevel_inverted"] = bilevel, inverted
    if halvings:
        matrix = from_level(matrix, halvings)
        parameters["estimated_at_scale"] = 0.5**halvings  # correlations are from there too
    yield Alignment(
        matrix=matrix,
        motion=motion,
        correlation=corr_after,
        correlation_before=corr_before,
        reference_shape=ref_full,
        moving_shape=mov_full,
        elapsed=time.perf_counter() - start,
        levels=top + 1 + halvings,
        init_method=init_method,
        iterations=tuple(iterations),
        parameters=parameters,
    )


def _iter_align_volume(reference, moving, spacing, kwargs):
    """``iter_align(..., ndim=3)``: the volume engine, with this module's checks."""
    if isinstance(reference, Template):
        raise TypeError("a Template holds a 2D reference; pass the reference volume itself")
    params = validate_params(**kwargs)
    check_volume_motion(params["motion"])
    steps = iter_align_volume(reference, moving, params, spacing,
                              kwargs.get("reference_mask"), kwargs.get("moving_mask"))  # fmt: skip
    for step in steps:
        yield Progress(*step) if isinstance(step, tuple) else step


# ------------------------------------------------------------------------------------ arguments
def halvings_for_budget(ref_shape, mov_shape) -> int:
    """How often to halve both images so each has at most ``_MAX_WORK_PIXELS`` pixels.

    The engine keeps about eight float32 copies of each image (normalised, blurred,
    gradients, pyramid); 40 MP per image keeps that near 1.5 GB in all.
    """
    pixels = max(ref_shape[0] * ref_shape[1], mov_shape[0] * mov_shape[1])
    halvings = 0
    while pixels > _MAX_WORK_PIXELS:
        pixels /= 4
        halvings += 1
    return halvings


def auto_levels(ref_shape, mov_shape) -> int:
    """Pyramid depth keeping the coarsest level at least 12 px on its shorter side."""
    side = min(min(ref_shape), min(mov_shape))
    if side < 2 * _COARSEST_MIN_SIDE:
        return 1
    return min(_MAX_AUTO_LEVELS, int(math.log2(side / _COARSEST_MIN_SIDE)) + 1)


def fit_levels(levels: int, ref_shape, mov_shape) -> int:
    """Reduce ``levels`` so no level is smaller than 8 px on a side."""
    side = min(min(ref_shape), min(mov_shape))
    while levels > 1 and side / 2 ** (levels - 1) < 8:
        levels -= 1
    return levels
