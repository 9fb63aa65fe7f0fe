"""napari sample data: generated, misaligned image and volume pairs and drifting
time-lapses, with known transforms.

Nothing is downloaded. Each function returns napari ``LayerDataTuple``\\ s,
reference first, moving second. The moving layer is drawn in magenta with
additive blending over the green reference, so aligned structure looks grey or
white and misalignment shows as green/magenta fringes. The true
reference→moving matrix (see :mod:`napari_ecc_align.data`) travels in
each layer's ``metadata["ecc_true_matrix"]``; volumes carry their voxel size in
µm as the layers' ``scale``.

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
    contrast_limits: tuple[tuple[float, float], tuple[float, float]],
    **common: Any,
) -> list[LayerDataTuple]:
    """The reference (green) and moving (magenta, additive) layers, each with its
    contrast limits, both with ``common`` keyword arguments and the true matrix."""
    metadata = {"ecc_true_matrix": np.asarray(matrix, dtype=float).tolist()}
    looks = (("green", "translucent"), ("magenta", "additive"))
    return [
        (
            data,
            {
                "name": name,
                "colormap": colormap,
                "blending": blending,
                "contrast_limits": list(limits),
                "metadata": dict(metadata),
                **common,
            },
            "image",
        )
        for data, name, limits, (colormap, blending) in zip(
            (reference, moving), names, contrast_limits, looks, strict=True
        )
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
    return _layers(reference, moving, matrix, names, ((0, 255), (0, 255)))


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
    names = ("natural reference", "natural moving")
    return _layers(reference, moving, matrix, names, ((0.0, 1.0), (0.0, 1.0)))


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


def volume_pair(
    shape: tuple[int, int, int] = (32, 128, 128), seed: int = 0
) -> list[LayerDataTuple]:
    """Two channels of a tissue volume, the second moved by a rigid motion (3D).

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` of both volumes.
    seed : int
        Seed of the tissue and the noise.

    Returns
    -------
    list of LayerDataTuple
        ``"volume reference (channel 1)"`` and ``"volume moving (channel 2)"``
        (uint16), with ``scale`` the voxel size (2, 0.5, 0.5) µm; the moving
        channel is rotated by (2, -1.5, 3)° (x-y-z Euler angles, in µm) about the
        volume centre and shifted by (3, -2.5, 1.5) voxels (x, y, z). The true
        4×4 (reference voxel ``(x, y, z, 1)`` → moving voxel) is in
        ``metadata["ecc_true_matrix"]``.
    """
    reference, moving, spacing, matrix = synthetic.volume_pair(shape, seed)
    names = ("volume reference (channel 1)", "volume moving (channel 2)")
    limits = tuple(_percentiles(v) for v in (reference, moving))
    return _layers(reference, moving, matrix, names, limits, scale=list(spacing), units="µm")


def drift_volume(
    frames: int = 12, shape: tuple[int, int, int] = (32, 96, 96), seed: int = 0
) -> list[LayerDataTuple]:
    """A 3D time-lapse (t, z, y, x) of a tissue drifting a few voxels in z, y and x.

    The layer's ``scale`` is (1, 2, 0.5, 0.5): frames, then the voxel size in µm.
    The true frame-0 voxel → frame-t voxel 4×4s travel in
    ``metadata["ecc_true_matrices"]``.
    """
    stack, spacing, matrices = synthetic.drift_volume(frames, shape, seed)
    meta = {
        "name": "drifting 3D time-lapse",
        "colormap": "magma",
        "contrast_limits": list(_percentiles(stack)),
        "scale": [1.0, *spacing],
        "metadata": {"ecc_true_matrices": matrices.tolist()},
    }
    return [(stack, meta, "image")]


def _percentiles(volume: np.ndarray) -> tuple[float, float]:
    """Contrast limits that put the background dark and let the nuclei shine."""
    lo, hi = np.percentile(volume[..., ::4, ::4], [30, 99.9])
    return float(lo), float(hi)
