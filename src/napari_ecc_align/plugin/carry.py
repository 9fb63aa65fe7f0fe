"""Carrying an alignment to the layers that overlay the moving image: images and labels
are resampled onto the reference grid, points, shapes, vectors and tracks mapped into
reference data coordinates (2D, or 3D for a volume alignment). The world-transform
conventions are those of :mod:`napari_ecc_align.plugin.layers`.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import Alignment, swap_axes, warp
from .layers import (
    carry_coordinates,
    check_grid,
    data_to_world_matrix,
    grid_kwargs,
    image_look,
    is_projective,
    layer_classes,
    level0,
    require_spatial,
    spatial_shape,
)

if TYPE_CHECKING:
    from napari.layers import Layer

_ELLIPSE_VERTICES = 64


def _pixel_matrix(layer: Layer, alignment: Alignment, moving_layer: Layer) -> np.ndarray:
    """Reference pixel (x, y[, z], 1) → ``layer`` pixel, through world space."""
    spatial = alignment.ndim
    own = data_to_world_matrix(layer, spatial)
    moving = data_to_world_matrix(moving_layer, spatial)
    if np.array_equal(own, moving):
        return alignment.matrix
    swap = swap_axes(spatial)
    return swap @ np.linalg.inv(own) @ moving @ swap @ alignment.matrix


def _size_scale(mapper, coords: np.ndarray, spatial: int) -> np.ndarray:
    """|det J|^(1/spatial) of ``mapper`` at each coordinate (exact for affine maps):
    the factor by which a point's diameter changes."""
    base = mapper(coords)[:, -spatial:]
    columns = []
    for axis in range(-spatial, 0):
        shifted = coords.copy()
        shifted[:, axis] += 1.0
        columns.append(mapper(shifted)[:, -spatial:] - base)
    jacobians = np.stack(columns, axis=-1)  # (N, spatial, spatial)
    return np.abs(np.linalg.det(jacobians)) ** (1.0 / spatial)


def _ellipse_outline(corners: np.ndarray) -> np.ndarray:
    """Polygon vertices of the ellipse napari inscribes in four bounding corners."""
    center = corners.mean(axis=0)
    half1, half2 = (corners[1] - corners[0]) / 2, (corners[2] - corners[1]) / 2
    theta = np.linspace(0.0, 2 * np.pi, _ELLIPSE_VERTICES, endpoint=False)[:, None]
    return center + np.cos(theta) * half1 + np.sin(theta) * half2


def check_carriable(layer: Layer, ndim: int) -> None:
    """Raise ``ValueError`` now if ``layer`` cannot follow an ``ndim``-D alignment, so the
    widget says so before estimating instead of failing after it."""
    image_cls, labels_cls = layer_classes()[:2]
    if isinstance(layer, (image_cls, labels_cls)):
        require_spatial(layer, "Also transform", ndim)
    elif layer.ndim < ndim:
        raise ValueError(
            f"Also transform: layer {layer.name!r} has {layer.ndim} dimensions; a volume "
            "alignment carries 3D (z, y, x) layers"
        )


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
        2D layers, or 3D ``(z, y, x)`` layers for a volume alignment (then Image
        and Labels layers to carry are volumes too, and the other layers' last
        three coordinates are ``(z, row, col)``).
    interpolation : {"linear", "nearest", "cubic"}
        For Image layers; Labels always use ``"nearest"``.

    Returns
    -------
    tuple
        A ``LayerDataTuple`` ``(data, meta, layer_type)`` named
        ``"<name> (aligned)"``, with the reference layer's transforms in ``meta``.
        Images and labels are resampled onto the reference pixel grid (same
        dtype); point-like data are mapped into reference data coordinates.
        Point sizes are scaled by the local change of size (square root of the
        area change, cube root of the volume change) so they cover the same part
        of the image. Under a homography, rectangles become 4-vertex
        polygons and ellipses 64-vertex polygons (a projective map keeps neither
        shape); lines, paths and polygons stay exact.

    Raises
    ------
    TypeError
        For other layer types.
    ValueError
        For Image/Labels stacks, or layers that do not match the alignment's shapes.
    """
    image_cls, labels_cls, points_cls, shapes_cls, tracks_cls, vectors_cls = layer_classes()
    check_grid(alignment, reference_layer, moving_layer)
    meta: dict[str, Any] = {
        "name": f"{layer.name} (aligned)",
        **grid_kwargs(reference_layer, layer),
        "opacity": float(layer.opacity),
        "blending": str(layer.blending),
    }

    def carry(coords):
        return carry_coordinates(coords, alignment, layer, reference_layer, moving_layer)

    if isinstance(layer, (image_cls, labels_cls)):
        require_spatial(layer, "carried", alignment.ndim)
        labels = isinstance(layer, labels_cls)
        data = warp(
            np.asarray(level0(layer)),
            _pixel_matrix(layer, alignment, moving_layer),
            spatial_shape(reference_layer)[: alignment.ndim],
            interpolation="nearest" if labels else interpolation,
        )
        if labels:
            meta["features"] = layer.features.copy()
            meta["colormap"] = copy.deepcopy(layer.colormap)
            return data, meta, "labels"
        return data, {**meta, **image_look(layer)}, "image"
    if isinstance(layer, points_cls):
        coords = np.asarray(layer.data, float)
        size = np.array(layer.size, float)
        if len(coords):
            scale = _size_scale(carry, coords, alignment.ndim)
            size = size * (scale[:, None] if size.ndim == 2 else scale)
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
        projective = is_projective(alignment)
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
