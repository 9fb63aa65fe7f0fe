"""What differs between images and volumes, behind one small interface.

The estimate is written once for any dimensionality: the level loop and one ECC level
(:mod:`.ecc`), the stages (:mod:`.levels`), the start search (:mod:`.initialisation`),
the finishing rules (:mod:`.finishing`) and the driver (:mod:`.estimate`). They reach
the pixels (voxels) only through a :class:`Grid`: :class:`~.plane.PlaneGrid` for 2D
images (OpenCV's fast 2D calls), :class:`~.volume.VolumeGrid` for 3D volumes (an
anisotropy-aware pyramid, ``scipy.ndimage`` sampling, a physical-unit Jacobian).

Both work on :class:`Level`\\ s, one per pyramid level.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Level:
    """One pyramid level of one image or volume."""

    # float32, unblurred; a volume's level 0 is blurred in place by the first ECC run on it
    # (the search's too, when it searches on level 0), see VolumeGrid.
    image: np.ndarray
    valid: np.ndarray | None  # bool, None = all valid
    # The reference side of ECC on this level (samples, Jacobians), filled on first
    # use: a pyramid kept for many moving images (a stack) computes it once.
    memo: dict = field(default_factory=dict, repr=False, compare=False)


class Grid(abc.ABC):
    """The per-dimensionality half of an estimate, for one pair and one prefilter size.

    Attributes
    ----------
    ndim : int
        2 (images) or 3 (volumes); matrices are ``(ndim + 1) × (ndim + 1)``.
    noun : str
        ``"image"`` or ``"volume"``, for messages.
    scene : str
        What both show, for messages: ``"scene"`` or ``"sample"``.
    motions : tuple of str
        The motion models offered.
    estimators : tuple of str
        The start estimators offered besides the identity, cheapest first.
    search_side : int
        The start search runs on the finest level at most this long on every axis.
    phase_peaks : int
        Phase-correlation peaks read (each with its ``2**ndim`` wrap-around readings).
    other_starts : str
        What to suggest when a named estimator cannot run on the pair.
    margin : int
        Pixels (voxels) kept from every edge: the prefilter reflects the image there.
    blurs_level0_in_place : bool
        Whether ECC on level 0 overwrites the level's plain image with its prefiltered
        one (volumes: a copy would be the memory peak).
    """

    ndim: int
    noun: str
    scene: str
    motions: tuple[str, ...]
    estimators: tuple[str, ...]
    search_side: int
    phase_peaks: int
    other_starts: str
    margin: int
    blurs_level0_in_place: bool = False

    @abc.abstractmethod
    def pyramid(self, image: np.ndarray, valid: np.ndarray | None, levels: int) -> list[Level]:
        """The Gaussian pyramid, ``levels`` deep, of a normalised image (volume) and its
        mask; a level-k pixel sits exactly at its index times the factors on level 0."""

    @abc.abstractmethod
    def factors(self, level: int):
        """The downsampling of ``level`` for :func:`~.geometry.to_level`: an int ``k``
        (halved ``k`` times on every axis) or per-axis factors in array order."""

    @abc.abstractmethod
    def samples(self, ref: Level, motion: str, level: int, seeds):
        """``(samples, chosen)``: the reference side of ECC on ``ref`` (an object with
        ``n``, ``n_params``, ``sample_moving`` and ``update``, see
        :class:`~.reference_side.Samples`) and the sample points that seed the next
        finer level (None: unseeded). Raises :class:`~.structure.NoStructure` when the
        level cannot fix ``motion``."""

    @abc.abstractmethod
    def probe(self, ref: Level, level: int) -> None:
        """Build ``ref``'s reference side for a translation without changing the level's
        image; raises :class:`~.structure.NoStructure` when not even that is fixed (the
        automatic depth leaves such coarsest levels out)."""

    @classmethod
    def searches(cls) -> tuple[str, ...]:
        """The ``init`` names that start a search: ``"auto"`` and the estimators."""
        return ("auto", *cls.estimators)

    @abc.abstractmethod
    def moving(self, mov: Level, level: int):
        """``(image, usable)``: the prefiltered moving level and where it may be sampled
        (None: everywhere)."""

    @abc.abstractmethod
    def normaliser(self, shape, level: int) -> tuple[np.ndarray, np.ndarray]:
        """N and N⁻¹: pixel coordinates of ``level`` (of ``shape``) → the Jacobian's
        normalised frame."""

    @abc.abstractmethod
    def delta_matrix(self, motion: str, p) -> np.ndarray:
        """The warp (normalised coordinates) of the parameter vector ``p``."""

    @abc.abstractmethod
    def score(self, ref: Level, mov: Level, matrix) -> float:
        """The correlation of two levels at ``matrix`` (level coordinates), NaN without
        overlap: how the start search ranks raw candidates."""

    @abc.abstractmethod
    def paired_values(self, ref: Level, mov: Level, matrix, limit: int):
        """``(reference values, moving values)``, float64: a regular subsample of at most
        about ``limit`` reference pixels (voxels) of the overlap at ``matrix`` (level
        coordinates) and the moving level's values there (linear interpolation)."""

    @abc.abstractmethod
    def project(self, matrix, motion: str, level: int) -> np.ndarray:
        """``matrix`` (in ``level``'s coordinates) projected onto ``motion`` (for volumes
        rigid in physical units)."""

    def level_done(self, ref_pyr: list, mov_pyr: list, level: int, release: bool) -> None:
        """Called once nothing runs on ``level`` again in this pass; ``release``: the
        estimate's last pass over the pyramids. Default: keep everything (a reference
        pyramid may serve a whole stack)."""
        return None
