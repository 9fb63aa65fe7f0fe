"""What a stack alignment returns: per-frame :class:`StackAlignment` and the progress
events :class:`FrameProgress`, with CSV and JSON round trips.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ..engine import (
    MOTIONS,
    Alignment,
    as_shape,
    number_field,
    read_json,
    shape_field,
    whole_field,
    write_text_atomic,
)
from ..engine import max_pixels as pixel_budget
from .canvas import Canvas, stack_canvas

# What align_stack's ``reference`` may name besides a frame index.
REFERENCES = ("previous", "first", "mean")


@dataclass(frozen=True, eq=False)
class FrameProgress:
    """Yielded by :func:`iter_align_stack` each time a frame is finished.

    Attributes
    ----------
    index : int
        The frame's index along the stack axis.
    done : int
        Frames finished so far (counting every pass of ``reference="mean"``).
    total : int
        Frames to finish in all.
    alignment : Alignment or None
        The frame's transform onto the reference grid; None if it failed.
    error : str
        Why the frame failed; ``""`` if it was aligned.
    """

    index: int  # frame index along the stack axis
    done: int  # frames finished so far
    total: int
    alignment: Alignment | None
    error: str  # "" if the frame was aligned


@dataclass(frozen=True, eq=False)
class StackAlignment:
    """The transforms of every frame of a stack onto a common reference grid.

    Returned by :func:`~napari_ecc_align.align_stack`; :func:`~napari_ecc_align.warp_stack`
    applies it. ``len(result)`` is the number of frames.

    Attributes
    ----------
    alignments : tuple of Alignment or None
        One per frame; ``alignments[t].matrix`` maps a reference-grid pixel
        ``(x, y, 1)`` to frame ``t``'s pixel (the :class:`~napari_ecc_align.Alignment`
        convention). None where the frame failed.
    errors : tuple of str
        ``""`` for aligned frames, else why the frame failed.
    reference : str or int
        ``"previous"``, ``"first"``, ``"mean"`` or the reference frame's index.
    axis, channel_axis : int, int or None
        The frame axis and the channel axis of the stack (non-negative).
    channel : int or None
        The channel the transforms were estimated on.
    motion : str
        The motion model.
    frame_shape : tuple of int
        ``(rows, cols)`` of the reference grid; ``(z, y, x)`` for volumes.
    elapsed : float
        Seconds the whole stack took.
    ndim : int
        2 for images, 3 for volumes (4×4 matrices over ``(x, y, z, 1)``).
    passes : int
        Passes over the stack: 1, or for ``reference="mean"`` the passes run, which
        stop before ``mean_iterations`` once the mean image has settled.
    ok : ndarray of bool
        Per frame, whether it was aligned.
    matrices : ndarray, shape (frames, 3, 3) or (frames, 4, 4)
        Every frame's matrix (the identity where a frame failed).

    See Also
    --------
    to_csv, to_json, from_json : the drift table and a lossless round trip.
    canvas : the output grid of ``warp_stack(..., canvas="union")``.
    """

    alignments: tuple[Alignment | None, ...]  # one per frame; None where the frame failed
    errors: tuple[str, ...]  # "" for good frames, else why the frame failed
    reference: str | int  # "previous", "first", "mean" or the reference frame's index
    axis: int
    channel_axis: int | None
    channel: int | None  # the channel the transforms were estimated on
    motion: str
    frame_shape: tuple[int, ...]  # (rows, cols) of the reference grid; (z, y, x) for volumes
    elapsed: float = 0.0
    ndim: int = 2
    passes: int = 1  # reference="mean": the passes run (the mean settled or the limit)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alignments", tuple(self.alignments))
        object.__setattr__(self, "errors", tuple(str(e) for e in self.errors))
        form = "(z, y, x)" if self.ndim == 3 else "(rows, cols)"
        object.__setattr__(self, "frame_shape", as_shape(self.frame_shape, "frame_shape", form))
        if isinstance(self.passes, bool) or not isinstance(self.passes, (int, np.integer)):
            raise TypeError(f"passes must be an integer, got {self.passes!r}")
        if len(self.errors) != len(self.alignments):
            raise ValueError("alignments and errors must have one entry per frame")

    def __len__(self) -> int:
        return len(self.alignments)

    @property
    def ok(self) -> np.ndarray:
        """Boolean array, True for each frame that was aligned."""
        return np.array([a is not None for a in self.alignments], dtype=bool)

    @property
    def matrices(self) -> np.ndarray:
        """``(n, 3, 3)`` (volumes: ``(n, 4, 4)``) reference-grid → frame matrices; the
        identity for failed frames."""
        eye = np.eye(self.ndim + 1)
        return np.array([eye if a is None else a.matrix for a in self.alignments])

    def canvas(self, kind: str = "union") -> Canvas:
        """The output grid of :func:`~napari_ecc_align.warp_stack` with ``canvas=kind``.

        Parameters
        ----------
        kind : {"union", "reference"}
            ``"reference"``: the reference frame's grid (``origin`` all zeros).
            ``"union"``: the reference grid grown by whole pixels until it holds every
            frame whole: each frame's box (its first and last pixel centres on every
            axis) mapped onto the reference grid by the inverse of its matrix
            (projectively for homographies), rounded outward. Failed frames count at
            the identity, where ``warp_stack`` puts them.

        Returns
        -------
        Canvas
            ``shape`` of the output frames and ``origin``, the reference-grid pixel
            (array order) of output index 0.

        Raises
        ------
        ValueError
            If ``kind`` is not a canvas, or the union would be more than 4 times a frame
            along an axis (a frame's matrix is wrong: the message names the frame).
        """
        return stack_canvas(self.matrices, self.frame_shape, kind)

    def table(self) -> list[dict[str, Any]]:
        """One row per frame: ``frame, ok, dx, dy, rotation_deg, scale, correlation,
        correlation_before, error``.

        ``dx, dy``: where the reference-grid centre lands in the frame, minus the centre
        (pixels); ``rotation_deg``: rotation of the 2×2 part; ``scale``: the square
        root of its absolute determinant. Numbers are NaN for failed frames.

        For volumes: ``frame, ok, dx, dy, dz, rotation_x_deg, rotation_y_deg,
        rotation_z_deg, scale, correlation, correlation_before, error``, the shift of
        the grid centre in voxels, the rotation of the nearest rotation matrix (in
        physical units, from each frame's ``parameters["spacing"]``) as extrinsic
        x-y-z Euler angles (about the fixed x, then y, then z axis: R = Rz·Ry·Rx,
        scipy's ``"xyz"``), and the cube root of the absolute determinant.
        """
        if self.ndim == 3:
            return self._volume_table()
        rows, cols = self.frame_shape
        centre = np.array([(cols - 1) / 2, (rows - 1) / 2, 1.0])
        numbers = ("dx", "dy", "rotation_deg", "scale", "correlation", "correlation_before")
        out = []
        for i, (a, error) in enumerate(zip(self.alignments, self.errors, strict=True)):
            row = {"frame": i, "ok": a is not None, **dict.fromkeys(numbers, float("nan"))}
            if a is not None:
                (x, y, w), lin = a.matrix @ centre, a.matrix[:2, :2]
                angle = np.degrees(np.arctan2(lin[1, 0] - lin[0, 1], lin.trace()))
                scale = np.sqrt(abs(np.linalg.det(lin)))
                values = (x / w - centre[0], y / w - centre[1], angle, scale)
                values += (a.correlation, a.correlation_before)
                row.update(zip(numbers, map(float, values), strict=True))
            out.append({**row, "error": error})
        return out

    def _volume_table(self) -> list[dict[str, Any]]:
        nz, ny, nx = self.frame_shape
        centre = np.array([(nx - 1) / 2, (ny - 1) / 2, (nz - 1) / 2, 1.0])
        numbers = ("dx", "dy", "dz", "rotation_x_deg", "rotation_y_deg", "rotation_z_deg",
                   "scale", "correlation", "correlation_before")  # fmt: skip
        out = []
        for i, (a, error) in enumerate(zip(self.alignments, self.errors, strict=True)):
            row = {"frame": i, "ok": a is not None, **dict.fromkeys(numbers, float("nan"))}
            if a is not None:
                dz, dy, dx = a.parameters.get("spacing", (1.0, 1.0, 1.0))
                physical = np.diag([dx, dy, dz])
                linear = physical @ a.matrix[:3, :3] @ np.linalg.inv(physical)
                u, _, vt = np.linalg.svd(linear)
                if np.linalg.det(u @ vt) < 0:
                    u[:, -1] *= -1
                angles = Rotation.from_matrix(u @ vt).as_euler("xyz", degrees=True)
                shift = (a.matrix @ centre)[:3] - centre[:3]
                scale = abs(np.linalg.det(a.matrix[:3, :3])) ** (1 / 3)
                values = (*shift, *angles, scale, a.correlation, a.correlation_before)
                row.update(zip(numbers, map(float, values), strict=True))
            out.append({**row, "error": error})
        return out

    def to_csv(self, path) -> None:
        """Write :meth:`table` as CSV with a header row (atomically: temp file + rename)."""
        rows = self.table()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["frame"])
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        write_text_atomic(path, buffer.getvalue(), ".csv.tmp")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary; :meth:`from_dict` restores it."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["alignments"] = [None if a is None else a.to_dict() for a in self.alignments]
        data["errors"], data["frame_shape"] = list(self.errors), list(self.frame_shape)
        data["convention"] = (
            "each matrix: reference grid (x, y, z, 1) -> that frame (x, y, z)"
            if self.ndim == 3
            else "each matrix: reference grid (x, y, 1) -> that frame (x, y)"
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, max_pixels=None) -> StackAlignment:
        """Rebuild a :class:`StackAlignment` from :meth:`to_dict` output, checking every field.

        Parameters
        ----------
        data : dict
            As :meth:`to_dict` returns it.
        max_pixels : int, optional
            Pixel budget of ``frame_shape`` and of every frame's shapes; None (default)
            sets none for a dictionary made in this process. :meth:`from_json` applies one.

        Raises
        ------
        TypeError, ValueError
            If a field is missing, of the wrong type or out of range; the message names it.
        """
        if not isinstance(data, dict):
            raise TypeError(f"data must be a dict, got {type(data).__name__}")
        missing = {"alignments", "errors", "reference", "axis", "motion", "frame_shape"} - set(data)
        if missing:
            raise ValueError(f"stack alignment data lacks the keys {sorted(missing)}")
        budget = math.inf if max_pixels is None else max_pixels
        return cls(**_stack_fields(data, budget))

    def to_json(self, path=None) -> str:
        """Return the JSON text, and write it to ``path`` (atomically) if given."""
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            write_text_atomic(path, text + "\n", ".json.tmp")
        return text

    @classmethod
    def from_json(cls, path_or_text, *, max_pixels=None) -> StackAlignment:
        """Read a stack alignment from a JSON file path or a JSON string.

        Through the same guarded loader as :meth:`Alignment.from_json` (regular
        files only, bounded size and nesting), every field checked as in
        :meth:`from_dict`, the shapes within ``max_pixels`` (default: the
        environment variable ``NAPARI_ECC_ALIGN_MAX_PIXELS``, else 2**28).
        """
        data = read_json(path_or_text, "stack alignment JSON")
        return cls.from_dict(data, max_pixels=pixel_budget(max_pixels))


def _stack_fields(data: dict[str, Any], budget) -> dict[str, Any]:
    """The constructor's keyword arguments from ``to_dict`` output, each checked by name."""
    frames = data["alignments"]
    if not isinstance(frames, (list, tuple)):
        raise TypeError(f"alignments must be a list, got {type(frames).__name__}")
    errors = data["errors"]
    if not isinstance(errors, (list, tuple)) or not all(isinstance(e, str) for e in errors):
        raise TypeError(f"errors must be a list of strings, got {errors!r:.80}")
    alignments = []
    for t, frame in enumerate(frames):
        if frame is None:
            alignments.append(None)
            continue
        try:
            alignments.append(Alignment.from_dict(frame, max_pixels=budget))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"alignments[{t}]: {exc}") from None
    ndim = data.get("ndim", 2)
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r:.80}")
    reference = data["reference"]
    if not (isinstance(reference, str) and reference in REFERENCES):
        reference = whole_field(reference, "reference", low=0)
    if not isinstance(data["motion"], str) or data["motion"] not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {data['motion']!r:.80}")
    optional = {name: data.get(name) for name in ("channel_axis", "channel")}
    return {
        "alignments": alignments,
        "errors": list(errors),
        "reference": reference,
        "axis": whole_field(data["axis"], "axis", low=0, high=31),
        **{k: None if v is None else whole_field(v, k, low=0) for k, v in optional.items()},
        "motion": data["motion"],
        "frame_shape": shape_field(data["frame_shape"], "frame_shape", ndim, budget),
        "elapsed": number_field(data.get("elapsed", 0.0), "elapsed", low=0.0),
        "ndim": ndim,
        "passes": whole_field(data.get("passes", 1), "passes", low=1, high=1000),
    }


def _cell(value):
    return format(value, ".12g") if isinstance(value, float) else value
