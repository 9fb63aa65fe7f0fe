"""What the command line prints: one-line errors in the options' own terms, and summaries."""

from __future__ import annotations

import math
import re
import sys

import numpy as np

from ..engine import Alignment

PROG = "napari-ecc-align"


def summarize(alignment: Alignment) -> str:
    """One line: motion, correlation before → after, time, and the matrix in plain terms.

    The shift, rotation and scale are those of the reference→moving matrix
    (its affine part for a homography; for volumes the shift in voxels, the angle
    of the nearest rotation in physical units and the cube root of the volume change).
    """
    if alignment.ndim == 3:
        return _summarize_volume(alignment)
    m = alignment.matrix
    linear = m[:2, :2]
    # Rotation of the closest similarity, robust to shear; scale = sqrt(area change).
    rotation = math.degrees(math.atan2(linear[1, 0] - linear[0, 1], linear[0, 0] + linear[1, 1]))
    scale = math.sqrt(abs(float(np.linalg.det(linear))))
    return (
        f"{alignment.motion}: correlation {alignment.correlation_before:.3f} -> "
        f"{alignment.correlation:.3f} in {alignment.elapsed:.2f} s; reference->moving "
        f"shift (x, y) = ({m[0, 2]:+.2f}, {m[1, 2]:+.2f}) px, rotation {rotation:+.3f} deg, "
        f"scale {scale:.4f}"
    )


def _summarize_volume(alignment: Alignment) -> str:
    m = alignment.matrix
    dz, dy, dx = alignment.parameters.get("spacing", (1.0, 1.0, 1.0))
    physical = np.diag([dx, dy, dz])
    # The rotation angle of the orthogonal polar factor: rigid in physical units, like ECC.
    u, _, vt = np.linalg.svd(physical @ m[:3, :3] @ np.linalg.inv(physical))
    rotation = np.clip((np.trace(u @ vt) - 1) / 2, -1.0, 1.0)
    scale = abs(float(np.linalg.det(m[:3, :3]))) ** (1 / 3)
    shift = ", ".join(f"{v:+.2f}" for v in m[:3, 3])
    return (
        f"{alignment.motion} (volume): correlation {alignment.correlation_before:.3f} -> "
        f"{alignment.correlation:.3f} in {alignment.elapsed:.2f} s; reference->moving "
        f"shift (x, y, z) = ({shift}) voxels, rotation {math.degrees(math.acos(rotation)):.3f} "
        f"deg, scale {scale:.4f}"
    )


# ------------------------------------------------------------------------------------ errors
# The engine's messages name Python arguments; on the command line, name the options.
_TERMS = re.compile(
    r"(?:motion|intensity)='(\w+)'|\ban init matrix\b"
    r"|\b(max_iterations|eps|gauss_filter_size|pyramid_levels)\b"
    r"|\bndim=(\d)|\bspacing=\(dz, dy, dx\)|\(and spacing\)"
)
_SPACING = {
    "spacing=(dz, dy, dx)": "--spacing dz,dy,dx",
    "(and spacing)": "(and --spacing dz,dy,dx)",
}


def in_cli_terms(message: str) -> str:
    def option(match: re.Match) -> str:
        if match.group(1):
            return f"--{match.group(0).split('=')[0]} {match.group(1)}"
        if match.group(2):
            return "--" + match.group(2).replace("_", "-")
        if match.group(3):
            return f"--ndim {match.group(3)}"
        if match.group(0) in _SPACING:
            return _SPACING[match.group(0)]
        return "an initial matrix (--init T.json)"

    return _TERMS.sub(option, message)


def print_error(exc: BaseException | str) -> None:
    """Print ``napari-ecc-align: error: <message>`` as one line on stderr."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        message = f"{exc.strerror}: {exc.filename}"
    else:
        message = str(exc) or type(exc).__name__
    print(printable(f"{PROG}: error: {' '.join(message.split())}", sys.stderr), file=sys.stderr)


def say(text: str) -> None:
    """Print ``text`` on stdout, whatever characters it holds (see :func:`printable`)."""
    print(printable(text, sys.stdout))


def printable(text: str, stream) -> str:
    """``text`` as ``stream`` can encode it: what it cannot (a file name's undecodable
    bytes, kept as surrogates) is shown as a backslash escape instead of failing."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)
