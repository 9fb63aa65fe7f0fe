"""The widget's estimation controls: motion, iterations, eps and the advanced options.

:class:`EstimateOptions` owns its controls and their callbacks; the dock lays its
``widgets`` out in its own form, so their labels line up with the others'."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import CheckBox, ComboBox, Container, SpinBox

from ...engine import INTENSITY_MODES, MOTIONS, VOLUME_MOTIONS, Alignment
from ..modes import PLANAR_INITS
from .number_fields import ScientificFloat


class AdvancedOptions(Container):
    """Pyramid, prefilter, initialisation, intensities, mask and interpolation (hidden by
    default)."""

    def __init__(self, inits: Callable, masks: Callable):
        self.pyramid_levels = ComboBox(
            label="Pyramid levels", choices=["auto"] + [str(n) for n in range(1, 11)]
        )
        self.gauss_filter_size = ComboBox(
            label="Gaussian filter",
            choices=["auto", "0", "3", "5", "7", "9", "11"],
            value="auto",
            tooltip="auto: 5 on coarse pyramid levels, 3 at full resolution; a number: that "
            "blur on every level (0: none)",
        )
        self.init = ComboBox(
            label="Initialisation",
            choices=inits,
            value="auto",
            tooltip="auto: try phase correlation, Fourier-Mellin, features and the identity "
            "on a small copy and keep the best; last result: refine the previous alignment",
        )
        self.intensity = ComboBox(
            label="Intensities",
            choices=list(INTENSITY_MODES),
            value="auto",
            tooltip="mapped: map one layer's intensities onto the other's first (two "
            "modalities, binarised vs grayscale); linear: plain ECC; auto: map when that "
            "explains the pair markedly better",
        )
        self.mask = ComboBox(label="Mask", choices=masks, nullable=True, value=None)
        self.interpolation = ComboBox(
            label="Interpolation", choices=["nearest", "linear", "cubic"], value="linear"
        )
        super().__init__(
            widgets=[
                self.pyramid_levels,
                self.gauss_filter_size,
                self.init,
                self.intensity,
                self.mask,
                self.interpolation,
            ],
            labels=True,
            visible=False,
        )


class EstimateOptions:
    """How the transform is estimated; :meth:`fit` adapts the choices to 2D or 3D."""

    def __init__(self, masks: Callable):
        self.ndim = 2  # of the layers' alignment: volumes have no homography, 2D-only inits
        self.motion = ComboBox(label="Motion", choices=self._motions, value="affine")
        self.max_iterations = SpinBox(
            label="Max iterations", value=100, min=1, max=100_000, step=10,
            tooltip="ECC iterations per pyramid level at most",
        )  # fmt: skip
        self.eps = ScientificFloat(
            1e-6, label="Eps", min=1e-12, max=0.1,
            tooltip="stop a level when the update is smaller than this (1e-6: OpenCV's "
            "usual choice; the arrows step by factors of ten)",
        )  # fmt: skip
        self.show_advanced = CheckBox(text="Advanced", value=False)
        self.advanced = AdvancedOptions(inits=self._inits, masks=masks)
        self.widgets = [self.motion, self.max_iterations, self.eps, self.show_advanced,
                        self.advanced]  # fmt: skip
        self.motion_touched = False  # the user picked a motion: no automatic change then
        self._add_callbacks()

    def _add_callbacks(self) -> None:
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", v))
        self.motion.native.activated.connect(lambda *_: setattr(self, "motion_touched", True))

    def _motions(self, _widget=None) -> list[str]:
        """Volumes have no homography (no 3D perspective in ECC). A callable, so the
        reset_choices napari runs on every layer event keeps it."""
        return list(VOLUME_MOTIONS if getattr(self, "ndim", 2) == 3 else MOTIONS)

    def _inits(self, _widget=None) -> list[str]:
        """Fourier-Mellin and feature matching are 2D searches: not offered for volumes."""
        planar = () if getattr(self, "ndim", 2) == 3 else PLANAR_INITS
        return ["auto", "identity", "phase", *planar, "last result"]

    def fit(self, ndim: int) -> None:
        """Motion and initialisation choices for ``ndim``; a choice no longer offered
        falls back to the default (affine, auto), never to whatever is listed first."""
        self.ndim = ndim
        for combo, default in ((self.motion, "affine"), (self.advanced.init, "auto")):
            current = combo.value
            combo.reset_choices()
            combo.value = current if current in combo.choices else default

    def parameters(self, ndim: int, last_alignment: Alignment | None) -> dict:
        """``align`` keyword arguments (raises ValueError for a choice that does not fit)."""
        advanced = self.advanced
        levels, init = advanced.pyramid_levels.value, advanced.init.value
        ksize = advanced.gauss_filter_size.value
        if init == "last result":
            if last_alignment is None:
                raise ValueError("there is no last result yet: align once, or choose auto")
            if last_alignment.ndim != ndim:
                raise ValueError(
                    f"the last result is a {last_alignment.ndim}D alignment and these "
                    f"layers align in {ndim}D: choose auto"
                )
            init = last_alignment.matrix
        if ndim == 3 and isinstance(init, str) and init in PLANAR_INITS:
            raise ValueError(
                f"initialisation {init!r} is for 2D images; volumes take auto, phase or identity"
            )
        params = {
            "motion": self.motion.value,
            "max_iterations": int(self.max_iterations.value),
            "eps": float(self.eps.value),
            "gauss_filter_size": None if ksize == "auto" else int(ksize),
            "pyramid_levels": None if levels == "auto" else int(levels),
            "init": init,
            "intensity": advanced.intensity.value,
        }
        if ndim == 3:
            params["ndim"] = 3
        return params
