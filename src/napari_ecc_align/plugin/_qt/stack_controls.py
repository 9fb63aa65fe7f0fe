"""The widget's controls for aligning every frame of a stack layer."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, SpinBox

from ..modes import spatial_ndim

REFERENCE_MODES = ("previous", "first", "mean", "frame")
# The output extent choices, as read, and warp_stack's canvas values.
EXTENTS = {"reference frame": "reference", "all frames (grow canvas)": "union"}


def is_stack(layer) -> bool:
    """An image layer with more than two spatial/time dimensions (beyond RGB)."""
    return spatial_ndim(layer) > 2


class StackControls(Container):
    """Reference mode, frame axis and channel for stack alignment."""

    def __init__(self):
        self.reference = ComboBox(
            label="Stack reference",
            choices=list(REFERENCE_MODES),
            value="previous",
            tooltip="previous: chain frame-to-frame (follows slow drift); first or a frame: "
            "align every frame to it (parallel); mean: to the mean image, twice",
        )
        self.frame = SpinBox(label="Reference frame", min=0, max=0, value=0, visible=False)
        self.axis = SpinBox(label="Frame axis", min=0, max=0, value=0)
        self.channel_axis = ComboBox(label="Channel axis", choices=["none"], value="none")
        self.channel = SpinBox(label="Estimate on channel", min=0, max=0, value=0, enabled=False)
        self.extent = ComboBox(
            label="Output extent",
            choices=list(EXTENTS),
            value="reference frame",
            tooltip="reference frame: crop every aligned frame to the reference's extent; "
            "all frames: grow the canvas so that no frame loses its edges",
        )
        super().__init__(
            widgets=[
                self.reference,
                self.frame,
                self.axis,
                self.channel_axis,
                self.channel,
                self.extent,
            ],  # fmt: skip
            labels=True,
            visible=False,
        )
        self.reference.changed.connect(lambda v: setattr(self.frame, "visible", v == "frame"))
        self.channel_axis.changed.connect(self._on_channel_axis)
        self.axis.changed.connect(self._fit_axes)
        self._shape: tuple[int, ...] = ()
        self._rgb = False
        self._frame_ndim = 2

    def follow(self, layer, show: bool = True, frame_ndim: int = 2) -> None:
        """Show the controls for a stack layer whose frames have ``frame_ndim`` axes
        (and fit their ranges); hide them otherwise."""
        self.visible = show and is_stack(layer)
        if not self.visible:
            return
        shape = tuple(layer.data.shape)
        if (shape, frame_ndim) == (self._shape, self._frame_ndim):
            return
        self._shape, self._frame_ndim = shape, frame_ndim
        self._rgb = bool(layer.rgb)
        spatial = len(shape) - (1 if layer.rgb else 0)
        # the last axes are (z,) rows and columns
        self.axis.max = max(0, spatial - frame_ndim - 1)
        self._fit_axes()

    def _fit_axes(self, _value=None) -> None:
        """Channel-axis choices and the frame range follow the frame axis."""
        if not self._shape:
            return
        spatial = len(self._shape) - (1 if self._rgb else 0)
        others = [str(k) for k in range(spatial - self._frame_ndim) if k != self.axis.value]
        self.channel_axis.choices = ["none", *others]
        self.channel_axis.value = "none"
        self.frame.max = max(0, self._shape[self.axis.value] - 1)

    def _on_channel_axis(self, value) -> None:
        self.channel.enabled = value != "none"
        if value != "none" and self._shape:
            self.channel.max = self._shape[int(value)] - 1

    @property
    def canvas(self) -> str:
        """``warp_stack``'s ``canvas`` for the output-extent choice."""
        return EXTENTS[self.extent.value]

    def kwargs(self) -> dict:
        """``align_stack`` keyword arguments for the current choices."""
        reference = self.reference.value
        channel_axis = None if self.channel_axis.value == "none" else int(self.channel_axis.value)
        return {
            "reference": self.frame.value if reference == "frame" else reference,
            "axis": self.axis.value,
            "channel_axis": channel_axis,
            "channel": self.channel.value if channel_axis is not None else None,
        }
