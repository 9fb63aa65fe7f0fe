"""Files for Fiji: BigWarp's landmarks CSV and TransformJ's affine matrix text.

**BigWarp** (``landmarks.csv``): one row per landmark pair, every value quoted:
``"name","active", moving x, y[, z], fixed x, y[, z]``, in each image's physical units
(pixel index × pixel size + origin, pixel centres, as Fiji's calibration). We write the
reference's corners and where the alignment sends them in the moving image: BigWarp's
affine fit and its thin-plate spline (whose affine part takes affine-consistent
landmarks exactly) both reproduce the alignment. Read: the active rows with finite
points (BigWarp writes ``Infinity`` for an unpaired point).

**TransformJ** (Affine's matrix file): 4 rows of 4 numbers, tab-separated, the
*forward* map applied to the input (moving) image's positions in calibrated units,
centred on the image (``(size − 1) / 2 × pixel size``), x, y, z; the result keeps the
input's size and pixel size. So it reproduces our aligned image pixel for pixel where
the reference and moving images share a size, and the moving image's grid otherwise.
This follows ImageScience's ``Affine`` (TransformJ's engine); no Fiji runs here to prove
it, unlike the ITK and elastix files.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np


# ----------------------------------------------------------------------------------- BigWarp
def bigwarp_text(moving_points, fixed_points) -> str:
    """The CSV of point pairs, each (x, y[, z]) physical, moving and fixed."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for index, (moving, fixed) in enumerate(zip(moving_points, fixed_points, strict=True)):
        writer.writerow([f"Pt-{index}", "true", *(repr(float(v)) for v in moving),
                         *(repr(float(v)) for v in fixed)])  # fmt: skip
    return out.getvalue()


def read_bigwarp_text(text: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(moving_points, fixed_points)``, (x, y[, z]) physical, of a BigWarp CSV's active,
    complete rows."""
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a field over the csv module's limit, a stray NUL...
        raise ValueError(f"{where}: not a BigWarp landmarks CSV ({exc})") from None
    moving, fixed, width = [], [], None
    for number, row in enumerate(rows, start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if width is None:
            width = len(row)
            if width not in (6, 8):
                raise ValueError(
                    f"{where}: line {number} has {width} columns; a BigWarp landmarks file "
                    "has 6 (2D: name, active, moving x y, fixed x y) or 8 (3D)"
                )
        if len(row) != width:
            raise ValueError(f"{where}: line {number} has {len(row)} columns, not {width}")
        try:
            values = [float(cell) for cell in row[2:]]
        except ValueError:
            if number == 1:
                continue  # a header line
            raise ValueError(
                f"{where}: line {number} holds a coordinate that is not a number"
            ) from None
        if row[1].strip().lower() != "true" or not all(math.isfinite(v) for v in values):
            continue  # inactive, or a point without its partner
        n = (width - 2) // 2
        moving.append(values[:n])
        fixed.append(values[n:])
    if not moving:
        raise ValueError(f"{where}: no active landmark pair (a BigWarp landmarks CSV?)")
    return np.array(moving), np.array(fixed)


# -------------------------------------------------------------------------------- TransformJ
def transformj_text(forward) -> str:
    """The 4×4 matrix file of ``forward`` (3×3 for images is padded with z unchanged)."""
    forward = np.asarray(forward, float)
    full = np.eye(4)
    if forward.shape == (3, 3):
        full[:2, :2], full[:2, 3] = forward[:2, :2], forward[:2, 2]
    else:
        full[:] = forward
    return "".join("\t".join(f"{v:.17g}" for v in row) + "\n" for row in full)


def read_transformj_text(text: str, where: str) -> np.ndarray:
    """The 4×4 matrix of a TransformJ matrix file (tabs, commas or spaces between)."""
    rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip()]
    try:
        matrix = np.array([[float(v) for v in row] for row in rows], dtype=float)
    except ValueError:
        raise ValueError(f"{where}: a TransformJ matrix file holds only numbers") from None
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"{where}: a TransformJ matrix file has 4 rows of 4 finite numbers")
    if not np.allclose(matrix[3], [0, 0, 0, 1]):
        raise ValueError(f"{where}: the last row must be 0 0 0 1 (an affine map)")
    return matrix


def is_transformj_text(text: str) -> bool:
    """Whether ``text`` reads as a TransformJ matrix file."""
    try:
        read_transformj_text(text, "")
    except ValueError:
        return False
    return True


def transformj_forward(matrix, moving_shape, moving_spacing_xyz) -> np.ndarray:
    """TransformJ's forward matrix (4×4) reproducing our voxel ``matrix`` (reference voxel
    → moving voxel) on the moving image's grid: ``F = K · M⁻¹ · K⁻¹``, ``K`` the moving
    image's voxel → centred calibrated map."""
    centring = _centring(moving_shape, moving_spacing_xyz)
    forward = centring @ np.linalg.inv(np.asarray(matrix, float)) @ np.linalg.inv(centring)
    return forward


def matrix_from_transformj(forward, moving_shape, moving_spacing_xyz) -> np.ndarray:
    """Our voxel matrix of a TransformJ forward matrix: ``M = K⁻¹ · F⁻¹ · K``."""
    n = len(moving_shape)
    forward = np.asarray(forward, float)
    if n == 2:
        if not np.allclose(forward[2], [0, 0, 1, 0]) or not np.allclose(forward[:2, 2], 0):
            raise ValueError("this TransformJ matrix moves z; it does not fit a 2D image")
        forward = forward[np.ix_([0, 1, 3], [0, 1, 3])]
    centring = _centring(moving_shape, moving_spacing_xyz)
    return np.linalg.inv(centring) @ np.linalg.inv(forward) @ centring


def _centring(shape, spacing_xyz) -> np.ndarray:
    n = len(shape)
    spacing = np.asarray(spacing_xyz, float)
    out = np.eye(n + 1)
    out[:n, :n] = np.diag(spacing)
    out[:n, n] = -0.5 * spacing * (np.asarray(shape, float)[::-1] - 1)
    return out
