"""The spectral estimators of the rough pose: phase correlation (images and volumes,
through ``numpy.fft.rfftn``) and Fourier–Mellin (images).

Both work on the images' Fourier transforms on a common padded grid, so both are
bounded here: the phase grid may hold only a small multiple of the two images'
pixels (:func:`check_phase_grid`), and Fourier–Mellin reads rotation and scale on
copies at most ``_SPECTRAL_SIDE`` pixels long and is skipped for images more elongated
than ``MAX_SPECTRAL_ASPECT`` (:class:`Skipped`, which ``init="auto"`` reports in
``init_method``). Matrices: reference (x, y[, z], 1) → moving, as everywhere.
"""

from __future__ import annotations

import functools
import itertools
import math

import cv2
import numpy as np
from scipy import ndimage

# Long side of the copies Fourier–Mellin works on (the small pyramid level's size).
_SPECTRAL_SIDE = 256
_PHASE_PEAKS = 3
# Fourier–Mellin reads rotation and scale from a square spectrum. Beyond this ratio of
# the long side to the short one a rotation of more than about 2 / ratio radians (14°
# at 8:1) leaves the strip no overlap with itself, and the padded square would hold
# ratio times more pixels than the image: the estimator is skipped.
MAX_SPECTRAL_ASPECT = 8
# A phase-correlation grid (the two images padded to a common shape) may hold this many
# times the pixels of both images together (more only when their shapes differ wildly,
# e.g. a tall and a wide strip, which no translation can overlap) ...
_PHASE_GRID_FACTOR = 4
# ... or this many pixels, whichever is more.
_PHASE_GRID_FLOOR = 512 * 512
# Window taper only along axes at least this long: a Hann window over 2 rows is zero.
_MIN_TAPER = 8


class NoEstimate(Exception):
    """An estimator found nothing usable (said in the final error message)."""


class Skipped(NoEstimate):
    """An estimator that means nothing (or would cost too much) for these shapes."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason} ({detail})")
        self.reason = reason


def aspect_ratio(*shapes) -> float:
    """The largest long-to-short side ratio of the given (rows, cols, ...) shapes.

    Parameters
    ----------
    *shapes : tuple of int
        One or more image or volume shapes. A shortest side of 0 counts as 1 (no
        division by zero).

    Returns
    -------
    float
        The ratio of the longest side to the shortest, for the most elongated shape.

    Raises
    ------
    ValueError
        If no shape (or an empty one) is given.

    Examples
    --------
    >>> from napari_ecc_align.engine.spectral import aspect_ratio
    >>> aspect_ratio((100, 200), (300, 100))
    3.0
    """
    return max(max(shape) / max(min(shape), 1) for shape in shapes)


def check_phase_grid(ref_shape, mov_shape) -> tuple[int, ...]:
    """The common padded grid of a phase correlation of two shapes, or ``Skipped``.

    The grid is the larger of the two lengths along each axis. It may hold at most
    ``_PHASE_GRID_FACTOR`` (4) times the pixels of both images together, or
    ``_PHASE_GRID_FLOOR`` (512²) pixels if that is more; beyond that the shapes are
    too different for any translation to overlap them (a tall and a wide strip), and
    padding them would cost memory for nothing.

    Parameters
    ----------
    ref_shape, mov_shape : tuple of int
        The shapes of the two images (or volumes), with as many axes each.

    Returns
    -------
    tuple of int
        The grid's shape.

    Raises
    ------
    Skipped
        If the grid would hold too many pixels; its reason is
        ``"image shapes too different"``.
    ValueError
        If the two shapes have different numbers of axes.

    Examples
    --------
    >>> from napari_ecc_align.engine.spectral import check_phase_grid
    >>> check_phase_grid((100, 200), (150, 120))
    (150, 200)
    """
    grid = tuple(max(a, b) for a, b in zip(ref_shape, mov_shape, strict=True))
    pixels = math.prod(grid)
    inputs = math.prod(ref_shape) + math.prod(mov_shape)
    if pixels > max(_PHASE_GRID_FACTOR * inputs, _PHASE_GRID_FLOOR):
        raise Skipped(
            "image shapes too different",
            f"{tuple(ref_shape)} and {tuple(mov_shape)} pad to a {pixels}-pixel grid",
        )
    return grid


def _window(shape) -> np.ndarray:
    """A Hann window (float32) of ``shape``, tapering only axes of at least
    ``_MIN_TAPER`` pixels (a Hann window over 2 rows is zero): the ``ndim``-th root of
    the product of the axes' tapers, as ``cv2.createHanningWindow`` makes it in 2D
    (which it is, for images: the fast call where it exists)."""
    if len(shape) == 2 and min(shape) >= _MIN_TAPER:
        return cv2.createHanningWindow(shape[::-1], cv2.CV_32F)
    window = np.ones((), np.float64)
    for n in shape:
        taper = np.hanning(n) if n >= _MIN_TAPER else np.ones(n)
        window = np.multiply.outer(window, taper ** (1 / len(shape)))
    return window.astype(np.float32)


def _spectrum(image: np.ndarray, shape) -> np.ndarray:
    """Windowed, mean-padded real FFT on a common ``shape``."""
    padded = np.full(shape, float(image.mean()), np.float32)
    padded[tuple(slice(0, n) for n in image.shape)] = image
    padded -= padded.mean()
    return np.fft.rfftn(padded * _window(shape))


# The correlation surface is smoothed with this kernel along every axis (wrapping, as
# the surface does), so that a peak split between two pixels counts as one.
_SMOOTH = np.array([0.25, 0.5, 0.25])


def phase_surface(ref: np.ndarray, mov: np.ndarray) -> np.ndarray:
    """The phase-correlation surface of two images (or volumes) on a common padded grid.

    Both are padded with their mean to the grid of :func:`check_phase_grid`, tapered by
    a Hann window and Fourier transformed (``numpy.fft.rfftn``); the normalised
    cross-power spectrum transformed back is the surface, smoothed by ``[1, 2, 1] / 4``
    along every axis (wrapping around) so that a peak split between two pixels counts
    as one.

    Parameters
    ----------
    ref, mov : numpy.ndarray
        The reference and moving images (2D) or volumes (3D), real, with as many axes.

    Returns
    -------
    numpy.ndarray
        float32 surface of the grid's shape; its peak lies at the shift (in array
        order) with ``mov(x + d) ≈ ref(x)``, modulo the grid (wrapped around).

    Raises
    ------
    Skipped
        If the shapes are too different for a phase correlation
        (:func:`check_phase_grid`).
    """
    shape = check_phase_grid(ref.shape, mov.shape)
    cross = _spectrum(mov, shape) * np.conj(_spectrum(ref, shape))
    cross /= np.abs(cross) + 1e-12
    surface = np.fft.irfftn(cross, s=shape, axes=tuple(range(len(shape)))).astype(np.float32)
    for axis in range(surface.ndim):
        surface = ndimage.correlate1d(surface, _SMOOTH, axis=axis, mode="wrap")
    return surface


def shift_peaks(ref: np.ndarray, mov: np.ndarray, peaks: int = _PHASE_PEAKS):
    """Translations ``(dx, dy[, dz])`` with mov(x + d) ≈ ref(x), from the strongest peaks.

    Each peak of :func:`phase_surface` is located to a fraction of a pixel (the
    centroid of its 3×3(×3) neighbourhood) and its 7×7(×7) neighbourhood is then
    cleared before the next one is sought. The surface wraps around, so a peak is read
    every way along each axis: at ``f`` and at ``f - n`` (4 readings in 2D, 8 in 3D).

    Parameters
    ----------
    ref, mov : numpy.ndarray
        The reference and moving images (or volumes), real, with as many axes.
    peaks : int, optional
        How many peaks to read (default 3).

    Returns
    -------
    list of tuple of float
        ``2**ndim * peaks`` shifts, x first: the readings of the strongest peak, then
        of the next, and so on.

    Raises
    ------
    Skipped
        If the shapes are too different for a phase correlation
        (:func:`check_phase_grid`).
    """
    surface = phase_surface(ref, mov)
    shape = surface.shape
    shifts = []
    for _ in range(peaks):
        peak = np.unravel_index(int(np.argmax(surface)), shape)
        around = [[(p + k) % n for k in (-1, 0, 1)] for p, n in zip(peak, shape, strict=True)]
        patch = np.clip(surface[np.ix_(*around)], 0, None)
        total = patch.sum() or 1.0
        fine = []
        for axis, p in enumerate(peak):  # sub-pixel: the centroid of the neighbourhood
            others = tuple(a for a in range(len(shape)) if a != axis)
            fine.append(p + float((patch.sum(axis=others) * [-1, 0, 1]).sum() / total))
        readings = [(f, f - n) for f, n in zip(fine, shape, strict=True)]
        shifts.extend(tuple(reading[::-1]) for reading in itertools.product(*readings))
        cleared = [[(p + k) % n for k in range(-3, 4)] for p, n in zip(peak, shape, strict=True)]
        surface[np.ix_(*cleared)] = -np.inf
    return shifts


def phase_candidates(ref, mov, peaks: int = _PHASE_PEAKS) -> list[np.ndarray]:
    """Translation candidates reference → moving from phase correlation, strongest first.

    The shifts of :func:`shift_peaks` that leave at least a tenth of the reference
    overlapping the moving image, as matrices.

    Parameters
    ----------
    ref, mov : numpy.ndarray
        The reference and moving images (2D) or volumes (3D), real.
    peaks : int, optional
        How many peaks to read (default 3).

    Returns
    -------
    list of numpy.ndarray
        3×3 (4×4) float64 translation matrices taking reference ``(x, y[, z], 1)`` to
        moving positions; empty when no shift leaves enough overlap.

    Raises
    ------
    Skipped
        If the shapes are too different for a phase correlation
        (:func:`check_phase_grid`).
    """
    shifts = shift_peaks(ref, mov, peaks)
    return [_translation(*shift) for shift in _plausible(shifts, ref, mov)]


def _plausible(shifts, ref, mov):
    """Keep shifts (x first) that leave at least a tenth of the reference overlapping."""
    keep = []
    for shift in shifts:
        overlap = 1.0
        for r, m, d in zip(ref.shape, mov.shape, shift[::-1], strict=True):
            overlap *= max(0.0, min(r, m - d) - max(0, -d))
        if overlap >= 0.1 * ref.size:
            keep.append(shift)
    return keep


def _translation(*shift) -> np.ndarray:
    """The translation by ``shift`` (x first) as a homogeneous matrix."""
    matrix = np.eye(len(shift) + 1)
    matrix[:-1, -1] = shift
    return matrix


# ------------------------------------------------------------------------------- Fourier–Mellin
def _log_polar_magnitude(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    # The window is the image's own, so it tapers the image's edges whatever its size: one
    # window over the padded square left a small reference (a crop of the moving image)
    # with hard edges, whose spectrum then pulled the rotation towards 0° or 90°.
    rows, cols = image.shape
    padded = np.zeros((size, size), np.float32)
    padded[:rows, :cols] = (image - image.mean()) * _window((rows, cols))
    magnitude = np.abs(np.fft.fftshift(np.fft.fft2(padded))).astype(np.float32)
    magnitude = np.log1p(magnitude)
    # Emphasise mid frequencies: the DC peak and the noise floor carry no rotation.
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - size / 2
    radius = np.hypot(xx, yy) / (size / 2)
    magnitude *= np.clip(radius, 0, 1) * (1 - np.clip(radius, 0, 1)) * 4
    max_radius = size / 2
    return log_polar(magnitude, max_radius), max_radius


def log_polar(image: np.ndarray, max_radius: float) -> np.ndarray:
    """Bilinear log-polar resampling of a square image about its centre.

    Row k is the angle 360° k / size, column j the radius ``max_radius ** (j / size)``;
    outside the image is 0. ``cv2.remap`` on our own sampling grid rather than
    ``cv2.warpPolar``, whose output differs between OpenCV 4 and 5 enough to move the
    correlation peak: with it, Fourier–Mellin found the rotation of 30 of 45 seeded
    pairs under OpenCV 4.8 and 45 under 5.0; with this grid, 45 of 45 under both.

    Parameters
    ----------
    image : numpy.ndarray
        A square 2D image, ``size × size``; converted to float32.
    max_radius : float
        The radial scale: column j samples the radius ``max_radius ** (j / size)``
        pixels from the centre.

    Returns
    -------
    numpy.ndarray
        float32 array of ``size × size``: rows are angles, columns log radii.
    """
    map_x, map_y = _log_polar_grid(image.shape[0], float(max_radius))
    return cv2.remap(
        np.asarray(image, np.float32), map_x, map_y, cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip


@functools.lru_cache(maxsize=2)
def _log_polar_grid(size: int, max_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each log-polar sample lies in the image: the same for every image of one size."""
    radius = np.exp(np.arange(size) * (math.log(max_radius) / size))
    angle = np.arange(size) * (2 * math.pi / size)
    map_x = (size / 2 + np.outer(np.cos(angle), radius)).astype(np.float32)
    map_y = (size / 2 + np.outer(np.sin(angle), radius)).astype(np.float32)
    return map_x, map_y


def fourier_mellin(ref, mov) -> list[np.ndarray]:
    """Similarity candidates (rotation, scale, then translation) reference → moving.

    Rotation and scale are read on copies at most ``_SPECTRAL_SIDE`` pixels long (the
    pyramid level normally is; a shallow pyramid, as a narrow strip has, is not), so
    the padded square never exceeds ``_SPECTRAL_SIDE``² whatever the input. Images more
    elongated than ``MAX_SPECTRAL_ASPECT`` raise ``Skipped``.

    The rotation is read modulo 180°, so both readings (θ and θ + 180°) are tried;
    for each, the moving image is turned upright and phase correlation gives up to
    four translations that leave at least a tenth of the reference overlapping.

    Parameters
    ----------
    ref, mov : numpy.ndarray
        The reference and moving images, 2D, real (a small pyramid level).

    Returns
    -------
    list of numpy.ndarray
        At least one 3x3 float64 similarity matrix taking reference ``(x, y, 1)``
        to moving positions: those of θ first, then those of θ + 180°.

    Raises
    ------
    Skipped
        If either image is more elongated than ``MAX_SPECTRAL_ASPECT`` (8:1).
    NoEstimate
        If the log-polar spectra have no correlation peak, the scale read is not
        between 0.25 and 4, or no translation leaves enough overlap.
    """
    aspect = aspect_ratio(ref.shape, mov.shape)
    if aspect > MAX_SPECTRAL_ASPECT:
        raise Skipped(
            f"aspect ratio {aspect:.0f}:1",
            f"over {MAX_SPECTRAL_ASPECT}:1, rotation and scale cannot be read from the spectrum",
        )
    factor = min(1.0, _SPECTRAL_SIDE / max(*ref.shape, *mov.shape))
    spectral = [_resized(image, factor) for image in (ref, mov)]
    size = int(2 ** math.ceil(math.log2(max(*spectral[0].shape, *spectral[1].shape))))
    polar_ref, max_radius = _log_polar_magnitude(spectral[0], size)
    polar_mov, _ = _log_polar_magnitude(spectral[1], size)
    (d_rho, d_phi), response = cv2.phaseCorrelate(polar_ref, polar_mov)
    if not np.isfinite(response) or response <= 0:
        raise NoEstimate("no log-polar correlation peak")
    angle = 360.0 * d_phi / size  # rows of the log-polar image span 360°
    scale = math.exp(-d_rho * math.log(max_radius) / size)  # the spectrum scales by 1/s
    if not 0.25 < scale < 4:
        raise NoEstimate(f"implausible scale {scale:.2f}")
    out = []
    center = ((mov.shape[1] - 1) / 2, (mov.shape[0] - 1) / 2)
    for theta in (angle, angle + 180.0):
        # A moving image rotated by theta and scaled by s about its centre: undo it,
        # then phase correlation finds the remaining translation.
        linear = _rotation_scale(theta, scale)
        about = _about(linear, center)
        upright = cv2.warpPerspective(
            mov, about, (ref.shape[1], ref.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        )
        for dx, dy in _plausible(shift_peaks(ref, upright, peaks=1), ref, upright)[:4]:
            out.append(about @ _translation(dx, dy))
    if not out:
        raise NoEstimate("no overlapping translation after rotation")
    return out


def _resized(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` scaled by ``factor`` <= 1 (area averaging); itself when 1."""
    if factor >= 1.0:
        return image
    rows, cols = (max(2, round(n * factor)) for n in image.shape)
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)


def _rotation_scale(angle_deg: float, scale: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array(
        [
            [scale * math.cos(a), -scale * math.sin(a), 0],
            [scale * math.sin(a), scale * math.cos(a), 0],
            [0, 0, 1.0],
        ]
    )


def _about(linear: np.ndarray, center) -> np.ndarray:
    cx, cy = center
    return _translation(cx, cy) @ linear @ _translation(-cx, -cy)
