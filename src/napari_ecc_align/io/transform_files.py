"""Transform files in and out: :func:`save_transform` and :func:`load_transform`.

Formats, from the file name unless given:

* ``"json"`` (``.json``): our own, the :class:`~napari_ecc_align.Alignment` whole (voxel
  matrix, shapes, how it was estimated);
* ``"itk"`` (``.tfm``, ``.txt``; ``.mat`` and ``.h5`` through SimpleITK): ITK's
  transform files, fixed physical → moving physical points (see :mod:`.physical` for
  the conversion and :mod:`.itk_transform` for the file format);
* ``"elastix"`` (``TransformParameters*.txt``): elastix's parameter files, the same
  physical map with the reference's grid, for transformix (:mod:`.elastix_transform`);
* ``"ngff"`` (``.ngff.json``, or an OME-Zarr store ``.zarr``): OME-NGFF (RFC-5)
  coordinate transformations between the two images' physical coordinate systems
  (:mod:`.ngff_transform`);
* ``"bigwarp"`` (``.csv``): Fiji BigWarp's landmarks, the reference's corners and their
  images (:mod:`.fiji_transform`); read back by a least-squares fit;
* ``"transformj"`` (``.transformj.txt``): Fiji TransformJ's affine matrix file.

Loading a ``.json`` or ``.txt`` file looks inside when the name alone is ambiguous: an
NGFF document in ``.json``, an elastix or TransformJ file in ``.txt``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..engine import Alignment, landmark_start, read_json, read_text_file, shape_field
from .elastix_transform import elastix_text, read_elastix_text
from .fiji_transform import (
    bigwarp_text,
    is_transformj_text,
    matrix_from_transformj,
    read_bigwarp_text,
    read_transformj_text,
    transformj_forward,
    transformj_text,
)
from .images import atomic_output
from .itk_transform import BINARY_SUFFIXES, itk_text, read_itk_file, write_itk_binary
from .ngff_transform import STORE_FILE, is_ngff_document, ngff_text, read_ngff_document
from .physical import ImageGeometry, physical_transform, voxel_transform

FORMATS = ("json", "itk", "elastix", "ngff", "bigwarp", "transformj")
_SUFFIXES = {".json": "json", ".tfm": "itk", ".txt": "itk", ".mat": "itk", ".h5": "itk",
             ".hdf5": "itk", ".csv": "bigwarp", ".zarr": "ngff"}  # fmt: skip
_DOUBLE_SUFFIXES = {".ngff.json": "ngff", ".transformj.txt": "transformj"}


def transform_format(path, format=None) -> str:
    """The format of ``path``: ``format`` checked, else from the file name."""
    if format is not None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return format
    name = Path(path).name.lower()
    suffix = Path(path).suffix.lower()
    if suffix == ".txt" and "transformparameters" in name:
        return "elastix"  # elastix's own name for its files (or <stem>.TransformParameters.txt)
    for ending, kind in _DOUBLE_SUFFIXES.items():
        if name.endswith(ending):
            return kind
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"cannot tell a transform format from the name {Path(path).name!r}: use .json (ours), "
            ".tfm/.txt/.mat/.h5 (ITK), TransformParameters*.txt (elastix), .ngff.json or .zarr "
            "(OME-NGFF), .csv (BigWarp) or .transformj.txt (TransformJ), or pass format="
        )
    return _SUFFIXES[suffix]


def is_ambiguous(path, named: str) -> bool:
    """Whether ``path``'s name, which says ``named`` (:func:`transform_format`), leaves
    the format open: a plain ``.json`` (ours or NGFF) or ``.txt`` (ITK, elastix or
    TransformJ)."""
    return named in ("json", "itk") and Path(path).suffix.lower() in (".json", ".txt")


def _sniffed_format(path: Path, named: str) -> str:
    """The format of an existing file whose name alone is ambiguous (``.json``, ``.txt``)."""
    if not is_ambiguous(path, named):
        return named
    if named == "json":
        return "ngff" if is_ngff_document(read_json(path, "transform JSON")) else "json"
    text = read_text_file(path, "a transform file")
    if text.lstrip().startswith("#Insight Transform File"):
        return "itk"
    if "(Transform " in text or "(TransformParameters" in text:
        return "elastix"
    return "transformj" if is_transformj_text(text) else "itk"


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


def _geometries_of(alignment: Alignment, geometry: dict):
    """:func:`_geometries` of the images of ``alignment``, given :func:`save_transform`'s
    geometry keywords."""
    return _geometries(alignment.ndim, alignment.parameters.get("spacing"), **geometry)


def file_format(path, format=None) -> str:
    """The format of the transform at ``path``: ``format`` checked, else from the name,
    and for an existing ``.json`` or ``.txt`` file from its contents."""
    kind = transform_format(path, format)
    path = Path(path)
    if format is None and path.is_file():
        kind = _sniffed_format(path, kind)
    return kind


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
        An existing OME-Zarr store (``.zarr``) receives the NGFF document inside, as
        ``transform.ngff.json``.
    format : {"json", "itk", "elastix", "ngff", "bigwarp", "transformj"}, optional
        Default: from the name (``.json``; ``TransformParameters*.txt`` for elastix;
        ``.tfm``, other ``.txt``, ``.mat``, ``.h5`` for ITK; ``.ngff.json`` or ``.zarr``
        for OME-NGFF; ``.csv`` for BigWarp; ``.transformj.txt`` for TransformJ).
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
        For a homography in ITK, elastix, NGFF or TransformJ (none holds a projective
        transform; BigWarp gets a 9×9 grid of landmarks instead of the corners), a name
        of no known format, or a bad geometry argument (named).

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
    if kind == "ngff" and path.suffix.lower() == ".zarr":
        if not path.is_dir():
            raise ValueError(f"{path} is no OME-Zarr store; write the image first, or name a "
                             ".ngff.json file")  # fmt: skip
        path = path / STORE_FILE
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
    geometry = geometry or {}
    writers = {"elastix": _elastix_text, "ngff": _ngff_text, "bigwarp": _bigwarp_text,
               "transformj": _transformj_text}  # fmt: skip
    if kind in writers:
        Path(target).write_text(writers[kind](alignment, geometry), encoding="utf-8")
        return
    text = _itk_text(alignment, geometry)
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


def _ngff_text(alignment: Alignment, geometry: dict) -> str:
    transform, _, _ = _physical(alignment, geometry, "OME-NGFF coordinate transformations")
    return ngff_text(transform)


def _bigwarp_text(alignment: Alignment, geometry: dict) -> str:
    """The reference's corners and their images, in each image's physical coordinates;
    for a homography a 9×9 grid instead, which BigWarp's thin-plate spline follows within
    0.03 px for a 5 % perspective change across the image (0.08 px through 5×5)."""
    reference, moving = _geometries_of(alignment, geometry)
    sides = np.asarray(alignment.reference_shape, float)[::-1] - 1  # (x, y[, z])
    steps = 9 if alignment.motion == "homography" else 2
    axes = [np.linspace(0.0, side, steps) for side in sides]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(sides))
    fixed = np.column_stack([points, np.ones(len(points))])
    sent = fixed @ np.asarray(alignment.matrix, float).T
    sent /= sent[:, -1:]
    return bigwarp_text((sent @ moving.to_physical().T)[:, :-1],
                        (fixed @ reference.to_physical().T)[:, :-1])  # fmt: skip


def _transformj_text(alignment: Alignment, geometry: dict) -> str:
    if alignment.motion == "homography":
        raise ValueError("TransformJ applies affine maps only; save a homography as .json")
    _, moving = _geometries_of(alignment, geometry)
    forward = transformj_forward(alignment.matrix, alignment.moving_shape, moving.spacing)
    return transformj_text(forward)


def _physical(alignment: Alignment, geometry: dict, where="ITK and elastix transform files"):
    """``(transform, centre, reference geometry)`` of ``alignment`` in physical units."""
    if alignment.motion == "homography":
        raise ValueError(
            f"{where} hold no projective (homography) transform; save it as .json (or as "
            "BigWarp landmarks), or estimate an affine motion"
        )
    reference, moving = _geometries_of(alignment, geometry)
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
                   format: str | None = None, motion: str | None = None,
                   max_pixels=None) -> Alignment:  # fmt: skip
    """Read a transform file as an :class:`Alignment`.

    Parameters
    ----------
    path : str or os.PathLike
        A file :func:`save_transform` writes, or one another tool wrote (SimpleITK, ITK,
        elastix, an NGFF writer, BigWarp, TransformJ); an OME-Zarr store holding
        ``transform.ngff.json``.
    reference_spacing, reference_origin, moving_spacing, moving_origin, direction
        The images' geometry, as for :func:`save_transform` (physical formats only).
    reference_shape, moving_shape : tuple of int, optional
        The images' shapes, (rows, cols) or (z, y, x): needed for formats that do not
        store them (all but ours; elastix files hold the reference's); the moving one
        defaults to the reference's. An elastix file's grid also gives the reference's
        spacing, origin and direction unless they are passed.
    format : {"json", "itk", "elastix", "ngff", "bigwarp", "transformj"}, optional
        Default: from the name, and for ``.json`` and ``.txt`` from the contents.
    motion : {"translation", "euclidean", "affine", "homography"}, optional
        For BigWarp landmarks: the motion fitted to them (default ``"affine"``); the
        fit's RMS residual in pixels is ``parameters["landmark_residual"]``.
    max_pixels : int or float, optional
        The pixel budget the shapes (given, or an elastix file's ``Size``) must fit;
        default: ``NAPARI_ECC_ALIGN_MAX_PIXELS``, else 2**28.

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
    if kind == "ngff" and path.suffix.lower() == ".zarr":
        path = path / STORE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no transform file at {path}")
    if format is None:
        kind = _sniffed_format(path, kind)
    if kind == "json":
        return Alignment.from_json(path, max_pixels=max_pixels)
    shapes = (reference_shape, moving_shape, max_pixels)
    geometry = {"reference_spacing": reference_spacing, "reference_origin": reference_origin,
                "moving_spacing": moving_spacing, "moving_origin": moving_origin,
                "direction": direction}  # fmt: skip
    if motion not in (None, "translation", "euclidean", "affine", "homography"):
        raise ValueError(f"motion must be translation, euclidean, affine or homography, got "
                         f"{motion!r}")  # fmt: skip
    if kind == "bigwarp":
        return _from_landmarks(path, geometry, shapes, motion or "affine")
    if kind == "transformj":
        forward = read_transformj_text(read_text_file(path, "a TransformJ matrix file"), str(path))
        ndim = len(reference_shape) if reference_shape is not None else 3
        shapes = _shapes(path, shapes, ndim, "a TransformJ matrix file")
        _, moving = _geometries(ndim, None, **geometry)
        try:
            matrix = matrix_from_transformj(forward, shapes[1], moving.spacing)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        return _file_alignment(matrix, None, shapes, path, kind, moving.spacing)
    if kind == "elastix":
        text = read_text_file(path, "an elastix parameter file")
        transform, _, grid = read_elastix_text(text, str(path))
        size, spacing, origin, file_direction = grid
        if reference_shape is None and size is not None:
            shapes = (tuple(size[::-1]), moving_shape, max_pixels)
        geometry["reference_spacing"] = reference_spacing or spacing[::-1]
        geometry["reference_origin"] = reference_origin or origin[::-1]
        geometry["moving_spacing"] = moving_spacing or geometry["reference_spacing"]
        geometry["direction"] = file_direction if direction is None else direction
    elif kind == "ngff":
        transform = read_ngff_document(read_json(path, "NGFF transform"), str(path))
    else:
        transform, _ = read_itk_file(path)
    ndim = transform.shape[0] - 1
    shapes = _shapes(path, shapes, ndim, f"an {kind} transform")
    reference, moving = _geometries(ndim, None, **geometry)
    matrix = voxel_transform(transform, reference, moving)
    extra = {}
    if kind == "elastix":  # the grid transformix resamples onto, in array order
        extra["grid"] = {"spacing": list(reference.spacing[::-1]),
                         "origin": list(reference.origin[::-1])}  # fmt: skip
    return _file_alignment(matrix, None, shapes, path, kind, reference.spacing, **extra)


def _shapes(path: Path, shapes, ndim: int, what: str) -> list[tuple[int, ...]]:
    """The two images' shapes (the moving one defaults to the reference's), checked as
    whole numbers within the pixel budget (``shapes``: reference, moving, budget)."""
    reference_shape, moving_shape, budget = shapes
    if reference_shape is None:
        raise ValueError(
            f"{path.name}: {what} holds no image sizes; pass reference_shape= (and "
            "moving_shape= if it differs), e.g. the images' .shape"
        )
    given = (reference_shape, moving_shape or reference_shape)
    if any(len(s) != ndim for s in given):
        raise ValueError(f"{path.name} holds a {ndim}D transform, but the shapes given are "
                         f"{tuple(given[0])} and {tuple(given[1])}")  # fmt: skip
    try:
        names = ("reference_shape", "moving_shape")
        return [shape_field(s, name, ndim, budget) for s, name in zip(given, names, strict=True)]
    except (TypeError, ValueError) as exc:  # the budget's PixelBudgetError included
        raise type(exc)(f"{path}: {exc}") from None


def _file_alignment(matrix, fitted: str | None, shapes, path: Path, kind: str, spacing_xyz,
                    **extra) -> Alignment:  # fmt: skip
    """The :class:`Alignment` of a voxel ``matrix`` read from another tool's file; its
    motion is the ``fitted`` one (landmarks), else the simplest the matrix is."""
    ndim = matrix.shape[0] - 1
    motion = fitted or _motion(matrix, spacing_xyz)
    parameters = {"source": str(path), "format": kind, **extra}
    if ndim == 3:
        parameters["spacing"] = [float(v) for v in spacing_xyz[::-1]]
    return Alignment(matrix=matrix, motion=motion, correlation=math.nan,
                     correlation_before=math.nan, reference_shape=shapes[0],
                     moving_shape=shapes[1], init_method="file", parameters=parameters)  # fmt: skip


def _from_landmarks(path: Path, geometry: dict, shapes, motion: str) -> Alignment:
    """The ``motion`` fitted to a BigWarp landmarks file's active pairs."""
    text = read_text_file(path, "a BigWarp CSV")
    moving_points, fixed_points = read_bigwarp_text(text, str(path))
    ndim = moving_points.shape[1]
    shapes = _shapes(path, shapes, ndim, "a BigWarp landmarks file")
    reference, moving = _geometries(ndim, None, **geometry)

    def voxels(points, image):  # physical (x, y[, z]) → voxel (row, col) / (z, y, x)
        homogeneous = np.column_stack([points, np.ones(len(points))])
        return (homogeneous @ np.linalg.inv(image.to_physical()).T)[:, :ndim][:, ::-1]

    try:
        matrix, residual = landmark_start(voxels(fixed_points, reference),
                                          voxels(moving_points, moving), motion, ndim=ndim,
                                          spacing=reference.spacing[::-1])  # fmt: skip
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return _file_alignment(matrix, motion, shapes, path, "bigwarp", reference.spacing,
                           landmark_residual=residual, landmarks=len(fixed_points))  # fmt: skip


def _motion(matrix, spacing_xyz) -> str:
    """The simplest motion ``matrix`` is: a translation, a rigid map (in pixels for
    images, as ``findTransformECC``'s; in physical units for volumes, as our 3D
    estimate's), else an affine one. The file's own transform kind does not decide: an
    ITK affine of anisotropic 2D pixels may be a rotation in pixels."""
    n = matrix.shape[0] - 1
    linear = matrix[:n, :n]
    if np.allclose(linear, np.eye(n), atol=1e-9):
        return "translation"
    scaled = np.diag(spacing_xyz) @ linear @ np.diag(1 / np.asarray(spacing_xyz))
    physical = scaled if n == 3 else linear
    if np.allclose(physical.T @ physical, np.eye(n), atol=1e-6) and np.linalg.det(linear) > 0:
        return "euclidean"
    return "affine"
