"""Stacks: align every frame of a time-lapse (or z-stack) onto one reference grid.

Frames are read one at a time (``np.asarray(stack[index])``), so numpy arrays,
memory-mapped TIFFs and dask arrays larger than memory all work. Every frame's
matrix maps a pixel of the common reference grid to that frame's pixel (the
:class:`~napari_ecc_align.Alignment` convention), so ``warp(frame, matrix)``
puts the frame on the grid. Frames are aligned in a thread pool: OpenCV and
numpy release the GIL for about 80 % of ECC's work. For a fixed reference (first,
an index, or each pass's mean) the reference side of ECC (pyramid, samples,
Jacobians) is prepared once and shared by all frames (``PreparedReference``).
No Qt here.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from ..engine.alignment import Alignment, AlignmentError, write_text_atomic
from ..engine.ecc import project_to_motion
from ..engine.estimate import PreparedReference, align, initial_matrix, validate_params
from ..engine.initialisation import SEARCHES
from ..engine.preprocess import luminance
from ..engine.warping import warp

REFERENCES = ("previous", "first", "mean")
_FAILURES = (AlignmentError, ValueError)  # a frame that cannot be aligned; anything else raises


@dataclass(frozen=True, eq=False)
class FrameProgress:
    """Yielded by :func:`iter_align_stack` each time a frame is finished."""

    index: int  # frame index along the stack axis
    done: int  # frames finished so far
    total: int
    alignment: Alignment | None
    error: str  # "" if the frame was aligned


@dataclass(frozen=True, eq=False)
class StackAlignment:
    """The transforms of every frame of a stack onto a common reference grid.

    ``alignments[t].matrix`` maps a reference-grid pixel ``(x, y, 1)`` to frame ``t``'s
    pixel (the :class:`~napari_ecc_align.Alignment` convention); ``axis`` and
    ``channel_axis`` are non-negative; ``elapsed`` is in seconds.
    """

    alignments: tuple[Alignment | None, ...]  # one per frame; None where the frame failed
    errors: tuple[str, ...]  # "" for good frames, else why the frame failed
    reference: str | int  # "previous", "first", "mean" or the reference frame's index
    axis: int
    channel_axis: int | None
    channel: int | None  # the channel the transforms were estimated on
    motion: str
    frame_shape: tuple[int, int]  # (rows, cols) of the reference grid
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "alignments", tuple(self.alignments))
        object.__setattr__(self, "errors", tuple(str(e) for e in self.errors))
        object.__setattr__(self, "frame_shape", tuple(int(n) for n in self.frame_shape))
        if len(self.errors) != len(self.alignments):
            raise ValueError("alignments and errors must have one entry per frame")

    def __len__(self) -> int:
        return len(self.alignments)

    @property
    def ok(self) -> np.ndarray:
        """Boolean array, True for each frame that was aligned."""
        return np.array([a is not None for a in self.alignments], dtype=bool)

    @property
    def matrices(self) -> np.ndarray:
        """``(n, 3, 3)`` reference-grid → frame matrices; the identity for failed frames."""
        return np.array([np.eye(3) if a is None else a.matrix for a in self.alignments])

    def table(self) -> list[dict[str, Any]]:
        """One row per frame: ``frame, ok, dx, dy, rotation_deg, scale, correlation,
        correlation_before, error``.

        ``dx, dy``: where the reference-grid centre lands in the frame, minus the centre
        (pixels); ``rotation_deg``: rotation of the 2×2 part; ``scale``: the square
        root of its absolute determinant. Numbers are NaN for failed frames.
        """
        rows, cols = self.frame_shape
        centre = np.array([(cols - 1) / 2, (rows - 1) / 2, 1.0])
        numbers = ("dx", "dy", "rotation_deg", "scale", "correlation", "correlation_before")
        out = []
        for i, (a, error) in enumerate(zip(self.alignments, self.errors, strict=True)):
            row = {"frame": i, "ok": a is not None, **dict.fromkeys(numbers, float("nan"))}
            if a is not None:
                (x, y, w), lin = a.matrix @ centre, a.matrix[:2, :2]
                angle = np.degrees(np.arctan2(lin[1, 0] - lin[0, 1], lin.trace()))
                scale = np.sqrt(abs(np.linalg.det(lin)))
                values = (x / w - centre[0], y / w - centre[1], angle, scale)
                values += (a.correlation, a.correlation_before)
                row.update(zip(numbers, map(float, values), strict=True))
            out.append({**row, "error": error})
        return out

    def to_csv(self, path) -> None:
        """Write :meth:`table` as CSV with a header row (atomically: temp file + rename)."""
        rows = self.table()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["frame"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        write_text_atomic(path, buffer.getvalue(), ".csv.tmp")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary; :meth:`from_dict` restores it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["alignments"] = [None if a is None else a.to_dict() for a in self.alignments]
        data["errors"], data["frame_shape"] = list(self.errors), list(self.frame_shape)
        data["convention"] = "each matrix: reference grid (x, y, 1) -> that frame (x, y)"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackAlignment:
        """Rebuild a :class:`StackAlignment` from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = {"alignments", "errors", "reference", "axis", "motion", "frame_shape"} - set(data)
        if missing:
            raise ValueError(f"stack alignment data lacks the keys {sorted(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {"channel_axis": None, "channel": None}
        kwargs.update((k, v) for k, v in data.items() if k in names)
        kwargs["alignments"] = [a and Alignment.from_dict(a) for a in data["alignments"]]
        return cls(**kwargs)

    def to_json(self, path=None) -> str:
        """Return the JSON text, and write it to ``path`` (atomically) if given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            write_text_atomic(path, text + "\n", ".json.tmp")
        return text

    @classmethod
    def from_json(cls, path_or_text) -> StackAlignment:
        """Read a stack alignment from a JSON file path or a JSON string."""
        text = path_or_text
        if not (isinstance(text, str) and text.lstrip().startswith("{")):
            with open(path_or_text, encoding="utf-8") as fh:
                text = fh.read()
        return cls.from_dict(json.loads(text))


def _cell(value):
    return format(value, ".12g") if isinstance(value, float) else value


# --------------------------------------------------------------------------------- stack layout
@dataclass(frozen=True)
class _Layout:
    shape: tuple[int, ...]
    axis: int
    channel_axis: int | None
    rgb: bool  # channel-last RGB(A) frames

    @property
    def frames(self) -> int:
        return self.shape[self.axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        spatial = [n for i, n in enumerate(self.shape) if i not in (self.axis, self.channel_axis)]
        return spatial[0], spatial[1]

    def index(self, t: int, channel: int | None = None) -> tuple:
        """Tuple index of frame ``t`` (and of one of its channels, if given)."""
        idx: list[Any] = [slice(None)] * len(self.shape)
        idx[self.axis] = t
        if channel is not None and self.channel_axis is not None:
            idx[self.channel_axis] = channel
        return tuple(idx)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _axis(value, ndim: int, name: str, shape) -> int:
    if not _is_int(value) or not -ndim <= value < ndim:
        raise ValueError(f"{name}={value!r} is not an axis of the stack of shape {shape}")
    return int(value) % ndim


def _layout(stack, axis, channel_axis) -> _Layout:
    if not all(hasattr(stack, a) for a in ("shape", "ndim", "dtype", "__getitem__")):
        raise TypeError(f"stack must be an array (numpy, memmap, dask), got {type(stack)}")
    shape = tuple(int(n) for n in stack.shape)
    axis = _axis(axis, len(shape), "axis", shape)
    if channel_axis is not None:
        channel_axis = _axis(channel_axis, len(shape), "channel_axis", shape)
        if channel_axis == axis:
            raise ValueError(f"channel_axis must differ from axis, both are {axis}")
    dims = len(shape) - 1 - (channel_axis is not None)
    rgb = channel_axis is None and dims == 3 and axis != len(shape) - 1 and shape[-1] in (3, 4)
    if dims != 2 and not rgb:
        raise ValueError(
            f"stack has shape {shape}: with axis={axis} and channel_axis={channel_axis} a frame "
            f"has {dims} dimensions, but frames must be (rows, cols) or RGB(A) (rows, cols, 3|4); "
            "set channel_axis for other channel layouts, or select a sub-stack first"
        )
    layout = _Layout(shape, axis, channel_axis, rgb)
    if layout.frames < 1 or min(layout.frame_shape) < 2:
        raise ValueError(f"stack has shape {shape}: no frames of 2x2 or more along axis={axis}")
    return layout


def _check_channel(channel, layout: _Layout) -> int | None:
    if layout.channel_axis is None and not layout.rgb:
        if channel is not None:
            raise ValueError("channel needs a channel_axis (or RGB frames) to select from")
        return None
    count = layout.shape[-1 if layout.channel_axis is None else layout.channel_axis]
    if channel is None:
        return None if layout.channel_axis is None else 0
    if not _is_int(channel) or not -count <= channel < count:
        raise ValueError(f"channel must index one of the {count} channels, got {channel!r}")
    return int(channel) % count


# -------------------------------------------------------------------------------------- running
def _run(tasks: Iterator[tuple[int, Callable]], workers: int) -> Iterator[tuple]:
    """Run ``(index, fn)`` tasks; yield ``(index, result, error)`` in completion order.

    At most ``2 * workers`` tasks are queued, so frames are read as the pool gets to
    them. Closing the generator cancels the queued tasks and waits for running ones.
    """
    if workers == 1:
        for index, fn in tasks:
            try:
                yield index, fn(), None
            except _FAILURES as exc:
                yield index, None, exc
        return
    pool, pending, exhausted = ThreadPoolExecutor(workers, "ecc-stack"), {}, False
    try:
        while True:
            while not exhausted and len(pending) < 2 * workers:
                item = next(tasks, None)
                exhausted = item is None
                if item is not None:
                    pending[pool.submit(item[1])] = item[0]
            if not pending:
                return
            for future in wait(pending, return_when=FIRST_COMPLETED)[0]:
                index, exc = pending.pop(future), future.exception()
                if exc is not None and not isinstance(exc, _FAILURES):
                    raise exc
                yield index, (None if exc else future.result()), exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_LIMIT_LOCK = threading.Lock()
_limit_state: dict[str, Any] = {"users": 0}


@contextmanager
def single_threaded():
    """OpenBLAS and OpenCV on one thread each while stack alignments run: the frame
    workers are the parallelism. Reference-counted; the old values come back after.

    OpenBLAS threads busy-wait between the many small BLAS calls ECC makes (np.dot on
    (p, 30000) arrays): with them one 1 MP frame took ~53 ms and both cores of a 2-core
    machine instead of ~38 ms and one, and a second worker thread gained nothing.
    OpenCV's own threads would oversubscribe the pool (no measurable effect on 2 cores).
    """
    with _LIMIT_LOCK:
        if _limit_state["users"] == 0:
            _limit_state["cv2"] = cv2.getNumThreads()
            _limit_state["blas"] = threadpool_limits(limits=1, user_api="blas")
            cv2.setNumThreads(1)
        _limit_state["users"] += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _limit_state["users"] -= 1
            if _limit_state["users"] == 0:
                cv2.setNumThreads(_limit_state["cv2"])
                _limit_state["blas"].restore_original_limits()


# ------------------------------------------------------------------------------------- the work
@dataclass
class _Plan:
    stack: Any
    layout: _Layout
    channel: int | None
    params: dict  # align() keyword arguments
    reference: str | int
    workers: int
    fail_fast: bool
    mean_iterations: int

    def read(self, t: int) -> np.ndarray:
        """Frame ``t`` for estimation: 2D or RGB(A); reads that frame (channel) only."""
        frame = np.asarray(self.stack[self.layout.index(t, self.channel)])
        return frame[..., self.channel] if self.layout.rgb and self.channel is not None else frame

    def align(self, reference, moving, coverage: bool = False, **overrides):
        """``align``; with ``coverage`` also the moving image warped onto the reference
        grid (float32 luminance, 0 outside) and its coverage weight (for a mean)."""
        alignment = align(reference, moving, **{**self.params, **overrides})
        if not coverage:
            return alignment
        lum, grid, matrix = luminance(np.asarray(moving)), reference.shape[:2], alignment.matrix
        return alignment, warp(lum, matrix, grid), warp(np.ones_like(lum), matrix, grid)

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
        yield from mode(plan, alignments, errors)
    return StackAlignment(
        alignments, errors, plan.reference, layout.axis, layout.channel_axis, plan.channel,
        plan.params["motion"], layout.frame_shape, time.perf_counter() - start,
    )  # fmt: skip


def _identity(plan: _Plan) -> Alignment:
    shape = plan.layout.frame_shape
    motion = plan.params["motion"]
    return Alignment(np.eye(3), motion, 1.0, 1.0, shape, shape, init_method="reference")


def _fixed(plan: _Plan, alignments, errors):
    """Every frame aligned to frame ``k`` (independent: parallel)."""
    n, k = plan.layout.frames, 0 if plan.reference == "first" else plan.reference
    ref = PreparedReference(plan.read(k))  # its samples and Jacobians: once per stack
    alignments[k] = _identity(plan)
    yield FrameProgress(k, 1, n, alignments[k], "")
    tasks = ((t, lambda t=t: plan.align(ref, plan.read(t))) for t in range(n) if t != k)
    with closing(_run(tasks, plan.workers)) as results:
        for done, (t, result, exc) in enumerate(results, start=2):
            alignments[t], errors[t] = result, plan.failed(t, exc) if exc else ""
            yield FrameProgress(t, done, n, result, errors[t])


def _previous(plan: _Plan, alignments, errors):
    """Pairs (t-1, t) aligned in parallel, chained in frame order: W_t = P_t · W_s.

    ``s`` is the last good frame: after a failed frame the next one is aligned to
    ``s`` again (here, sequentially), and a failed frame carries ``W_s``.
    """
    n, motion = plan.layout.frames, plan.params["motion"]
    alignments[0] = _identity(plan)
    yield FrameProgress(0, 1, n, alignments[0], "")

    def pairs():  # reads every frame once, in order, as the pool asks for work
        prev = plan.read(0)
        for t in range(1, n):
            cur = plan.read(t)
            yield t, functools.partial(plan.align, prev, cur)
            prev = cur

    finished: dict[int, tuple] = {}
    good, chained, t = 0, np.eye(3), 1
    with closing(_run(pairs(), plan.workers)) as results:
        for index, result, exc in results:
            finished[index] = (result, exc)  # which frame is bad shows in chain order only
            while t in finished:
                pair, exc = finished.pop(t)
                if good != t - 1:  # frame t-1 failed: align frame t to the last good one
                    try:
                        pair, exc = plan.align(plan.read(good), plan.read(t)), None
                    except _FAILURES as retry:
                        pair, exc = None, retry
                if exc is None:
                    chained = project_to_motion(pair.matrix @ chained, motion)  # W[2, 2] = 1
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
    half a frame are masked out of it.
    """
    n, shape, passes = plan.layout.frames, plan.layout.frame_shape, plan.mean_iterations
    total = np.zeros(shape, np.float64)
    reads = ((t, lambda t=t: luminance(plan.read(t))) for t in range(n))
    with closing(_run(reads, plan.workers)) as lums:
        for _, lum, exc in lums:
            if exc is not None:
                raise exc
            total += lum
    mean, mask, done = (total / n).astype(np.float32), None, 0
    for i in range(passes):
        last = i == passes - 1
        acc, weight = np.zeros(shape, np.float64), np.zeros(shape, np.float64)
        ref = PreparedReference(mean, mask)  # this pass's samples and Jacobians: once

        def task(t, ref=ref, coverage=not last):
            prior = alignments[t]  # this frame's result of the previous pass
            init = plan.params["init"] if prior is None else prior.matrix
            return plan.align(ref, plan.read(t), coverage, init=init)

        tasks = ((t, functools.partial(task, t)) for t in range(n))
        with closing(_run(tasks, plan.workers)) as results:
            for t, result, exc in results:
                done += 1
                if exc is None and not last:
                    result, warped, cover = result
                    acc += warped
                    weight += cover
                alignments[t], errors[t] = result, plan.failed(t, exc) if exc else ""
                yield FrameProgress(t, done, n * passes, result, errors[t])
        if not last and weight.max() > 0:
            covered = weight >= 0.5
            fill = acc[covered].sum() / weight[covered].sum()
            mean = np.where(covered, acc / np.maximum(weight, 1e-12), fill).astype(np.float32)
            mask = None if covered.all() else covered


# ------------------------------------------------------------------------------------ public API
def iter_align_stack(
    stack, *, reference: str | int = "previous", axis: int = 0, channel_axis: int | None = None,
    channel: int | None = None, motion: str = "euclidean", max_iterations: int = 100,
    eps: float = 1e-6, gauss_filter_size: int = 5, pyramid_levels: int | None = None,
    init="auto", workers: int | None = None, fail_fast: bool = False, mean_iterations: int = 2,
) -> Generator[FrameProgress, None, StackAlignment]:  # fmt: skip
    """Generator form of :func:`align_stack`: yields a :class:`FrameProgress` per finished
    frame (in completion order) and *returns* the :class:`StackAlignment`.

    Arguments are checked at the call, before any frame is read. Get the result with
    ``result = yield from iter_align_stack(...)`` (or ``StopIteration.value``).
    ``gen.close()`` stops promptly: queued frames are cancelled, running ones finish,
    no new frame starts. With ``reference="previous"`` frames are reported in order;
    with ``"mean"`` once per pass (``total = frames * mean_iterations``).
    Arguments as in :func:`align_stack`.
    """
    layout = _layout(stack, axis, channel_axis)
    n = layout.frames
    params = validate_params(
        motion=motion, max_iterations=max_iterations, eps=eps, init=init,
        gauss_filter_size=gauss_filter_size, pyramid_levels=pyramid_levels,
    )  # fmt: skip
    if not (isinstance(init, str) and init in SEARCHES):
        initial_matrix(init, params["motion"])  # raises for an invalid init
    if _is_int(reference) and -n <= reference < n:
        reference = int(reference) % n
    elif not (isinstance(reference, str) and reference in REFERENCES):
        raise ValueError(
            f"reference must be one of {REFERENCES} or a frame index in [-{n}, {n}), "
            f"got {reference!r}"
        )
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not _is_int(workers) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    if not _is_int(mean_iterations) or mean_iterations < 1:
        raise ValueError(f"mean_iterations must be a positive integer, got {mean_iterations!r}")
    channel = _check_channel(channel, layout)
    workers = int(min(workers, max(1, n - 1)))
    fail_fast, mean_iterations = bool(fail_fast), int(mean_iterations)
    return _iterate(
        _Plan(stack, layout, channel, params, reference, workers, fail_fast, mean_iterations)
    )


def align_stack(
    stack, *, reference: str | int = "previous", axis: int = 0, channel_axis: int | None = None,
    channel: int | None = None, motion: str = "euclidean", max_iterations: int = 100,
    eps: float = 1e-6, gauss_filter_size: int = 5, pyramid_levels: int | None = None,
    init="auto", workers: int | None = None, fail_fast: bool = False, mean_iterations: int = 2,
    progress: Callable[[int, int], Any] | str | None = None,
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
    motion, max_iterations, eps, gauss_filter_size, pyramid_levels, init
        As in :func:`napari_ecc_align.align`; ``motion`` defaults to ``"euclidean"``.
    workers : int, optional
        Frames aligned at once in threads (default ``os.cpu_count()``). The pairs
        of ``"previous"`` are aligned in parallel too and chained afterwards.
    fail_fast : bool
        Raise ``AlignmentError("frame t: ...")`` for the first frame that fails
        instead of recording it in ``errors`` (with the identity in ``matrices``).
    mean_iterations : int
        Passes for ``reference="mean"``.
    progress : callable(done, total) or "tqdm", optional
        Called after each finished frame; ``"tqdm"`` shows a progress bar.

    Returns
    -------
    StackAlignment
        ``result.matrices[t]`` maps a reference-grid pixel ``(x, y, 1)`` to frame ``t``.

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
    kwargs = {k: v for k, v in locals().items() if k not in ("stack", "progress")}
    steps = iter_align_stack(stack, **kwargs)
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


def warp_stack(
    stack, stack_alignment: StackAlignment, *, axis: int | None = None,
    channel_axis: int | None = None, interpolation: str = "linear", fill_value=0,
    max_memory: int = 2**30,
):  # fmt: skip
    """Resample every frame onto the reference grid of ``stack_alignment``.

    Parameters
    ----------
    stack : array_like
        The stack the alignment was estimated on (or another with the same frames,
        e.g. all channels); numpy, memmap or dask.
    stack_alignment : StackAlignment
        From :func:`align_stack`.
    axis, channel_axis : int, optional
        Default to those stored in ``stack_alignment``.
    interpolation : {"linear", "nearest", "cubic"}
        As in :func:`napari_ecc_align.warp` (use "nearest" for labels).
    fill_value : scalar
        Value of grid pixels outside the frame.
    max_memory : int
        If the output needs more bytes than this, or ``stack`` is a dask array, a
        lazy dask array is returned (one chunk per frame, warped when computed).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        Same shape and dtype as ``stack``; channels and RGB follow their frame.
        Failed frames are passed through unchanged.
    """
    if not isinstance(stack_alignment, StackAlignment):
        raise TypeError(f"stack_alignment must be a StackAlignment, got {type(stack_alignment)}")
    axis = stack_alignment.axis if axis is None else axis
    channel_axis = stack_alignment.channel_axis if channel_axis is None else channel_axis
    layout = _layout(stack, axis, channel_axis)
    if layout.frames != len(stack_alignment):
        raise ValueError(
            f"stack has {layout.frames} frames along axis={layout.axis}, "
            f"stack_alignment has {len(stack_alignment)}"
        )
    if layout.frame_shape != stack_alignment.frame_shape:
        raise ValueError(
            f"stack frames are {layout.frame_shape} (axis={layout.axis}, channel_axis="
            f"{layout.channel_axis}), the alignment's grid {stack_alignment.frame_shape}"
        )
    dtype, ok, matrices = np.dtype(stack.dtype), stack_alignment.ok, stack_alignment.matrices
    options = {"output_shape": layout.frame_shape, "interpolation": interpolation}
    options["fill_value"] = fill_value
    warp(np.zeros((2, 2), dtype), np.eye(3), **options)  # checks the options up front

    def warp_frame(frame: np.ndarray, t: int) -> np.ndarray:
        """Frame ``t`` as ``stack[layout.index(t)]`` gives it (channels where they were)."""
        if not ok[t]:
            return np.array(frame)
        if layout.channel_axis is None:
            return warp(frame, matrices[t], **options)
        pos = layout.channel_axis - (layout.channel_axis > layout.axis)
        planes = np.moveaxis(frame, pos, 0)
        return np.stack([warp(p, matrices[t], **options) for p in planes], axis=pos)

    lazy = hasattr(stack, "dask") or type(stack).__module__.startswith("dask")
    if not lazy and int(np.prod(layout.shape, dtype=np.int64)) * dtype.itemsize <= max_memory:
        out = np.empty(layout.shape, dtype)
        for t in range(layout.frames):
            out[layout.index(t)] = warp_frame(np.asarray(stack[layout.index(t)]), t)
        return out
    import dask.array as da

    one_frame = tuple(1 if i == layout.axis else -1 for i in range(len(layout.shape)))
    source = stack if lazy else da.from_array(stack, chunks=one_frame, name=False)

    def warp_block(block, block_info=None):
        t = block_info[0]["chunk-location"][layout.axis]
        return np.expand_dims(warp_frame(np.take(block, 0, axis=layout.axis), t), layout.axis)

    meta = np.empty((0,) * len(layout.shape), dtype)
    return source.rechunk(one_frame).map_blocks(warp_block, dtype=dtype, meta=meta)
