"""Output layers and small napari helpers for the dock widget (main thread only).

Every output layer's keywords are built here (aligned pair, difference, carried layers,
aligned stack), and every output carries the :data:`OUTPUT_KEY` metadata marker: the
widget recognises its outputs by it, not by their names, which the user may change.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from ..engine import NORMALIZED_FULL_SCALE, Alignment
from .carry import carry_layer, check_carriable
from .layers import (
    aligned_layer_kwargs,
    alignment_metadata,
    grid_kwargs,
    image_look,
    move_layer_onto_reference,
    shifted_translate,
)

# The metadata key marking a layer this plugin made; its value says which output it is.
OUTPUT_KEY = "ecc_align_output"


def is_output(layer) -> bool:
    """A layer the widget made, by its metadata marker: a renamed output stays an output
    and an input named like one (``"x (aligned)"``) stays an input."""
    metadata = getattr(layer, "metadata", None) or {}
    return OUTPUT_KEY in metadata


def output_name(layer, what: str) -> str:
    """The name an output of ``layer`` is first given, e.g. ``"cells (aligned)"``."""
    return f"{layer.name} ({what})"


def output_metadata(what: str, metadata: dict) -> dict[str, Any]:
    """``metadata`` with the output marker saying the layer is the ``what`` output."""
    return {**metadata, OUTPUT_KEY: what}


def aligned_kwargs(reference, moving, metadata: dict) -> dict[str, Any]:
    """The moving image resampled onto the reference: the reference's grid and the
    moving layer's whole look (colormap object, contrast limits, gamma, opacity, blending)."""
    kwargs = aligned_layer_kwargs(reference, moving)
    return {**kwargs, "metadata": output_metadata("aligned", metadata)}


def difference_kwargs(reference, difference_mode: str, metadata: dict) -> dict[str, Any]:
    """The difference image on the reference's grid, in inferno; a normalized difference
    is in standard deviations, full scale at 4 as the CLI writes it."""
    kwargs = {**grid_kwargs(reference), "colormap": "inferno", "blending": "translucent"}
    if difference_mode == "normalized":
        kwargs["contrast_limits"] = (0.0, NORMALIZED_FULL_SCALE)
    return {**kwargs, "metadata": output_metadata("difference", metadata)}


def carried_kwargs(meta: dict, metadata: dict) -> dict[str, Any]:
    """A carried layer's ``LayerDataTuple`` meta with the run's metadata and the marker."""
    return {**meta, "metadata": output_metadata("carried", metadata)}


def stack_kwargs(moving, metadata: dict, origin=()) -> dict[str, Any]:
    """The aligned frames of the ``moving`` stack: its own transforms (moved to the
    grown canvas' ``origin`` when given) and its whole look."""
    kwargs = {key: getattr(moving, key) for key in ("scale", "translate", "rotate", "shear")}
    kwargs.update(affine=moving.affine, units=tuple(str(u) for u in moving.units))
    kwargs.update(image_look(moving))
    if any(origin):  # a grown canvas starts above and left of the frames
        kwargs["translate"] = shifted_translate(moving, origin)
    return {**kwargs, "metadata": output_metadata("stack", metadata)}


def put_image(viewer, name: str, data, kwargs: dict) -> None:
    """Update the output layer called ``name`` in place, or add it (an input that has
    that name is left alone: napari gives the new layer a numbered name)."""
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    existing = viewer.layers[name] if name in viewer.layers else None
    if existing is not None and kind(existing) == "Image" and is_output(existing):
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
    """Replace the output layer called meta["name"] at its place in the list, or add it."""
    from napari.layers import Layer

    name = meta["name"]
    new = Layer.create(data, meta, layer_type)
    if name in viewer.layers and is_output(viewer.layers[name]):
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


def pair_updates(viewer, result, reference, moving, interpolation: str, move_only: bool) -> list:
    """The layer updates for a pair's ``JobResult``, one callable each (the widget applies
    one per event-loop turn): aligned image, difference, carried layers, the moved layer."""
    alignment = result.alignment
    meta = {
        "ecc_alignment": alignment_metadata(
            alignment,
            interpolation=interpolation,
            difference_mode=result.difference_mode,
            reference=reference.name,
            moving=moving.name,
        )
    }
    updates = []
    if result.aligned is not None:
        kwargs = aligned_kwargs(reference, moving, meta)
        updates.append(partial(put_image, viewer, output_name(moving, "aligned"), result.aligned,
                               kwargs))  # fmt: skip
    if result.difference is not None:
        kwargs = difference_kwargs(reference, result.difference_mode, meta)
        updates.append(partial(put_image, viewer, output_name(moving, "difference"),
                               result.difference, kwargs))  # fmt: skip
    for data, layer_meta, layer_type in result.carried:
        updates.append(partial(put_layer, viewer, data, carried_kwargs(layer_meta, meta),
                               layer_type))  # fmt: skip
    if move_only and alignment.motion != "homography":
        updates.append(partial(move_layer_onto_reference, moving, reference, alignment))
    return updates


def stack_updates(viewer, result, moving) -> list:
    """The layer update for a ``StackJobResult``: its aligned frames, if made."""
    if result.aligned is None:
        return []
    meta = {"ecc_stack_alignment": result.stack_alignment.to_dict()}
    kwargs = stack_kwargs(moving, meta, result.origin)
    return [partial(put_image, viewer, output_name(moving, "aligned"), result.aligned, kwargs)]
