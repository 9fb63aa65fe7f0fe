"""Stacks: align every frame of a time-lapse (or z-stack) onto one reference grid.

Frames are read one at a time (``np.asarray(stack[index])``), so numpy arrays,
memory-mapped TIFFs and dask arrays larger than memory all work. Every frame's
matrix maps a pixel of the common reference grid to that frame's pixel (the
:class:`~napari_ecc_align.Alignment` convention), so ``warp(frame, matrix)``
puts the frame on the grid. Frames are aligned in a thread pool: OpenCV and
numpy release the GIL for about 80 % of ECC's work. For a fixed reference (first,
an index, or each pass's mean) the reference side of ECC (pyramid, samples,
Jacobians) is prepared once and shared by all frames (:class:`~napari_ecc_align.Template`).
No Qt here.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import (
    SEARCHES,
    Alignment,
    AlignmentError,
    Template,
    align,
    check_options,
    check_spacing,
    corner_displacement,
    initial_matrix,
    luminance,
    project_to_motion,
    project_volume,
    warp,
)
from .layout import StackLayout, check_channel, is_int, stack_layout
from .pool import FRAME_FAILURES, run_tasks, single_threaded
from .result import REFERENCES, FrameProgress, StackAlignment

# reference="mean" runs at most this many passes, and stops earlier once no frame's matrix
# moves a corner of the grid by more than MEAN_CONVERGED_PX between two passes: the mean
# image has stopped changing, so another pass would reproduce the same matrices.
MAX_MEAN_ITERATIONS = 20
MEAN_CONVERGED_PX = 0.01


# ------------------------------------------------------------------------------------- the work
@dataclass
class _Plan:
    stack: Any
    layout: StackLayout
    channel: int | None
    params: dict  # align() keyword arguments
    reference: str | int
    workers: int
    fail_fast: bool
    mean_iterations: int
    spacing: tuple | None = None  # volumes: (dz, dy, dx)

    @property
    def volumes(self) -> bool:
        return self.layout.ndim == 3

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` for estimation: 2D or RGB(A); reads that frame (channel) only."""
        frame = np.asarray(self.stack[self.layout.index(t, self.channel)])
        return frame[..., self.channel] if self.layout.rgb and self.channel is not None else frame

    def align(self, reference, moving, coverage: bool = False, **overrides):
        """``align``; with ``coverage`` also the moving image warped onto the reference
        grid (float32 luminance, 0 outside) and its coverage weight (for a mean)."""
        if self.volumes:
            overrides = {"ndim": 3, "spacing": self.spacing, **overrides}
        alignment = align(reference, moving, **{**self.params, **overrides})
        if not coverage:
            return alignment
        lum, grid, matrix = self.intensity(moving), self.layout.frame_shape, alignment.matrix
        return alignment, warp(lum, matrix, grid), warp(np.ones_like(lum), matrix, grid)

    def intensity(self, frame) -> np.ndarray:
        """What a mean reference averages: luminance, or the volume as float32."""
        frame = np.asarray(frame)
        return frame.astype(np.float32) if self.volumes else luminance(frame)

    def fixed_reference(self, frame, mask=None):
        """A prepared :class:`Template` for images; volumes go as they are (with the mask)."""
        if self.volumes:
            return frame, {} if mask is None else {"reference_mask": mask}
        return Template(frame, mask), {}

    def failed(self, t: int, exc: Exception) -> str:
        """The message recorded for a failed frame; raises instead under fail_fast."""
        if self.fail_fast:
            raise AlignmentError(f"frame {t}: {exc}") from exc
        return str(exc) or type(exc).__name__


def _iterate(plan: _Plan) -> Generator[FrameProgress, None, StackAlignment]:
    start = time.perf_counter()
    n, layout = plan.layout.frames, plan.layout
    alignments: list[Alignment | None] = [None] * n
    errors = [""] * n
    mode = {"previous": _previous, "mean": _mean}.get(plan.reference, _fixed)
    with single_threaded():
        passes = (yield from mode(plan, alignments, errors)) or 1
    return StackAlignment(
        alignments, errors, plan.reference, layout.axis, layout.channel_axis, plan.channel,
        plan.params["motion"], layout.frame_shape, time.perf_counter() - start, layout.ndim,
        passes,
    )  # fmt: skip


def _identity(plan: _Plan) -> Alignment:
    shape = plan.layout.frame_shape
    motion = plan.params["motion"]
    eye = np.eye(plan.layout.ndim + 1)
    return Alignment(eye, motion, 1.0, 1.0, shape, shape, init_method="reference")


def _chain(plan: _Plan, pair: np.ndarray, chained: np.ndarray) -> np.ndarray:
    """``pair · chained``, kept in the motion family (rigid in physical units for volumes)."""
    if plan.volumes:
        return project_volume(pair @ chained, plan.params["motion"], plan.spacing)
    return project_to_motion(pair @ chained, plan.params["motion"])  # W[2, 2] = 1


def _fixed(plan: _Plan, alignments, errors):
    """Every frame aligned to frame ``k`` (independent: parallel)."""
    n, k = plan.layout.frames, 0 if plan.reference == "first" else plan.reference
    ref, extra = plan.fixed_reference(plan.read(k))  # images: samples and Jacobians once
    alignments[k] = _identity(plan)
    yield FrameProgress(k, 1, n, alignments[k], "")
    tasks = ((t, lambda t=t: plan.align(ref, plan.read(t), **extra)) for t in range(n) if t != k)
    with closing(run_tasks(tasks, plan.workers)) as results:
        for done, (t, result, exc) in enumerate(results, start=2):
            alignments[t], errors[t] = result, plan.failed(t, exc) if exc else ""
            yield FrameProgress(t, done, n, result, errors[t])


def _previous(plan: _Plan, alignments, errors):
    """Pairs (t-1, t) aligned in parallel, chained in frame order: W_t = P_t · W_s.

    ``s`` is the last good frame: after a failed frame the next one is aligned to
    ``s`` again (here, sequentially), and a failed frame carries ``W_s``.
    """
    n = plan.layout.frames
    alignments[0] = _identity(plan)
    yield FrameProgress(0, 1, n, alignments[0], "")

    def pairs():  # reads every frame once, in order, as the pool asks for work
        prev = plan.read(0)
        for t in range(1, n):
            cur = plan.read(t)
            yield t, functools.partial(plan.align, prev, cur)
            prev = cur

    finished: dict[int, tuple] = {}
    good, chained, t = 0, np.eye(plan.layout.ndim + 1), 1
    with closing(run_tasks(pairs(), plan.workers)) as results:
        for index, result, exc in results:
            finished[index] = (result, exc)  # which frame is bad shows in chain order only
            while t in finished:
                pair, exc = finished.pop(t)
                if good != t - 1:  # frame t-1 failed: align frame t to the last good one
                    try:
                        pair, exc = plan.align(plan.read(good), plan.read(t)), None
                    except FRAME_FAILURES as retry:
                        pair, exc = None, retry
                if exc is None:
                    chained = _chain(plan, pair.matrix, chained)
                    params = {**pair.parameters, "aligned_to": good}
                    alignments[t] = dataclasses.replace(pair, matrix=chained, parameters=params)
                    good = t
                else:
                    errors[t] = plan.failed(t, exc)
                yield FrameProgress(t, t + 1, n, alignments[t], errors[t])
                t += 1


def _mean(plan: _Plan, alignments, errors):
    """Frames aligned to the mean image, then to the mean of the aligned frames, ...

    Pass 1 starts from ``init``, later passes from the previous pass's matrix.
    Failed frames are left out of the next mean; grid pixels covered by less than
    half a frame are masked out of it. Stops after ``mean_iterations`` passes, or
    once a pass moved no frame's matrix (see :func:`_settled`); returns the passes run.
    """
    n, shape, passes = plan.layout.frames, plan.layout.frame_shape, plan.mean_iterations
    total = np.zeros(shape, np.float64)
    reads = ((t, lambda t=t: plan.intensity(plan.read(t))) for t in range(n))
    with closing(run_tasks(reads, plan.workers)) as lums:
        for _, lum, exc in lums:
            if exc is not None:
                raise exc
            total += lum
    mean, mask, done = (total / n).astype(np.float32), None, 0
    for i in range(passes):
        last = i == passes - 1
        before = list(alignments)
        acc, weight = np.zeros(shape, np.float64), np.zeros(shape, np.float64)
        ref, extra = plan.fixed_reference(mean, mask)  # this pass's samples: once

        def task(t, ref=ref, extra=extra, coverage=not last):
            prior = alignments[t]  # this frame's result of the previous pass
            init = plan.params["init"] if prior is None else prior.matrix
            return plan.align(ref, plan.read(t), coverage, init=init, **extra)

        tasks = ((t, functools.partial(task, t)) for t in range(n))
        with closing(run_tasks(tasks, plan.workers)) as results:
            for t, result, exc in results:
                done += 1
                if exc is None and not last:
                    result, warped, cover = result
                    acc += warped
                    weight += cover
                alignments[t], errors[t] = result, plan.failed(t, exc) if exc else ""
                yield FrameProgress(t, done, n * passes, result, errors[t])
        if i > 0 and _settled(before, alignments, shape):
            return i + 1
        if not last and weight.max() > 0:
            covered = weight >= 0.5
            fill = acc[covered].sum() / weight[covered].sum()
            mean = np.where(covered, acc / np.maximum(weight, 1e-12), fill).astype(np.float32)
            mask = None if covered.all() else covered
    return passes


def _settled(before, after, shape) -> bool:
    """Whether no frame changed between two passes: each failed in both, or its matrix
    moves every grid corner less than ``MEAN_CONVERGED_PX`` from where it was."""
    for old, new in zip(before, after, strict=True):
        if (old is None) != (new is None):
            return False
        if old is not None and not (
            corner_displacement(new.matrix, shape, old.matrix) < MEAN_CONVERGED_PX
        ):
            return False
    return True


# ------------------------------------------------------------------------------------ public API
def iter_align_stack(
    stack, *, reference: str | int = "previous", axis: int = 0, channel_axis: int | None = None,
    channel: int | None = None, motion: str = "euclidean", max_iterations: int = 100,
    eps: float = 1e-6, gauss_filter_size: int | None = None,
    pyramid_levels: int | None = None,
    init="auto", intensity: str = "auto", workers: int | None = None, fail_fast: bool = False,
    mean_iterations: int = 2,
    ndim: int = 2, spacing=None,
) -> Generator[FrameProgress, None, StackAlignment]:  # fmt: skip
    """Generator form of :func:`align_stack`, for progress reporting and cancellation.

    Parameters
    ----------
    stack : array_like
        As for :func:`align_stack` (numpy, memory-mapped or dask; read frame by frame).
    reference, axis, channel_axis, channel, motion, max_iterations, eps, \
gauss_filter_size, pyramid_levels, init, intensity, workers, fail_fast, mean_iterations, ndim, \
spacing
        As for :func:`align_stack`; checked at the call, before any frame is read.

    Yields
    ------
    FrameProgress
        One per finished frame, in completion order. With ``reference="previous"``
        frames are reported in order; with ``"mean"`` once per pass
        (``total = frames * mean_iterations``, an upper bound: when the mean settles
        before the last pass, ``done`` stops short of it; the result's ``passes``
        says how many ran).

    Returns
    -------
    StackAlignment
        The generator's return value: ``result = yield from iter_align_stack(...)``,
        or ``StopIteration.value``.

    Notes
    -----
    ``gen.close()`` stops promptly: queued frames are cancelled, running ones
    finish, no new frame starts.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align import FrameProgress, iter_align_stack
    >>> from napari_ecc_align.data import natural_image
    >>> scene = natural_image((160, 160), seed=0)
    >>> movie = np.stack([scene[10 + t : 138 + t, 10:138] for t in range(4)])  # 1 px/frame
    >>> gen = iter_align_stack(movie, reference="first", motion="translation")
    >>> try:
    ...     while True:
    ...         assert isinstance(next(gen), FrameProgress)
    ... except StopIteration as stop:
    ...     result = stop.value
    >>> np.round(result.matrices[:, 1, 2], 2)  # reference row y -> frame row y - t
    array([ 0., -1., -2., -3.])
    """
    options = check_options(
        motion=motion, max_iterations=max_iterations, eps=eps, init=init, intensity=intensity,
        gauss_filter_size=gauss_filter_size, pyramid_levels=pyramid_levels,
        ndim=ndim, spacing=spacing,
    )  # fmt: skip
    ndim, spacing = options.pop("ndim"), options.pop("spacing")
    params = options
    layout = stack_layout(stack, axis, channel_axis, ndim)
    n = layout.frames
    if ndim == 3:
        spacing = check_spacing(spacing)  # None: isotropic
    elif not (isinstance(init, str) and init in SEARCHES):
        initial_matrix(init, params["motion"])  # raises for an invalid init
    if is_int(reference) and -n <= reference < n:
        reference = int(reference) % n
    elif not (isinstance(reference, str) and reference in REFERENCES):
        raise ValueError(
            f"reference must be one of {REFERENCES} or a frame index in [-{n}, {n}), "
            f"got {reference!r}"
        )
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not is_int(workers) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if not is_int(mean_iterations) or not 1 <= mean_iterations <= MAX_MEAN_ITERATIONS:
        raise ValueError(
            f"mean_iterations must be an integer from 1 to {MAX_MEAN_ITERATIONS}, got "
            f"{mean_iterations!r} (the passes stop by themselves once the mean settles)"
        )
    channel = check_channel(channel, layout)
    workers = int(min(workers, max(1, n - 1)))
    fail_fast, mean_iterations = bool(fail_fast), int(mean_iterations)
    return _iterate(
        _Plan(
            stack, layout, channel, params, reference, workers, fail_fast, mean_iterations, spacing
        )  # fmt: skip
    )


def align_stack(
    stack, *, reference: str | int = "previous", axis: int = 0, channel_axis: int | None = None,
    channel: int | None = None, motion: str = "euclidean", max_iterations: int = 100,
    eps: float = 1e-6, gauss_filter_size: int | None = None,
    pyramid_levels: int | None = None,
    init="auto", intensity: str = "auto", workers: int | None = None, fail_fast: bool = False,
    mean_iterations: int = 2,
    progress: Callable[[int, int], Any] | str | None = None, ndim: int = 2, spacing=None,
) -> StackAlignment:  # fmt: skip
    """Align every frame of a stack onto a common reference grid.

    Parameters
    ----------
    stack : array_like
        numpy array, memmap (``tifffile.memmap``), dask array, or anything with
        ``shape``, ``ndim``, ``dtype`` and ``__getitem__``; read one frame at a time.
        Frames are ``(rows, cols)``, channel-last RGB(A) ``(rows, cols, 3|4)``
        (estimated on luminance), or have their channels on ``channel_axis``.
    reference : {"previous", "first", "mean"} or int
        ``"first"`` or a frame index ``k``: every frame is aligned to frame ``k``,
        which gets the identity. ``"previous"``: frame ``t`` is aligned to frame
        ``t-1`` and the matrices are chained, ``W_t = P_t · W_{t-1}``, so slow drift
        is followed over any number of frames; a failed frame carries ``W_{t-1}``
        and the next frame is aligned to the last good one (its ``parameters``
        record ``"aligned_to"``). ``"mean"``: frames are aligned to the mean image,
        then to the mean of the aligned frames (``mean_iterations`` passes); the
        grid is the mean image's.
    axis : int
        The frame (time or z) axis.
    channel_axis : int, optional
        Axis of the stack holding channels; estimation uses ``channel``,
        :func:`warp_stack` moves all channels.
    channel : int, optional
        Channel to estimate on (default 0 with ``channel_axis``; for RGB, one colour
        instead of the luminance).
    motion, max_iterations, eps, gauss_filter_size, pyramid_levels, init, intensity
        As in :func:`napari_ecc_align.align`; ``motion`` defaults to ``"euclidean"``.
    workers : int, optional
        Frames aligned at once in threads (default ``os.cpu_count()``). The pairs
        of ``"previous"`` are aligned in parallel too and chained afterwards.
    fail_fast : bool
        Raise ``AlignmentError("frame t: ...")`` for the first frame that fails
        instead of recording it in ``errors`` (with the identity in ``matrices``).
    mean_iterations : int
        Passes for ``reference="mean"``, at most 20. The passes stop earlier once
        they have settled: when a pass moved no frame's matrix (every corner of the
        grid by less than 0.01 pixel) and no frame failed or recovered, the next
        pass would repeat it. ``result.passes`` says how many ran.
    progress : callable(done, total) or "tqdm", optional
        Called after each finished frame; ``"tqdm"`` shows a progress bar.
    ndim : {2, 3}
        3: every frame is a ``(z, y, x)`` volume — a ``(t, z, y, x)`` time-lapse,
        or ``(t, c, z, y, x)`` with ``channel_axis`` — aligned as in
        ``align(..., ndim=3)``; motions translation, euclidean (rigid) or affine.
    spacing : (dz, dy, dx), optional
        Voxel size (``ndim=3`` only); rigid means rigid in these units.

    Returns
    -------
    StackAlignment
        ``result.matrices[t]`` maps a reference-grid pixel ``(x, y, 1)`` to frame ``t``
        (for volumes the 4×4 over ``(x, y, z, 1)``).

    Raises
    ------
    ValueError, TypeError
        For invalid arguments or stack shapes; the message names the argument.
    AlignmentError
        Only with ``fail_fast=True``.

    Notes
    -----
    While it runs, OpenBLAS and OpenCV use one thread each, process-wide (the
    frame workers are the parallelism); both settings are restored afterwards.

    Examples
    --------
    >>> result = align_stack(movie, reference="first")  # doctest: +SKIP
    >>> aligned = warp_stack(movie, result)  # doctest: +SKIP
    >>> result.to_csv("drift.csv")  # doctest: +SKIP
    """
    if progress is not None and progress != "tqdm" and not callable(progress):
        raise TypeError(f"progress must be a callable(done, total) or 'tqdm', got {progress!r}")
    steps = iter_align_stack(
        stack, reference=reference, axis=axis, channel_axis=channel_axis, channel=channel,
        motion=motion, max_iterations=max_iterations, eps=eps,
        gauss_filter_size=gauss_filter_size, pyramid_levels=pyramid_levels, init=init,
        intensity=intensity, workers=workers, fail_fast=fail_fast,
        mean_iterations=mean_iterations, ndim=ndim,
        spacing=spacing,
    )  # fmt: skip
    bar = None
    if progress == "tqdm":
        from tqdm.auto import tqdm

        bar = tqdm(desc="aligning frames", unit="frame")
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as stop:
                return stop.value
            if bar is not None:
                bar.total = step.total
                bar.update(1)
            elif progress is not None:
                progress(step.done, step.total)
    finally:
        steps.close()
        if bar is not None:
            bar.close()
