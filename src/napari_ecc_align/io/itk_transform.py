"""ITK transform files (``.tfm``, ``.txt``): the text format ITK and SimpleITK read and
write (``#Insight Transform File V1.0``), for linear transforms in 2D and 3D.

A transform here is a homogeneous (n+1)×(n+1) matrix over physical (x, y[, z]) points,
fixed → moving (see :mod:`.physical`). ITK writes a centred form: ``T(p) = A (p − c) +
c + t`` with the centre ``c`` in the fixed parameters, so ``T = [[A, t + c − A c], [0,
1]]``. Read: ``IdentityTransform``, ``TranslationTransform``, ``Euler2DTransform``,
``Euler3DTransform`` (both angle orders), ``VersorRigid3DTransform``,
``Similarity2DTransform``, ``Similarity3DTransform``, ``ScaleTransform``,
``AffineTransform`` and ``MatrixOffsetTransformBase``, in double or float, and a
``CompositeTransform`` of them (ITK applies its last transform first). Written:
``TranslationTransform``, ``Euler2D/3DTransform`` for rigid maps, ``AffineTransform``
for the rest, centred on the fixed image's centre.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..engine import read_text_file

_HEADER = "#Insight Transform File V1.0"
BINARY_SUFFIXES = (".mat", ".h5", ".hdf5")  # written and read through SimpleITK
_NAME = re.compile(r"^(\w+?)_(double|float)_(\d)(?:_(\d))?$")


# ------------------------------------------------------------------------------------ writing
def centred_parameters(transform, motion: str, centre) -> tuple[str, list[float]]:
    """``(kind, parameters)`` of the physical ``transform`` (homogeneous, fixed →
    moving) in the centred form ``T(p) = A (p − c) + c + t``, as ITK and elastix store
    it: ``"translation"`` (the offset) for ``motion`` "translation", ``"euler"`` (angles,
    then t) for a rigid map, else ``"affine"`` (A row by row, then t)."""
    transform = np.asarray(transform, float)
    n = transform.shape[0] - 1
    linear, offset = transform[:n, :n], transform[:n, n]
    centre = np.asarray(centre, float)
    translation = offset + linear @ centre - centre
    if motion == "translation" and np.allclose(linear, np.eye(n), atol=1e-12):
        return "translation", list(offset)
    if motion in ("translation", "euclidean") and is_rotation(linear):
        angles = [math.atan2(linear[1, 0], linear[0, 0])] if n == 2 else euler_zxy_angles(linear)
        return "euler", [*angles, *translation]
    return "affine", [*linear.ravel(), *translation]


def centred_matrix(linear, translation, centre) -> np.ndarray:
    """The homogeneous matrix of ``T(p) = A (p − c) + c + t``."""
    n = len(linear)
    out = np.eye(n + 1)
    out[:n, :n] = linear
    out[:n, n] = np.asarray(translation) + centre - np.asarray(linear) @ centre
    return out


def itk_text(transform, motion: str, centre) -> str:
    """The file text of the physical ``transform`` (homogeneous, fixed → moving):
    translation for ``motion`` "translation", Euler for a rigid map, else affine."""
    n = np.shape(transform)[0] - 1
    kind, parameters = centred_parameters(transform, motion, centre)
    if kind == "translation":
        return _entry("TranslationTransform", n, parameters, [])
    if kind == "euler":
        fixed = list(centre) if n == 2 else [*centre, 0]  # 3D: ITK's ComputeZYX flag off
        return _entry(f"Euler{n}DTransform", n, parameters, fixed)
    return _entry("AffineTransform", n, parameters, centre)


def _entry(kind: str, n: int, parameters, fixed) -> str:
    def numbers(values):
        return " ".join(f"{float(v):.17g}" for v in values)

    return (f"{_HEADER}\n#Transform 0\nTransform: {kind}_double_{n}_{n}\n"
            f"Parameters: {numbers(parameters)}\nFixedParameters: {numbers(fixed)}\n")  # fmt: skip


def is_rotation(linear) -> bool:
    return bool(np.allclose(linear.T @ linear, np.eye(len(linear)), atol=1e-9)
                and np.linalg.det(linear) > 0)  # fmt: skip


# ------------------------------------------------------------------------------------ reading
def read_itk_text(text: str, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(transform, kinds)``: the homogeneous physical transform of an ITK text file and
    the kinds of the transforms it composes. Raises ValueError naming the file
    (``where``)."""
    if not text.lstrip().startswith("#Insight Transform File"):
        raise ValueError(f"{where}: not an ITK transform file (no '{_HEADER}' header)")
    entries = _entries(text, where)
    if not entries:
        raise ValueError(f"{where}: the ITK transform file holds no transform")
    first_kind = entries[0][0]
    if first_kind == "CompositeTransform":
        entries = entries[1:]
        if not entries:
            raise ValueError(f"{where}: the composite transform is empty")
    total = None
    for kind, n, parameters, fixed in entries:
        matrix = _matrix(kind, n, parameters, fixed, where)
        if total is not None and matrix.shape != total.shape:
            raise ValueError(f"{where}: the composite mixes 2D and 3D transforms")
        total = matrix if total is None else total @ matrix  # the last one applies first
    return total, tuple(entry[0] for entry in entries)


def _entries(text: str, where: str):
    out, current = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("Transform:"):
            name = line.split(":", 1)[1].strip()
            found = _NAME.match(name)
            if not found:
                raise ValueError(f"{where}: unreadable transform type {name!r}")
            kind, _, n, m = found.groups()
            if m is not None and m != n:
                raise ValueError(f"{where}: {name} maps {n}D to {m}D points; only n to n is read")
            current = [kind, int(n), None, None]
            out.append(current)
        elif line.startswith(("Parameters:", "FixedParameters:")) and current is not None:
            key, values = line.split(":", 1)
            try:
                numbers = [float(v) for v in values.split()]
            except ValueError:
                raise ValueError(f"{where}: {key} holds something that is not a number") from None
            current[2 if key == "Parameters" else 3] = numbers
    return [(kind, n, p or [], f or []) for kind, n, p, f in out]


def _matrix(kind: str, n: int, p, fixed, where: str) -> np.ndarray:
    """The homogeneous matrix of one ITK transform."""
    if n not in (2, 3):
        raise ValueError(f"{where}: a {n}D transform; only 2D and 3D are read")
    expected = _PARAMETER_COUNTS.get((kind, n))
    if expected is None:
        raise ValueError(
            f"{where}: {kind} ({n}D) is not a linear transform this reads; it reads "
            f"{', '.join(sorted({k for k, _ in _PARAMETER_COUNTS}))}"
        )
    if len(p) != expected:
        raise ValueError(f"{where}: {kind} needs {expected} parameters, got {len(p)}")
    if not all(math.isfinite(v) for v in (*p, *fixed)):
        raise ValueError(f"{where}: {kind} has parameters that are not finite")
    centre = np.array(fixed[:n] if len(fixed) >= n else [0.0] * n)
    out = np.eye(n + 1)
    if kind == "IdentityTransform":
        return out
    if kind == "TranslationTransform":
        out[:n, n] = p
        return out
    return centred_matrix(*_linear(kind, n, np.asarray(p, float), fixed), centre)


_PARAMETER_COUNTS = {
    ("IdentityTransform", 2): 0, ("IdentityTransform", 3): 0,
    ("TranslationTransform", 2): 2, ("TranslationTransform", 3): 3,
    ("Euler2DTransform", 2): 3, ("Euler3DTransform", 3): 6,
    ("VersorRigid3DTransform", 3): 6, ("Similarity2DTransform", 2): 4,
    ("Similarity3DTransform", 3): 7, ("ScaleTransform", 2): 2, ("ScaleTransform", 3): 3,
    ("AffineTransform", 2): 6, ("AffineTransform", 3): 12,
    ("MatrixOffsetTransformBase", 2): 6, ("MatrixOffsetTransformBase", 3): 12,
}  # fmt: skip


def _linear(kind: str, n: int, p: np.ndarray, fixed) -> tuple[np.ndarray, np.ndarray]:
    """``(A, t)`` of the centred form ``A (x − c) + c + t``."""
    if kind in ("AffineTransform", "MatrixOffsetTransformBase"):
        return p[: n * n].reshape(n, n), p[n * n :]
    if kind == "ScaleTransform":
        return np.diag(p), np.zeros(n)
    if kind == "Euler2DTransform":
        return rotation_2d(p[0]), p[1:]
    if kind == "Similarity2DTransform":
        return p[0] * rotation_2d(p[1]), p[2:]
    if kind == "Euler3DTransform":
        zyx = len(fixed) > 3 and fixed[3] != 0  # ITK's ComputeZYX flag
        return euler_matrix(*p[:3], zyx=zyx), p[3:]
    if kind == "VersorRigid3DTransform":
        return versor_matrix(p[:3]), p[3:]
    return p[6] * versor_matrix(p[:3]), p[3:6]  # Similarity3DTransform


def rotation_2d(angle: float) -> np.ndarray:
    """The 2D rotation by ``angle`` radians (counter-clockwise in x, y)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _axis_rotations(ax: float, ay: float, az: float):
    cx, sx, cy, sy, cz, sz = (math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay),
                              math.cos(az), math.sin(az))  # fmt: skip
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rx, ry, rz


def euler_matrix(ax: float, ay: float, az: float, zyx: bool = False) -> np.ndarray:
    """ITK's Euler3D rotation: ``Rz·Rx·Ry`` (its default), or ``Rz·Ry·Rx`` with
    ComputeZYX."""
    rx, ry, rz = _axis_rotations(ax, ay, az)
    return rz @ ry @ rx if zyx else rz @ rx @ ry


def euler_zxy_angles(rotation) -> tuple[float, float, float]:
    """``(ax, ay, az)`` with :func:`euler_matrix` (default order) giving ``rotation``."""
    r = np.asarray(rotation, float)
    ax = math.asin(max(-1.0, min(1.0, r[2, 1])))
    if abs(math.cos(ax)) > 1e-12:
        ay = math.atan2(-r[2, 0], r[2, 2])
        az = math.atan2(-r[0, 1], r[1, 1])
    else:  # gimbal lock: ay and az turn about the same axis; put it all in az
        ay = 0.0
        az = math.atan2(r[1, 0], r[0, 0])
    return ax, ay, az


def versor_matrix(vector) -> np.ndarray:
    """The rotation of ITK's versor: the vector part (x, y, z) of a unit quaternion."""
    x, y, z = (float(v) for v in vector)
    w = math.sqrt(max(0.0, 1.0 - (x * x + y * y + z * z)))
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def read_itk_file(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """:func:`read_itk_text` of a file (``.mat`` and ``.h5`` through SimpleITK)."""
    if path.suffix.lower() not in BINARY_SUFFIXES:
        return read_itk_text(read_text_file(path, "an ITK text transform"), str(path))
    sitk = _simpleitk(f"{path}: binary ITK transforms (.mat, .h5) are read")
    with _text_file() as text_path:
        sitk.WriteTransform(sitk.ReadTransform(str(path)), text_path)
        return read_itk_text(Path(text_path).read_text(), str(path))


def write_itk_binary(text: str, target) -> None:
    """The ITK ``text`` written as a binary transform (``.mat``, ``.h5``) by SimpleITK."""
    sitk = _simpleitk("binary ITK transforms (.mat, .h5) are written")
    with _text_file() as text_path:
        Path(text_path).write_text(text, encoding="utf-8")
        sitk.WriteTransform(sitk.ReadTransform(text_path), str(target))


def _simpleitk(doing: str):
    try:
        import SimpleITK as sitk
    except ImportError:
        raise ValueError(
            f"{doing} through SimpleITK, which is not installed (pip install SimpleITK); or "
            "save the transform as .tfm"
        ) from None
    return sitk


@contextlib.contextmanager
def _text_file():
    """A temporary ``.tfm`` path, removed afterwards (SimpleITK converts through it)."""
    handle, text_path = tempfile.mkstemp(suffix=".tfm")
    os.close(handle)
    try:
        yield text_path
    finally:
        os.unlink(text_path)
