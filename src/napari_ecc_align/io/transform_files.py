"""Transform files in and out: :func:`save_transform` and :func:`load_transform`.

Formats, from the file name unless given:

* ``"json"`` (``.json``): our own, the :class:`~napari_ecc_align.Alignment` whole (voxel
  matrix, shapes, how it was estimated);
* ``"itk"`` (``.tfm``, ``.txt``; ``.mat`` and ``.h5`` through SimpleITK): ITK's
  transform files, fixed physical → moving physical points (see :mod:`.physical` for
  the conversion and :mod:`.itk_transform` for the file format);
* ``"elastix"`` (``TransformParameters*.txt``): elastix's parameter files, the same
  physical map with the reference's grid, for transformix (:mod:`.elastix_transform`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..engine import Alignment
from .elastix_transform import elastix_text, read_elastix_text
from .images import atomic_output
from .itk_transform import BINARY_SUFFIXES, itk_text, read_itk_file, read_text, write_itk_binary
from .physical import ImageGeometry, physical_transform, voxel_transform

FORMATS = ("json", "itk", "elastix")
_SUFFIXES = {".json": "json", ".tfm": "itk", ".txt": "itk", ".mat": "itk", ".h5": "itk",
             ".hdf5": "itk"}  # fmt: skip
_MOTIONS = {"TranslationTransform": "translation", "IdentityTransform": "translation",
            "Euler2DTransform": "euclidean", "Euler3DTransform": "euclidean",
            "VersorRigid3DTransform": "euclidean"}  # fmt: skip


def transform_format(path, format=None) -> str:
    """The format of ``path``: ``format`` checked, else from the file name."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return format
    suffix = Path(path).suffix.lower()
    if suffix == ".txt" and Path(path).name.startswith("TransformParameters"):
        return "elastix"  # elastix's own name for its files
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"cannot tell a transform format from the name {Path(path).name!r}: use .json (ours) "
            "or .tfm/.txt/.mat/.h5 (ITK), or pass format="
        )
    return _SUFFIXES[suffix]


def _geometries(ndim, alignment_spacing, reference_spacing=None, reference_origin=None,
                moving_spacing=None, moving_origin=None, direction=None):  # fmt: skip
    """The two images' :class:`ImageGeometry`; a volume's spacing defaults to the one it
    was estimated with. ``direction``: one matrix for both, or a pair."""
    if reference_spacing is None:
        reference_spacing = alignment_spacing
    if moving_spacing is None:
        moving_spacing = reference_spacing
    pair = direction is not None and np.ndim(direction) == 3
    ref_direction, mov_direction = direction if pair else (direction, direction)
    reference = ImageGeometry.of(ndim, reference_spacing, reference_origin, ref_direction,
                                 "reference")  # fmt: skip
    return reference, ImageGeometry.of(ndim, moving_spacing, moving_origin, mov_direction, "moving")


def save_transform(alignment: Alignment, path, format: str | None = None, *,
                   reference_spacing=None, reference_origin=None, moving_spacing=None,
                   moving_origin=None, direction=None) -> Path:  # fmt: skip
    """Write ``alignment`` as a transform file other tools read.

    Parameters
    ----------
    alignment : Alignment
        An image or volume alignment (reference voxel → moving voxel).
    path : str or os.PathLike
        The file; written atomically (a failed write leaves no file and keeps an old one).
    format : {"json", "itk", "elastix"}, optional
        Default: from the name (``.json``; ``TransformParameters*.txt`` for elastix;
        ``.tfm``, other ``.txt``, ``.mat``, ``.h5`` for ITK).
    reference_spacing, moving_spacing : sequence of float, optional
        The images' pixel (voxel) size in array order, (row, col) or (z, y, x), for the
        physical formats; default: the spacing a volume was estimated with, else 1; the
        moving image's defaults to the reference's.
    reference_origin, moving_origin : sequence of float, optional
        Where each image's first pixel lies, in array order; default 0.
    direction : array_like, optional
        ITK's direction cosines over (x, y[, z]) for both images, or a pair (reference,
        moving); default: the identity.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For a homography in ITK (ITK has no projective transform file), a name of no
        known format, or a bad geometry argument (named).

    Examples
    --------
    >>> save_transform(alignment, "moving_to_reference.tfm",
    ...                reference_spacing=(2.0, 0.5, 0.5))              # doctest: +SKIP
    """
    if not isinstance(alignment, Alignment):
        raise TypeError(f"alignment must be an Alignment, got {type(alignment).__name__}")
    path = Path(path)
    kind = transform_format(path, format)
    geometry = {"reference_spacing": reference_spacing, "reference_origin": reference_origin,
                "moving_spacing": moving_spacing, "moving_origin": moving_origin,
                "direction": direction}  # fmt: skip
    with atomic_output(path) as tmp:
        write_transform(alignment, tmp, path, geometry, format=kind)
    return path


def write_transform(alignment: Alignment, target, name, geometry=None, format=None) -> None:
    """Write ``alignment`` to the file ``target`` in the format of the name ``name`` (or
    ``format``), in place: ``target`` may be a temporary file standing for ``name``.
    ``geometry``: :func:`save_transform`'s keyword arguments (default: none given)."""
    kind = transform_format(name, format)
    if kind == "json":
        alignment.to_json(target)
        return
    if kind == "elastix":
        Path(target).write_text(_elastix_text(alignment, geometry or {}), encoding="utf-8")
        return
    text = _itk_text(alignment, geometry or {})
    if Path(name).suffix.lower() in BINARY_SUFFIXES:
        write_itk_binary(text, target)
    else:
        Path(target).write_text(text, encoding="utf-8")


def _elastix_text(alignment: Alignment, geometry: dict) -> str:
    """The elastix parameter file of ``alignment``, on the reference's grid."""
    transform, centre, reference = _physical(alignment, geometry)
    grid = (alignment.reference_shape[::-1], reference.spacing, reference.origin,
            reference.direction)  # fmt: skip
    return elastix_text(transform, alignment.motion, centre, grid)


def _physical(alignment: Alignment, geometry: dict):
    """``(transform, centre, reference geometry)`` of ``alignment`` in physical units."""
    if alignment.motion == "homography":
        raise ValueError(
            "ITK and elastix transform files hold no projective (homography) transform; save "
            "it as .json, or estimate an affine motion"
        )
    reference, moving = _geometries(alignment.ndim, alignment.parameters.get("spacing"),
                                    **geometry)  # fmt: skip
    transform = physical_transform(alignment.matrix, reference, moving)
    middle = np.append((np.asarray(alignment.reference_shape, float)[::-1] - 1) / 2, 1.0)
    centre = (reference.to_physical() @ middle)[:-1]
    return transform, centre, reference


def _itk_text(alignment: Alignment, geometry: dict) -> str:
    """The ITK file text of ``alignment`` in the images' ``geometry`` (the keyword
    arguments of :func:`save_transform`)."""
    transform, centre, _ = _physical(alignment, geometry)
    return itk_text(transform, alignment.motion, centre)


def load_transform(path, *, reference_spacing=None, reference_origin=None, moving_spacing=None,
                   moving_origin=None, direction=None, reference_shape=None, moving_shape=None,
                   format: str | None = None) -> Alignment:  # fmt: skip
    """Read a transform file as an :class:`Alignment`.

    Parameters
    ----------
    path : str or os.PathLike
        A file :func:`save_transform` writes, or one SimpleITK or ITK wrote.
    reference_spacing, reference_origin, moving_spacing, moving_origin, direction
        The images' geometry, as for :func:`save_transform` (physical formats only).
    reference_shape, moving_shape : tuple of int, optional
        The images' shapes, (rows, cols) or (z, y, x): needed for formats that do not
        store them (ITK; elastix files hold the reference's); the moving one defaults to
        the reference's. An elastix file's grid also gives the reference's spacing,
        origin and direction unless they are passed.
    format : {"json", "itk", "elastix"}, optional
        Default: from the name.

    Returns
    -------
    Alignment
        Reference voxel → moving voxel; for a file of another tool, ``correlation`` is
        NaN, ``init_method`` is ``"file"`` and ``parameters["source"]`` names the file.

    Raises
    ------
    ValueError
        For a file that is not of the format, a transform it cannot express (non-linear,
        another dimensionality), missing shapes, or a bad geometry argument.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    kind = transform_format(path, format)
    if not path.is_file():
        raise FileNotFoundError(f"no transform file at {path}")
    if kind == "json":
        return Alignment.from_json(path)
    if kind == "elastix":
        text = read_text(path, "an elastix parameter file")
        transform, elastix_kind, grid = read_elastix_text(text, str(path))
        kinds = (_ELASTIX_KINDS.get(elastix_kind, elastix_kind),)
        size, spacing, origin, file_direction = grid
        if reference_shape is None and size is not None:
            reference_shape = tuple(size[::-1])
        reference_spacing = reference_spacing or spacing[::-1]
        reference_origin = reference_origin or origin[::-1]
        moving_spacing = moving_spacing or reference_spacing
        direction = file_direction if direction is None else direction
    else:
        transform, kinds = read_itk_file(path)
    ndim = transform.shape[0] - 1
    if reference_shape is None:
        raise ValueError(
            f"{path.name}: an ITK transform holds no image sizes; pass reference_shape= (and "
            "moving_shape= if it differs), e.g. the images' .shape"
        )
    shapes = [tuple(int(n) for n in s) for s in (reference_shape, moving_shape or reference_shape)]
    if any(len(s) != ndim for s in shapes):
        raise ValueError(f"{path.name} holds a {ndim}D transform, but the shapes given are "
                         f"{shapes[0]} and {shapes[1]}")  # fmt: skip
    reference, moving = _geometries(ndim, None, reference_spacing, reference_origin,
                                    moving_spacing, moving_origin, direction)  # fmt: skip
    matrix = voxel_transform(transform, reference, moving)
    stated = [_MOTIONS.get(kind, "affine") for kind in kinds]
    weakest = max(stated, key=("translation", "euclidean", "affine").index)
    motion = _motion(weakest, matrix, reference.spacing)
    parameters = {"source": str(path), "format": kind}
    if ndim == 3:
        parameters["spacing"] = list(reference.spacing[::-1])
    return Alignment(matrix=matrix, motion=motion, correlation=math.nan,
                     correlation_before=math.nan, reference_shape=shapes[0],
                     moving_shape=shapes[1], init_method="file", parameters=parameters)  # fmt: skip


_ELASTIX_KINDS = {"TranslationTransform": "TranslationTransform",
                  "EulerTransform": "Euler3DTransform"}  # fmt: skip


def _motion(stated: str, matrix, spacing_xyz) -> str:
    """The file's motion, if our voxel matrix still is one (a rotation in physical units
    is rigid in our sense only for volumes, whose rigidity is physical)."""
    n = matrix.shape[0] - 1
    linear = matrix[:n, :n]
    if stated == "translation" and np.allclose(linear, np.eye(n), atol=1e-9):
        return "translation"
    if stated in ("translation", "euclidean"):
        scaled = np.diag(spacing_xyz) @ linear @ np.diag(1 / np.asarray(spacing_xyz))
        physical = scaled if n == 3 else linear
        if np.allclose(physical.T @ physical, np.eye(n), atol=1e-6):
            return "euclidean"
    return "affine"
