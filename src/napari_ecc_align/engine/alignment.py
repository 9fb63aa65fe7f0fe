"""The result type of an alignment and the error raised when one fails.

Matrix convention (a contract): ``Alignment.matrix`` maps a *reference* pixel
(x = column, y = row, pixel centres at integers, homogeneous ``(x, y, 1)``) to
*moving*-image coordinates. It is exactly the ``warpMatrix`` of
``cv2.findTransformECC``, padded with the row ``[0, 0, 1]`` for 2×3 models, so
``cv2.warpAffine(moving, matrix[:2], size, flags=... | cv2.WARP_INVERSE_MAP)``
resamples the moving image onto the reference grid.

Volumes use the same convention one dimension up: a 4×4 matrix maps a reference
voxel ``(x, y, z, 1)`` (x = column, y = row, z = plane, voxel centres at
integers) to moving-volume coordinates ``(x, y, z)``; 3×4 models are padded
with ``[0, 0, 0, 1]``, and the shapes are ``(z, y, x)`` like the arrays.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import grid_corners, swap_axes
from .json_input import alignment_fields, json_path, read_json
from .temporary import create_temporary

MOTIONS = ("translation", "euclidean", "affine", "homography")

# Motions a volume (4×4 matrix) can have: a homography is 2D only.
VOLUME_MOTIONS = ("translation", "euclidean", "affine")


def is_affine(matrix) -> bool:
    """Whether a homogeneous matrix has an affine last row.

    Parameters
    ----------
    matrix : array_like of shape (3, 3) or (4, 4)
        An image (volume) matrix.

    Returns
    -------
    bool
        The last row is [0, 0, 1] ([0, 0, 0, 1]) to np.allclose's default tolerance
        (plain float tests, 20x cheaper than np.allclose, which a stack calls per frame).
    """
    *head, last = (float(v) for v in matrix[len(matrix) - 1])
    return all(abs(v) <= 1e-8 for v in head) and abs(last - 1.0) <= 1e-8 + 1e-5


class AlignmentError(RuntimeError):
    """Raised when ECC cannot align two images.

    The message says what went wrong (no convergence, no overlap, no
    correlation) and what to try next.
    """


@dataclass(frozen=True, eq=False)
class Alignment:
    """The transform found by :func:`napari_ecc_align.align` and how well it fits.

    An image alignment (2D) has a 3×3 matrix, a volume alignment (3D) a 4×4 one;
    :attr:`ndim` says which.

    Attributes
    ----------
    matrix : ndarray of shape (3, 3) or (4, 4), float64
        2D: maps a reference pixel ``(x, y, 1)`` (x = column, y = row, pixel
        centres at integers) to moving-image coordinates: exactly the
        ``warpMatrix`` of ``cv2.findTransformECC``, padded with ``[0, 0, 1]`` for
        2×3 models. 3D: maps a reference voxel ``(x, y, z, 1)`` (z = plane) to
        moving-volume coordinates ``(x, y, z)``; a 3×4 is padded with
        ``[0, 0, 0, 1]`` and the last row must be ``[0, 0, 0, 1]``.
    motion : str
        One of ``"translation"``, ``"euclidean"``, ``"affine"``, ``"homography"``
        (2D only; a 4×4 homography raises ValueError).
    correlation : float
        ECC (zero-mean normalised cross-correlation) of the reference and the
        moving image warped by ``matrix``, on the full-resolution images over
        their overlap: on every pixel of images up to 500 000 valid pixels, beyond on
        one pixel drawn at random (seeded) in each cell of a square grid, about
        500 000, or every pixel when fewer than 50 000 of them overlap (volumes:
        every n-th voxel, at most about 500 000). Computed after
        the last update (for a bilevel image that was turned over, with the
        turned-over image). With mapped intensities
        (``parameters["intensity_mapped"]``), the correlation with the mapped
        image, measured on a regular subsample of at most about 250 000 pixels
        (volumes: every n-th voxel, about 500 000): the correlation ratio, what ECC
        maximised.
    correlation_before : float
        The same at the initial warp.
    reference_shape, moving_shape : tuple of int
        ``(rows, cols)`` of the two images; ``(z, y, x)`` of two volumes.
    elapsed : float
        Seconds spent in :func:`align`.
    levels : int
        Number of pyramid levels used (1 = full resolution only).
    init_method : str
        Which initialisation the estimate started from.
    iterations : tuple of int
        ECC iterations run on each level, coarsest first; for images (volumes)
        estimated on a reduced copy and then refined at full resolution, the last
        entry is the full-resolution tiles' (blocks') (see
        ``"refined_at_full_resolution"``).
    parameters : dict
        The arguments the alignment was estimated with (JSON-safe), and
        ``"intensity_mapped"``: the image whose intensities were mapped onto the
        other's (``"reference"`` or ``"moving"``; None for plain ECC). With one
        bilevel image also ``"bilevel"`` (which one) and ``"bilevel_inverted"``
        (whether it was turned over), and for images and volumes estimated on a
        reduced copy ``"estimated_at_scale"`` (a number for images, ``[z, y, x]``
        for volumes) and ``"refined_at_full_resolution"`` (whether ECC ran once more
        on tiles or blocks of the originals; not with mapped intensities).
    """

    matrix: np.ndarray
    motion: str
    correlation: float
    correlation_before: float
    reference_shape: tuple[int, int]
    moving_shape: tuple[int, int]
    elapsed: float = 0.0
    levels: int = 1
    init_method: str = "identity"
    iterations: tuple[int, ...] = ()
    parameters: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if np.iscomplexobj(self.matrix):  # float64 would silently drop the imaginary part
            raise TypeError("matrix must be real, got a complex array")
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape in ((2, 3), (3, 4)):
            matrix = np.vstack([matrix, np.eye(matrix.shape[1])[-1]])
        if matrix.shape not in ((3, 3), (4, 4)):
            raise ValueError(
                "matrix must be 2x3 or 3x3 (an image) or 3x4 or 4x4 (a volume), "
                f"got shape {matrix.shape}"
            )
        if not np.all(np.isfinite(matrix)):
            raise ValueError("matrix must be finite")
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {self.motion!r}")
        volume = matrix.shape == (4, 4)
        if volume and self.motion not in VOLUME_MOTIONS:
            raise ValueError(
                f"motion {self.motion!r} is 2D only: a 4x4 (volume) alignment takes one of "
                f"{VOLUME_MOTIONS}"
            )
        if self.motion != "homography" and not is_affine(matrix):
            last = "[0, 0, 0, 1]" if volume else "[0, 0, 1]"
            raise ValueError(
                f"a {self.motion} matrix must end with the row {last}, got {matrix[-1].tolist()}"
            )
        shapes = [tuple(int(n) for n in s) for s in (self.reference_shape, self.moving_shape)]
        if volume and any(len(s) != 3 for s in shapes):
            raise ValueError(
                f"a 4x4 (volume) alignment needs (z, y, x) shapes, got {shapes[0]} and {shapes[1]}"
            )
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "reference_shape", shapes[0])
        object.__setattr__(self, "moving_shape", shapes[1])
        object.__setattr__(self, "iterations", tuple(int(n) for n in self.iterations))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Alignment):
            return NotImplemented
        mine, theirs = self.to_dict(), other.to_dict()
        return mine == theirs

    __hash__ = None  # mutable-looking contents (an array): not hashable

    @property
    def ndim(self) -> int:
        """2 for an image alignment (3×3 matrix), 3 for a volume alignment (4×4)."""
        return self.matrix.shape[0] - 1

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dictionary; :meth:`from_dict` restores it exactly.

        Besides the fields it holds ``"ndim"`` (2 or 3) and ``"convention"``, a
        reminder of the matrix convention for whoever reads the file.
        """
        if self.ndim == 3:
            convention = (
                "reference (x, y, z, 1) -> moving (x, y, z); 4x4, voxel centres at integers"
            )
        else:
            convention = "reference (x, y, 1) -> moving (x, y); cv2.findTransformECC warpMatrix"
        return {
            "ndim": self.ndim,
            "matrix": self.matrix.tolist(),
            "motion": self.motion,
            "correlation": float(self.correlation),
            "correlation_before": float(self.correlation_before),
            "reference_shape": list(self.reference_shape),
            "moving_shape": list(self.moving_shape),
            "elapsed": float(self.elapsed),
            "levels": int(self.levels),
            "init_method": self.init_method,
            "iterations": list(self.iterations),
            "parameters": json.loads(json.dumps(self.parameters, default=_json_default)),
            "convention": convention,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, max_pixels=None) -> Alignment:
        """Rebuild an :class:`Alignment` from :meth:`to_dict` output, checking every field.

        An ``"ndim"`` entry, if present, must agree with the matrix (2 for 3×3,
        3 for 4×4); ``"convention"`` and unknown keys are ignored.

        Parameters
        ----------
        data : dict
            As :meth:`to_dict` returns it (JSON-parsed or built in Python).
        max_pixels : int, optional
            Pixel budget for ``reference_shape`` and ``moving_shape``. None (default)
            sets none: a dictionary made in this process describes images that
            already exist. :meth:`from_json` always applies one.

        Raises
        ------
        TypeError
            If ``data`` is not a dict or a field has the wrong type.
        ValueError
            If a field is missing, of the wrong length, not finite or out of range, or
            a shape exceeds ``max_pixels``; the message names the field.
        """
        budget = math.inf if max_pixels is None else max_pixels
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**alignment_fields(data, names, budget))

    def to_json(self, path=None, **dump_kwargs) -> str:
        """Return the alignment as JSON text, and write it to ``path`` if given.

        The file is written to a temporary name and renamed, so a reader never
        sees half of it; missing parent folders are created.
        """
        text = json.dumps(self.to_dict(), indent=2, **dump_kwargs)
        if path is not None:
            write_text_atomic(path, text + "\n", ".json.tmp")
        return text

    @classmethod
    def from_json(cls, path_or_text, *, max_pixels=None) -> Alignment:
        """Read an alignment from a JSON file path or a JSON string.

        Hostile input is refused with a :class:`ValueError` or :class:`TypeError`
        naming the problem: a path that is no regular file (a FIFO would block), a
        file over 16 MiB, nesting deeper than 64, non-finite or huge numbers, and
        every field as in :meth:`from_dict`. The shapes must hold at most
        ``max_pixels`` pixels (default: the environment variable
        ``NAPARI_ECC_ALIGN_MAX_PIXELS``, else 2**28).
        """
        data = read_json(path_or_text, "transform JSON")
        names = [f.name for f in dataclasses.fields(cls)]
        try:  # a file may claim any size: the budget applies (the default one if None)
            return cls(**alignment_fields(data, names, max_pixels))
        except (TypeError, ValueError) as exc:  # say which file, keep the type
            raise type(exc)(f"{json_path(path_or_text) or 'transform JSON'}: {exc}") from None

    # -- geometry ------------------------------------------------------------------------------
    def inverse(self) -> Alignment:
        """The alignment in the other direction: moving becomes the reference (2D or 3D)."""
        inv = _inverse(self.matrix)
        return dataclasses.replace(
            self,
            matrix=inv,
            reference_shape=self.moving_shape,
            moving_shape=self.reference_shape,
        )

    def then(self, other: Alignment) -> Alignment:
        """This alignment followed by ``other``: ``self``'s reference → ``other``'s moving.

        ``self`` maps its reference to its moving image, which must be ``other``'s
        reference (same shape); the chain's matrix is ``other.matrix @ self.matrix``.
        ``other @ self`` is the same (matrix order). The motion is the more general of
        the two (a rigid chain of volumes stays rigid only with one voxel size).

        Parameters
        ----------
        other : Alignment
            Of the same dimensionality, from ``self``'s moving image onwards.

        Returns
        -------
        Alignment
            Correlations NaN (not measured), ``init_method`` ``"composed"``.

        Raises
        ------
        TypeError, ValueError
            If ``other`` is no Alignment, of another dimensionality, or its reference
            shape is not ``self``'s moving shape.
        """
        if not isinstance(other, Alignment):
            raise TypeError(f"other must be an Alignment, got {type(other).__name__}")
        if other.ndim != self.ndim:
            raise ValueError(f"cannot chain a {self.ndim}D and a {other.ndim}D alignment")
        if tuple(other.reference_shape) != tuple(self.moving_shape):
            raise ValueError(
                f"the first alignment ends on a moving image of shape {self.moving_shape}, but "
                f"the second starts from a reference of shape {other.reference_shape}"
            )
        matrix = other.matrix @ self.matrix
        matrix = matrix / matrix[-1, -1]
        motion = max(self.motion, other.motion, key=MOTIONS.index)
        spacing = self.parameters.get("spacing")
        if motion == "euclidean" and self.ndim == 3 and spacing != other.parameters.get("spacing"):
            motion = "affine"  # rigid in two different voxel sizes: not rigid in either
        parameters = {} if spacing is None else {"spacing": list(spacing)}
        return Alignment(matrix=matrix, motion=motion, correlation=math.nan,
                         correlation_before=math.nan, reference_shape=self.reference_shape,
                         moving_shape=other.moving_shape, init_method="composed",
                         parameters=parameters)  # fmt: skip

    def __matmul__(self, other: Alignment) -> Alignment:
        """``b @ a`` is ``a.then(b)``: matrices compose right to left."""
        if not isinstance(other, Alignment):
            return NotImplemented
        return other.then(self)

    def transform_points(self, points_rc) -> np.ndarray:
        """Map points from moving-image to reference-image coordinates.

        Parameters
        ----------
        points_rc : array_like of shape (N, 2) or (N, D)
            Points in moving pixel coordinates, ``(row, col)`` in the last two
            columns (leading columns, e.g. a time index, are passed through). For a
            volume alignment (:attr:`ndim` 3): shape (N, 3) or (N, D >= 3) with
            ``(z, y, x)`` voxel coordinates in the last three columns.

        Returns
        -------
        ndarray of float64, same shape
            The points in reference pixel (voxel) coordinates.
        """
        pts = np.array(points_rc, dtype=np.float64)
        if pts.ndim == 1:
            return self.transform_points(pts[None])[0]
        n = self.ndim
        if pts.ndim != 2 or pts.shape[1] < n:
            raise ValueError(f"points_rc must have shape (N, {n}) or (N, D>={n}), got {pts.shape}")
        inv = _inverse(self.matrix) if n == 3 else np.linalg.inv(self.matrix)
        # columns (..., z, y, x) reversed into homogeneous (x, y[, z], 1)
        xyz1 = np.column_stack([pts[:, : -n - 1 : -1], np.ones(len(pts))])
        mapped = xyz1 @ inv.T
        with np.errstate(divide="ignore", invalid="ignore"):
            mapped = mapped[:, :n] / mapped[:, n : n + 1]
        out = pts.copy()
        out[:, -n:] = mapped[:, ::-1]
        return out

    def napari_affine(self) -> np.ndarray:
        """The 3×3 ``(row, col)`` matrix mapping moving data to reference data coordinates.

        For a volume alignment, the 4×4 ``(z, y, x)`` matrix doing the same: the
        inverse of :attr:`matrix` with the axes reversed.

        Set it as ``moving_layer.affine`` (composed with the reference layer's own
        data-to-world transform if it has one) to overlay the moving layer on the
        reference without resampling.

        Returns
        -------
        ndarray of shape (3, 3) or (4, 4), float64
            Homogeneous, in napari's ``(row, col)`` (``(z, y, x)``) axis order.

        Raises
        ------
        ValueError
            For a homography, which napari's affine transforms cannot express.
        """
        if self.motion == "homography" and not np.allclose(self.matrix[2, :2], 0.0):
            raise ValueError(
                "a homography cannot be expressed as a napari affine transform; "
                "resample the image with warp() instead, or align with motion='affine'"
            )
        inv = _inverse(self.matrix)
        swap = swap_axes(self.ndim)
        return swap @ inv @ swap

    def corner_error(self, true_matrix, shape=None) -> float:
        """RMS distance between the reference-grid corners mapped by ``matrix`` and by
        ``true_matrix``: the accuracy measure of our tests and benchmarks.

        Parameters
        ----------
        true_matrix : array_like
            A reference→moving matrix in the same convention and dimension.
        shape : tuple of int, optional
            The grid, ``(rows, cols)`` or ``(z, y, x)``; the reference shape by default.

        Returns
        -------
        float
            In pixels (voxels), over the 4 (8) corners; see :func:`corner_rms`.
        """
        return corner_rms(self.matrix, true_matrix, shape or self.reference_shape)


def corner_rms(matrix, true_matrix, shape) -> float:
    """RMS corner error of two reference→moving matrices on a reference grid.

    Parameters
    ----------
    matrix, true_matrix : array_like
        2×3 or 3×3 (images) or 3×4 or 4×4 (volumes), the same kind both.
    shape : tuple of int
        ``(rows, cols)`` for images (``shape[:2]`` is used), ``(z, y, x)`` for
        volumes; corners are at 0 and ``n - 1`` on each axis.

    Returns
    -------
    float
        The RMS over the 4 (8) corners of the distance, in pixels (voxels),
        between where the two matrices send each corner.
    """
    m, t = _homogeneous(matrix), _homogeneous(true_matrix)
    if m.shape != t.shape:
        raise ValueError(f"matrices of different dimensions: {m.shape} and {t.shape}")
    corners = grid_corners(shape[:3] if m.shape == (4, 4) else shape[:2])

    def project(h):
        p = h @ corners
        return p[:-1] / p[-1]

    diff = project(m) - project(t)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=0))))


def _inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 3×3 matrix scaled to end in 1, or of an affine 4×4 with its last row
    exactly [0, 0, 0, 1]."""
    if matrix.shape == (4, 4):
        inv = np.eye(4)
        inv[:3, :3] = np.linalg.inv(matrix[:3, :3])
        inv[:3, 3] = -inv[:3, :3] @ matrix[:3, 3]
        return inv
    inv = np.linalg.inv(matrix)
    return inv / inv[2, 2]


def _homogeneous(matrix) -> np.ndarray:
    """A 3×3 or 4×4 float64 matrix; 2×3 and 3×4 models get their affine last row."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape in ((2, 3), (3, 4)):
        m = np.vstack([m, np.eye(m.shape[1])[-1]])
    if m.shape not in ((3, 3), (4, 4)):
        raise ValueError(f"matrix must be 2x3, 3x3, 3x4 or 4x4, got shape {m.shape}")
    return m


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def write_text_atomic(
    path, text: str, suffix: str = ".tmp", *, owner: str | None = None, errors: str = "strict"
) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``:
    a reader never sees half a file. Missing parent folders are created.

    The text is encoded as UTF-8 with the given ``errors`` handler (``"surrogateescape"``
    writes the bytes of a file name that is not UTF-8 as they are). With an ``owner``
    token (:func:`napari_ecc_align.engine.temporary.new_owner`) the temporary file is
    named ``.<stem>.<owner>-<hex>.tmp<ext>`` (``suffix`` unused), so the owner's
    clean-up can tell it from any other file; by default it is ``.<random><suffix>``.
    """
    if owner is not None:
        tmp = create_temporary(path, owner)
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
    else:
        folder = os.path.dirname(os.path.abspath(os.fspath(path)))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors=errors, newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
