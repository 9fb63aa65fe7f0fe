"""Synthetic test data: seeded images and misaligned pairs with known transforms.

Like :mod:`skimage.data`, but generated on the fly (no downloads) and with the
ground truth attached. Everything is numpy + OpenCV, deterministic for a given
``seed``, and fast enough for multi-megapixel images. The sample data in napari,
the tests and the benchmarks are all built from these functions.

Images — ``f(shape=(rows, cols), seed=0)`` returns float32 in ``[0, 1]``:

- :func:`natural_image` — photo-like scene with structure at all scales;
- :func:`text_page` — sheet-music / document page, white paper and dark ink;
- :func:`texture` — repetitive, locally periodic gratings;
- :func:`fluorescence_spots` — sparse bright spots and dim cells on black;
- :data:`KINDS` — the four above by name.

Pairs and warps — every matrix maps a *reference* pixel ``(x=col, y=row, 1)`` to
*moving* pixel coordinates, the convention of ``cv2.findTransformECC`` and of
:attr:`napari_ecc_align.Alignment.matrix`:

- :func:`random_warp` — a random matrix of a motion model, with OpenCV's test ranges;
- :func:`make_pair` — a reference cut from an image and the moving image it implies;
- :func:`score_pair`, :func:`natural_pair` — ``(reference, moving, matrix)`` ready to align.

Volumes — ``(z, y, x)`` arrays with a voxel ``spacing`` ``(dz, dy, dx)`` in µm and 4×4
matrices over ``(x, y, z, 1)`` (reference voxel → moving voxel), rigid in µm:

- :func:`tissue_volume` — cells with nuclei, membranes and cytoplasm, float32;
- :func:`volume_pair` — two channels of it, one moved: ``(reference, moving, spacing, matrix)``;
- :func:`drift_volume` — a drifting ``(t, z, y, x)`` time-lapse: ``(stack, spacing, matrices)``;
- :func:`rigid_volume_matrix` — a rotation and shift about the volume centre as that 4×4.

Examples
--------
>>> from napari_ecc_align import align
>>> from napari_ecc_align.data import natural_pair
>>> reference, moving, truth = natural_pair((256, 256), seed=0)
>>> alignment = align(reference, moving)
>>> alignment.corner_error(truth) < 0.1
True
"""

from .images import KINDS, fluorescence_spots, natural_image, text_page, texture
from .pairs import make_pair, natural_pair, random_warp, score_pair
from .volumes import (
    VolumeDrift,
    VolumePair,
    drift_volume,
    rigid_volume_matrix,
    tissue_volume,
    volume_pair,
)

__all__ = [
    "KINDS",
    "VolumeDrift",
    "VolumePair",
    "drift_volume",
    "fluorescence_spots",
    "make_pair",
    "natural_image",
    "natural_pair",
    "random_warp",
    "rigid_volume_matrix",
    "score_pair",
    "text_page",
    "texture",
    "tissue_volume",
    "volume_pair",
]
