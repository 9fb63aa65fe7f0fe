"""OME-NGFF coordinate transformations (RFC-5, NGFF 0.6) between two images.

The document names two coordinate systems, ``"reference"`` (listed first: the
specification recommends the common reference first) and ``"moving"``, both with the
images' axes in array order ((z, y, x) or (y, x)), and one transformation from
``"moving"`` to ``"reference"`` physical coordinates: the specification's forward
direction for registration, which a viewer inverts in closed form to render the moving
image on the reference. A pure shift is written as a ``translation``, anything else as
an ``affine`` (the upper n×(n+1) rows of the homogeneous matrix).

Read back: ``identity``, ``translation``, ``scale``, ``rotation``, ``affine`` (JSON
parameters), and ``sequence``, ``inverseOf`` and ``bijection`` of them, in either
direction: whichever of ``input``/``output`` names the first coordinate system is the
reference (without coordinate systems, ``"reference"`` or ``"fixed"`` in a name decides,
else the forward direction is assumed). Parameters kept in a zarr array (``path``) and
non-linear transformations are refused, naming them.

The document stands alone (``*.ngff.json``) or lives inside an OME-Zarr store as
:data:`STORE_FILE`, next to the image it describes.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

STORE_FILE = "transform.ngff.json"
_AXES = {2: ("y", "x"), 3: ("z", "y", "x")}
_REFERENCE_NAMES = ("reference", "fixed", "target")


def ngff_document(transform, units=None) -> dict:
    """The RFC-5 document of ``transform``: homogeneous, fixed physical → moving physical
    over (x, y[, z]) (see :mod:`.physical`); ``units``: the axes' NGFF unit, or None."""
    transform = np.asarray(transform, float)
    n = transform.shape[0] - 1
    flip = _reversed_axes(n)
    forward = flip @ np.linalg.inv(transform) @ flip  # moving → reference, array order
    forward /= forward[n, n]
    axes = [{"name": name, "type": "space"} | ({"unit": units} if units else {})
            for name in _AXES[n]]  # fmt: skip
    if np.allclose(forward[:n, :n], np.eye(n), atol=1e-12):
        step = {"type": "translation", "translation": [float(v) for v in forward[:n, n]]}
    else:
        step = {"type": "affine", "affine": [[float(v) for v in row] for row in forward[:n]]}
    return {
        "coordinateSystems": [
            {"name": "reference", "axes": axes},
            {"name": "moving", "axes": axes},
        ],  # fmt: skip
        "coordinateTransformations": [
            step
            | {
                "name": "moving to reference",
                "input": {"name": "moving"},
                "output": {"name": "reference"},
            }  # fmt: skip
        ],
    }


_NUMBER_LIST = re.compile(r"\[\s+([-+0-9.eE]+(?:,\s+[-+0-9.eE]+)*)\s+\]")


def _reversed_axes(n: int) -> np.ndarray:
    """The homogeneous matrix taking (x, y[, z]) to (z, y, x) order (its own inverse)."""
    out = np.eye(n + 1)
    out[:n, :n] = np.eye(n)[::-1]
    return out


def ngff_text(transform, units=None) -> str:
    """:func:`ngff_document` as indented JSON text, each matrix row on one line."""
    text = json.dumps(ngff_document(transform, units), indent=2)

    def one_line(found):
        return "[" + ", ".join(value.strip() for value in found.group(1).split(",")) + "]"

    return _NUMBER_LIST.sub(one_line, text) + "\n"


def is_ngff_document(data) -> bool:
    """Whether parsed JSON ``data`` holds NGFF coordinate transformations."""
    return isinstance(data, dict) and isinstance(_container(data), dict)


def read_ngff_document(data, where: str) -> np.ndarray:
    """The homogeneous fixed physical → moving physical transform over (x, y[, z]) of an
    RFC-5 document (top level, or under ``"ome"``/``"scene"`` as zarr attributes)."""
    container = _container(data)
    if container is None:
        raise ValueError(f'{where}: no "coordinateTransformations" (not an NGFF transform)')
    steps = container["coordinateTransformations"]
    if not isinstance(steps, list) or not steps:
        raise ValueError(f'{where}: "coordinateTransformations" must be a non-empty list')
    if len(steps) > 1:
        raise ValueError(
            f"{where} holds {len(steps)} coordinate transformations; one between the two "
            'images is read (wrap several in a "sequence")'
        )
    step = steps[0]
    if not isinstance(step, dict):
        raise ValueError(f"{where}: a coordinate transformation must be a JSON object")
    _check_readable(step, where)
    ndim = _ndim(container, step, where)
    matrix = _matrix(step, ndim, where)
    if _reference_is_input(container, step):
        _invert(matrix, where)  # refuses a singular map in this direction too
        forward_array = matrix  # reference → moving already
    else:
        forward_array = _invert(matrix, where)
    flip = _reversed_axes(ndim)
    return flip @ forward_array @ flip


def _container(data):
    """The object holding ``coordinateTransformations``, or None."""
    candidates = [data]
    ome = data.get("ome") if isinstance(data, dict) else None
    for holder in (data, ome):
        if isinstance(holder, dict):
            candidates += [holder.get("scene"), holder]
    for candidate in candidates:
        if isinstance(candidate, dict) and "coordinateTransformations" in candidate:
            return candidate
    return None


_LINEAR = ("identity", "translation", "scale", "rotation", "affine")
_WRAPPERS = {"sequence": "transformations", "inverseOf": "transformation", "bijection": "forward"}


def _check_readable(step, where) -> None:
    """Refuse, naming it, any part of ``step`` that is no linear map written in the JSON."""
    kind = step.get("type") if isinstance(step, dict) else None
    if kind in _LINEAR:
        if "path" in step and kind != "identity":
            raise ValueError(
                f"{where}: the {kind} parameters are in a zarr array ({step['path']!r}); only "
                "parameters written in the JSON are read"
            )
        return
    inner = step.get(_WRAPPERS[kind]) if kind in _WRAPPERS else None
    if isinstance(inner, list):
        for each in inner:
            _check_readable(each, where)
        return
    if isinstance(inner, dict):
        _check_readable(inner, where)
        return
    raise ValueError(
        f"{where}: a {kind!r} transformation is not read; identity, translation, scale, "
        "rotation, affine and sequences of them are (non-linear fields are not)"
    )


def _name(end) -> str | None:
    if isinstance(end, dict):
        end = end.get("name")
    return end if isinstance(end, str) else None


def _reference_is_input(container, step) -> bool:
    systems = container.get("coordinateSystems")
    first = None
    if isinstance(systems, list) and systems and isinstance(systems[0], dict):
        first = systems[0].get("name")
    source, target = _name(step.get("input")), _name(step.get("output"))
    if first is not None and first in (source, target):
        return source == first

    def named(name):  # noqa: E306
        return name is not None and any(word in name.lower() for word in _REFERENCE_NAMES)

    return named(source) and not named(target)


def _ndim(container, step, where) -> int:
    systems = container.get("coordinateSystems")
    if isinstance(systems, list) and systems:
        axes = [s.get("axes") for s in systems if isinstance(s, dict)]
        if not all(isinstance(a, list) for a in axes):
            raise ValueError(f'{where}: a coordinate system\'s "axes" must be a list')
        lengths = {len(a) for a in axes}
        if len(lengths) == 1:
            n = lengths.pop()
            if n not in (2, 3):
                raise ValueError(f"{where}: coordinate systems of {n} axes; 2 or 3 are read")
            return n
    return _ndim_of(step, where)


def _ndim_of(step, where) -> int:
    """The dimensionality the parameters of ``step`` imply."""
    kind = step.get("type")
    for key in ("translation", "scale"):
        if kind == key and isinstance(step.get(key), list):
            return _checked_ndim(len(step[key]), where)
    if kind == "affine" and isinstance(step.get(kind), list) and step[kind]:
        first = step[kind][0]  # n + 1 columns in both the n-row and the homogeneous form
        return _checked_ndim(len(first) - 1 if isinstance(first, list) else 0, where)
    if kind == "rotation" and isinstance(step.get(kind), list):
        return _checked_ndim(len(step[kind]), where)
    if kind == "sequence" and isinstance(step.get("transformations"), list):
        for inner in step["transformations"]:
            if isinstance(inner, dict) and inner.get("type") != "identity":
                return _ndim_of(inner, where)
    if kind in ("inverseOf", "bijection"):
        inner = step.get("transformation") or step.get("forward")
        if isinstance(inner, dict):
            return _ndim_of(inner, where)
    raise ValueError(f"{where}: cannot tell the transform's dimensionality; add coordinateSystems")


def _checked_ndim(n, where) -> int:
    if n not in (2, 3):
        raise ValueError(f"{where}: a {n}-dimensional transformation; 2 or 3 are read")
    return n


def _matrix(step, n, where) -> np.ndarray:
    """The homogeneous matrix of one transformation over its own axis order."""
    kind = step.get("type")
    out = np.eye(n + 1)
    if kind == "identity":
        return out
    if kind in ("translation", "scale"):
        values = _numbers(step.get(kind), (n,), f"{kind}", where)
        if kind == "translation":
            out[:n, n] = values
        else:
            out[:n, :n] = np.diag(values)
        return out
    if kind == "affine":
        value = step.get("affine")  # n×(n+1); the full homogeneous matrix is accepted
        shape = (n + 1, n + 1) if isinstance(value, list) and len(value) == n + 1 else (n, n + 1)
        numbers = _numbers(value, shape, "affine", where)
        if shape[0] == n + 1 and not np.allclose(numbers[n], np.eye(n + 1)[n]):
            raise ValueError(f"{where}: an affine's last row must be 0 ... 0 1 (no projection)")
        out[:n] = numbers[:n]
        return out
    if kind == "rotation":
        out[:n, :n] = _numbers(step.get("rotation"), (n, n), "rotation", where)
        return out
    if kind == "sequence":
        inner = step.get("transformations")
        if not isinstance(inner, list):
            raise ValueError(f'{where}: a sequence needs "transformations" (a list)')
        for each in inner:  # applied in order: the last one acts last
            out = _matrix(each, n, where) @ out
        return out
    if kind == "inverseOf" and isinstance(step.get("transformation"), dict):
        return _invert(_matrix(step["transformation"], n, where), where)
    if kind == "bijection" and isinstance(step.get("forward"), dict):
        return _matrix(step["forward"], n, where)
    raise ValueError(
        f"{where}: a {kind!r} transformation is not read; identity, translation, scale, "
        "rotation, affine and sequences of them are (non-linear fields are not)"
    )


def _numbers(value, shape, field, where) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f'{where}: "{field}" must hold numbers') from None
    if array.shape != shape:
        raise ValueError(f'{where}: "{field}" must have shape {shape}, got {array.shape}')
    if not np.all(np.isfinite(array)):
        raise ValueError(f'{where}: "{field}" is not finite')
    return array


def _invert(matrix, where) -> np.ndarray:
    determinant = np.linalg.det(matrix)
    if not math.isfinite(determinant) or abs(determinant) < 1e-12:
        raise ValueError(f"{where}: the transformation cannot be inverted (singular)")
    return np.linalg.inv(matrix)
