"""The result type of an alignment and the error raised when one fails.

Matrix convention (a contract): ``Alignment.matrix`` maps a *reference* pixel
(x = column, y = row, pixel centres at integers, homogeneous ``(x, y, 1)``) to
*moving*-image coordinates. It is exactly the ``warpMatrix`` of
``cv2.findTransformECC``, padded with the row ``[0, 0, 1]`` for 2×3 models, so
``cv2.warpAffine(moving, matrix[:2], size, flags=... | cv2.WARP_INVERSE_MAP)``
resamples the moving image onto the reference grid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MOTIONS = ("translation", "euclidean", "affine", "homography")

# Swaps (x, y) <-> (row, col) in homogeneous 2D coordinates; it is its own inverse.
_SWAP_XY = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def is_affine(matrix) -> bool:
    """Whether a 3×3 matrix's last row is [0, 0, 1] (to np.allclose's default tolerance;
    plain float tests, 20x cheaper than np.allclose, which a stack calls per frame)."""
    a, b, c = (float(v) for v in matrix[2])
    return abs(a) <= 1e-8 and abs(b) <= 1e-8 and abs(c - 1.0) <= 1e-8 + 1e-5


class AlignmentError(RuntimeError):
    """Raised when ECC cannot align two images.

    The message says what went wrong (no convergence, no overlap, no
    correlation) and what to try next.
    """


@dataclass(frozen=True, eq=False)
class Alignment:
    """The transform found by :func:`napari_ecc_align.align` and how well it fits.

    Attributes
    ----------
    matrix : ndarray of shape (3, 3), float64
        Maps a reference pixel ``(x, y, 1)`` (x = column, y = row, pixel centres
        at integers) to moving-image coordinates: exactly the ``warpMatrix`` of
        ``cv2.findTransformECC``, padded with ``[0, 0, 1]`` for 2×3 models.
    motion : str
        One of ``"translation"``, ``"euclidean"``, ``"affine"``, ``"homography"``.
    correlation : float
        ECC (zero-mean normalised cross-correlation) of the reference and the
        moving image warped by ``matrix``, on the full-resolution images over
        their overlap. Computed after the last update (for a bilevel image that
        was turned over, with the turned-over image).
    correlation_before : float
        The same at the initial warp.
    reference_shape, moving_shape : tuple of int
        ``(rows, cols)`` of the two images.
    elapsed : float
        Seconds spent in :func:`align`.
    levels : int
        Number of pyramid levels used (1 = full resolution only).
    init_method : str
        Which initialisation the estimate started from.
    iterations : tuple of int
        ECC iterations run on each level, coarsest first; with one bilevel image,
        one more entry for the last, intensity-matched full-resolution pass.
    parameters : dict
        The arguments the alignment was estimated with (JSON-safe); with one
        bilevel image also ``"bilevel"`` (which one) and ``"bilevel_inverted"``
        (whether it was turned over), and for images estimated on a reduced copy
        ``"estimated_at_scale"``.
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
        matrix = np.array(self.matrix, dtype=np.float64)
        if matrix.shape == (2, 3):
            matrix = np.vstack([matrix, [0.0, 0.0, 1.0]])
        if matrix.shape != (3, 3):
            raise ValueError(f"matrix must be 2x3 or 3x3, got shape {matrix.shape}")
        if not np.all(np.isfinite(matrix)):
            raise ValueError("matrix must be finite")
        if self.motion not in MOTIONS:
            raise ValueError(f"motion must be one of {MOTIONS}, got {self.motion!r}")
        if self.motion != "homography" and not is_affine(matrix):
            raise ValueError(
                f"a {self.motion} matrix must end with the row [0, 0, 1], got {matrix[2].tolist()}"
            )
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "reference_shape", tuple(int(n) for n in self.reference_shape))
        object.__setattr__(self, "moving_shape", tuple(int(n) for n in self.moving_shape))
        object.__setattr__(self, "iterations", tuple(int(n) for n in self.iterations))

    def __eq__(self, other) -> bool:
        if not isinstance(other, Alignment):
            return NotImplemented
        mine, theirs = self.to_dict(), other.to_dict()
        return mine == theirs

    __hash__ = None  # mutable-looking contents (an array): not hashable

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dictionary; :meth:`from_dict` restores it exactly."""
        return {
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
            "convention": "reference (x, y, 1) -> moving (x, y); cv2.findTransformECC warpMatrix",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alignment:
        """Rebuild an :class:`Alignment` from :meth:`to_dict` output."""
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = {"matrix", "motion", "reference_shape", "moving_shape"} - set(data)
        if missing:
            raise ValueError(f"alignment data lacks the keys {sorted(missing)}")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs.setdefault("correlation", float("nan"))
        kwargs.setdefault("correlation_before", float("nan"))
        kwargs["iterations"] = tuple(kwargs.get("iterations", ()))
        return cls(**kwargs)

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
    def from_json(cls, path_or_text) -> Alignment:
        """Read an alignment from a JSON file path or a JSON string."""
        is_text = isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{")
        if not is_text or os.path.exists(path_or_text):
            with open(path_or_text, encoding="utf-8") as fh:
                path_or_text = fh.read()
        return cls.from_dict(json.loads(path_or_text))

    # -- geometry ------------------------------------------------------------------------------
    def inverse(self) -> Alignment:
        """The alignment in the other direction: moving becomes the reference."""
        inv = np.linalg.inv(self.matrix)
        inv = inv / inv[2, 2]
        return dataclasses.replace(
            self,
            matrix=inv,
            reference_shape=self.moving_shape,
            moving_shape=self.reference_shape,
        )

    def transform_points(self, points_rc) -> np.ndarray:
        """Map ``(row, col)`` points from moving-image to reference-image coordinates.

        Parameters
        ----------
        points_rc : array_like of shape (N, 2) or (N, D)
            Points in moving pixel coordinates, ``(row, col)`` in the last two
            columns (leading columns, e.g. a time index, are passed through).

        Returns
        -------
        ndarray of float64, same shape
            The points in reference pixel coordinates.
        """
        pts = np.array(points_rc, dtype=np.float64)
        if pts.ndim == 1:
            return self.transform_points(pts[None])[0]
        if pts.ndim != 2 or pts.shape[1] < 2:
            raise ValueError(f"points_rc must have shape (N, 2) or (N, D>=2), got {pts.shape}")
        inv = np.linalg.inv(self.matrix)
        xy1 = np.column_stack([pts[:, -1], pts[:, -2], np.ones(len(pts))])
        mapped = xy1 @ inv.T
        with np.errstate(divide="ignore", invalid="ignore"):
            mapped = mapped[:, :2] / mapped[:, 2:3]
        out = pts.copy()
        out[:, -1] = mapped[:, 0]
        out[:, -2] = mapped[:, 1]
        return out

    def napari_affine(self) -> np.ndarray:
        """The 3×3 ``(row, col)`` matrix mapping moving data to reference data coordinates.

        Set it as ``moving_layer.affine`` (composed with the reference layer's own
        data-to-world transform if it has one) to overlay the moving layer on the
        reference without resampling.

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
        inv = np.linalg.inv(self.matrix)
        inv = inv / inv[2, 2]
        return _SWAP_XY @ inv @ _SWAP_XY

    def corner_error(self, true_matrix, shape=None) -> float:
        """RMS distance in pixels between the reference-image corners mapped by
        ``matrix`` and by ``true_matrix`` (same convention). The accuracy measure
        used in our tests and benchmarks."""
        return corner_rms(self.matrix, true_matrix, shape or self.reference_shape)


def corner_rms(matrix, true_matrix, shape) -> float:
    """RMS corner error in pixels of two reference→moving matrices on a ``(rows, cols)`` grid."""
    rows, cols = shape[:2]
    corners = np.array(
        [[0, 0, 1], [cols - 1, 0, 1], [0, rows - 1, 1], [cols - 1, rows - 1, 1]], float
    ).T

    def project(m):
        m = np.asarray(m, dtype=np.float64)
        if m.shape == (2, 3):
            m = np.vstack([m, [0, 0, 1]])
        p = m @ corners
        return p[:2] / p[2]

    diff = project(matrix) - project(true_matrix)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=0))))


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def write_text_atomic(path, text: str, suffix: str = ".tmp") -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``:
    a reader never sees half a file. Missing parent folders are created."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
