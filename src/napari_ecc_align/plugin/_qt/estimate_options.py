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

    def __init__(self, inits: Callable, masks: Callable, points: Callable):
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
            "on a small copy and keep the best; last result: refine the previous alignment; "
            "points: start from the least-squares fit of landmarks clicked in two Points "
            "layers (the same number, in the same order), for pairs no search reaches",
        )
        self.reference_points = ComboBox(
            label="Reference points", choices=points, nullable=True, value=None, visible=False,
            tooltip="a Points layer marking landmarks on the reference image",
        )  # fmt: skip
        self.moving_points = ComboBox(
            label="Moving points", choices=points, nullable=True, value=None, visible=False,
            tooltip="a Points layer marking the same landmarks, in the same order, on the "
            "moving image",
        )  # fmt: skip
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
                self.reference_points,
                self.moving_points,
                self.intensity,
                self.mask,
                self.interpolation,
            ],
            labels=True,
            visible=False,
        )
        self.init.changed.connect(self._show_points)

    def _show_points(self, init=None) -> None:
        """The two Points pickers, shown for the "points" start, each defaulting to a
        different Points layer."""
        shown = self.init.value == "points"
        for combo in (self.reference_points, self.moving_points):
            combo.visible = shown
            combo.reset_choices()
        layers = [layer for layer in self.reference_points.choices if layer is not None]
        if shown and self.reference_points.value is None and layers:
            self.reference_points.value = layers[0]
        if shown and self.moving_points.value is None and len(layers) > 1:
            self.moving_points.value = layers[1]


class EstimateOptions:
    """How the transform is estimated; :meth:`fit` adapts the choices to 2D or 3D."""

    def __init__(self, masks: Callable, points: Callable = lambda _widget=None: []):
        self.ndim = 2  # of the layers' alignment: volumes have no homography, 2D-only inits
        self.stack = False  # the moving layer's frames align to each other: no points start
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
        self.advanced = AdvancedOptions(inits=self._inits, masks=masks, points=points)
        # (pairs, RMS residual in pixels) of the last "points" start's landmark fit
        self.landmark_fit: tuple[int, float] | None = None
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
        """Fourier-Mellin and feature matching are 2D searches: not offered for volumes;
        landmarks mark one pair of images: not offered for stacks."""
        planar = () if getattr(self, "ndim", 2) == 3 else PLANAR_INITS
        points = () if getattr(self, "stack", False) else ("points",)
        return ["auto", "identity", "phase", *planar, *points, "last result"]

    def fit(self, ndim: int, stack: bool = False) -> None:
        """Motion and initialisation choices for ``ndim`` (and a stack); a choice no
        longer offered falls back to the default (affine, auto), never to whatever is
        listed first."""
        self.ndim, self.stack = ndim, stack
        for combo, default in ((self.motion, "affine"), (self.advanced.init, "auto")):
            current = combo.value
            combo.reset_choices()
            combo.value = current if current in combo.choices else default

    def parameters(self, ndim: int, last_alignment: Alignment | None, layers=(None, None)) -> dict:
        """``align`` keyword arguments (raises ValueError for a choice that does not fit);
        ``layers``: the reference and moving image layers, which the landmarks of a
        "points" start are measured on."""
        advanced = self.advanced
        levels, init = advanced.pyramid_levels.value, advanced.init.value
        ksize = advanced.gauss_filter_size.value
        self.landmark_fit = None
        if init == "points":
            init = self._landmarks(ndim, layers)
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

    def _landmarks(self, ndim: int, layers) -> tuple:
        """``(reference_points, moving_points)`` in the image layers' pixels, after checking
        that they fit the motion (the fit's residual is kept in ``landmark_fit``)."""
        from ...engine import landmark_start
        from ..layers import layer_spacing, points_in_layer

        advanced = self.advanced
        marked = (advanced.reference_points.value, advanced.moving_points.value)
        if any(layer is None for layer in marked) or any(layer is None for layer in layers):
            raise ValueError("a points start needs a Reference points and a Moving points layer")
        if marked[0] is marked[1]:
            raise ValueError("choose two different Points layers: one per image")
        points = tuple(points_in_layer(p, image, ndim) for p, image in zip(marked, layers,
                                                                          strict=True))  # fmt: skip
        spacing = layer_spacing(layers[0]) if ndim == 3 else None
        _, residual = landmark_start(*points, self.motion.value, ndim=ndim, spacing=spacing)
        self.landmark_fit = (len(points[0]), residual)
        return points
