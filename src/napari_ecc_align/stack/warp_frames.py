""":func:`warp_stack`: every frame onto the common reference grid, eagerly or as a lazy
dask array.
"""

from __future__ import annotations

import numpy as np

from ..engine.warping import warp
from .layout import stack_layout
from .result import StackAlignment


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
    layout = stack_layout(stack, axis, channel_axis, stack_alignment.ndim)
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
    probe = (2,) * layout.ndim
    warp(np.zeros(probe, dtype), np.eye(layout.ndim + 1), **options)  # checks options first

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
