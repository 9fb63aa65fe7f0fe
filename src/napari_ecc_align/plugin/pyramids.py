"""Outputs of multiscale (pyramid) inputs: the aligned image and the difference as lazy
pyramids, each level warped from the moving layer's level of the same depth.

A level ``k`` pixel centre sits at ``s * x + (s - 1) / 2`` level-0 pixels, with ``s``
the level's size ratio on that axis (the rule of 2 x 2 averaging, which OME-Zarr
writers and napari's own pyramids follow), so the level's reference→moving matrix is
``S_mov^-1 @ A @ S_ref``. Nothing is computed here: napari reads the chunks it shows.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..engine import Alignment, difference, warp


def is_pyramid(data) -> bool:
    """A list of two or more arrays: a multiscale layer's data as the widget passes it."""
    return isinstance(data, list) and len(data) > 1


def level0_shape(data) -> tuple[int, ...]:
    """The shape of an image, or of a pyramid's finest level."""
    return tuple((data[0] if is_pyramid(data) else data).shape)


def level_alignments(alignment: Alignment, reference: list, moving: list) -> list[Alignment]:
    """The alignment at each level the two pyramids share (level 0: ``alignment``); for
    images and volumes alike."""
    levels = [alignment]
    spatial = alignment.ndim
    for k in range(1, min(len(reference), len(moving))):
        ref_shape = tuple(reference[k].shape[:spatial])
        mov_shape = tuple(moving[k].shape[:spatial])
        matrix = (
            np.linalg.inv(_to_level0(alignment.moving_shape, mov_shape))
            @ alignment.matrix
            @ _to_level0(alignment.reference_shape, ref_shape)
        )
        levels.append(replace(alignment, matrix=matrix, reference_shape=ref_shape,
                              moving_shape=mov_shape))  # fmt: skip
    return levels


def _to_level0(full, level) -> np.ndarray:
    """Level pixel (x, y[, z], 1) → level-0 pixel."""
    ratios = [f / n for f, n in zip(full, level, strict=True)][::-1]  # x first
    matrix = np.eye(len(ratios) + 1)
    for axis, s in enumerate(ratios):
        matrix[axis, axis], matrix[axis, -1] = s, (s - 1) / 2
    return matrix


def warped_pyramid(moving: list, alignments: list[Alignment], interpolation: str) -> list:
    """Each moving level warped onto its reference level: lazy dask arrays."""
    return [
        warp(level, a, interpolation=interpolation)
        for level, a in zip(moving, alignments, strict=False)
    ]


def difference_pyramid(reference: list, aligned: list, alignments, mode: str) -> list:
    """The difference at every level: lazy, the overlap masked as at level 0."""
    return [
        difference(ref, ali, mode=mode, alignment=a)
        for ref, ali, a in zip(reference, aligned, alignments, strict=False)
    ]
