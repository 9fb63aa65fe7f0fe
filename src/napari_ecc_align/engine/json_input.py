"""Reading transform JSON that may be hostile: one loader for every way a JSON comes in.

``Alignment.from_json`` and ``from_dict``, the CLI's ``--init``, batch ``--init``
and resume, and the widget's *Apply transform…* all go through here, so a
malformed file gets the same clear :class:`ValueError` (or :class:`TypeError`
for a wrong kind of value) everywhere, naming the field:

* the text: a regular file (never a FIFO or device, which would block), at most
  :data:`MAX_JSON_BYTES`, UTF-8, nested at most :data:`MAX_DEPTH` deep (the
  standard parser recurses, and 100 000 brackets would exhaust the stack);
* numbers: integers of more than 300 digits become ``inf`` instead of a Python
  integer no float can hold, so the field check below refuses them by name;
* the fields: types, lengths, finiteness, ranges, and shapes within the pixel
  budget (:mod:`.limits`), so nothing downstream allocates a declared absurdity.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .input_files import open_input
from .limits import check_pixels

MAX_JSON_BYTES = 16 * 2**20  # a transform is a few kB; a stack of 10 000 frames a few MB
MAX_DEPTH = 64  # ours nest 4 deep (parameters may hold a matrix)
_MAX_DIGITS = 300  # float64 holds about 1.8e308
_MAX_LEVELS = 64  # pyramid levels: 2**64 is beyond any image
_MAX_SIDE = 2**31 - 1  # pixels along one axis, budget or not (OpenCV's and TIFF's int32)
_MAX_ITERATIONS = 10**9  # ECC iterations on one level
# What the nesting count looks at: brackets, and the quotes and escapes that hide them.
_TOKEN = re.compile(r'[\[\]{}"\\]')


def read_json(path_or_text, what: str = "transform JSON") -> Any:
    """Parse JSON from a file path or from the text itself, refusing hostile input.

    Parameters
    ----------
    path_or_text : str or os.PathLike
        A path, or JSON text starting with ``{`` or ``[`` (a string that also
        names an existing file is read as the file).
    what : str
        What the JSON holds, for messages.

    Returns
    -------
    object
        The parsed value; numbers too large for a float come back as ``inf``.

    Raises
    ------
    ValueError
        Not a regular file, too large, not UTF-8, nested too deep, or not JSON.
    OSError
        The file cannot be opened (missing, permissions).
    """
    path = json_path(path_or_text)
    if path is None:
        text, source = path_or_text, what
    else:
        source = path
        text = read_text_file(source, f"a {what}")
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(f"{source}: {len(text):,} characters is too long for a {what}")
    depth = _nesting_depth(text)
    if depth > MAX_DEPTH:
        raise ValueError(
            f"{source}: nested {depth} levels deep, more than the {MAX_DEPTH} a {what} can have"
        )
    try:
        return json.loads(text, parse_int=_parse_int)
    except RecursionError:  # unreachable after the depth check; kept as a last guard
        raise ValueError(f"{source}: nested too deep to be a {what}") from None
    except ValueError as exc:  # JSONDecodeError
        raise ValueError(f"{source} is not a {what}: {exc}") from None


def json_path(path_or_text) -> str | None:
    """The file name ``path_or_text`` names, or None when it is JSON text itself.

    A string whose first non-blank character is ``{`` or ``[`` is JSON text unless a
    file of that name exists; anything else is a path, whether or not the file exists
    (opening it reports that).

    Parameters
    ----------
    path_or_text : str or os.PathLike
        What :func:`read_json` was given.

    Returns
    -------
    str or None
        ``os.fspath(path_or_text)`` for a path, None for JSON text.

    Raises
    ------
    TypeError
        If ``path_or_text`` is no string and no path-like object (:func:`os.fspath`
        refuses it).

    Examples
    --------
    >>> from napari_ecc_align.engine.json_input import json_path
    >>> json_path("results/p01.json"), json_path('{"matrix": [[1, 0, 0], [0, 1, 0]]}')
    ('results/p01.json', None)
    """
    is_text = isinstance(path_or_text, str) and path_or_text.lstrip()[:1] in ("{", "[")
    if is_text and not os.path.exists(path_or_text):
        return None
    return os.fspath(path_or_text)


def read_text_file(path, what: str) -> str:
    """The text of an input file that may be hostile: a regular file (a FIFO would
    block; otherwise the OS's true reason) of at most 16 MiB, UTF-8 (a BOM allowed).

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the file should be, with its article, for messages: ``"a transform JSON"``.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Too large, or not UTF-8 text.
    OSError
        As :func:`open_input`.
    """
    with open_input(path) as fh:
        data = fh.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        raise ValueError(f"{path} is larger than {MAX_JSON_BYTES // 2**20} MiB: not {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not {what}: not UTF-8 text ({exc.reason})") from None


def _nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings, in one pass (linear in any input);
    a text with at most :data:`MAX_DEPTH` brackets gives their count, an upper bound."""
    openings = text.count("[") + text.count("{")
    if openings <= MAX_DEPTH:  # cannot be deeper: skip the scan
        return openings
    depth = deepest = 0
    in_string, escaped_until = False, -1
    for match in _TOKEN.finditer(text):
        where, token = match.start(), match.group()
        if where < escaped_until:  # the character after a backslash
            continue
        if in_string:
            if token == "\\":
                escaped_until = where + 2
            elif token == '"':
                in_string = False
        elif token == '"':
            in_string = True
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _parse_int(digits: str) -> int | float:
    if len(digits.lstrip("-")) > _MAX_DIGITS:
        return -math.inf if digits.startswith("-") else math.inf
    return int(digits)


# --------------------------------------------------------------------------- the Alignment fields
def alignment_fields(data, field_names: Sequence[str], limit=None) -> dict[str, Any]:
    """Check the fields of an ``Alignment.to_dict()`` dictionary; return the constructor's kwargs.

    Parameters
    ----------
    data : dict
        Parsed JSON (or a dictionary built in Python, numpy values allowed).
    field_names : sequence of str
        The constructor's field names; other keys (``"convention"``, unknown ones)
        are ignored.
    limit : int, optional
        Pixel budget for the two shapes (see :func:`.limits.max_pixels`).

    Raises
    ------
    TypeError
        If ``data`` is not a dict, or a field has the wrong kind of value.
    ValueError
        If a key is missing or a value is out of range; the message names the field.
    """
    if not isinstance(data, dict):
        raise TypeError(f"alignment data must be a dict (a JSON object), got {type(data).__name__}")
    missing = {"matrix", "motion", "reference_shape", "moving_shape"} - set(data)
    if missing:
        raise ValueError(f"alignment data lacks the keys {sorted(missing)}")
    kwargs = {k: v for k, v in data.items() if k in field_names}
    matrix = _matrix(data["matrix"])
    ndim = 3 if matrix.shape in ((3, 4), (4, 4)) else 2
    if "ndim" in data and (_is_bool(data["ndim"]) or data["ndim"] != ndim):
        raise ValueError(
            f"alignment data says ndim={data['ndim']!r} but its matrix is "
            f"{matrix.shape[0]}x{matrix.shape[1]} (ndim={ndim})"
        )
    kwargs["matrix"] = matrix
    if not isinstance(data["motion"], str):
        raise TypeError(f"motion must be a string, got {type(data['motion']).__name__}")
    for name in ("reference_shape", "moving_shape"):
        kwargs[name] = shape_field(data[name], name, ndim, limit)
    for name in ("correlation", "correlation_before"):
        kwargs[name] = _correlation(data.get(name, math.nan), name)
    if "elapsed" in data:
        kwargs["elapsed"] = number_field(data["elapsed"], "elapsed", low=0.0)
    if "levels" in data:
        kwargs["levels"] = whole_field(data["levels"], "levels", low=1, high=_MAX_LEVELS)
    if "init_method" in data and not isinstance(data["init_method"], str):
        raise TypeError(f"init_method must be a string, got {type(data['init_method']).__name__}")
    iterations = data.get("iterations", ())
    if not _is_sequence(iterations):
        raise TypeError(f"iterations must be a list of whole numbers, got {iterations!r:.80}")
    kwargs["iterations"] = tuple(
        whole_field(n, f"iterations[{i}]", low=0, high=_MAX_ITERATIONS)
        for i, n in enumerate(iterations)
    )
    if "parameters" in data and not isinstance(data["parameters"], dict):
        raise TypeError(f"parameters must be a dict, got {type(data['parameters']).__name__}")
    return kwargs


def _matrix(value) -> np.ndarray:
    shapes = "2x3 or 3x3 (an image) or 3x4 or 4x4 (a volume)"
    try:
        with warnings.catch_warnings():  # numpy < 1.24 warns, then makes an object array
            warnings.simplefilter("ignore")
            matrix = np.array(value)
    except (ValueError, TypeError):  # ragged rows
        raise ValueError(f"matrix must be a {shapes} array of numbers, got {value!r:.80}") from None
    if matrix.dtype.kind not in "iuf" or matrix.shape not in ((2, 3), (3, 3), (3, 4), (4, 4)):
        raise ValueError(f"matrix must be a {shapes} array of numbers, got {value!r:.80}")
    matrix = matrix.astype(np.float64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError("matrix must be finite, it holds inf or NaN (or a number too large)")
    return matrix


def shape_field(value, name: str, ndim: int, limit=None) -> tuple[int, ...]:
    """``value`` as a shape of ``ndim`` whole numbers from 1 to 2**31 - 1, within the budget.

    Raises
    ------
    TypeError, ValueError
        Naming ``name`` (and the entry: ``frame_shape[1]``).
    PixelBudgetError
        If the shape holds more pixels than ``limit`` (see :func:`.limits.max_pixels`).
    """
    axes = "(z, y, x)" if ndim == 3 else "(rows, cols)"
    if not _is_sequence(value) or len(value) != ndim:
        raise ValueError(
            f"{name} must be {ndim} whole numbers {axes} for a {ndim}D alignment, got {value!r:.80}"
        )
    shape = tuple(
        whole_field(n, f"{name}[{i}]", low=1, high=_MAX_SIDE) for i, n in enumerate(value)
    )
    check_pixels(shape, name, limit)
    return shape


def _correlation(value, name: str) -> float:
    if value is None:
        return math.nan
    number = number_field(value, name, allow_nan=True)
    if not (math.isnan(number) or -1.0 - 1e-6 <= number <= 1.0 + 1e-6):
        raise ValueError(f"{name} must be a correlation between -1 and 1 (or NaN), got {value!r}")
    return number


def number_field(value, name: str, *, low: float | None = None, allow_nan: bool = False) -> float:
    """``value`` as a finite float (NaN too with ``allow_nan``) of at least ``low``.

    Raises
    ------
    TypeError
        If it is no number (booleans and strings are not), naming ``name``.
    ValueError
        If it is infinite, too large for a float, NaN or below ``low``.
    """
    if _is_bool(value) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r:.80}")
    try:
        number = float(value)
    except OverflowError:  # a Python integer beyond any float
        number = math.inf
    if math.isnan(number) and allow_nan:
        return number
    if not math.isfinite(number) or (low is not None and number < low):
        bound = f" >= {low:g}" if low is not None else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r:.80}")
    return number


def whole_field(value, name: str, *, low: int, high: float = math.inf) -> int:
    """``value`` as an int from ``low`` to ``high``: Python/numpy integers, or whole floats.

    Raises
    ------
    TypeError
        If it is no number (booleans and strings are not), naming ``name``.
    ValueError
        If it is not whole, not finite, or out of range.
    """
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not _is_bool(value)
    if not is_number:
        raise TypeError(f"{name} must be a whole number, got {value!r:.80}")
    # Integers compare exactly, however large; floats must be finite and whole.
    whole = isinstance(value, (int, np.integer)) or (
        math.isfinite(value) and float(value).is_integer()
    )
    if not (whole and low <= value <= high):
        bound = f">= {low}" if high == math.inf else f"from {low} to {high:,}"
        raise ValueError(f"{name} must be a whole number {bound}, got {value!r:.80}")
    return int(value)


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))
