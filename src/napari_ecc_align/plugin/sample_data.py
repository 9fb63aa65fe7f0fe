"""napari sample data: generated, misaligned image pairs with known transforms.

Nothing is downloaded. Each function returns napari ``LayerDataTuple``\\ s,
reference first, moving second. The moving layer is drawn in magenta with
additive blending over the green reference, so aligned structure looks grey or
white and misalignment shows as green/magenta fringes. The true
reference→moving matrix (see :mod:`napari_ecc_align.data`) travels in
each layer's ``metadata["ecc_true_matrix"]``.

This module does not import napari: the manifest refers to these functions by
name.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import data as synthetic

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]


def _layers(
    reference: np.ndarray,
    moving: np.ndarray,
    matrix: np.ndarray,
    names: tuple[str, str],
    contrast_limits: tuple[float, float],
) -> list[LayerDataTuple]:
    metadata = {"ecc_true_matrix": np.asarray(matrix, dtype=float).tolist()}
    common = {"contrast_limits": list(contrast_limits)}
    return [
        (
            reference,
            {
                "name": names[0],
                "colormap": "green",
                "blending": "translucent",
                "metadata": dict(metadata),
                **common,
            },
            "image",
        ),
        (
            moving,
            {
                "name": names[1],
                "colormap": "magenta",
                "blending": "additive",
                "metadata": dict(metadata),
                **common,
            },
            "image",
        ),
    ]


def score_pair(shape: tuple[int, int] = (1200, 900), seed: int = 0) -> list[LayerDataTuple]:
    """A binarised score page and a grayscale "scan" of it, slightly rotated and shifted.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of both images.
    seed : int
        Seed of the page and the scan degradations.

    Returns
    -------
    list of LayerDataTuple
        ``"score reference (binarised)"`` (uint8, 0/255) and
        ``"score moving (grayscale)"`` (uint8); the moving page is rotated by
        0.3°, scaled by 1.002 about its centre and shifted by (6.5, -3.0) px.
    """
    reference, moving, matrix = synthetic.score_pair(shape, seed)
    names = ("score reference (binarised)", "score moving (grayscale)")
    return _layers(reference, moving, matrix, names, (0, 255))


def natural_pair(shape: tuple[int, int] = (512, 512), seed: int = 1) -> list[LayerDataTuple]:
    """Two views of a photo-like scene: small similarity transform, gain, bias and noise.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of both images.
    seed : int
        Seed of the scene and the noise.

    Returns
    -------
    list of LayerDataTuple
        ``"natural reference"`` and ``"natural moving"`` (float32 in [0, 1]);
        the moving view is rotated by 0.5°, scaled by 1.003 about its centre
        and shifted by (4.0, -2.5) px.
    """
    reference, moving, matrix = synthetic.natural_pair(shape, seed)
    return _layers(reference, moving, matrix, ("natural reference", "natural moving"), (0.0, 1.0))


def drift_stack(
    frames: int = 40, shape: tuple[int, int] = (256, 320), seed: int = 3
) -> list[LayerDataTuple]:
    """A time-lapse of one fluorescence-like scene drifting by a slow random walk.

    Frame t shows the scene moved by a translation and a small rotation; the true
    reference-grid (frame 0) → frame-t matrices travel in
    ``metadata["ecc_true_matrices"]``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    rows, cols = shape
    margin = 40
    scene = synthetic.natural_image((rows + 2 * margin, cols + 2 * margin), seed=seed)
    spots = synthetic.fluorescence_spots((rows + 2 * margin, cols + 2 * margin), seed=seed)
    scene = 0.35 * scene + spots
    steps = rng.normal(0, [0.8, 0.8, 0.05], (frames, 3))
    steps[0] = 0
    walk = np.cumsum(steps, axis=0)  # dx, dy (pixels), angle (degrees)
    center = ((cols - 1) / 2, (rows - 1) / 2)
    stack = np.empty((frames, rows, cols), np.float32)
    matrices = []
    for t, (dx, dy, angle) in enumerate(walk):
        rot = cv2.getRotationMatrix2D(center, float(angle), 1.0)
        true = np.vstack([rot, [0, 0, 1]])
        true[:2, 2] += (dx, dy)
        to_scene = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]]) @ np.linalg.inv(true)
        stack[t] = cv2.warpAffine(
            scene, to_scene[:2], (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        matrices.append(true.tolist())
    stack += rng.normal(0, 0.01, stack.shape).astype(np.float32)
    meta = {
        "name": "drifting time-lapse",
        "colormap": "magma",
        "metadata": {"ecc_true_matrices": matrices},
    }
    return [(stack, meta, "image")]
