"""The one validator of the options shared by ``align``, ``align_stack``, ``batch_align``
and the command line: motion, criteria, ``ndim`` and ``spacing``, each mistake worded once.

:func:`check_options` checks everything an estimate takes; :func:`check_dimensions`
the ``ndim``/``spacing`` pair alone (for readers that let the files decide). The
command line rewords ``ndim=3`` as ``--ndim 3`` and so on
(:func:`napari_ecc_align.cli.messages.in_cli_terms`), so the words here are the
Python API's.
"""

from __future__ import annotations

import numpy as np

from .alignment import MOTIONS, VOLUME_MOTIONS, Alignment
from .geometry import project_to_motion
from .initialisation import SEARCHES
from .intensity import INTENSITY_MODES
from .landmarks import is_landmarks, landmark_start
from .preprocess import as_real_matrix
from .volume import VolumeGrid, check_spacing

# The start searches volumes offer (no Fourier–Mellin or features in 3D).
VOLUME_SEARCHES = VolumeGrid.searches()


def check_options(*, ndim=2, spacing=None, **criteria) -> dict:
    """Check the options of an estimate and return them normalised.

    Parameters
    ----------
    ndim : {2, 3}
        Images or volumes.
    spacing : (dz, dy, dx), optional
        Voxel size; volumes only.
    **criteria
        ``motion``, ``max_iterations``, ``eps``, ``gauss_filter_size``,
        ``pyramid_levels``, ``init``, as :func:`~napari_ecc_align.align` takes them
        (see :func:`validate_params`); ``init`` is passed through (matrices are checked
        against the images' dimension where they are used).

    Returns
    -------
    dict
        ``motion`` (lower case), ``max_iterations``, ``eps``, ``gauss_filter_size``,
        ``pyramid_levels``, ``init``, ``ndim`` and ``spacing`` (floats, or None).

    Raises
    ------
    TypeError, ValueError
        Naming the argument; one message per mistake.
    """
    ndim, spacing = check_dimensions(ndim, spacing)
    params = validate_params(**criteria)
    if ndim == 3:
        check_volume_motion(params["motion"])
    return {**params, "ndim": ndim, "spacing": spacing}


def check_dimensions(ndim, spacing, *, files_decide: bool = False):
    """``ndim`` and ``spacing`` checked together: ``(ndim, spacing as floats or None)``.

    Parameters
    ----------
    ndim : {2, 3} or None
        None only with ``files_decide`` (the files' metadata say which).
    spacing : (dz, dy, dx), optional
        Voxel size; not with ``ndim=2``.
    files_decide : bool
        Accept ``ndim=None``.

    Raises
    ------
    ValueError
        For any other ``ndim``, a spacing with ``ndim=2``, or a spacing that
        :func:`~napari_ecc_align.engine.check_spacing` refuses.
    """
    allowed = (2, 3, None) if files_decide else (2, 3)
    if isinstance(ndim, bool) or ndim not in allowed:
        choices = "2 (images) or 3 (volumes)"
        if files_decide:
            choices = "2 (images), 3 (volumes) or None (the files decide)"
        raise ValueError(f"ndim must be {choices}, got {ndim!r}")
    if spacing is None:
        return ndim, None
    if ndim == 2:
        raise ValueError(
            "spacing=(dz, dy, dx) is the voxel size of volumes; it goes with ndim=3, not ndim=2"
        )
    return ndim, check_spacing(spacing)


def initial_matrix(init, motion: str, *, ndim: int = 2, spacing=None):
    """The start an ``init`` that is no search names: ``(matrix, "identity" | "matrix" |
    "landmarks")``.

    Parameters
    ----------
    init : None, "identity", array_like, Alignment or (reference_points, moving_points)
        A 3×3 (or 2×3) matrix for images, a 4×4 (or 3×4) one for volumes, in the
        reference → moving convention (or an Alignment holding one, e.g. from
        ``load_transform``); or corresponding points, ``(row, col)`` or
        ``(z, y, x)``, fitted by :func:`~.landmarks.landmark_start`.
    motion : str
        The matrix is projected onto it.
    ndim : {2, 3}
        Images or volumes.
    spacing : (dz, dy, dx), optional
        A volume's checked voxel size: rigid is rigid in physical units.

    Returns
    -------
    tuple
        The 3×3 (4×4) float64 start and how it was chosen.

    Raises
    ------
    ValueError
        For another name (saying which searches there are), a matrix of the wrong shape,
        not finite or not invertible.
    TypeError
        For a complex or non-numeric matrix.
    """
    n = ndim + 1
    if init is None or (isinstance(init, str) and init == "identity"):
        return np.eye(n), "identity"
    if isinstance(init, Alignment):  # e.g. read by load_transform from another tool's file
        if init.ndim != ndim:
            raise ValueError(f"init is a {init.ndim}D alignment, but this estimate is {ndim}D")
        init = init.matrix
    if is_landmarks(init):  # (reference_points, moving_points): their least-squares fit
        matrix, _ = landmark_start(*init, motion, ndim=ndim, spacing=spacing)
        return project_to_motion(matrix, motion, spacing if ndim == 3 else None), "landmarks"
    volumes = " for volumes" if ndim == 3 else ""
    if isinstance(init, str):
        names = ("identity", *(SEARCHES if ndim == 2 else VOLUME_SEARCHES))
        raise ValueError(
            f"init must be one of {names}, None or a {n}x{n} matrix{volumes}, got {init!r}"
        )
    matrix = as_real_matrix(init, "init", f"a {n}x{n} matrix{volumes}")
    if matrix.shape == (ndim, n):
        matrix = np.vstack([matrix, np.eye(n)[-1]])
    if matrix.shape != (n, n):
        raise ValueError(
            f"init must be a {n}x{n} (or {ndim}x{n}) matrix{volumes}, got shape {matrix.shape}"
        )
    if not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < 1e-12:
        raise ValueError("init must be a finite, invertible matrix")
    return project_to_motion(matrix, motion, spacing if ndim == 3 else None), "matrix"


def check_volume_motion(motion: str) -> None:
    """Refuse a motion volumes do not have (the homography).

    Raises
    ------
    ValueError
        For ``"homography"``, naming the motions volumes take.
    """
    if motion == "homography":
        raise ValueError(
            f"motion='homography' is for 2D images only; volumes (ndim=3) take {VOLUME_MOTIONS}"
        )


def validate_params(
    *,
    motion="affine",
    max_iterations=100,
    eps=1e-6,
    gauss_filter_size=None,
    pyramid_levels=None,
    init="auto",
    intensity="auto",
    reference_mask=None,
    moving_mask=None,
) -> dict:
    """The estimate's criteria and motion, checked: what :func:`check_options` adds
    ``ndim`` and ``spacing`` to (the masks are checked against their images later).

    Returns
    -------
    dict
        ``motion``, ``max_iterations``, ``eps``, ``gauss_filter_size``,
        ``pyramid_levels``, ``init`` and ``intensity``.

    Raises
    ------
    TypeError, ValueError
        Naming the argument.
    """
    if not isinstance(motion, str):
        raise TypeError(f"motion must be a string, one of {MOTIONS}, got {type(motion).__name__}")
    motion = motion.lower()
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    max_iterations = _as_int(max_iterations, "max_iterations", minimum=1)
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)):
        raise TypeError(f"eps must be a number, got {type(eps).__name__}")
    eps = float(eps)
    if not np.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    if gauss_filter_size is not None:  # None: the per-level schedule (see smoothing_schedule)
        gauss_filter_size = _as_int(gauss_filter_size, "gauss_filter_size", minimum=0)
        if gauss_filter_size > 1 and gauss_filter_size % 2 == 0:
            raise ValueError(
                f"gauss_filter_size must be odd (or 0 to disable), got {gauss_filter_size}"
            )
        if gauss_filter_size > 31:
            raise ValueError(f"gauss_filter_size must be at most 31, got {gauss_filter_size}")
    if pyramid_levels is not None:
        pyramid_levels = _as_int(pyramid_levels, "pyramid_levels", minimum=1)
        if pyramid_levels > 16:
            raise ValueError(f"pyramid_levels must be at most 16, got {pyramid_levels}")
    if not isinstance(intensity, str):
        raise TypeError(
            f"intensity must be a string, one of {INTENSITY_MODES}, got {type(intensity).__name__}"
        )
    if intensity.lower() not in INTENSITY_MODES:
        raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
    return {
        "motion": motion,
        "max_iterations": max_iterations,
        "eps": eps,
        "gauss_filter_size": gauss_filter_size,
        "pyramid_levels": pyramid_levels,
        "init": init,
        "intensity": intensity.lower(),
    }


# The prefilter's default schedule (gauss_filter_size=None): this size on every pyramid
# level but the full-resolution one, which takes FINEST_KSIZE. Tuned on the real-data
# suite with the generated ones (bench_real.py, bench_align.py, bench_volume.py):
# 3 at full resolution brought ITK's PD slices from 0.046 to 0.033 px (median), the page
# from 0.0029 to 0.0025 px, T1/PD from 0.104 to 0.079 px, 1200x900 score pages from
# 0.0096 to 0.0080 px and full-resolution Colin27 from 0.0046 / 0.053 / 0.023 / 0.021 to
# 0.0045 / 0.051 / 0.020 / 0.015 voxel (rigid / 3x z / affine / sine remap); the noisy
# generated pairs lose a little (bench_align 1-4 MP: 0.0033 -> 0.0054 px). 0 at full
# resolution was better on some real pairs and far worse on noisy ones (0.018 px).
COARSE_KSIZE = 5
FINEST_KSIZE = 3


def smoothing_schedule(gauss_filter_size: int | None) -> tuple[int, int]:
    """``(ksize on coarse levels, ksize at full resolution)``: the user's size on every
    level, or for None the default schedule (5, then 3 at full resolution)."""
    if gauss_filter_size is None:
        return COARSE_KSIZE, FINEST_KSIZE
    return gauss_filter_size, gauss_filter_size


def _as_int(value, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
