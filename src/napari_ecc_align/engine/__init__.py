"""The ECC engine: two 2D images or two 3D volumes in, an :class:`Alignment` out.
No Qt, no napari, no image file formats.

The modules, in the order data flows through them:

- :mod:`.estimate` — :func:`align` / :func:`iter_align`: the driver, a handful of steps
  written once for images and volumes (prepare the pair, find the start, run the
  pyramid, apply the finishing rules, check the result);
- :mod:`.image_pair`, :mod:`.volume_pair` — two images (two volumes) prepared for an
  estimate: working copies, pyramids and their depth (:func:`auto_levels`), the
  correlations; images add bilevel detection and the halved working copy of huge images,
  volumes their memory-saving release of the pyramids;
- :mod:`.grid` — the one interface behind which images and volumes differ
  (:class:`~.grid.Grid`: pyramid factors, sample points, moving-image sampling,
  normaliser, motions, start estimators) and the pyramid :class:`~.grid.Level`;
- :mod:`.plane` — the 2D grid on OpenCV's fast calls, the ``cv2.pyrDown`` pyramid and
  the full-resolution correlation; :mod:`.reference_side` — a 2D level's sample points,
  Jacobians and moment matrices, computed once per level, and the per-iteration sums;
- :mod:`.volume` — the 3D grid, normalisation, the anisotropic pyramid (voxel
  ``spacing``), the prefilter and the correlation; :mod:`.volume_samples` — a volume
  level's sample voxels and Jacobian (the moment algebra is the 2D one);
- :mod:`.ecc` — one inverse-compositional ECC level and its iterations, and the
  coarse-to-fine loop, for any grid; :mod:`.levels` — the staged motions and
  tolerances; :mod:`.structure` — what a level without structure does;
- :mod:`.initialisation` — the start search and its ranking on a small level (phase
  correlation for both; Fourier–Mellin and features for images);
- :mod:`.spectral` — n-D phase correlation and Fourier–Mellin on bounded padded grids;
- :mod:`.finishing` — the :class:`~.finishing.Pair` interface, second opinions for
  ``init="auto"`` (runner-up and identity finishing) and the checks on every estimate;
- :mod:`.intensity` — multimodal pairs: ECC on intensity-mapped images, level by level;
- :mod:`.bilevel` — telling a binarised (bilevel) image apart, and its polarity;
- :mod:`.preprocess` — validation, dtype/channel handling, float32 luminance and masks;
- :mod:`.template` — :class:`Template`, a 2D reference prepared once for many images;
- :mod:`.alignment` — the result type, its matrix convention (2D and 3D) and
  serialisation, and the error :class:`AlignmentError`;
- :mod:`.json_input` — reading transform JSON that may be hostile, field by field;
- :mod:`.limits` — the pixel budget for everything read, loaded or allocated;
- :mod:`.geometry` — the homogeneous-matrix geometry of images and volumes: corners,
  corner shift and displacement, level scaling, projection onto a motion;
- :mod:`.steps` — how many progress steps an estimate will report, from the shapes;
- :mod:`.options` — the one validator of the options every caller shares;
- :mod:`.temporary` — the temporary files atomic writes use, and their owner-tagged names;
- :mod:`.sources` — images given as a source (an OME-Zarr image, by path or opened) and
  the openers the ``io`` package registers for them;
- :mod:`.input_files` — opening input files safely (regular files only, clear errors);
- :mod:`.warping` — :func:`warp`, resampling an image or volume onto the reference grid;
- :mod:`.exact` — integer fill values and 64-bit integers kept exact through a warp;
- :mod:`.difference` — :func:`difference` images, plain or normalised.

The facade: the other subpackages (``stack``, ``io``, ``batch``, ``cli``, ``plugin``,
``data``) and the package's top level import from ``napari_ecc_align.engine`` only,
never from the modules above, which are the engine's private layout (the architecture
test enforces this); users import from :mod:`napari_ecc_align`. The names in
``__all__`` are the facade:

- estimating: :func:`align`, :func:`iter_align` and its :class:`Progress`,
  :class:`Template`, :func:`auto_levels`, :func:`initial_matrix`, :data:`SEARCHES`
  (the ``init`` searches), :func:`expected_progress_steps` (for progress bars);
- the options, checked once for every caller (:mod:`.options`): :func:`check_options`,
  :func:`check_dimensions` (``ndim`` and ``spacing``), :func:`validate_params`,
  :func:`check_volume_motion`;
- the result: :class:`Alignment`, :class:`AlignmentError`, :data:`MOTIONS`,
  :data:`INTENSITY_MODES` (``align``'s ``intensity`` values),
  :data:`VOLUME_MOTIONS`, :func:`project_to_motion`, :func:`project_volume`,
  :func:`landmark_start` (the least-squares start of ``init=(points, points)``),
  :func:`corner_displacement`, :func:`grid_corners`, :func:`swap_axes` (between
  (x, y[, z]) and array order), :func:`check_spacing`;
- applying it: :func:`warp`, :func:`difference`, :func:`default_difference_mode`,
  :data:`NORMALIZED_FULL_SCALE`;
- images: :func:`luminance`, :func:`as_shape`, :func:`halving_levels` (which levels of
  a list make a pyramid the engine takes); sources: :func:`register_opener`,
  :func:`as_source`, :func:`resolve_pair`, :func:`spacings_agree` (the one test of two
  voxel sizes);
- the pixel budget: :func:`max_pixels`, :func:`check_pixels`, :class:`PixelBudgetError`,
  :data:`DEFAULT_MAX_PIXELS`, :data:`ENV_VAR` (its environment variable's name);
- files: :func:`open_input`, :func:`check_input_file`, ``PathLike``, :func:`read_json`,
  :func:`read_text_file`
  and its field checks (:func:`number_field`, :func:`shape_field`, :func:`whole_field`),
  :func:`write_text_atomic`, :func:`create_temporary` (the temporary file every atomic
  write starts from), and the temporary-file owners (:func:`new_owner`, :func:`is_owner`,
  :func:`temporary_owner`, :func:`temporary_name`).

Everything here is loaded by ``import napari_ecc_align`` anyway, so importing it all at
once costs nothing extra.
"""

from .alignment import MOTIONS, VOLUME_MOTIONS, Alignment, AlignmentError, write_text_atomic
from .difference import NORMALIZED_FULL_SCALE, default_difference_mode, difference
from .estimate import Progress, align, iter_align
from .geometry import corner_displacement, grid_corners, project_to_motion, swap_axes
from .image_pair import auto_levels
from .initialisation import SEARCHES
from .input_files import PathLike, check_input_file, open_input
from .intensity import INTENSITY_MODES
from .json_input import number_field, read_json, read_text_file, shape_field, whole_field
from .landmarks import landmark_start
from .lazy import halving_levels
from .limits import DEFAULT_MAX_PIXELS, ENV_VAR, PixelBudgetError, check_pixels, max_pixels
from .options import (
    check_dimensions,
    check_options,
    check_volume_motion,
    initial_matrix,
    validate_params,
)
from .preprocess import as_shape, luminance
from .sources import as_source, register_opener, resolve_pair, spacings_agree
from .steps import expected_progress_steps
from .template import Template
from .temporary import create_temporary, is_owner, new_owner, temporary_name, temporary_owner
from .volume import check_spacing, project_volume
from .warping import warp

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ENV_VAR",
    "INTENSITY_MODES",
    "MOTIONS",
    "NORMALIZED_FULL_SCALE",
    "SEARCHES",
    "VOLUME_MOTIONS",
    "Alignment",
    "AlignmentError",
    "PathLike",
    "PixelBudgetError",
    "Progress",
    "Template",
    "align",
    "as_shape",
    "as_source",
    "auto_levels",
    "check_dimensions",
    "check_input_file",
    "check_options",
    "check_pixels",
    "check_spacing",
    "check_volume_motion",
    "create_temporary",
    "corner_displacement",
    "default_difference_mode",
    "difference",
    "expected_progress_steps",
    "grid_corners",
    "halving_levels",
    "landmark_start",
    "initial_matrix",
    "is_owner",
    "iter_align",
    "luminance",
    "max_pixels",
    "new_owner",
    "number_field",
    "open_input",
    "project_to_motion",
    "project_volume",
    "read_json",
    "read_text_file",
    "register_opener",
    "resolve_pair",
    "shape_field",
    "spacings_agree",
    "swap_axes",
    "temporary_name",
    "temporary_owner",
    "validate_params",
    "warp",
    "whole_field",
    "write_text_atomic",
]
