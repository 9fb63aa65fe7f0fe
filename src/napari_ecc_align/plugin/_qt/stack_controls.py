"""The widget's controls for aligning every frame of a stack layer."""

from __future__ import annotations

from magicgui.widgets import ComboBox, Container, SpinBox

REFERENCE_MODES = ("previous", "first", "mean", "frame")


def is_stack(layer) -> bool:
    """An image layer with more than two spatial/time dimensions (beyond RGB)."""
    if layer is None or type(layer).__name__ != "Image":
        return False
    ndim = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    return ndim > 2


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
        super().__init__(
            widgets=[self.reference, self.frame, self.axis, self.channel_axis, self.channel],
            labels=True,
            visible=False,
        )
        self.reference.changed.connect(lambda v: setattr(self.frame, "visible", v == "frame"))
        self.channel_axis.changed.connect(self._on_channel_axis)
        self.axis.changed.connect(self._fit_axes)
        self._shape: tuple[int, ...] = ()
        self._rgb = False

    def follow(self, layer) -> None:
        """Show the controls for a stack layer (and fit their ranges), hide them otherwise."""
        self.visible = is_stack(layer)
        if not self.visible:
            return
        shape = tuple(layer.data.shape)
        if shape == self._shape:
            return
        self._shape = shape
        self._rgb = bool(layer.rgb)
        spatial = len(shape) - (1 if layer.rgb else 0)
        self.axis.max = spatial - 3  # the last two axes are rows and columns
        self._fit_axes()

    def _fit_axes(self, _value=None) -> None:
        """Channel-axis choices and the frame range follow the frame axis."""
        if not self._shape:
            return
        spatial = len(self._shape) - (1 if self._rgb else 0)
        others = [str(k) for k in range(spatial - 2) if k != self.axis.value]
        self.channel_axis.choices = ["none", *others]
        self.channel_axis.value = "none"
        self.frame.max = max(0, self._shape[self.axis.value] - 1)

    def _on_channel_axis(self, value) -> None:
        self.channel.enabled = value != "none"
        if value != "none" and self._shape:
            self.channel.max = self._shape[int(value)] - 1

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
