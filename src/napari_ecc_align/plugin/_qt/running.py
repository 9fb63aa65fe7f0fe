"""What the dock widget needs around its worker thread: the job generator that hands
errors back as values, the progress bar, and noticing the dock being closed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QEvent, QObject

from ...engine import Progress, expected_progress_steps
from ..jobs import Job, StackJob, run_job, run_stack_job, steps_expected
from ..pyramids import level0_shape


@dataclass
class Failure:
    """An exception raised in the worker, handed back as its result."""

    error: Exception


def guarded(job: Job | StackJob):
    """run_job, with its exception handed back as a value.

    superqt's workers treat a RuntimeError raised in the thread as "the worker
    was deleted" and swallow it without emitting ``errored`` or ``finished``;
    AlignmentError is a RuntimeError, so it must not propagate there.
    """
    try:
        if isinstance(job, StackJob):
            return (yield from run_stack_job(job))
        return (yield from run_job(job))
    except Exception as exc:  # reported on the main thread by the widget
        return Failure(exc)


class StepProgress:
    """napari's progress bar for one run: sized before it (``levels`` pyramid levels
    expected, or ``frames`` stack frames), corrected by the first step's own count."""

    def __init__(self, total: int, levels: int = 0, frames: int = 0):
        from napari.utils import progress

        self.bar = progress(total=total, desc="ECC align")
        self.levels, self.frames = levels, frames

    def step(self, step) -> None:
        bar = self.bar
        if isinstance(step, Progress):
            if step.done == 1:  # masks or flat coarse levels can change the count
                bar.total += step.levels - self.levels
            bar.set_description(f"ECC align: level {step.level} done")
        elif hasattr(step, "total"):  # a stack frame ("mean" reports each frame per pass)
            if step.done == 1:
                bar.total += step.total - self.frames
            state = "failed" if step.error else "done"
            bar.set_description(f"ECC align: frame {step.index} {state} ({step.done}/{step.total})")
        else:
            bar.set_description(f"ECC align: {step}")
        bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_for(job: Job | StackJob) -> StepProgress:
    """A progress bar sized by the frames of a stack, or by the steps the engine will
    report for a pair (plus the output steps)."""
    if isinstance(job, StackJob):
        frames = np.shape(job.stack)[job.stack_kwargs["axis"]]
        return StepProgress(frames + int(job.want_aligned), frames=frames)
    levels = 0
    if job.alignment is None:
        options = ("ndim", "spacing", "pyramid_levels", "init")
        kwargs = {k: v for k, v in job.align_kwargs.items() if k in options}
        shapes = (level0_shape(job.reference), level0_shape(job.moving))
        levels = expected_progress_steps(*shapes, **kwargs)
    return StepProgress(steps_expected(job, levels), levels=levels)


class RemovalWatch(QObject):
    """Calls ``callback`` when ``target`` loses its parent widget."""

    def __init__(self, target, callback):
        super().__init__(target)
        self._callback = callback
        target.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self._callback()
        return False
