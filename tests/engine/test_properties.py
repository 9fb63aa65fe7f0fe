"""Property-based tests: whatever users pass, the API returns a finite result of the
documented shape and dtype, or raises ValueError/TypeError/AlignmentError naming the
problem — never a raw cv2.error, a crash, a hang, a NaN matrix or a flood of warnings."""

import time
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from napari_ecc_align import AlignmentError, align, align_stack, difference, warp
from napari_ecc_align.engine.alignment import Alignment

ALLOWED = (ValueError, TypeError, AlignmentError)
DTYPES = [
    np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
    np.float16, np.float32, np.float64,
]  # fmt: skip
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def images(draw, max_side=48):
    """Images of every dtype and awkward shape, with constant, NaN, inf and huge values."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rows = draw(st.sampled_from([1, 2, 3, 7, 16, 33, max_side]))
    cols = draw(st.sampled_from([1, 2, 5, 16, 40, max_side, 3 * max_side]))
    channels = draw(st.sampled_from([None, None, 3, 4]))
    shape = (rows, cols) if channels is None else (rows, cols, channels)
    kind = draw(st.sampled_from(["smooth", "constant", "random", "extreme"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    base = cv2.GaussianBlur(rng.random((rows, cols)).astype(np.float32), (0, 0), 2)
    if channels:
        base = np.stack([base] * channels, axis=-1)
    if kind == "constant":
        base = np.full(shape, 0.5, np.float32)
    elif kind == "random":
        base = rng.random(shape).astype(np.float32)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        data = (base * (float(info.max) / 4 if kind == "extreme" else 1.0)).astype(dtype)
        if kind == "extreme" and data.size > 2:
            data.flat[0], data.flat[1] = np.nan, np.inf
        return data
    if dtype == np.bool_:
        return base > 0.5
    info = np.iinfo(dtype)
    span = float(info.max) - float(info.min) if kind == "extreme" else 200.0
    data = np.clip(float(info.min) * (kind == "extreme") + base * span, info.min, info.max)
    return data.astype(dtype)


def _check_alignment(result, ref_shape, mov_shape):
    assert isinstance(result, Alignment)
    assert result.matrix.shape == (3, 3) and np.all(np.isfinite(result.matrix))
    assert result.reference_shape == ref_shape[:2] and result.moving_shape == mov_shape[:2]
    assert np.isfinite(result.correlation)


@SETTINGS
@given(reference=images(), other=images(), related=st.booleans(), motion=st.sampled_from(
    ["translation", "euclidean", "affine", "homography"]))  # fmt: skip
def test_align_returns_or_raises_cleanly(reference, other, related, motion):
    # Half the pairs show the same content a few pixels apart, so success paths run too.
    moving = np.roll(reference, (2, -3), axis=(0, 1)) if related else other
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = align(reference, moving, motion=motion)
        except ALLOWED as exc:
            event(f"align raised {type(exc).__name__}")
            assert str(exc)  # a message that says something
        except cv2.error as exc:  # pragma: no cover - the failure this test exists for
            pytest.fail(f"raw cv2.error escaped: {exc}")
        else:
            event("align returned")
            _check_alignment(result, reference.shape, moving.shape)
    assert time.perf_counter() - start < 10
    assert len(caught) <= 2, [str(w.message) for w in caught]


@SETTINGS
@given(image=images(), interpolation=st.sampled_from(["nearest", "linear", "cubic"]),
       angle=st.floats(-20, 20), shift=st.floats(-5, 5))  # fmt: skip
def test_warp_keeps_shape_and_dtype(image, interpolation, angle, shift):
    assume(image.shape[0] >= 1 and image.shape[1] >= 1)
    matrix = cv2.getRotationMatrix2D((0.0, 0.0), angle, 1.0)
    matrix = np.vstack([matrix, [0, 0, 1]])
    matrix[:2, 2] += shift
    alignment = Alignment(matrix, "euclidean", 1.0, 0.0, image.shape[:2], image.shape[:2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = warp(image, alignment, interpolation=interpolation)
        except ALLOWED as exc:
            assert str(exc)
            return
    assert out.shape == image.shape and out.dtype == image.dtype
    assert len(caught) <= 2, [str(w.message) for w in caught]


@SETTINGS
@given(a=images(max_side=24), b=images(max_side=24),
       mode=st.sampled_from(["absolute", "normalized"]))  # fmt: skip
def test_difference_returns_or_raises_cleanly(a, b, mode):
    try:
        out = difference(a, b, mode=mode)
    except ALLOWED as exc:
        assert str(exc)
        return
    assert out.shape[:2] == a.shape[:2]
    if out.dtype.kind == "f":
        assert np.all(np.isfinite(out))


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_input_is_a_type_error(dtype):
    z = np.zeros((32, 32), dtype)
    with pytest.raises(TypeError, match="complex"):
        align(z, z)
    with pytest.raises(TypeError, match="complex"):
        warp(z, np.eye(3))
    with pytest.raises(TypeError, match="complex"):
        difference(z, z)


@pytest.mark.parametrize(
    "mask",
    [np.zeros((40, 50), bool), np.ones((40, 50), bool), np.ones((3, 3), bool)],
    ids=["empty", "full", "wrong-shape"],
)
def test_masks_empty_full_wrong_shape(mask):
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.random((40, 50)).astype(np.float32), (0, 0), 2)
    try:
        result = align(image, image, reference_mask=mask)
    except ALLOWED as exc:
        assert "mask" in str(exc) or "valid" in str(exc)
    else:
        _check_alignment(result, image.shape, image.shape)


@SETTINGS
@given(frames=st.integers(1, 4), image=images(max_side=24))
def test_align_stack_returns_or_raises_cleanly(frames, image):
    stack = np.stack([image] * frames)
    try:
        result = align_stack(stack, reference="first", workers=1)
    except ALLOWED as exc:
        assert str(exc)
        return
    assert len(result) == frames
    assert np.all(np.isfinite(result.matrices))
