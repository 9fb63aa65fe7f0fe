"""Lazy 2D inputs (dask and zarr arrays): halved chunk by chunk, read tile by tile.

An image beyond the working budget (see :mod:`.image_pair`) need not be loaded: its
working copy is made by halving it with ``cv2.pyrDown`` region by region (see
:func:`halved_lazily`), and the full-resolution refinement reads tiles of it (see
:mod:`.full_resolution`). Smaller lazy images are loaded whole: they fit.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Output blocks of this many rows and columns (inputs 2**halvings times larger).
_BLOCK = 256
_PYRDOWN_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}


def is_lazy(image) -> bool:
    """Whether ``image`` is an array read on demand (dask, zarr), not a numpy array."""
    if isinstance(image, np.ndarray):
        return False
    return all(hasattr(image, name) for name in ("shape", "ndim", "dtype", "chunks", "__getitem__"))


class Multiscale:
    """An image or volume given as its pyramid, finest level first (napari's multiscale
    ``layer.data``): levels of any array type. A 2D image's levels halve its rows and
    columns each (``ceil`` or ``floor`` of the half), as ``cv2.pyrDown`` or 2 x 2 means
    make them; a volume's halve y and x each and z at most as often (an anisotropic
    volume keeps its planes on the first levels).

    It stands for its finest level (shape, dtype, slicing, ``np.asarray``); the estimate
    takes a stored level where it would otherwise halve the finest one.
    """

    def __init__(self, levels, name: str, ndim: int = 2):
        self.levels = list(levels)
        first = tuple(self.levels[0].shape)
        k = halving_levels(self.levels, ndim)
        if k < len(self.levels):
            rule = "each half the size of the one before" if ndim == 2 else (
                "y and x halved on each, z halved at most as often")  # fmt: skip
            raise ValueError(
                f"{name} is a list of pyramid levels, finest first, {rule}; level {k} has "
                f"shape {tuple(self.levels[k].shape)} after {first}"
            )
        self.shape, self.dtype = first, np.dtype(self.levels[0].dtype)
        self.ndim, self.spatial = len(first), ndim
        self.chunks = getattr(self.levels[0], "chunks", None)

    def __getitem__(self, key):
        return self.levels[0][key]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.levels[0], dtype=dtype)

    def level(self, halvings: int):
        """The stored level ``halvings`` steps down, or None."""
        return self.levels[halvings] if halvings < len(self.levels) else None

    def factors(self) -> list[tuple[int, ...]]:
        """Each level's downsampling per spatial axis (powers of two), level 0 first."""
        first = self.levels[0].shape[: self.spatial]
        return [tuple(_power_of_two(n / max(m, 1)) for n, m in
                      zip(first, level.shape[: self.spatial], strict=True))
                for level in self.levels]  # fmt: skip


def _power_of_two(ratio: float) -> int:
    return 2 ** max(0, int(round(math.log2(ratio))))


def _halves(side: int, n: int, k: int) -> bool:
    """Whether ``side`` is ``n`` halved ``k`` times (``ceil`` or ``floor`` of each half)."""
    return side in (halved_side(n, k), n // 2**k)


def halving_levels(levels, ndim: int = 2) -> int:
    """How many of ``levels``, from the first, make a pyramid :class:`Multiscale` takes:
    level ``k`` has the first one's rows and columns halved ``k`` times (``ceil`` or
    ``floor`` of each half) and the same trailing axes; with ``ndim`` 3 the first axis
    (z) is halved too, at most as often and never less than on the level before."""
    first = tuple(levels[0].shape)
    plane = slice(0, 2) if ndim == 2 else slice(1, 3)
    z_halvings = 0
    for k, level in enumerate(levels[1:], start=1):
        shape = tuple(level.shape)
        if len(shape) != len(first) or shape[ndim:] != first[ndim:]:
            return k
        halves = all(_halves(side, n, k) for side, n in zip(shape[plane], first[plane],
                                                             strict=True))  # fmt: skip
        if ndim == 3:
            step = next((j for j in (z_halvings, z_halvings + 1)
                         if j <= k and _halves(shape[0], first[0], j)), None)  # fmt: skip
            if step is None:
                return k
            z_halvings = step
        if not halves:
            return k
    return len(levels)


def as_multiscale(image, name: str, ndim: int | None = None):
    """``image`` as a :class:`Multiscale` if it is a list or tuple of two or more
    arrays (a pyramid), else None. ``ndim`` None: an image pyramid if its levels halve
    as one, else a volume pyramid if they halve as one."""
    if not isinstance(image, (list, tuple)) or len(image) < 2:
        return None
    if not all(hasattr(level, "shape") and len(level.shape) >= 2 for level in image):
        return None
    if tuple(image[1].shape) == tuple(image[0].shape):  # same-size images: no pyramid
        return None
    if ndim is None:
        volume = len(image[0].shape) >= 3 and halving_levels(image, 3) == len(image)
        ndim = 3 if volume and halving_levels(image, 2) < len(image) else 2
    return Multiscale(image, name, ndim)


def halved_lazily(image, halvings: int) -> np.ndarray:
    """``image`` (2D, or 2D with up to 4 channels last) halved ``halvings`` times by
    ``cv2.pyrDown``, read block by block: the array :func:`~.preprocess.shrink` makes of
    the loaded image (8/16-bit and float64 to the bit; float32 within one unit in the last
    place at block seams, where OpenCV's vector loops end differently; other dtypes are
    decimated, as there).

    Each block of the output is made from the input region it covers plus
    ``2 * 2**halvings`` pixels of context on every inner side (each level's kernel reads
    2 pixels, and the band its edge spoils stays within 2 pixels), halved all the way,
    and trimmed; at the image's edges pyrDown's own border rule applies as it would to
    the whole image. Blocks run one after the other: a dask graph of the same work held
    far more of the input at once (0.3 GB of a 0.5 GB pair).
    """
    if isinstance(image, Multiscale):
        stored = image.level(halvings)
        if stored is not None:
            return np.ascontiguousarray(np.asarray(stored))
        image = image.levels[0]
    factor = 2**halvings
    if np.dtype(image.dtype) not in _PYRDOWN_DTYPES:  # bool, int32, ...: decimated, as shrink does
        return np.ascontiguousarray(np.asarray(image[::factor, ::factor]))
    block, context = _BLOCK * factor, 2 * factor
    rows, cols = image.shape[:2]
    out_rows, out_cols = halved_side(rows, halvings), halved_side(cols, halvings)
    out = None
    for y0 in range(0, rows, block):
        for x0 in range(0, cols, block):
            top, left = min(context, y0), min(context, x0)
            region = image[y0 - top : min(rows, y0 + block + context),
                           x0 - left : min(cols, x0 + block + context)]  # fmt: skip
            part = np.ascontiguousarray(np.asarray(region))
            for _ in range(halvings):
                part = cv2.pyrDown(part)
            if out is None:
                out = np.empty((out_rows, out_cols) + part.shape[2:], part.dtype)
            oy, ox = y0 // factor, x0 // factor
            height = min(out_rows, oy + block // factor) - oy
            width = min(out_cols, ox + block // factor) - ox
            top, left = top // factor, left // factor
            out[oy : oy + height, ox : ox + width] = part[top : top + height, left : left + width]
    return out


def halved_side(n: int, halvings: int) -> int:
    """A side of ``n`` after ``halvings`` times ``cv2.pyrDown`` (``ceil(n / 2)`` each)."""
    for _ in range(halvings):
        n = (n + 1) // 2
    return n


def decimated(mask, halvings: int) -> np.ndarray:
    """Every ``2**halvings``-th row and column of a (possibly lazy) mask, as numpy."""
    step = 2**halvings
    return np.ascontiguousarray(np.asarray(mask[::step, ::step]))
