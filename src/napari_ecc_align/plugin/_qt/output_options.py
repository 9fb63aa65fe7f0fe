"""The widget's output choices: which layers Align makes, and which it carries along.

:class:`OutputOptions` owns its controls; the dock lays its ``widgets`` out in its own
form, so their labels line up with the others'."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import CheckBox, ComboBox, Select

HOMOGRAPHY_TIP = "napari's affine transforms cannot express a homography; use Aligned image"
MOVE_TIP = "Set the moving layer's affine so it overlays the reference (no resampling)"


class OutputOptions:
    """Aligned image, difference, moving the layer itself, and other layers to carry."""

    def __init__(self, carriable: Callable):
        self.out_aligned = CheckBox(text="Aligned image", value=True)
        self.out_difference = CheckBox(text="Difference", value=True)
        self.difference_mode = ComboBox(
            label="Difference mode", choices=["auto", "absolute", "normalized"], value="auto"
        )
        self.move_only = CheckBox(text="Move layer only", value=False)
        self.also = Select(label="Also transform", choices=carriable, value=[])
        self.widgets = [
            self.out_aligned,
            self.out_difference,
            self.difference_mode,
            self.move_only,
            self.also,
        ]

    def suit_moving_layer(self, multiscale: bool) -> None:
        """Defaults for a newly chosen moving layer: a multiscale one (too big to resample
        at a press) is moved by its affine; the aligned image and the difference, when
        ticked, are lazy pyramids. Other layers get the usual outputs."""
        self.move_only.value = multiscale and self.move_only.enabled
        self.out_aligned.value = not multiscale
        self.out_difference.value = not multiscale

    def show_pair_outputs(self, show: bool) -> None:
        """A stack makes only its aligned frames: hide the outputs of a pair."""
        for widget in (self.out_difference, self.difference_mode, self.move_only, self.also):
            widget.visible = show

    def follow_motion(self, motion: str) -> None:
        """A homography cannot be a layer's affine: no "Move layer only" then."""
        homography = motion == "homography"
        if homography:
            self.move_only.value = False
        self.move_only.enabled = not homography
        self.move_only.tooltip = HOMOGRAPHY_TIP if homography else MOVE_TIP
