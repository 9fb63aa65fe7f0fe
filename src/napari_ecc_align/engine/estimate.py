"""The ECC engine's driver: :func:`align` and :func:`iter_align`, for images and volumes.

Why not just call ``cv2.findTransformECC``? At full resolution one call costs
seconds per iteration on a page scan and converges to the wrong pose when the
images are a few pixels apart. Here the pose is estimated on a Gaussian pyramid
(``cv2.pyrDown`` for images, an anisotropy-aware one for volumes), coarse to fine.
On each level we run the inverse-compositional form of ECC (Evangelidis & Psarakis,
TPAMI 2008, section 3.2): the Jacobian of the *reference* is computed once per level,
so each iteration only resamples the moving image at the sample points and solves a
p×p system. On large levels the sample points are the pixels (voxels) with the
strongest gradients along each axis, which carry almost all of ECC's information;
coarse levels use every valid one.

:func:`iter_align` is a handful of steps written once for any dimensionality:
prepare the pair (:class:`~.image_pair.ImagePair` or :class:`~.volume_pair.VolumePair`:
working copies, pyramids, depth), find the starting pose (:mod:`.initialisation`), run
the pyramid coarse to fine (:func:`~.ecc.run_levels`), measure, apply the finishing
rules (:mod:`.finishing`), and check the result. Multimodal and bilevel pairs run the
pyramid on intensity-mapped images (:mod:`.intensity`).

The matrix convention is ``cv2.findTransformECC``'s: reference (x, y[, z], 1) →
moving coordinates (see :mod:`.alignment`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .alignment import Alignment, AlignmentError
from .ecc import run_levels
from .finishing import Pair, check_outcome, check_plausible, finish_runner_ups, nearer_identity
from .geometry import to_level, turn_degrees
from .image_pair import ImagePair
from .initialisation import (
    MAX_REFINE_TURN,
    NEAR_EQUAL,
    SURE_CORRELATION,
    Candidate,
    Initialisation,
    choose_initialisation,
    with_skipped,
)
from .intensity import (
    DECISION_SAMPLES,
    MARKEDLY_WORSE,
    MARKEDLY_WORSE_UNALIGNED,
    Mapping,
    measure_at,
)
from .options import check_dimensions, validate_params
from .sources import resolve_pair
from .template import Template
from .volume_pair import VolumePair

# A binarised reference: the moving grayscale samples are mapped after the prefilter (see
# .intensity). A binarised moving image: the grayscale reference is mapped before it;
# mapping its samples after the blur would scale the Jacobian by the map's slope, which
# a step puts on a few samples only (one of 144 binarised pairs ended 815 px off).
BILEVEL_MAPPING = {"reference": Mapping("moving", True), "moving": Mapping("reference", False)}


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
    gauss_filter_size: int | None = None,
    pyramid_levels: int | None = None,
    init="auto",
    intensity: str = "auto",
    reference_mask=None,
    moving_mask=None,
    ndim: int | None = None,
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
        Dask and zarr arrays are loaded when they fit the 40 MP working budget;
        beyond it they are halved region by region and read in tiles, never whole
        (2D; volumes are loaded). A list of arrays is a pyramid, finest level first
        (napari's multiscale data): its stored levels replace the halving. An
        OME-Zarr image (NGFF 0.4 or 0.5) is given by its path, its zarr group or
        :func:`~napari_ecc_align.read_ome_zarr`'s result: its stored pyramid is used,
        and a volume's voxel size comes from its ``coordinateTransformations``.
    motion : {"translation", "euclidean", "affine", "homography"}
        The motion model (degrees of freedom: 2, 3, 6, 8).
    max_iterations : int
        ECC iterations allowed on *each* pyramid level.
    eps : float
        ECC stops on a level when the correlation rises by less than ``eps``
        between two iterations (or when an update moves the image corners by
        less than 0.001 pixel). Applies per level.
    gauss_filter_size : int or None
        Size of the Gaussian blur applied to both images on every level before
        ECC (odd; 0 or 1 disables it), as in ``cv2.findTransformECC``. None
        (default): 5 on the pyramid's coarse levels and 3 at full resolution,
        where a wider blur biases the answer on real images (measured in the README).
    pyramid_levels : int or None
        Number of pyramid levels (1 = full resolution only). None chooses it from
        the image size so the coarsest level is about 12-25 pixels on its
        shorter side, which tolerates misalignments of roughly 5-10 % of the image.
    init : str, None, array_like or (array_like, array_like)
        Where ECC starts: ``"auto"``, ``"identity"``, ``"phase"``, ``"fourier-mellin"``,
        ``"features"``, None, a matrix (or an ``Alignment``, e.g. from
        ``load_transform``), or two point arrays. ``"auto"`` (default)
        estimates candidate poses on a small pyramid level — phase correlation
        (translation), Fourier–Mellin (rotation and scale), ORB features + RANSAC (large rotations,
        perspective, low overlap) and the identity — refines each briefly with
        ECC and keeps the one with the highest correlation (of those within 0.01
        of it, the one that moves the image least); the name of one
        estimator forces it. Fourier–Mellin needs images at most 8 times longer
        than wide: beyond, ``"auto"`` skips it (``init_method`` says so) and
        ``"fourier-mellin"`` raises ``AlignmentError``. ``None`` or ``"identity"``
        starts from the identity. A 3×3 (or 2×3) matrix in the result's convention is used as
        given (projected onto ``motion``). A pair ``(reference_points, moving_points)``
        of corresponding ``(row, col)`` (volumes: ``(z, y, x)``) points starts from
        their least-squares fit of ``motion`` (rigid: Umeyama; affine: least squares;
        homography: DLT), which reaches poses no search does (a half turn, half the
        image away, twice the scale) with 3–4 pairs. ``Alignment.init_method`` says
        which start was used.
    intensity : {"auto", "linear", "mapped"}
        How the intensities relate. ``"linear"``: plain ECC, which assumes the
        images differ by a gain and an offset. ``"mapped"``: on every level the
        function mapping one image's intensities onto the other's is measured at
        the current pose (a conditional mean over 32 intensity bins, each pulled
        towards the straight-line fit by 20 pseudo-samples) and ECC runs on the
        mapped image: two modalities (T1 vs proton-density MRI), binarised vs
        grayscale, a channel whose dyes swap brightness. The image whose
        intensities predict the other's better is the one mapped. ``"auto"``
        (default) maps when exactly one image is bilevel, or when the mapping
        explains at least 5 % more of the other image's variance than a line and
        leaves at most 1/1.1 of what the line leaves unexplained, judged where the
        start search put the images (before the search, at the identity or the
        given start, it must leave at most 1/2, and the search then refines on
        mapped images too); gray pairs of one modality gain under 2 % and stay linear.
    reference_mask, moving_mask : array_like of bool, optional
        True where a pixel counts, with each image's ``(rows, cols)`` shape.
    ndim : {2, 3}, optional
        2 (default; 3 when an OME-Zarr input is a volume): images as above. 3:
        ``reference`` and ``moving`` are volumes ``(z, y, x)`` (any dtype, shapes may
        differ; masks and NaN as in 2D); the motion is ``"translation"`` (3
        parameters), ``"euclidean"`` (rigid in physical units, 6) or ``"affine"``
        (12); ``init`` is ``"auto"``,
        ``"phase"``, ``"identity"``/None or a 4×4 matrix.
    spacing : (dz, dy, dx), optional
        Voxel size of both volumes (``ndim=3`` only; default: the one OME-Zarr
        inputs state, else isotropic). The pyramid does not halve z while z is
        coarser than y and x.

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
    ECC is biased by the different edge profiles; ``intensity="auto"`` then maps
    the grayscale image through ``E[binary | gray]``, and a bilevel image that
    marks the other image's dark class is turned over first.
    ``alignment.parameters["bilevel"]`` (``"reference"`` or ``"moving"``) and
    ``["bilevel_inverted"]`` record it. ``python benchmarks/bench_binarised.py``
    measures it against OpenCV's calls on 144 binarised-vs-grayscale pairs, and
    ``benchmarks/bench_real.py`` the multimodal pairs against SimpleITK.

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
        intensity=intensity,
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
        ``eps``, ``gauss_filter_size``, ``pyramid_levels``, ``init``, ``intensity``,
        ``reference_mask``, ``moving_mask``, ``ndim``, ``spacing``), checked before
        any work starts.

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
    start = time.perf_counter()
    reference, moving, ndim, spacing = resolve_pair(
        reference, moving, kwargs.pop("ndim", None), kwargs.pop("spacing", None)
    )
    ndim, spacing = check_dimensions(ndim, spacing)
    if ndim == 3 and isinstance(reference, Template):
        raise TypeError("a Template holds a 2D reference; pass the reference volume itself")
    params = validate_params(**kwargs)
    masks = kwargs.get("reference_mask"), kwargs.get("moving_mask")
    if ndim == 3:
        pair = VolumePair(reference, moving, params, spacing, *masks)
    else:
        pair = ImagePair(reference, moving, params, *masks)
    # Whether to map intensities: before a search judged at the identity (strictly; the
    # search then refines its candidates on mapped levels too), and from where the search,
    # or the given start, put the images.
    if _searches(pair):
        pair.mapping = _mapping(pair, np.eye(pair.grid.ndim + 1), pair.levels - 1, True)
    begin = _starting_pose(pair)
    if pair.mapping is None:
        pair.mapping = _mapping(pair, begin.matrix, begin.top)
    total = begin.top + 1
    matrix, iterations, failure = yield from _run_pyramid(pair, begin, total)
    outcome = _outcome(pair, begin, matrix, iterations, failure)
    _check_refinement(pair, begin, outcome)
    yield _result(pair, begin, outcome, time.perf_counter() - start)


@dataclass
class _Start:
    """Where the pyramid run starts: the pose (at working resolution: a huge image is
    estimated halved), how it was found, the level, whether to stage the motions there,
    the pose "before" and the search."""

    matrix: np.ndarray
    method: str
    top: int
    staged: bool
    before: np.ndarray
    found: Initialisation | None = None


@dataclass
class _Outcome:
    matrix: np.ndarray
    method: str
    iterations: list
    correlation: float
    correlation_before: float
    tried: str = ""


def _starting_pose(pair: Pair) -> _Start:
    """A search on a small level (``init`` names one), or the given start on the
    coarsest level with the motions staged."""
    init = pair.params["init"]
    if _searches(pair):
        found = choose_initialisation(pair.grid, pair.ref_pyr, pair.mov_pyr, pair.levels, init,
                                      pair.motion, pair.params, pair.mapping)  # fmt: skip
        identity = np.eye(pair.grid.ndim + 1)
        return _Start(found.matrix, found.method, found.level, False, identity, found)
    matrix, method = pair.given_start(init)  # raises for another name
    return _Start(matrix, method, pair.levels - 1, True, matrix)


def _searches(pair: Pair) -> bool:
    """Whether ``init`` names a start search (else it is a given start)."""
    init = pair.params["init"]
    return isinstance(init, str) and init in pair.grid.searches()


def _mapping(pair: Pair, matrix, top: int, unaligned: bool = False) -> Mapping | None:
    """How to map intensities (see :mod:`.intensity`), judged at ``matrix`` (working
    resolution) on level ``top``, or a finer one when that has too few pixels to measure
    on (``unaligned``: before the search, more strictly); None: plain ECC."""
    mode = pair.params["intensity"]
    if mode == "linear":
        return None
    if pair.bilevel is not None:  # the grayscale image, onto the binarised one
        return BILEVEL_MAPPING[pair.bilevel]
    level = next(
        (k for k in range(top, 0, -1) if pair.ref_pyr[k].image.size >= DECISION_SAMPLES), 0
    )
    start = to_level(matrix, pair.grid.factors(level))
    relation = measure_at(pair.grid, pair.ref_pyr[level], pair.mov_pyr[level], start)
    if relation is None:
        return None
    worse = MARKEDLY_WORSE_UNALIGNED if unaligned else MARKEDLY_WORSE
    if mode == "mapped" or relation.markedly_better(worse):
        return Mapping(relation.side)
    return None


def _run_pyramid(pair: Pair, begin: _Start, total: int):
    """The coarse-to-fine run, yielding :class:`Progress`; returns ``(matrix,
    iterations, failure)``. After a search, a failure is kept for the finishing rules."""
    steps = run_levels(pair.grid, pair.ref_pyr, pair.mov_pyr, begin.matrix, pair.motion,
                       pair.params, begin.top, 0, begin.staged, pair.releases_pyramids,
                       pair.mapping)  # fmt: skip
    done = 0
    while True:
        try:
            level, n_iter, correlation = next(steps)
        except StopIteration as stop:
            matrix, iterations, _ = stop.value
            return matrix, iterations, None
        except AlignmentError as exc:
            if begin.found is None:
                raise
            return begin.matrix, [], exc
        done += 1
        yield Progress(level, total, done, n_iter, correlation)


def _outcome(pair: Pair, begin: _Start, matrix, iterations, failure) -> _Outcome:
    """The final correlations, and the finishing rules of a search (runner-ups when the
    chosen start ended worse than no alignment, the identity among near-equals)."""
    if failure is None:
        matrix = pair.final(matrix)
    pair.release()
    corr_before = pair.correlation(begin.before)
    corr_after = -np.inf
    if failure is None:
        corr_after = pair.correlation(matrix)
        corr_after = corr_after if np.isfinite(corr_after) else -np.inf  # no overlap left
    best = (matrix, begin.method, iterations, corr_after)
    found, tried = begin.found, ""
    if found is not None:
        tried = ", ".join(c.describe() for c in found.tried)
        if not corr_after >= corr_before:
            best = finish_runner_ups(pair, found, best)
            if not np.isfinite(best[3]) and failure is not None:
                raise failure
        if np.isfinite(best[3]):
            best = nearer_identity(pair, found, best)
    if np.isfinite(best[3]):
        best = _refined(pair, best)
    return _Outcome(*best, corr_before, tried)


def _refined(pair: Pair, best: tuple) -> tuple:
    """``best`` after the last level the pyramid run leaves out (images estimated on a
    halved copy, see :meth:`~.finishing.Pair.refine`), if that keeps an overlap."""
    matrix, method, iterations, _ = best
    refined, more = pair.refine(matrix)
    if more is None:
        return best
    value = pair.correlation(refined)
    if not np.isfinite(value):
        return best
    pair.refined = True
    return refined, method, [*iterations, more], value


def _check_refinement(pair: Pair, begin: _Start, outcome: _Outcome) -> None:
    """A given start that ECC turned further than ``MAX_REFINE_TURN``, to a correlation
    below ``SURE_CORRELATION``, is checked against the automatic search: if that finds a
    pose correlating clearly better, the result is a look-alike (a brain slice turned by
    180° correlates 0.90 with itself), and an ``AlignmentError`` says so instead of
    returning it."""
    if begin.found is not None or not outcome.correlation < SURE_CORRELATION:
        return
    turned = turn_degrees(outcome.matrix, begin.matrix)
    if not turned > MAX_REFINE_TURN:
        return
    pyramids = pair.pyramids_for_finishing()  # volumes: rebuilt once for search and finish
    try:
        found = choose_initialisation(pair.grid, *pyramids, pair.levels, "auto", pair.motion,
                                      pair.params, pair.mapping)  # fmt: skip
    except AlignmentError:
        return
    start = Candidate(found.method, found.matrix, refined=found.matrix)
    searched = pair.finish(start, found.level, pyramids)
    if searched is None or not searched[3] > outcome.correlation + NEAR_EQUAL:
        return
    raise AlignmentError(
        f"ECC turned the {pair.grid.noun}s {turned:.0f}° away from the given start, to a "
        f"correlation of {outcome.correlation:.3f}, but init='auto' finds a pose "
        f"correlating {searched[3]:.3f}: the start is too far from the answer for a "
        "refinement; use init='auto' or an init matrix near the answer"
    )


def _result(pair: Pair, begin: _Start, outcome: _Outcome, elapsed: float) -> Alignment:
    """The checks every estimate passes, then the :class:`Alignment`."""
    # Unrelated images first: noise against a volume can also collapse the grid, and
    # "they look unrelated" says more than "degenerate".
    check_outcome(outcome.correlation_before, outcome.correlation, images=f"{pair.grid.noun}s",
                  scene=pair.grid.scene, tried=outcome.tried)  # fmt: skip
    check_plausible(outcome.matrix)
    method = outcome.method
    if begin.found is not None:
        method = with_skipped(method, begin.found.tried)
    parameters = {k: v for k, v in pair.params.items() if k != "init"}
    parameters["intensity_mapped"] = None if pair.mapping is None else pair.mapping.side
    matrix, reference_shape, moving_shape, halvings = pair.result(outcome.matrix, parameters)
    return Alignment(
        matrix=matrix,
        motion=pair.motion,
        correlation=outcome.correlation,
        correlation_before=outcome.correlation_before,
        reference_shape=reference_shape,
        moving_shape=moving_shape,
        elapsed=elapsed,
        levels=begin.top + 1 + halvings,
        init_method=method,
        iterations=tuple(outcome.iterations),
        parameters=parameters,
    )
