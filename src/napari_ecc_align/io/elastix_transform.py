"""elastix transform parameter files (``TransformParameters.*.txt``), the ones elastix
writes and transformix reads.

elastix stores ITK's centred form, fixed physical → moving physical (see
:mod:`.physical`), with the fixed image's grid (``Size``, ``Spacing``, ``Origin``,
``Direction``), which transformix resamples onto. Written: ``TranslationTransform``,
``EulerTransform`` (rigid maps) or ``AffineTransform``, centred on the reference's centre,
linear resampling. Read: the same three and ``SimilarityTransform`` (3D: versor, shift,
scale), including the grid, so a file elastix wrote brings its own shapes and geometry;
a chain (``InitialTransformParametersFileName``) is refused, naming the file.
"""

from __future__ import annotations

import math
import re

import numpy as np

from .itk_transform import (
    centred_matrix,
    centred_parameters,
    euler_matrix,
    rotation_2d,
    versor_matrix,
)

_ENTRY = re.compile(r"^\(\s*(\w+)((?:\s+(?:\"[^\"]*\"|[^\s)]+))*)\s*\)")
_VALUE = re.compile(r"\"([^\"]*)\"|([^\s\"]+)")


def elastix_text(transform, motion: str, centre, grid) -> str:
    """The parameter file of the physical ``transform`` (homogeneous, fixed → moving)
    on the fixed ``grid``: ``(size, spacing, origin, direction)``, all over x, y[, z]."""
    n = np.shape(transform)[0] - 1
    form, parameters = centred_parameters(transform, motion, centre)
    kind = {"translation": "TranslationTransform", "euler": "EulerTransform",
            "affine": "AffineTransform"}[form]  # fmt: skip
    size, spacing, origin, direction = grid
    lines = [
        f'(Transform "{kind}")',
        f"(NumberOfParameters {len(parameters)})",
        f"(TransformParameters {_numbers(parameters)})",
        '(InitialTransformParametersFileName "NoInitialTransform")',
        '(HowToCombineTransforms "Compose")',
        f"(FixedImageDimension {n})",
        f"(MovingImageDimension {n})",
        '(FixedInternalImagePixelType "float")',
        '(MovingInternalImagePixelType "float")',
        f"(Size {' '.join(str(int(v)) for v in size)})",
        f"(Index {' '.join('0' for _ in size)})",
        f"(Spacing {_numbers(spacing)})",
        f"(Origin {_numbers(origin)})",
        f"(Direction {_numbers(np.asarray(direction, float).T.ravel())})",
        '(UseDirectionCosines "true")',
    ]
    if kind != "TranslationTransform":
        lines.append(f"(CenterOfRotationPoint {_numbers(centre)})")
    if kind == "EulerTransform" and n == 3:
        lines.append('(ComputeZYX "false")')
    lines += ['(ResampleInterpolator "FinalLinearInterpolator")', '(Resampler "DefaultResampler")',
              "(DefaultPixelValue 0)", '(ResultImageFormat "nii")',
              '(ResultImagePixelType "float")', '(CompressResultImage "false")']  # fmt: skip
    return "\n".join(lines) + "\n"


def _numbers(values) -> str:
    return " ".join(f"{float(v):.17g}" for v in values)


def read_elastix_text(text: str, where: str):
    """``(transform, kind, grid)`` of an elastix parameter file: the homogeneous physical
    transform, the elastix transform's name, and the fixed grid ``(size, spacing,
    origin, direction)`` over x, y[, z] (None where the file states none)."""
    entries = {}
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        found = _ENTRY.match(line)
        if found:
            values = [a if a else b for a, b in _VALUE.findall(found.group(2))]
            entries[found.group(1)] = values
    if "Transform" not in entries or "TransformParameters" not in entries:
        raise ValueError(f"{where}: not an elastix transform parameter file (no (Transform ...))")
    initial = entries.get("InitialTransformParametersFileName", ["NoInitialTransform"])[0]
    if initial != "NoInitialTransform":
        raise ValueError(
            f"{where} continues the transform in {initial!r}; chained elastix files are not "
            "read: combine them in elastix, or load the last one's chain yourself"
        )
    kind = entries["Transform"][0]
    n = int(_numbers_of(entries, "FixedImageDimension", where, [2])[0])
    if n not in (2, 3):
        raise ValueError(f"{where}: a {n}D transform; only 2D and 3D are read")
    p = np.array(_numbers_of(entries, "TransformParameters", where), float)
    centre = np.array(_numbers_of(entries, "CenterOfRotationPoint", where, [0.0] * n), float)
    zyx = entries.get("ComputeZYX", ["false"])[0].lower() == "true"
    linear, translation = _linear(kind, n, p, zyx, where)
    if kind == "TranslationTransform":  # no centre: the parameters are the offset
        centre = np.zeros(n)
    out = centred_matrix(linear, translation, centre)
    size = _numbers_of(entries, "Size", where, None)
    spacing = _numbers_of(entries, "Spacing", where, [1.0] * n)
    origin = _numbers_of(entries, "Origin", where, [0.0] * n)
    direction = np.array(_numbers_of(entries, "Direction", where, list(np.eye(n).ravel())))
    grid = (None if size is None else [int(v) for v in size], spacing, origin,
            direction.reshape(n, n).T)  # fmt: skip
    return out, kind, grid


def _numbers_of(entries, key, where, default=...):
    if key not in entries:
        if default is ...:
            raise ValueError(f"{where}: ({key} ...) is missing")
        return default
    try:
        values = [float(v) for v in entries[key]]
    except ValueError:
        raise ValueError(f"{where}: ({key} ...) holds something that is not a number") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: ({key} ...) is not finite")
    return values


_COUNTS = {("TranslationTransform", 2): 2, ("TranslationTransform", 3): 3,
           ("EulerTransform", 2): 3, ("EulerTransform", 3): 6,
           ("AffineTransform", 2): 6, ("AffineTransform", 3): 12,
           ("SimilarityTransform", 2): 4, ("SimilarityTransform", 3): 7}  # fmt: skip


def _linear(kind, n, p, zyx, where):
    expected = _COUNTS.get((kind, n))
    if expected is None:
        raise ValueError(
            f"{where}: {kind} ({n}D) is not a transform this reads; it reads "
            "TranslationTransform, EulerTransform, SimilarityTransform and AffineTransform"
        )
    if len(p) != expected:
        raise ValueError(f"{where}: {kind} needs {expected} parameters, got {len(p)}")
    if kind == "TranslationTransform":
        return np.eye(n), p
    if kind == "AffineTransform":
        return p[: n * n].reshape(n, n), p[n * n :]
    if kind == "EulerTransform" and n == 2:
        return rotation_2d(p[0]), p[1:]
    if kind == "EulerTransform":
        return euler_matrix(*p[:3], zyx=zyx), p[3:]
    if n == 2:  # SimilarityTransform 2D: scale, angle, shift
        return p[0] * rotation_2d(p[1]), p[2:]
    return p[6] * versor_matrix(p[:3]), p[3:6]
