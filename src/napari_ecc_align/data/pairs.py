"""Random warps and misaligned image pairs with their known reference→moving matrix.

The matrix follows ``cv2.findTransformECC``: it maps a *reference* pixel
``(x=col, y=row, 1)`` to *moving* pixel coordinates, so ``cv2.warpPerspective(moving,
matrix, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)`` resamples the
moving image onto the reference grid.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..engine import MOTIONS
from .images import (
    Shape,
    check_shape,
    fractal_field,
    natural_image,
    similarity_matrix,
    text_page,
    translation_matrix,
)

# --------------------------------------------------------------------------- transforms


def random_warp(
    motion: str,
    rng: np.random.Generator,
    *,
    center: tuple[float, float] | None = None,
    signed: bool = True,
) -> np.ndarray:
    """Draw a random transform like OpenCV's ECC accuracy test.

    Ranges follow ``modules/video/test/test_ecc.cpp``: translation 10-20 px per
    axis; euclidean 4-8 degrees plus that translation; affine diagonal
    ``1 ± U(0, 0.05)``, off-diagonal ``U(-0.03, 0.03)`` plus that translation;
    homography the affine one plus ``h20, h21 ~ U(1e-4, 3e-4)``.

    Parameters
    ----------
    motion : {"translation", "euclidean", "affine", "homography"}
        Motion model.
    rng : numpy.random.Generator
        Source of randomness.
    center : (float, float), optional
        ``(cx, cy)`` about which rotation, scale, shear and perspective act;
        the drawn translation is then the displacement of that point. Default:
        the origin (pixel ``(0, 0)``), like OpenCV.
    signed : bool
        If True (default), translations and the rotation angle get a random
        sign. If False, they stay positive exactly as in OpenCV's test.

    Returns
    -------
    ndarray of shape (3, 3), float64
        Maps a template/reference pixel ``(x, y, 1)`` to input/moving pixel
        coordinates (the ``warpMatrix`` of ``cv2.findTransformECC``), with
        ``[2, 2] == 1``.
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")

    def sign() -> float:
        return float(rng.choice((-1.0, 1.0))) if signed else 1.0

    tx, ty = sign() * rng.uniform(10, 20), sign() * rng.uniform(10, 20)
    m = np.eye(3)
    if motion == "euclidean":
        a = math.radians(sign() * rng.uniform(4, 8))
        m[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    elif motion in ("affine", "homography"):
        m[0, 0] = 1 + rng.choice((-1.0, 1.0)) * rng.uniform(0, 0.05)
        m[1, 1] = 1 + rng.choice((-1.0, 1.0)) * rng.uniform(0, 0.05)
        m[0, 1], m[1, 0] = rng.uniform(-0.03, 0.03, 2)
        if motion == "homography":
            m[2, :2] = rng.uniform(1e-4, 3e-4, 2)
    if center is None:
        m[:2, 2] = tx, ty
        return m
    cx, cy = center
    # Linear/projective part about the centre, then the drawn displacement of that centre.
    m = translation_matrix(cx + tx, cy + ty) @ m @ translation_matrix(-cx, -cy)
    return m / m[2, 2]


def make_pair(image: np.ndarray, matrix: np.ndarray, template_shape: Shape) -> np.ndarray:
    """Cut a template out of ``image`` through ``matrix``: ``template(x) = image(W x)``.

    Aligning the returned template (reference) to ``image`` (moving) with
    ``cv2.findTransformECC(template, image, ...)`` should recover ``matrix``.
    Pixels that map outside ``image`` are 0, as in OpenCV's test.

    Parameters
    ----------
    image : ndarray, 2D
        The input/moving image.
    matrix : array_like, (2, 3) or (3, 3)
        Template pixel ``(x, y, 1)`` → image pixel coordinates.
    template_shape : tuple of int
        ``(rows, cols)`` of the template.

    Returns
    -------
    ndarray of float32, shape ``template_shape``
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape == (2, 3):
        m = np.vstack([m, [0.0, 0.0, 1.0]])
    rows, cols = (int(v) for v in template_shape[:2])
    return cv2.warpPerspective(
        np.asarray(image, dtype=np.float32),
        m,
        (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )


def _margin(shape: Shape, angle_deg: float, shift, scale: float) -> int:
    """Padding that keeps every warped pixel of a similarity inside the source."""
    half_diag = 0.5 * math.hypot(*shape)
    reach = max(abs(s) for s in shift) + half_diag * (
        abs(math.sin(math.radians(angle_deg))) + abs(scale - 1)
    )
    return int(math.ceil(reach)) + 8


def score_pair(
    shape: Shape = (600, 800),
    seed: int = 0,
    *,
    angle_deg: float = 0.3,
    shift: tuple[float, float] = (6.5, -3.0),
    scale: float = 1.002,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A binarised score and a grayscale scan of it, misaligned by a known similarity.

    The moving image is a grayscale uint8 "scan" of a :func:`text_page` (ink
    ~30-60, paper ~200-235, slight blur, noise and uneven illumination). The
    reference is the clean page seen through the similarity and thresholded,
    the way a binarised rendering or an earlier scan would be.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of both images.
    seed : int
        Seed of the page layout and of the scan degradations.
    angle_deg : float
        Rotation about the image centre, degrees.
    shift : (float, float)
        ``(dx, dy)`` displacement of the image centre, pixels.
    scale : float
        Isotropic scale about the image centre.

    Returns
    -------
    reference : ndarray of uint8, values 0 (ink) and 255 (paper)
    moving : ndarray of uint8
    matrix : ndarray of shape (3, 3), float64
        Reference pixel ``(x, y, 1)`` → moving pixel, so
        ``cv2.warpPerspective(moving, matrix, (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)`` lines up with
        ``reference``.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng([seed, 1])  # degradations: a stream apart from the layout's
    m = _margin((rows, cols), angle_deg, shift, scale)
    # The middle of a page twice as big: staff spacing ~10 px and 2 px lines at 600x800,
    # like a 150-300 dpi scan (on a page that just fits, strokes would be 1 px and
    # binarisation would destroy them).
    h, w = rows + 2 * m, cols + 2 * m
    big = text_page((2 * h, 2 * w), seed)
    page = big[h // 2 : h // 2 + h, w // 2 : w // 2 + w]
    matrix = similarity_matrix(angle_deg, shift, scale, ((cols - 1) / 2, (rows - 1) / 2))

    # Reference: the clean page through the transform (moving grid = page grid shifted by m),
    # then thresholded: the only resampling in the pair.
    to_page = translation_matrix(m, m) @ matrix
    warped = cv2.warpPerspective(
        page, to_page, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    reference = np.where(warped > 0.5, 255, 0).astype(np.uint8)

    # Moving: crop of the page (no resampling), "scanned": optics blur, uneven ink, paper
    # with vignetting (darker corners) and a gain slope, sensor noise, 8-bit quantisation.
    clean = cv2.GaussianBlur(page[m : m + rows, m : m + cols], (0, 0), 0.6)
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    u, v = (xx / (cols - 1) - 0.5) * 2, (yy / (rows - 1) - 0.5) * 2
    gx, gy = rng.uniform(-1, 1, 2)
    paper = np.float32(230) * (1 - np.float32(0.05) * (u * u + v * v))
    paper *= 1 + np.float32(0.02) * (gx * u + gy * v)
    ink = np.float32(45) + np.float32(18) * fractal_field(
        rng, (rows, cols), finest=max(16, rows / 8)
    )
    gray = ink + (paper - ink) * clean
    gray += np.float32(3.0) * rng.standard_normal((rows, cols), dtype=np.float32)
    moving = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    return reference, moving, matrix


def natural_pair(
    shape: Shape = (512, 512),
    seed: int = 1,
    *,
    angle_deg: float = 0.5,
    shift: tuple[float, float] = (4.0, -2.5),
    scale: float = 1.003,
    gain: float = 0.85,
    bias: float = 0.08,
    noise: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two views of a :func:`natural_image` scene related by a known small similarity.

    Parameters
    ----------
    shape : tuple of int
        ``(rows, cols)`` of both images.
    seed : int
        Seed of the scene and the noise.
    angle_deg, shift, scale
        Rotation (degrees) and scale about the image centre, then displacement
        ``(dx, dy)`` of the centre in pixels.
    gain, bias, noise : float
        Photometric change of the moving image: ``gain * I + bias`` plus
        Gaussian noise of this standard deviation, clipped to ``[0, 1]``.

    Returns
    -------
    reference, moving : ndarray of float32 in [0, 1]
    matrix : ndarray of shape (3, 3), float64
        Reference pixel ``(x, y, 1)`` → moving pixel.
    """
    rows, cols = check_shape(shape)
    rng = np.random.default_rng([seed, 1])  # noise: a stream apart from the scene's
    m = _margin((rows, cols), angle_deg, shift, scale)
    scene = natural_image((rows + 2 * m, cols + 2 * m), seed)
    matrix = similarity_matrix(angle_deg, shift, scale, ((cols - 1) / 2, (rows - 1) / 2))

    reference = np.ascontiguousarray(scene[m : m + rows, m : m + cols])
    # moving(y) = scene(W^-1 y + m), hence moving(W x) = scene(x + m) = reference(x).
    to_scene = translation_matrix(m, m) @ np.linalg.inv(matrix)
    moving = cv2.warpPerspective(
        scene, to_scene, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    moving = np.float32(gain) * moving + np.float32(bias)
    moving += np.float32(noise) * rng.standard_normal((rows, cols), dtype=np.float32)
    return reference, np.clip(moving, 0.0, 1.0), matrix
