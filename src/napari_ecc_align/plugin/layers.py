"""napari glue: layers <-> arrays, world transforms, output-layer metadata, moving a layer.
Carrying an alignment to other layers is in :mod:`napari_ecc_align.plugin.carry`; the
helpers it shares with this module have plain names (``check_grid``, ``grid_kwargs``, ...).

Conventions
-----------
* napari maps a layer's *data* coordinates to *world* coordinates by
  ``affine ∘ (rotate · shear · scale + translate)``; :func:`data_to_world_matrix`
  returns that map as a 3×3 ``(row, col)`` homogeneous matrix (4×4 over
  ``(z, row, col)`` for volumes).
* An alignment is 2D (images) or 3D (volumes, ``alignment.ndim == 3``); its number
  of spatial axes is called ``spatial`` below. Points, Shapes, Vectors and Tracks
  layers may have more dimensions (e.g. time); their spatial axes must be the last
  ``spatial``, their leading coordinate columns pass through unchanged, and only
  the trailing block of their transforms is used (leading axes must not be rotated
  or sheared into the spatial ones). Image and Labels layers must have exactly the
  alignment's spatial axes.
* No function modifies its input layers, except :func:`move_layer_onto_reference`,
  which by design sets the moving layer's ``affine``.

napari is imported inside the functions only, so importing this module is cheap.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import Alignment

if TYPE_CHECKING:
    from napari.layers import Layer


# -- transforms ----------------------------------------------------------------------------------
def _physical_matrix(layer: Layer) -> np.ndarray:
    """(ndim+1)×(ndim+1) matrix of the layer's scale, translate, rotate and shear."""
    from napari.utils.transforms import Affine

    kwargs = {k: getattr(layer, k) for k in ("scale", "translate", "rotate", "shear")}
    return Affine(**kwargs, ndim=layer.ndim).affine_matrix


def _full_data_to_world(layer: Layer) -> np.ndarray:
    """(ndim+1)×(ndim+1) data→world matrix: ``affine @ physical``."""
    return np.asarray(layer.affine.affine_matrix, float) @ _physical_matrix(layer)


def _trailing_block(matrix: np.ndarray, spatial: int = 2) -> np.ndarray:
    out = np.eye(spatial + 1)
    k = spatial + 1
    out[:spatial, :spatial] = matrix[-k:-1, -k:-1]
    out[:spatial, spatial] = matrix[-k:-1, -1]
    return out


def data_to_world_matrix(layer: Layer, spatial: int = 2) -> np.ndarray:
    """The layer's data→world transform over its last ``spatial`` axes, homogeneous.

    Parameters
    ----------
    layer : napari.layers.Layer
        Any layer. For ``layer.ndim > spatial`` the trailing block (the last
        ``spatial`` axes) of its transform is returned.
    spatial : {2, 3}
        2 for images: a 3×3 over ``(row, col)``; 3 for volumes: a 4×4 over
        ``(z, row, col)``.

    Returns
    -------
    ndarray of shape (spatial + 1, spatial + 1)
        ``world_rc1 = matrix @ data_rc1``.
    """
    if layer.ndim < spatial:
        raise ValueError(
            f"layer {layer.name!r} has {layer.ndim} dimensions; a volume alignment needs 3"
        )
    return _trailing_block(_full_data_to_world(layer), spatial)


def world_moving_to_reference_data(
    alignment: Alignment, reference_layer: Layer, moving_layer: Layer
) -> np.ndarray:
    """Map from the moving layer's world space to reference data coordinates.

    It is ``alignment.napari_affine() @ inv(moving data→world)``: a world
    position over the moving image goes to moving pixels, then to reference
    pixels. When the moving layer has identity transforms this is exactly
    ``alignment.napari_affine()`` (moving data → reference data). 3×3 over
    ``(row, col)`` for images, 4×4 over ``(z, row, col)`` for volumes.

    Raises
    ------
    ValueError
        For a homography (use :func:`carry_coordinates`, which handles it), or
        a reference/moving layer with more axes than the alignment.
    """
    spatial = alignment.ndim
    require_spatial(reference_layer, "reference", spatial)
    require_spatial(moving_layer, "moving", spatial)
    moving_world = data_to_world_matrix(moving_layer, spatial)
    return alignment.napari_affine() @ np.linalg.inv(moving_world)


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
        last two columns (``(z, row, col)`` in the last three for a volume
        alignment); leading columns (time, ...) pass through unchanged.
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
    spatial = alignment.ndim
    require_spatial(reference_layer, "reference", spatial)
    pts = np.array(coords_rc, dtype=np.float64)
    single = pts.ndim == 1
    pts = np.atleast_2d(pts)
    if pts.ndim != 2 or pts.shape[1] < spatial:
        raise ValueError(f"coords_rc must have shape (N, D>={spatial}), got {pts.shape}")
    moving_inv = np.linalg.inv(data_to_world_matrix(moving_layer, spatial))
    to_moving = moving_inv @ data_to_world_matrix(source_layer, spatial)
    block = pts[:, -spatial:]
    pts[:, -spatial:] = block @ to_moving[:spatial, :spatial].T + to_moving[:spatial, spatial]
    out = alignment.transform_points(pts)
    return out[0] if single else out


# -- images --------------------------------------------------------------------------------------
def layer_classes():
    from napari.layers import Image, Labels, Points, Shapes, Tracks, Vectors

    return Image, Labels, Points, Shapes, Tracks, Vectors


def level0(layer: Layer):
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def spatial_shape(layer: Layer) -> tuple[int, ...]:
    shape = tuple(int(n) for n in level0(layer).shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def require_spatial(layer: Layer, role: str, spatial: int = 2) -> None:
    """Refuse a layer with more axes than the alignment's ``spatial`` ones (a stack)."""
    if layer.ndim > spatial:
        has_grid = hasattr(layer, "multiscale")  # Image, Labels
        what = f"shape {spatial_shape(layer)}" if has_grid else f"{layer.ndim} dimensions"
        unit = "2D layer" if spatial == 2 else "3D (z, y, x) layer"
        raise ValueError(
            f"{role} layer {layer.name!r} is a stack of {what}; choose a {unit}, slice it "
            "first, or align its frames as a stack"
        )
    if spatial == 3 and (layer.ndim < 3 or getattr(layer, "rgb", False)):
        raise ValueError(
            f"{role} layer {layer.name!r} is not a volume ({layer.ndim} dimensions"
            f"{', RGB' if getattr(layer, 'rgb', False) else ''}); a volume alignment needs "
            "3D (z, y, x) layers"
        )


def image_for_alignment(layer: Layer, name: str, ndim: int = 2):
    """The image (or volume) of an Image layer, as an array for :func:`align`.

    Parameters
    ----------
    layer : napari.layers.Image
        With ``ndim=2``, a 2D layer: grayscale ``(rows, cols)`` or RGB(A)
        ``(rows, cols, 3|4)`` when ``layer.rgb``; with ``ndim=3``, a grayscale
        ``(z, y, x)`` volume. Nothing is loaded here (on the main thread): dask and
        zarr data are passed as they are, a multiscale layer as the list of its
        levels, which the engine reads level by level.
    name : str
        The layer's role in error messages, e.g. ``"reference"`` or ``"moving"``.
    ndim : {2, 3}
        Spatial axes of the alignment.

    Raises
    ------
    TypeError
        If ``layer`` is not an Image layer.
    ValueError
        If the layer has another number of spatial dimensions (a stack, or a 2D
        layer for a volume alignment).
    """
    image_cls = layer_classes()[0]
    if not isinstance(layer, image_cls):
        raise TypeError(
            f"{name} layer {layer.name!r} is a {type(layer).__name__} layer; choose an Image layer"
        )
    require_spatial(layer, name, ndim)
    if getattr(layer, "multiscale", False):
        return list(layer.data)
    data = layer.data
    return data if hasattr(data, "chunks") else np.asarray(data)


def layer_spacing(layer: Layer) -> tuple[float, float, float]:
    """A volume layer's voxel size ``(dz, dy, dx)``: the last three entries of its ``scale``."""
    return tuple(abs(float(s)) for s in layer.scale[-3:])


def points_in_layer(points_layer: Layer, image_layer: Layer, ndim: int) -> np.ndarray:
    """A Points layer's points in an image layer's pixels, ``(row, col)`` or ``(z, y,
    x)``: through each layer's scale and translate to world coordinates and back, so
    points clicked on a scaled or shifted image land on its pixels."""
    data = np.asarray(points_layer.data, dtype=float).reshape(-1, points_layer.ndim)
    world = data * np.asarray(points_layer.scale, float) + np.asarray(points_layer.translate, float)
    scale = np.asarray(image_layer.scale[-ndim:], float)
    return (world[:, -ndim:] - np.asarray(image_layer.translate[-ndim:], float)) / scale


def check_grid(alignment: Alignment, reference_layer: Layer, moving_layer: Layer) -> None:
    for role, layer, expected in (
        ("reference", reference_layer, alignment.reference_shape),
        ("moving", moving_layer, alignment.moving_shape),
    ):
        require_spatial(layer, role, alignment.ndim)
        grid = spatial_shape(layer)[: alignment.ndim]
        if hasattr(layer, "multiscale") and grid != tuple(expected):
            raise ValueError(
                f"the alignment was estimated for a {role} image of shape {tuple(expected)}, but "
                f"layer {layer.name!r} has shape {spatial_shape(layer)}; were the layers swapped?"
            )


# -- output layer metadata -----------------------------------------------------------------------
def grid_kwargs(reference_layer: Layer, source_layer: Layer | None = None) -> dict[str, Any]:
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
    spatial = reference_layer.ndim
    ndim = spatial if source_layer is None else source_layer.ndim
    if ndim == spatial:
        return kwargs
    lead = ndim - spatial
    rotate, shear, affine = np.eye(ndim), np.eye(ndim), np.eye(ndim + 1)
    rotate[lead:, lead:] = kwargs["rotate"]
    shear[lead:, lead:] = _shear_matrix(kwargs["shear"], spatial)
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


def _shear_matrix(shear, n: int) -> np.ndarray:
    """napari's shear (upper-triangle values, or the matrix itself) as an n×n matrix."""
    shear = np.asarray(shear, float)
    if shear.ndim == 2:
        return shear
    out = np.eye(n)
    out[np.triu_indices(n, 1)] = shear
    return out


def shifted_translate(layer: Layer, origin) -> tuple[float, ...]:
    """``layer.translate`` for data whose index 0 sits at data position ``origin`` of
    ``layer`` (over its last axes): a grown canvas keeps every other transform."""
    n = layer.ndim
    offset = np.zeros(n)
    offset[n - len(origin) :] = origin
    linear = _physical_matrix(layer)[:n, :n]  # rotate · shear · scale
    return tuple(float(t) for t in np.asarray(layer.translate, float) + linear @ offset)


def image_look(layer: Layer) -> dict[str, Any]:
    """An Image layer's look as layer keywords: the colormap object itself (a custom
    colormap survives, whatever its name), contrast limits, gamma, blending, opacity, rgb."""
    return {
        "colormap": layer.colormap,
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
    coordinates) and the moving layer's ``colormap`` (the object, so a custom one survives),
    ``contrast_limits``, ``gamma``, ``blending``, ``opacity`` and ``rgb``.
    """
    return {**grid_kwargs(reference_layer), **image_look(moving_layer)}


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


def is_projective(alignment: Alignment) -> bool:
    return alignment.motion == "homography" and not np.allclose(alignment.matrix[2, :2], 0.0)


# -- moving a layer -------------------------------------------------------------------------------
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
    check_grid(alignment, reference_layer, moving_layer)
    if is_projective(alignment):
        raise ValueError("Move layer only cannot express a homography; use Aligned image instead")
    reference = data_to_world_matrix(reference_layer, alignment.ndim)
    physical_inv = np.linalg.inv(_physical_matrix(moving_layer))
    moving_layer.affine = reference @ alignment.napari_affine() @ physical_inv
