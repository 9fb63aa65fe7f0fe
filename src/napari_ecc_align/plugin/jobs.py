"""What one press of *Align* computes, without Qt: estimate (or reuse) a transform,
then build the output arrays. The widget runs :func:`run_job` in a napari
``thread_worker`` and turns its result into layers on the main thread; tests and
scripts can run it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine import Alignment, Progress, default_difference_mode, difference, iter_align, warp
from .pyramids import difference_pyramid, is_pyramid, level_alignments, warped_pyramid


@dataclass
class Job:
    """Inputs of one alignment run (arrays, not layers)."""

    reference: Any  # numpy, dask or zarr; a list of levels for a multiscale layer
    moving: Any
    align_kwargs: dict[str, Any] = field(default_factory=dict)
    alignment: Alignment | None = None  # given: apply it, do not estimate
    interpolation: str = "linear"
    difference_mode: str = "auto"  # "absolute", "normalized" or "auto"
    want_aligned: bool = True
    want_difference: bool = True
    # Each carrier maps an Alignment to a napari LayerDataTuple (other layers).
    carriers: list[Callable[[Alignment], tuple]] = field(default_factory=list)
    note: str | None = None  # a line for the result panel (a points start's landmark fit)


@dataclass
class JobResult:
    alignment: Alignment
    aligned: np.ndarray | None
    difference: np.ndarray | None
    difference_mode: str
    carried: list[tuple]


def run_job(job: Job) -> Generator[Progress | str, None, JobResult]:
    """Generator: yields :class:`Progress` per pyramid level, then a short string
    per output step, and returns a :class:`JobResult`. Close it to cancel."""
    alignment = job.alignment
    if alignment is None:
        for step in iter_align(job.reference, job.moving, **job.align_kwargs):
            if isinstance(step, Alignment):
                alignment = step
            else:
                yield step
    else:
        check_applicable(alignment, job.moving)
    aligned = None
    pyramids = is_pyramid(job.reference) and is_pyramid(job.moving)  # lazy pyramids out
    levels = level_alignments(alignment, job.reference, job.moving) if pyramids else None
    if job.want_aligned or job.want_difference:
        yield "resampling"
        if pyramids:
            aligned = warped_pyramid(job.moving, levels, job.interpolation)
        else:
            aligned = warp(job.moving, alignment, interpolation=job.interpolation)
    diff = None
    mode = job.difference_mode
    if job.want_difference:
        yield "difference"
        if mode == "auto":
            mode = default_difference_mode(job.reference, job.moving, alignment.ndim)
        if pyramids:
            diff = difference_pyramid(job.reference, aligned, levels, mode)
        else:
            diff = difference(job.reference, aligned, mode=mode, alignment=alignment)
    carried = []
    for carry in job.carriers:
        yield "carrying"
        carried.append(carry(alignment))
    return JobResult(alignment, aligned if job.want_aligned else None, diff, mode, carried)


def check_applicable(alignment: Alignment, moving: np.ndarray) -> None:
    """Refuse to apply a saved transform to an image (or volume) of another size."""
    level0 = moving[0] if is_pyramid(moving) else moving
    shape = tuple(np.shape(level0)[: alignment.ndim])
    if shape != tuple(alignment.moving_shape):
        what = "image" if alignment.ndim == 2 else "volume"
        unit = "pixels" if alignment.ndim == 2 else "voxels"
        expected = "x".join(map(str, alignment.moving_shape))
        raise ValueError(
            f"the transform was estimated for a moving {what} of {expected} {unit}, but this "
            f"one is {'x'.join(map(str, shape))}; choose the matching moving layer or "
            "estimate a new transform"
        )


def steps_expected(job: Job, levels: int) -> int:
    """Progress-bar length: pyramid levels plus output steps."""
    n = 0 if job.alignment is not None else levels
    n += int(job.want_aligned or job.want_difference) + int(job.want_difference)
    return n + len(job.carriers)


@dataclass
class StackJob:
    """Inputs of one stack alignment: the stack (any array-like, read frame by frame)."""

    stack: Any
    stack_kwargs: dict[str, Any] = field(default_factory=dict)
    interpolation: str = "linear"
    want_aligned: bool = True
    canvas: str = "reference"  # warp_stack's output extent: "reference" or "union"


@dataclass
class StackJobResult:
    stack_alignment: Any  # StackAlignment
    aligned: Any  # numpy or lazy dask array, or None
    origin: tuple[int, ...] = ()  # reference-grid pixel of the output's index 0 (a Canvas')


def run_stack_job(job: StackJob) -> Generator[Any, None, StackJobResult]:
    """Generator: yields one ``FrameProgress`` per frame, then ``"resampling"``, and
    returns a :class:`StackJobResult`. Closing it stops the frames still to come."""
    from ..stack import iter_align_stack, warp_stack

    stack_alignment = yield from iter_align_stack(job.stack, **job.stack_kwargs)
    aligned, origin = None, ()
    if job.want_aligned:
        yield "resampling"
        aligned = warp_stack(
            job.stack, stack_alignment, interpolation=job.interpolation, canvas=job.canvas
        )
        origin = stack_alignment.canvas(job.canvas).origin
    return StackJobResult(stack_alignment, aligned, origin)
