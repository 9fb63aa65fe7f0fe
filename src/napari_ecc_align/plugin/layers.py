"""napari glue: layers <-> arrays, world transforms, carrying an alignment to other layers.

Conventions
-----------
* napari maps a layer's *data* coordinates to *world* coordinates by
  ``affine ∘ (rotate · shear · scale + translate)``; :func:`data_to_world_matrix`
  returns that map as a 3×3 ``(row, col)`` homogeneous matrix.
* Everything here is 2D. Points, Shapes, Vectors and Tracks layers may have
  more dimensions (e.g. time); their spatial axes must be the last two, their
  leading coordinate columns pass through unchanged, and only the trailing 2×2
  block of their transforms is used (leading axes must not be rotated or sheared
  into the spatial ones). Image and Labels stacks are refused for now.
* No function modifies its input layers, except :func:`move_layer_onto_reference`,
  which by design sets the moving layer's ``affine``.

napari is imported inside the functions only, so importing this module is cheap.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.alignment import Alignment
from ..engine.warping import warp

if TYPE_CHECKING:
    from napari.layers import Layer

_SWAP_XY = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
_ELLIPSE_VERTICES = 64


# -- transforms ----------------------------------------------------------------------------------
def _physical_matrix(layer: Layer) -> np.ndarray:
    """(ndim+1)×(ndim+1) matrix of the layer's scale, translate, rotate and shear."""
    from napari.utils.transforms import Affine

    kwargs = {k: getattr(layer, k) for k in ("scale", "translate", "rotate", "shear")}
    return Affine(**kwargs, ndim=layer.ndim).affine_matrix


def _full_data_to_world(layer: Layer) -> np.ndarray:
    """(ndim+1)×(ndim+1) data→world matrix: ``affine @ physical``."""
    return np.asarray(layer.affine.affine_matrix, float) @ _physical_matrix(layer)


def _trailing_block(matrix: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:2, :2] = matrix[-3:-1, -3:-1]
    out[:2, 2] = matrix[-3:-1, -1]
    return out


def data_to_world_matrix(layer: Layer) -> np.ndarray:
    """The layer's data→world transform as a 3×3 ``(row, col)`` homogeneous matrix.

    Parameters
    ----------
    layer : napari.layers.Layer
        Any layer. For ``layer.ndim > 2`` the trailing 2D block (the last two
        axes) of its transform is returned.

    Returns
    -------
    ndarray of shape (3, 3)
        ``world_rc1 = matrix @ data_rc1``.
    """
    return _trailing_block(_full_data_to_world(layer))


def world_moving_to_reference_data(
    alignment: Alignment, reference_layer: Layer, moving_layer: Layer
) -> np.ndarray:
    """3×3 ``(row, col)`` map from the moving layer's world space to reference data coordinates.

    It is ``alignment.napari_affine() @ inv(moving data→world)``: a world
    position over the moving image goes to moving pixels, then to reference
    pixels. When the moving layer has identity transforms this is exactly
    ``alignment.napari_affine()`` (moving data → reference data).

    Raises
    ------
    ValueError
        For a homography (use :func:`carry_coordinates`, which handles it), or
        a stack reference/moving layer.
    """
    _require_2d(reference_layer, "reference")
    _require_2d(moving_layer, "moving")
    return alignment.napari_affine() @ np.linalg.inv(data_to_world_matrix(moving_layer))


def carry_coordinates(
    coords_rc,
    alignment: Alignment,
    source_layer: Layer,
    reference_layer: Layer,
    moving_layer: Layer,
) -> np.ndarray:
    """Map coordinates of an overlay of the moving image into reference data coordinates.

    Parameters
    ----------
    coords_rc : array_like of shape (N, D) or (D,)
        Positions in ``source_layer``'s data coordinates, ``(row, col)`` in the
        last two columns; leading columns (time, ...) pass through unchanged.
    alignment : Alignment
        Estimated with the reference and moving layers' images.
    source_layer : napari.layers.Layer
        The layer the coordinates belong to; it overlays the moving image in world space.
    reference_layer, moving_layer : napari.layers.Image
        The layers the alignment was estimated on.

    Returns
    -------
    ndarray of float64, same shape
        source data → source world → moving data → reference data (through
        :meth:`Alignment.transform_points`, so homographies work).
    """
    _require_2d(reference_layer, "reference")
    pts = np.array(coords_rc, dtype=np.float64)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"coords_rc must have shape (N, D>=2), got {pts.shape}")
    moving_inv = np.linalg.inv(data_to_world_matrix(moving_layer))
    to_moving = moving_inv @ data_to_world_matrix(source_layer)
    pts[:, -2:] = pts[:, -2:] @ to_moving[:2, :2].T + to_moving[:2, 2]
    out = alignment.transform_points(pts)
    return out[0] if single else out


# -- images --------------------------------------------------------------------------------------
def _layer_classes():
    from napari.layers import Image, Labels, Points, Shapes, Tracks, Vectors

    return Image, Labels, Points, Shapes, Tracks, Vectors


def _level0(layer: Layer):
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def _spatial_shape(layer: Layer) -> tuple[int, ...]:
    shape = tuple(int(n) for n in _level0(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def _require_2d(layer: Layer, role: str) -> None:
    if layer.ndim > 2:
        has_grid = hasattr(layer, "multiscale")  # Image, Labels
        what = f"shape {_spatial_shape(layer)}" if has_grid else f"{layer.ndim} dimensions"
        raise ValueError(
            f"{role} layer {layer.name!r} is a stack of {what}; stack alignment is not "
            "available yet — choose a 2D layer or slice it first"
        )


def image_for_alignment(layer: Layer, name: str) -> np.ndarray:
    """The 2D image of an Image layer, as an array for :func:`align`.

    Parameters
    ----------
    layer : napari.layers.Image
        A 2D layer: grayscale ``(rows, cols)`` or RGB(A) ``(rows, cols, 3|4)``
        when ``layer.rgb``. Multiscale layers give their highest resolution
        (``layer.data[0]``); dask/zarr data is loaded with ``np.asarray``.
    name : str
        The layer's role in error messages, e.g. ``"reference"`` or ``"moving"``.

    Raises
    ------
    TypeError
        If ``layer`` is not an Image layer.
    ValueError
        If the layer has more than two spatial dimensions (a stack).
    """
    image_cls = _layer_classes()[0]
    if not isinstance(layer, image_cls):
        raise TypeError(
            f"{name} layer {layer.name!r} is a {type(layer).__name__} layer; choose an Image layer"
        )
    _require_2d(layer, name)
    return np.asarray(_level0(layer))


def _check_grid(alignment: Alignment, reference_layer: Layer, moving_layer: Layer) -> None:
    for role, layer, expected in (
        ("reference", reference_layer, alignment.reference_shape),
        ("moving", moving_layer, alignment.moving_shape),
    ):
        _require_2d(layer, role)
        if hasattr(layer, "multiscale") and _spatial_shape(layer)[:2] != tuple(expected):
            raise ValueError(
                f"the alignment was estimated for a {role} image of shape {tuple(expected)}, but "
                f"layer {layer.name!r} has shape {_spatial_shape(layer)}; were the layers swapped?"
            )


# -- output layer metadata -----------------------------------------------------------------------
def _grid_kwargs(reference_layer: Layer, source_layer: Layer | None = None) -> dict[str, Any]:
    """The reference layer's transforms (leading axes from ``source_layer`` when it has more)."""
    ref_affine = np.asarray(reference_layer.affine.affine_matrix, float)
    kwargs = {
        "scale": tuple(float(s) for s in reference_layer.scale),
        "translate": tuple(float(t) for t in reference_layer.translate),
        "rotate": np.array(reference_layer.rotate, float),
        "shear": np.array(reference_layer.shear, float),
        "affine": ref_affine.copy(),
        "units": tuple(str(u) for u in reference_layer.units),
    }
    ndim = 2 if source_layer is None else source_layer.ndim
    if ndim == 2:
        return kwargs
    lead = ndim - 2
    rotate, shear, affine = np.eye(ndim), np.eye(ndim), np.eye(ndim + 1)
    rotate[lead:, lead:] = kwargs["rotate"]
    shear[lead, lead + 1] = kwargs["shear"][0]
    src_affine = np.asarray(source_layer.affine.affine_matrix, float)
    affine[:lead, :lead] = src_affine[:lead, :lead]
    affine[:lead, -1] = src_affine[:lead, -1]
    affine[lead:, lead:] = ref_affine
    return {
        "scale": tuple(float(s) for s in source_layer.scale[:lead]) + kwargs["scale"],
        "translate": tuple(float(t) for t in source_layer.translate[:lead]) + kwargs["translate"],
        "rotate": rotate,
        "shear": shear,
        "affine": affine,
        "units": tuple(str(u) for u in source_layer.units[:lead]) + kwargs["units"],
    }


def _colormap_name(layer: Layer):
    from napari.utils.colormaps import AVAILABLE_COLORMAPS

    name = layer.colormap.name
    return name if name in AVAILABLE_COLORMAPS else layer.colormap


def _image_look(layer: Layer) -> dict[str, Any]:
    return {
        "colormap": _colormap_name(layer),
        "contrast_limits": tuple(float(c) for c in layer.contrast_limits),
        "gamma": float(layer.gamma),
        "blending": str(layer.blending),
        "opacity": float(layer.opacity),
        "rgb": bool(layer.rgb),
    }


def aligned_layer_kwargs(reference_layer: Layer, moving_layer: Layer) -> dict[str, Any]:
    """Layer kwargs for an image resampled onto the reference grid.

    Returns a plain dict (usable as ``LayerDataTuple`` meta or ``viewer.add_image``
    kwargs): the reference layer's ``scale``, ``translate``, ``rotate``, ``shear``,
    ``affine`` and ``units`` (so the output sits exactly on the reference in world
    coordinates) and the moving layer's ``colormap`` (its name when registered),
    ``contrast_limits``, ``gamma``, ``blending``, ``opacity`` and ``rgb``.
    """
    return {**_grid_kwargs(reference_layer), **_image_look(moving_layer)}


def _json_safe(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    name = getattr(obj, "name", None)  # napari layers, enums
    return name if isinstance(name, str) else str(obj)


def alignment_metadata(alignment: Alignment, **parameters) -> dict[str, Any]:
    """JSON-safe dict for ``layer.metadata["ecc_alignment"]``.

    ``alignment.to_dict()`` (which :meth:`Alignment.from_dict` reads back; it
    ignores extra keys) plus the widget ``parameters`` under ``"widget_parameters"``
    (arrays become lists, layers their names).
    """
    meta = alignment.to_dict()
    meta["widget_parameters"] = json.loads(json.dumps(parameters, default=_json_safe))
    return meta


# -- carrying layers -----------------------------------------------------------------------------
def _pixel_matrix(layer: Layer, alignment: Alignment, moving_layer: Layer) -> np.ndarray:
    """Reference pixel (x, y, 1) → ``layer`` pixel (x, y, 1), through world space."""
    own, moving = data_to_world_matrix(layer), data_to_world_matrix(moving_layer)
    if np.array_equal(own, moving):
        return alignment.matrix
    return _SWAP_XY @ np.linalg.inv(own) @ moving @ _SWAP_XY @ alignment.matrix


def _is_projective(alignment: Alignment) -> bool:
    return alignment.motion == "homography" and not np.allclose(alignment.matrix[2, :2], 0.0)


def _area_scale(mapper, coords: np.ndarray) -> np.ndarray:
    """sqrt|det J| of ``mapper`` at each coordinate (exact for affine maps)."""
    base = mapper(coords)
    steps = []
    for axis in (-2, -1):
        shifted = coords.copy()
        shifted[:, axis] += 1.0
        steps.append(mapper(shifted)[:, -2:] - base[:, -2:])
    det = steps[0][:, 0] * steps[1][:, 1] - steps[0][:, 1] * steps[1][:, 0]
    return np.sqrt(np.abs(det))


def _ellipse_outline(corners: np.ndarray) -> np.ndarray:
    """Polygon vertices of the ellipse napari inscribes in four bounding corners."""
    center = corners.mean(axis=0)
    half1, half2 = (corners[1] - corners[0]) / 2, (corners[2] - corners[1]) / 2
    theta = np.linspace(0.0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)[:, None]
    return center + np.cos(theta) * half1 + np.sin(theta) * half2


def carry_layer(
    layer: Layer,
    alignment: Alignment,
    reference_layer: Layer,
    moving_layer: Layer,
    *,
    interpolation: str = "linear",
) -> tuple[Any, dict[str, Any], str]:
    """Carry a layer that overlays the moving image onto the reference grid.

    Parameters
    ----------
    layer : napari.layers.Layer
        Image, Labels, Points, Shapes, Vectors or Tracks layer placed over the
        moving image in world space (its own transforms are honoured).
    alignment : Alignment
        Estimated on ``reference_layer`` and ``moving_layer``'s images.
    reference_layer, moving_layer : napari.layers.Image
        2D layers.
    interpolation : {"linear", "nearest", "cubic"}
        For Image layers; Labels always use ``"nearest"``.

    Returns
    -------
    tuple
        A ``LayerDataTuple`` ``(data, meta, layer_type)`` named
        ``"<name> (aligned)"``, with the reference layer's transforms in ``meta``.
        Images and labels are resampled onto the reference pixel grid (same
        dtype); point-like data are mapped into reference data coordinates.
        Point sizes are scaled by the local area change so they cover the same
        part of the image. Under a homography, rectangles become 4-vertex
        polygons and ellipses 64-vertex polygons (a projective map keeps neither
        shape); lines, paths and polygons stay exact.

    Raises
    ------
    TypeError
        For other layer types.
    ValueError
        For Image/Labels stacks, or layers that do not match the alignment's shapes.
    """
    image_cls, labels_cls, points_cls, shapes_cls, tracks_cls, vectors_cls = _layer_classes()
    _check_grid(alignment, reference_layer, moving_layer)
    meta: dict[str, Any] = {
        "name": f"{layer.name} (aligned)",
        **_grid_kwargs(reference_layer, layer),
        "opacity": float(layer.opacity),
        "blending": str(layer.blending),
    }

    def carry(coords):
        return carry_coordinates(coords, alignment, layer, reference_layer, moving_layer)

    if isinstance(layer, (image_cls, labels_cls)):
        _require_2d(layer, "carried")
        labels = isinstance(layer, labels_cls)
        data = warp(
            np.asarray(_level0(layer)),
            _pixel_matrix(layer, alignment, moving_layer),
            _spatial_shape(reference_layer)[:2],
            interpolation="nearest" if labels else interpolation,
        )
        if labels:
            meta["features"] = layer.features.copy()
            meta["colormap"] = copy.deepcopy(layer.colormap)
            return data, meta, "labels"
        return data, {**meta, **_image_look(layer)}, "image"
    if isinstance(layer, points_cls):
        coords = np.asarray(layer.data, float)
        size = np.array(layer.size, float)
        if len(coords):
            size = size * _area_scale(carry, coords)
        meta.update(
            ndim=layer.ndim,
            features=layer.features.copy(),
            face_color=np.array(layer.face_color),
            border_color=np.array(layer.border_color),
            border_width=np.array(layer.border_width),
            border_width_is_relative=bool(layer.border_width_is_relative),
            size=size,
            symbol=[str(s.value) for s in layer.symbol],
        )
        return carry(coords), meta, "points"
    if isinstance(layer, shapes_cls):
        projective = _is_projective(alignment)
        shapes, kinds = [], []
        for verts, kind in zip(layer.data, layer.shape_type, strict=True):
            verts = np.asarray(verts, float)
            if projective and kind == "ellipse":
                verts, kind = _ellipse_outline(verts), "polygon"
            elif projective and kind == "rectangle":
                kind = "polygon"
            shapes.append(carry(verts))
            kinds.append(kind)
        meta.update(
            ndim=layer.ndim,
            shape_type=kinds,
            features=layer.features.copy(),
            edge_width=list(layer.edge_width),
            edge_color=np.array(layer.edge_color),
            face_color=np.array(layer.face_color),
            z_index=list(layer.z_index),
        )
        return shapes, meta, "shapes"
    if isinstance(layer, vectors_cls):
        data = np.asarray(layer.data, float)
        positions = carry(data[:, 0]) if len(data) else data[:, 0]
        tips = carry(data[:, 0] + data[:, 1]) if len(data) else data[:, 1]
        meta.update(
            ndim=layer.ndim,
            features=layer.features.copy(),
            edge_color=np.array(layer.edge_color),
            edge_width=float(layer.edge_width),
            length=float(layer.length),
            vector_style=str(layer.vector_style),
        )
        return np.stack([positions, tips - positions], axis=1), meta, "vectors"
    if isinstance(layer, tracks_cls):
        data = np.asarray(layer.data, float)
        features = layer.features.drop(columns="track_id", errors="ignore")
        meta.update(
            features=features.copy(),
            graph={k: list(v) for k, v in layer.graph.items()},
            tail_width=layer.tail_width,
            tail_length=layer.tail_length,
            head_length=layer.head_length,
            color_by=layer.color_by,
            colormap=layer.colormap,
        )
        return np.column_stack([data[:, :1], carry(data[:, 1:])]), meta, "tracks"
    raise TypeError(
        f"layer {layer.name!r} is a {type(layer).__name__} layer; only Image, Labels, Points, "
        "Shapes, Vectors and Tracks layers can be carried onto the reference"
    )


def move_layer_onto_reference(
    moving_layer: Layer, reference_layer: Layer, alignment: Alignment
) -> None:
    """Overlay the moving layer on the reference by setting its ``affine`` (no resampling).

    The new affine is ``R @ A @ inv(P)``: ``R`` the reference layer's data→world
    matrix, ``A = alignment.napari_affine()`` and ``P`` the moving layer's
    physical (scale, translate, rotate, shear) transform, which stays as it is.
    Afterwards ``moving_layer.data_to_world(p) == reference_layer.data_to_world(A p)``.

    Raises
    ------
    ValueError
        For a homography, or stack layers.
    """
    _check_grid(alignment, reference_layer, moving_layer)
    if _is_projective(alignment):
        raise ValueError("Move layer only cannot express a homography; use Aligned image instead")
    reference = data_to_world_matrix(reference_layer)
    physical_inv = np.linalg.inv(_physical_matrix(moving_layer))
    moving_layer.affine = reference @ alignment.napari_affine() @ physical_inv
