"""What the chosen layers mean: two images, two volumes, or the frames of a stack.

napari layers say how many axes they have, not what the axes are: a 3D layer is a
volume or a 2D time-lapse, a 4D one a 3D time-lapse or a 2D one with channels. The
widget decides from the layer pair where that is clear and asks (its "Align as"
control) where it is not; this module holds those rules, without Qt.
"""

from __future__ import annotations

from enum import Enum

from .layers import layer_spacing


class Mode(str, Enum):  # noqa: UP042 - StrEnum would change str() of the members
    """How one press of Align treats the moving layer."""

    IMAGES = "images"  # two 2D images
    VOLUMES = "volumes"  # two 3D volumes
    PLANES = "planes"  # the 2D frames (planes) of the moving layer, aligned to each other
    VOLUME_FRAMES = "volume frames"  # the 3D frames of a (t, z, y, x) time-lapse

    @property
    def is_stack(self) -> bool:
        return self in (Mode.PLANES, Mode.VOLUME_FRAMES)

    @property
    def ndim(self) -> int:
        """Spatial axes of one alignment."""
        return 3 if self in (Mode.VOLUMES, Mode.VOLUME_FRAMES) else 2


# The "Align as" choices, as the user reads them.
AS_VOLUME = "volume"
AS_PLANES = "planes of a stack"
AS_TIMELAPSE = "3D time-lapse"
_MODES = {AS_VOLUME: Mode.VOLUMES, AS_PLANES: Mode.PLANES, AS_TIMELAPSE: Mode.VOLUME_FRAMES}


def spatial_ndim(layer) -> int:
    """Axes of an Image layer's data, not counting an RGB(A) channel axis (0 for none)."""
    if layer is None or type(layer).__name__ != "Image":
        return 0
    return layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)


def is_rgb(layer) -> bool:
    return bool(getattr(layer, "rgb", False))


def align_as_choices(reference, moving) -> tuple[list[str], str | None]:
    """The "Align as" choices for this layer pair and the one to preselect.

    A 2D moving layer needs no choice (empty list), nor does an RGB stack (colour
    volumes are not aligned: its frames are planes). A 3D one is a volume or a 2D
    stack: with another 3D grayscale layer as reference it is preselected as a
    volume; with a 2D reference, or as the only layer, nothing is preselected — the
    widget asks. A 4D or larger one is preselected as a 3D time-lapse (frame axis,
    channel axis and z, y, x), and can be taken as planes instead (e.g. a
    (t, c, y, x) movie).
    """
    n = spatial_ndim(moving)
    if n <= 2 or is_rgb(moving):
        return [], None
    if n == 3:
        other = reference is not moving and spatial_ndim(reference) == 3 and not is_rgb(reference)
        return [AS_VOLUME, AS_PLANES], (AS_VOLUME if other else None)
    return [AS_TIMELAPSE, AS_PLANES], AS_TIMELAPSE


def mode_for(moving, align_as: str | None) -> Mode | None:
    """The mode for the moving layer and the "Align as" choice (None: still to choose)."""
    n = spatial_ndim(moving)
    if n <= 2:
        return Mode.IMAGES
    if is_rgb(moving):
        return Mode.PLANES
    return _MODES.get(align_as)


# Initialisations that search in 2D only (log-polar, feature matching).
PLANAR_INITS = ("fourier-mellin", "features")


def spacing_mismatch(reference, moving, tolerance: float = 0.01) -> str:
    """Why two volume layers' voxel sizes (their ``scale``) cannot share one spacing, or ""."""
    ref, mov = layer_spacing(reference), layer_spacing(moving)
    if all(abs(a - b) <= tolerance * max(a, b) for a, b in zip(ref, mov, strict=True)):
        return ""
    return (
        f"'{moving.name}' has voxel size (scale) {mov} and the reference {ref}: a rigid "
        "motion cannot bridge that; give both layers the same scale, or choose affine"
    )


def ask_text(moving) -> str:
    """The inline question shown while a 3D moving layer's meaning is not chosen."""
    return (
        f"'{moving.name}' is 3D: choose Align as — 'volume' to align it onto a 3D "
        "reference layer, or 'planes of a stack' to align its planes to each other."
    )


def pair_problem(mode: Mode | None, reference, moving, images: int) -> str:
    """Why Align cannot run on these layers in ``mode`` (``images``: image layers
    open), as the inline hint to show, or "" when it can."""
    if mode is None:
        return ask_text(moving)
    if mode.is_stack:
        return ""  # a stack is aligned to its own frames
    if images < 2:
        what = "volume" if mode is Mode.VOLUMES else "image"
        return f"Open two image layers: a reference and a moving {what}."
    if reference is moving:
        return "Reference and Moving are the same layer: pick two different ones."
    if mode is Mode.VOLUMES and spatial_ndim(reference) != 3:
        return (
            f"Reference '{reference.name}' is not a volume: pick a 3D reference layer, "
            "or align the moving layer as planes of a stack."
        )
    if mode is Mode.IMAGES and spatial_ndim(reference) > 2:
        return (
            f"Reference '{reference.name}' is 3D and Moving is 2D: pick a 2D reference, "
            "or a 3D moving layer to align as a volume."
        )
    return ""
