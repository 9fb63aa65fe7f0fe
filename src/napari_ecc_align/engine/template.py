"""A reference image prepared once for aligning many images to it (:class:`Template`)."""

from __future__ import annotations

import threading

from .lazy import is_lazy
from .plane import CorrelationSample, pyramid
from .preprocess import as_array, normalise, shrink, split_channels
from .reference_side import CV_REMAP_LIMIT


class Template:
    """A reference image prepared once, to align many images to it.

    :func:`~napari_ecc_align.align` and :func:`~napari_ecc_align.iter_align`
    accept a ``Template`` wherever they take ``reference``. It keeps the
    normalised reference and its image pyramid, and each pyramid level keeps
    the reference side of ECC (the sample points, their Jacobians and moment
    matrices) the first time an alignment needs it, so every later alignment
    against the same template only does the moving image's half of the work.
    :func:`~napari_ecc_align.align_stack` uses one for a fixed reference frame.
    A ``Template`` is safe to share between threads.

    Parameters
    ----------
    reference : array_like
        The reference image, as for :func:`~napari_ecc_align.align`.
    mask : array_like of bool, optional
        True where a reference pixel counts (the ``reference_mask`` of
        :func:`~napari_ecc_align.align`, which cannot be passed as well).

    Attributes
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the reference.

    Notes
    -----
    ``python benchmarks/bench_template.py`` aligns 40 moving images of
    1024×1024 pixels (affine, default settings) to one reference: see the
    README's *Many images, one template* for the time per image with and
    without a ``Template``. The results are identical either way.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_ecc_align import Template, align
    >>> from napari_ecc_align.data import natural_image
    >>> scene = natural_image((300, 300), seed=0)
    >>> template = Template(scene[20:276, 20:276])
    >>> offsets = [(2, 1), (-3, 2), (1, -4)]  # (rows, cols) of each view
    >>> views = [scene[20 + dr : 276 + dr, 20 + dc : 276 + dc] for dr, dc in offsets]
    >>> [np.round(align(template, v, motion="translation").matrix[:2, 2], 2) for v in views]
    [array([-1., -2.]), array([-2.,  3.]), array([ 4., -1.])]
    """

    def __init__(self, reference, mask=None):
        self.array = as_array(reference, "reference", lazy=True)  # loaded only if it fits
        self.shape, _ = split_channels(self.array, "reference")
        self.mask = mask
        self._lock = threading.Lock()
        self._normalised: dict[int, tuple] = {}
        self._pyramids: dict[int, list] = {}
        self._samples: dict[tuple, CorrelationSample | None] = {}

    def __repr__(self) -> str:
        masked = ", masked" if self.mask is not None else ""
        return f"Template(shape={self.shape}, dtype={self.array.dtype}{masked})"

    def normalised(self, halvings: int = 0):
        """The reference as ECC works on it (see ``normalise``), halved ``halvings`` times."""
        with self._lock:
            if halvings not in self._normalised:
                arr, mask = self.array, self.mask
                if halvings:
                    arr, mask = shrink(arr, mask, halvings)
                elif is_lazy(arr):
                    arr = as_array(arr, "reference")
                self._normalised[halvings] = normalise(arr, "reference", mask, "reference_mask")
            return self._normalised[halvings]

    def pyramid(self, halvings: int, levels: int) -> list:
        """The first ``levels`` levels of the reference's pyramid (shared level objects)."""
        ref, valid = self.normalised(halvings)
        with self._lock:
            pyr = self._pyramids.get(halvings)
            if pyr is None or len(pyr) < levels:
                pyr = self._pyramids[halvings] = pyramid(ref, valid, levels)
            return pyr[:levels]

    def correlation_sample(self, halvings: int, mov_shape) -> CorrelationSample | None:
        """The pixels the reported correlations read (see ``CorrelationSample``), chosen
        once: a stack of frames against one template reads the same ones."""
        ref, valid = self.normalised(halvings)
        key = (halvings, max(mov_shape) >= CV_REMAP_LIMIT)
        with self._lock:
            if key not in self._samples:
                self._samples[key] = CorrelationSample.of(ref, valid, mov_shape)
            return self._samples[key]
