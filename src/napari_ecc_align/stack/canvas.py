"""The output grid of :func:`~napari_ecc_align.warp_stack`: the reference frame's own
extent, or a grown canvas holding every frame whole (``canvas="union"``).

A canvas is the reference grid extended by whole pixels (same pitch, an integer
offset), so an output lands in world coordinates with a plain translate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import grid_corners

CANVASES = ("reference", "union")
# A union wider than this many frames along an axis comes from a wrong matrix (a near-singular
# affine, a homography near its horizon), not from drift: refuse it instead of allocating it.
MAX_GROWTH = 4
# Pixels: a footprint reaching less than this past a pixel centre does not earn that row (ECC's
# sub-pixel noise on an integer shift would otherwise add a row of fill, 1e-4 of a pixel deep).
_TOLERANCE = 0.01


@dataclass(frozen=True)
class Canvas:
    """Where the output of :func:`~napari_ecc_align.warp_stack` lies on the reference grid.

    From :meth:`StackAlignment.canvas <napari_ecc_align.StackAlignment.canvas>`. The
    canvas has the reference grid's pixel pitch and is offset from it by whole pixels.

    Attributes
    ----------
    shape : tuple of int
        The spatial shape of every output frame: ``(rows, cols)``, ``(z, y, x)`` for
        volumes.
    origin : tuple of int
        The reference-grid pixel, in array order ``(row, col)`` (``(z, row, col)``), of
        output index 0: output pixel ``i`` shows reference-grid position ``origin + i``,
        so the reference frame's pixel 0 sits at output index ``-origin``. All zeros
        for ``canvas="reference"``, zeros or negative for ``"union"``. To overlay the
        output on the reference layer in napari, give it that layer's scale and
        ``translate = reference.translate + origin * reference.scale``.
    ndim : int
        2 or 3.
    matrix : ndarray, shape (3, 3) or (4, 4)
        Output pixel ``(x, y, 1)`` (``(x, y, z, 1)``) → reference-grid pixel: a shift by
        ``origin`` in ``(x, y, z)`` order. ``stack_alignment.matrices[t] @ canvas.matrix``
        maps the output grid to frame ``t``, what :func:`~napari_ecc_align.warp` takes.

    Examples
    --------
    A canvas 5 rows above and 7 columns left of a reference grid of 64 × 70:

    >>> from napari_ecc_align import Canvas
    >>> canvas = Canvas(shape=(76, 84), origin=(-5, -7))
    >>> canvas.matrix  # output pixel (x, y, 1) -> reference pixel
    array([[ 1.,  0., -7.],
           [ 0.,  1., -5.],
           [ 0.,  0.,  1.]])
    """

    shape: tuple[int, ...]
    origin: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "origin", tuple(int(n) for n in self.origin))
        if len(self.shape) not in (2, 3) or len(self.origin) != len(self.shape):
            raise ValueError(
                f"shape and origin must both be (rows, cols) or (z, y, x), got {self.shape} "
                f"and {self.origin}"
            )
        if min(self.shape) < 1:
            raise ValueError(f"shape must be positive, got {self.shape}")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def matrix(self) -> np.ndarray:
        shift = np.eye(self.ndim + 1)
        shift[: self.ndim, -1] = self.origin[::-1]
        return shift


def check_canvas(kind) -> str:
    """``kind`` if it names a canvas, else a ValueError naming ``canvas``."""
    if not isinstance(kind, str) or kind not in CANVASES:
        raise ValueError(f"canvas must be one of {CANVASES}, got {kind!r}")
    return kind


def stack_canvas(matrices, frame_shape, kind: str = "union") -> Canvas:
    """The :class:`Canvas` of ``kind`` for frames of ``frame_shape`` under ``matrices``.

    ``"union"``: the smallest integer-offset box of reference-grid pixels that holds the
    reference grid and every frame's footprint, the frame's first and last pixel centres
    on each axis mapped through the inverse of its reference → frame matrix
    (projectively for homographies), rounded outward. With linear interpolation every
    output pixel that draws on a frame under a shift is then inside the box, so the
    warped frame keeps its whole sum. A box larger than :data:`MAX_GROWTH` frames on
    an axis, or a frame whose footprint crosses a homography's horizon, raises
    ValueError.
    """
    check_canvas(kind)
    frame_shape = tuple(int(n) for n in frame_shape)
    ndim = len(frame_shape)
    if kind == "reference":
        return Canvas(frame_shape, (0,) * ndim)
    size = np.array(frame_shape[::-1], dtype=float)  # (x, y, z) order, like the matrices
    corners = grid_corners(frame_shape)
    lows, highs = [np.zeros(ndim)], [size - 1]  # the reference grid itself is always inside
    for t, matrix in enumerate(np.asarray(matrices, dtype=float)):
        low, high = _footprint(matrix, corners, t)
        lows.append(low)
        highs.append(high)
    start = np.floor(np.min(lows, axis=0) + _TOLERANCE)
    stop = np.ceil(np.max(highs, axis=0) - _TOLERANCE)
    shape = (stop - start + 1)[::-1]
    if np.any(shape > MAX_GROWTH * np.array(frame_shape)):
        beyond = np.maximum(-np.array(lows), np.array(highs) - (size - 1)).max(axis=1)
        worst = int(np.argmax(beyond)) - 1  # lows[0] is the reference grid
        raise ValueError(
            f"canvas='union' would be {tuple(int(n) for n in shape)} for frames of "
            f"{frame_shape}, more than {MAX_GROWTH} times a frame along an axis: frame "
            f"{worst}'s matrix puts part of it {beyond[worst + 1]:.4g} pixels outside the "
            "reference grid. Check that frame's matrix (result.table()) or keep "
            "canvas='reference'"
        )
    return Canvas(tuple(int(n) for n in shape), tuple(int(n) for n in start[::-1]))


def _footprint(matrix: np.ndarray, corners: np.ndarray, t: int):
    """Lowest and highest reference coordinates ``(x, y, z)`` of frame ``t``'s corners."""
    try:
        mapped = np.linalg.inv(matrix) @ corners
    except np.linalg.LinAlgError:
        raise ValueError(
            f"canvas='union': frame {t}'s matrix is singular, so the frame has no footprint "
            "on the reference grid; check that frame or keep canvas='reference'"
        ) from None
    w = mapped[-1]
    # A projective map keeps the box convex (so the corners bound it) only while the whole
    # box is on one side of the horizon, where w changes sign.
    if not (np.all(w > 0) or np.all(w < 0)):
        raise ValueError(
            f"canvas='union': frame {t}'s homography sends part of the frame to infinity "
            "on the reference grid; check that frame or keep canvas='reference'"
        )
    points = mapped[:-1] / w
    if not np.all(np.isfinite(points)):  # an inverse that overflowed: singular in all but name
        raise ValueError(
            f"canvas='union': frame {t}'s matrix is numerically singular; check that frame "
            "or keep canvas='reference'"
        )
    return points.min(axis=1), points.max(axis=1)
