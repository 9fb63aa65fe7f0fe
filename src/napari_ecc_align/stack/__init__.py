"""Stacks: time-lapses, z-series and channels aligned frame by frame onto one grid.

- :mod:`.align_frames` — :func:`align_stack` / :func:`iter_align_stack` and the
  reference modes (``previous`` chained, ``first``/index, ``mean``);
- :mod:`.warp_frames` — :func:`warp_stack`, eager or lazy (dask);
- :mod:`.canvas` — :class:`Canvas`, its output grid (the reference's, or the union);
- :mod:`.result` — :class:`StackAlignment` and :class:`FrameProgress`;
- :mod:`.layout` — frame and channel axes; :mod:`.pool` — the thread pool.
"""

from .align_frames import REFERENCES, align_stack, iter_align_stack
from .canvas import CANVASES, Canvas
from .pool import single_threaded
from .result import FrameProgress, StackAlignment
from .warp_frames import warp_stack

__all__ = [
    "CANVASES",
    "REFERENCES",
    "Canvas",
    "FrameProgress",
    "StackAlignment",
    "align_stack",
    "iter_align_stack",
    "single_threaded",
    "warp_stack",
]
