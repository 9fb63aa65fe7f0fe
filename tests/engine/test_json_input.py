"""Hostile transform JSON: every malformed input is a ValueError/TypeError naming what is wrong,
through the one loader behind ``Alignment.from_json`` and ``from_dict``; and the pixel budget."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_ecc_align import Alignment
from napari_ecc_align.engine.limits import (
    DEFAULT_MAX_PIXELS,
    ENV_VAR,
    PixelBudgetError,
    check_pixels,
    max_pixels,
)

GOOD = Alignment(
    np.array([[1.01, 0.02, 3.5], [-0.01, 0.99, -2.0], [0, 0, 1]]),
    "affine",
    0.93,
    0.41,
    (100, 120),
    (110, 130),
    elapsed=0.25,
    levels=3,
    init_method="phase",
    iterations=(12, 7, 3),
    parameters={"max_iterations": 100},
).to_dict()


def _text_with(**fields) -> str:
    return json.dumps({**GOOD, **fields})


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        # the campaign's three tracebacks
        ("[" * 100_000 + "]" * 100_000, ValueError, "nested 100000 levels deep"),
        (_text_with(elapsed=1).replace('"elapsed": 1', '"elapsed": 1' + "0" * 400), ValueError,
         "elapsed must be a finite number"),
        (_text_with(reference_shape=[7, 120]).replace("[7, ", "[1e400, "), ValueError,
         r"reference_shape\[0\] must be a whole number"),
        # wrong shapes of shapes
        (_text_with(reference_shape=[-5, 10]), ValueError, r"reference_shape\[0\] .* from 1"),
        (_text_with(reference_shape=[0, 0]), ValueError, r"reference_shape\[0\]"),
        (_text_with(moving_shape=[1, 2, 3, 4, 5]), ValueError, "moving_shape must be 2 whole"),
        (_text_with(reference_shape=[10.5, 20]), ValueError, r"reference_shape\[0\]"),
        (_text_with(reference_shape="100x120"), ValueError, "reference_shape must be 2"),
        (_text_with(reference_shape=[10**6, 10**6]), PixelBudgetError, "1,000,000,000,000 pixels"),
        # wrong types where numbers belong
        (_text_with(levels="3"), TypeError, "levels must be a whole number"),
        (_text_with(levels=0), ValueError, "levels must be a whole number from 1 to 64"),
        (_text_with(levels=10**299), ValueError, "levels must be a whole number from 1"),
        (_text_with(elapsed="soon"), TypeError, "elapsed must be a number"),
        (_text_with(elapsed=-1.0), ValueError, "elapsed must be a finite number >= 0"),
        (_text_with(correlation="0.9"), TypeError, "correlation must be a number"),
        (_text_with(correlation=True), TypeError, "correlation must be a number"),
        (_text_with(correlation_before=7.0), ValueError, "between -1 and 1"),
        (_text_with(iterations=[3, -1]), ValueError, r"iterations\[1\]"),
        (_text_with(iterations=5), TypeError, "iterations must be a list"),
        (_text_with(init_method=5), TypeError, "init_method must be a string"),
        (_text_with(parameters=[1, 2]), TypeError, "parameters must be a dict"),
        (_text_with(motion=["affine"]), TypeError, "motion must be a string"),
        (_text_with(motion="similarity"), ValueError, "motion must be one of"),
        # the matrix
        (_text_with(matrix=[[1, 0], [0, 1, 0]]), ValueError, "matrix must be a 2x3"),
        (_text_with(matrix=[["1", "0", "0"], ["0", "1", "0"]]), ValueError, "matrix must be"),
        (_text_with(matrix=[[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]), ValueError, "matrix"),
        (_text_with(matrix=[[1, 0, "NaN"], [0, 1, 0]]), ValueError, "matrix must be"),
        (_text_with(matrix=[[1, 0, float("inf")], [0, 1, 0]]), ValueError, "matrix must be finite"),
        (_text_with(ndim=3), ValueError, "ndim=3"),
        # not an object at all, or not JSON
        ("[1, 2]", TypeError, "must be a dict"),
        ('{"matrix": [[1, 0, 0], [0, 1, 0]]', ValueError, "is not a transform JSON"),
        ('{"motion": "affine"}', ValueError, "lacks the keys"),
    ],
)  # fmt: skip
def test_hostile_json_is_refused_by_name(tmp_path, text, error, words):
    path = tmp_path / "t.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=words) as file_error:
        Alignment.from_json(path)
    assert str(path) in str(file_error.value)  # the message says which file
    with pytest.raises(error, match=words):  # the same from the text itself
        Alignment.from_json(text)


def test_python_integers_beyond_any_float_are_refused_by_name():
    for field, value, words in [
        ("reference_shape", [10**400, 5], r"reference_shape\[0\]"),
        ("elapsed", 10**400, "elapsed must be a finite number"),
        ("correlation", 10**400, "correlation"),
        ("iterations", [10**400], r"iterations\[0\] must be a whole number from 0"),
    ]:
        with pytest.raises(ValueError, match=words):
            Alignment.from_dict({**GOOD, field: value})


def test_the_valid_file_still_round_trips_exactly(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(GOOD), encoding="utf-8")
    again = Alignment.from_json(path)
    assert again.to_dict() == GOOD
    # NaN correlations (an alignment that never measured one) are legal and survive.
    nan = Alignment.from_json(_text_with(correlation=float("nan")))
    assert math.isnan(nan.correlation)


def test_unterminated_strings_full_of_escapes_are_read_in_linear_time():
    # A string-stripping regex took time quadratic in such input (3 s for 32 kB, days for
    # 16 MiB); the nesting scan is one pass. This size would take minutes the old way.
    hostile = '["' + '\\"' * 200_000
    with pytest.raises(ValueError, match="is not a transform JSON"):
        Alignment.from_json(hostile)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_odd_files_are_refused_by_type_without_blocking(tmp_path):
    fifo = tmp_path / "t.json"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    with pytest.raises(ValueError, match="not a regular file"):
        Alignment.from_json(fifo)
    folder = tmp_path / "folder.json"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a directory, not a regular file"):
        Alignment.from_json(folder)
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"matrix": "\xff\xfe"}')
    with pytest.raises(ValueError, match="not UTF-8"):
        Alignment.from_json(binary)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (16 * 2**20 + 1))
    with pytest.raises(ValueError, match="larger than 16 MiB"):
        Alignment.from_json(big)
    with pytest.raises(FileNotFoundError):
        Alignment.from_json(tmp_path / "missing.json")


def test_the_pixel_budget_can_be_raised_by_argument_and_environment(monkeypatch):
    text = _text_with(reference_shape=[20_000, 20_000])
    with pytest.raises(PixelBudgetError, match="NAPARI_ECC_ALIGN_MAX_PIXELS"):
        Alignment.from_json(text)
    assert Alignment.from_json(text, max_pixels=4 * 10**8).reference_shape == (20_000, 20_000)
    # A dictionary made in this process describes images that exist: no budget unless asked.
    huge = Alignment.from_dict(json.loads(text))
    assert huge.reference_shape == (20_000, 20_000)
    with pytest.raises(PixelBudgetError):
        Alignment.from_dict(json.loads(text), max_pixels=10**8)
    # ... and the library reads back what it wrote for such images only with a raised budget.
    with pytest.raises(PixelBudgetError):
        Alignment.from_json(huge.to_json())
    monkeypatch.setenv(ENV_VAR, "400000000")
    assert max_pixels() == 4 * 10**8
    assert Alignment.from_json(text).reference_shape == (20_000, 20_000)
    monkeypatch.setenv(ENV_VAR, "inf")
    assert max_pixels() == math.inf
    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(ValueError, match=ENV_VAR):
        max_pixels()
    monkeypatch.delenv(ENV_VAR)
    assert max_pixels() == DEFAULT_MAX_PIXELS == 2**28
    for bad in (0, -3, 2.5, "x"):
        with pytest.raises(ValueError, match="max_pixels"):
            max_pixels(bad)
    with pytest.raises(TypeError, match="max_pixels"):
        max_pixels(True)
    check_pixels((2**14, 2**14), "a 16384² image")  # exactly at the default: allowed
    with pytest.raises(PixelBudgetError, match="16384 × 16385"):
        check_pixels((2**14, 2**14 + 1), "one column more")


# ------------------------------------------------------------------------------------ property
_numbers = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
)
_json_values = st.recursive(
    _numbers,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


def _mostly(valid, hostile=_json_values):
    """Nine draws in ten are valid: enough whole documents load to test that path too."""
    return st.one_of(*[valid] * 9, hostile)


_shape = st.lists(st.integers(min_value=1, max_value=5000), min_size=2, max_size=2)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "matrix": _mostly(
            st.lists(
                st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=2, max_size=2
            ),
            st.lists(st.lists(_numbers, min_size=3, max_size=3), min_size=2, max_size=3),
        ),
        "motion": _mostly(st.sampled_from(["affine", "translation", "euclidean"])),
        "reference_shape": _mostly(_shape, st.lists(_numbers, min_size=2, max_size=2)),
        "moving_shape": _mostly(_shape),
        "correlation": _mostly(st.floats(-1.0, 1.0)),
        "levels": _mostly(st.integers(1, 12)),
        "elapsed": _mostly(st.floats(0.0, 1e6)),
        "iterations": _mostly(st.lists(st.integers(0, 1000), max_size=6)),
        "parameters": _mostly(st.dictionaries(st.text(max_size=5), _json_values, max_size=3)),
        "ndim": _mostly(st.just(2)),
    },
)


# derandomize: the same 300 examples every run, so the counts below are stable.
@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(fields=_fields, keep=st.sampled_from([True, True, True, False]))
def _load_or_refuse(outcomes, fields, keep):
    data = {**GOOD, **fields} if keep else fields
    text = json.dumps(data)  # NaN and Infinity are written as the JSON extensions
    try:
        alignment = Alignment.from_json(text)
    except (ValueError, TypeError) as exc:
        outcomes["refused"] += 1
        assert str(exc)
        return
    outcomes["loaded"] += 1
    # What loads is whole: it writes back, and its shapes and matrix are usable.
    again = Alignment.from_json(alignment.to_json())
    assert again.reference_shape == alignment.reference_shape
    assert np.all(np.isfinite(again.matrix))
    assert min(alignment.reference_shape) >= 1


def test_from_json_accepts_or_refuses_by_name_never_anything_else():
    outcomes = {"loaded": 0, "refused": 0}
    _load_or_refuse(outcomes)  # hypothesis runs every example
    # Both paths ran many times: the strategy is not all garbage, nor all valid.
    assert outcomes["loaded"] >= 30, outcomes
    assert outcomes["refused"] >= 30, outcomes


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_stack_alignment_json_goes_through_the_same_loader(tmp_path):
    from napari_ecc_align import StackAlignment

    deep = tmp_path / "stack.json"
    deep.write_text('{"alignments": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(ValueError, match="nested 100001 levels deep"):
        StackAlignment.from_json(deep)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        StackAlignment.from_json(fifo)


def test_stack_alignment_fields_are_checked_by_name():
    from napari_ecc_align import StackAlignment

    frame = Alignment(np.eye(3), "euclidean", 1.0, 1.0, (40, 50), (40, 50)).to_dict()
    good = StackAlignment([Alignment.from_dict(frame), None], ["", "no overlap"], "first", 0,
                          None, None, "euclidean", (40, 50), 0.5).to_dict()  # fmt: skip
    assert StackAlignment.from_json(json.dumps(good)).to_dict() == good
    for field, value, error, words in [
        ("motion", 3, ValueError, "motion must be one of"),
        ("elapsed", "soon", TypeError, "elapsed must be a number"),
        ("ndim", "two", ValueError, "ndim must be 2 or 3"),
        ("reference", "last", TypeError, "reference must be a whole number"),
        ("reference", -1, ValueError, "reference must be a whole number >= 0"),
        ("axis", 2.5, ValueError, "axis must be a whole number from 0 to 31"),
        ("passes", 0, ValueError, "passes must be a whole number from 1"),
        ("errors", [1, 2], TypeError, "errors must be a list of strings"),
        ("alignments", [{**frame, "levels": "x"}, None], TypeError, r"alignments\[0\]: levels"),
        ("frame_shape", [10**6, 10**6], PixelBudgetError, "frame_shape declares"),
    ]:
        with pytest.raises(error, match=words):
            StackAlignment.from_json(json.dumps({**good, field: value}))
