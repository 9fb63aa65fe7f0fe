"""Where the frames and channels of a stack are: axis checks and per-frame indexing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StackLayout:
    shape: tuple[int, ...]
    axis: int
    channel_axis: int | None
    rgb: bool  # channel-last RGB(A) frames
    ndim: int = 2  # 3: every frame is a (z, y, x) volume

    @property
    def frames(self) -> int:
        return self.shape[self.axis]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        spatial = [n for i, n in enumerate(self.shape) if i not in (self.axis, self.channel_axis)]
        return tuple(spatial[: self.ndim])

    def index(self, t: int, channel: int | None = None) -> tuple:
        """Tuple index of frame ``t`` (and of one of its channels, if given)."""
        idx: list[Any] = [slice(None)] * len(self.shape)
        idx[self.axis] = t
        if channel is not None and self.channel_axis is not None:
            idx[self.channel_axis] = channel
        return tuple(idx)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _axis(value, ndim: int, name: str, shape) -> int:
    if not is_int(value) or not -ndim <= value < ndim:
        raise ValueError(f"{name}={value!r} is not an axis of the stack of shape {shape}")
    return int(value) % ndim


def stack_layout(stack, axis, channel_axis, ndim: int = 2) -> StackLayout:
    if not all(hasattr(stack, a) for a in ("shape", "ndim", "dtype", "__getitem__")):
        raise TypeError(f"stack must be an array (numpy, memmap, dask), got {type(stack)}")
    shape = tuple(int(n) for n in stack.shape)
    axis = _axis(axis, len(shape), "axis", shape)
    if channel_axis is not None:
        channel_axis = _axis(channel_axis, len(shape), "channel_axis", shape)
        if channel_axis == axis:
            raise ValueError(f"channel_axis must differ from axis, both are {axis}")
    dims = len(shape) - 1 - (channel_axis is not None)
    if ndim == 3:
        if dims != 3:
            raise ValueError(
                f"stack has shape {shape}: with ndim=3, axis={axis} and channel_axis="
                f"{channel_axis} a frame has {dims} dimensions, but frames must be (z, y, x) "
                "volumes: a (t, z, y, x) or, with channel_axis, (t, c, z, y, x) stack"
            )
        layout = StackLayout(shape, axis, channel_axis, False, 3)
        if layout.frames < 1 or min(layout.frame_shape) < 2:
            raise ValueError(
                f"stack has shape {shape}: no volumes of 2x2x2 or more along axis={axis}"
            )
        return layout
    rgb = channel_axis is None and dims == 3 and axis != len(shape) - 1 and shape[-1] in (3, 4)
    if dims != 2 and not rgb:
        raise ValueError(
            f"stack has shape {shape}: with axis={axis} and channel_axis={channel_axis} a frame "
            f"has {dims} dimensions, but frames must be (rows, cols) or RGB(A) (rows, cols, 3|4); "
            "set channel_axis for other channel layouts, pass ndim=3 for a time-lapse of "
            "(z, y, x) volumes, or select a sub-stack first"
        )
    layout = StackLayout(shape, axis, channel_axis, rgb)
    if layout.frames < 1 or min(layout.frame_shape) < 2:
        raise ValueError(f"stack has shape {shape}: no frames of 2x2 or more along axis={axis}")
    return layout


def check_channel(channel, layout: StackLayout) -> int | None:
    if layout.channel_axis is None and not layout.rgb:
        if channel is not None:
            raise ValueError("channel needs a channel_axis (or RGB frames) to select from")
        return None
    count = layout.shape[-1 if layout.channel_axis is None else layout.channel_axis]
    if channel is None:
        return None if layout.channel_axis is None else 0
    if not is_int(channel) or not -count <= channel < count:
        raise ValueError(f"channel must index one of the {count} channels, got {channel!r}")
    return int(channel) % count
