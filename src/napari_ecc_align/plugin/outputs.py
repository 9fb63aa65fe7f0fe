"""Output layers and small napari helpers for the dock widget (main thread only)."""

from __future__ import annotations

import numpy as np

from ..engine import Alignment
from .carry import carry_layer, check_carriable


def put_image(viewer, name: str, data, kwargs: dict) -> None:
    """Update the layer called ``name`` in place, or add it."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name in viewer.layers and kind(viewer.layers[name]) == "Image":
        layer = viewer.layers[name]
        layer.data = data
        for key, value in kwargs.items():
            # each change re-renders a possibly large layer: set only what differs
            if key != "rgb" and not same(getattr(layer, key), value):
                setattr(layer, key, value)
        if "contrast_limits" not in kwargs:
            layer.reset_contrast_limits()
    else:
        viewer.add_image(data, name=name, **kwargs)


def put_layer(viewer, data, meta: dict, layer_type: str) -> None:
    """Replace the layer called meta["name"] at its place in the list, or add it."""
    from napari.layers import Layer

    name = meta["name"]
    new = Layer.create(data, meta, layer_type)
    if name in viewer.layers:
        index = viewer.layers.index(name)
        viewer.layers.pop(index)
        viewer.layers.insert(index, new)
    else:
        viewer.add_layer(new)


def kind(layer) -> str:
    return type(layer).__name__


def same(current, value) -> bool:
    if isinstance(value, str):
        return getattr(current, "name", current) == value
    if hasattr(current, "affine_matrix"):
        current = current.affine_matrix
    if hasattr(value, "affine_matrix"):
        value = value.affine_matrix
    try:
        return bool(np.array_equal(np.asarray(current), np.asarray(value)))
    except (TypeError, ValueError):
        return current == value


def carrier(layer, reference, moving, interpolation, ndim: int = 2):
    """A function carrying ``layer`` by an alignment; checked now, so a layer that cannot
    follow is reported before the run."""
    check_carriable(layer, ndim)

    def carry(alignment: Alignment) -> tuple:
        return carry_layer(layer, alignment, reference, moving, interpolation=interpolation)

    return carry


def rasterise_mask(layer, shape) -> np.ndarray:
    """A Labels or Shapes layer as a boolean mask on the reference grid (Labels only
    for a volume: Shapes are drawn in a plane)."""
    if kind(layer) == "Labels":
        data = np.asarray(layer.data)
        if data.shape != tuple(shape):
            raise ValueError(
                f"mask layer '{layer.name}' has shape {data.shape}, the reference {tuple(shape)}; "
                "draw the mask on the reference grid"
            )
        return data != 0
    if len(shape) == 3:
        raise ValueError(
            f"mask layer '{layer.name}' is a Shapes layer; a volume takes a 3D Labels mask "
            "on the reference grid"
        )
    if len(layer.data) == 0:
        raise ValueError(f"mask layer '{layer.name}' has no shapes")
    return np.asarray(layer.to_masks(mask_shape=tuple(shape))).any(axis=0)
