""":func:`warp_stack`: every frame onto the common reference grid (or a canvas grown to
hold every frame whole), eagerly or as a lazy dask array.
"""

from __future__ import annotations

import numpy as np

from ..engine import warp
from .layout import stack_layout
from .result import StackAlignment


def warp_stack(
    stack, stack_alignment: StackAlignment, *, axis: int | None = None,
    channel_axis: int | None = None, interpolation: str = "linear", fill_value=0,
    canvas: str = "reference", max_memory: int = 2**30,
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
    canvas : {"reference", "union"}
        The output grid. ``"reference"``: the reference frame's extent; frames that
        drift out of it lose their edges. ``"union"``: the reference grid grown by whole
        pixels until nothing of any frame is cropped;
        ``stack_alignment.canvas("union")`` gives its ``shape`` and ``origin`` (the
        reference-grid pixel of output index 0, for placing the output with a
        translate). Raises ValueError if that canvas would be more than 4 times a frame
        along an axis (a wrong matrix).
    max_memory : int
        If the output needs more bytes than this, or ``stack`` is a dask array, a
        lazy dask array is returned (one chunk per frame, warped when computed).

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``stack``'s dtype, and its shape with the spatial axes of each frame replaced by
        the canvas's shape (the same shape for ``"reference"``); channels and RGB
        follow their frame. Failed frames are passed through unchanged (at the
        identity, i.e. on the reference grid's place in the canvas).
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
    grid = stack_alignment.canvas(canvas)  # a ValueError naming `canvas` if it is none
    dtype, ok = np.dtype(stack.dtype), stack_alignment.ok
    # Output grid -> frame; for "reference" grid.matrix is the identity, so exactly as before.
    matrices = stack_alignment.matrices @ grid.matrix
    options = {"output_shape": grid.shape, "interpolation": interpolation}
    options["fill_value"] = fill_value
    probe = (2,) * layout.ndim
    warp(np.zeros(probe, dtype), np.eye(layout.ndim + 1), **options)  # checks options first
    # The frames' spatial axes in the stack, in (z,) y, x order (RGB stays last, untouched).
    spatial = [i for i in range(len(layout.shape)) if i not in (layout.axis, layout.channel_axis)]
    spatial = spatial[: layout.ndim]
    out_shape = list(layout.shape)
    for i, n in zip(spatial, grid.shape, strict=True):
        out_shape[i] = n
    # Where a failed frame goes in an output frame: the reference grid's place in the canvas.
    region = [slice(None)] * (len(layout.shape) - 1)
    for i, o, n in zip(spatial, grid.origin, layout.frame_shape, strict=True):
        region[i - (i > layout.axis)] = slice(-o, -o + n)
    frame_out_shape = tuple(n for i, n in enumerate(out_shape) if i != layout.axis)

    def warp_frame(frame: np.ndarray, t: int) -> np.ndarray:
        """Frame ``t`` as ``stack[layout.index(t)]`` gives it (channels where they were)."""
        if not ok[t]:
            if canvas == "reference":
                return np.array(frame)
            placed = np.full(frame_out_shape, fill_value, dtype)
            placed[tuple(region)] = frame
            return placed
        if layout.channel_axis is None:
            return warp(frame, matrices[t], **options)
        pos = layout.channel_axis - (layout.channel_axis > layout.axis)
        planes = np.moveaxis(frame, pos, 0)
        return np.stack([warp(p, matrices[t], **options) for p in planes], axis=pos)

    lazy = hasattr(stack, "dask") or type(stack).__module__.startswith("dask")
    if not lazy and int(np.prod(out_shape, dtype=np.int64)) * dtype.itemsize <= max_memory:
        out = np.empty(out_shape, dtype)
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
    chunks = tuple((1,) * n if i == layout.axis else (n,) for i, n in enumerate(out_shape))
    return source.rechunk(one_frame).map_blocks(warp_block, chunks=chunks, dtype=dtype, meta=meta)
