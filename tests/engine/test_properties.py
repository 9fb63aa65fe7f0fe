"""Property-based tests: whatever users pass, the API returns a finite result of the
documented shape and dtype, or raises ValueError/TypeError/AlignmentError naming the
problem — never a raw cv2.error, a crash, a hang, a NaN matrix or a flood of warnings."""

import re
import time
import warnings

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
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
    derandomize=True,  # the same examples on every run (seeded like every other RNG here)
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

WARP_SETTINGS = settings(SETTINGS, max_examples=200)  # warp is cheap: cover dtype x fill


@st.composite
def shapes(draw, max_side=48):
    """Awkward image shapes: 1-pixel rows and columns, wide strips, gray, RGB and RGBA."""
    rows = draw(st.sampled_from([1, 2, 3, 7, 16, 33, max_side]))
    cols = draw(st.sampled_from([1, 2, 5, 16, 40, max_side, 3 * max_side]))
    channels = draw(st.sampled_from([None, None, 3, 4]))
    return (rows, cols) if channels is None else (rows, cols, channels)


@st.composite
def images(draw, max_side=48, shape=None):
    """Images of every dtype and awkward shape, with constant, NaN, inf and huge values."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(shapes(max_side)) if shape is None else tuple(shape)
    rows, cols = shape[:2]
    channels = shape[2] if len(shape) == 3 else None
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
        scale = float(info.max) / 4 if kind == "extreme" else 1.0
        # in float64: float32 * (float64 max / 4) would overflow to inf everywhere
        data = (base.astype(np.float64) * scale).astype(dtype)
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
    # A hang guard, not a speed claim: these images are at most 48 pixels a side, so even
    # a machine many times slower than any CI finishes each call in well under a second.
    assert time.perf_counter() - start < 120
    assert len(caught) <= 2, [str(w.message) for w in caught]


def _fill_fits(fill, dtype) -> bool:
    """warp's documented condition: fill_value must be representable in the image dtype."""
    if dtype == np.bool_:
        return True  # any fill becomes True or False
    if np.isnan(fill):
        return dtype.kind == "f"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min) <= fill <= int(info.max)
    return abs(fill) <= float(np.finfo(dtype).max)


def _exact_range(dtype) -> bool:
    """Integer dtypes whose values float64 holds exactly (warp interpolates them there)."""
    return dtype.kind in "iu" and dtype.itemsize <= 4


def test_warp_keeps_shape_and_dtype_or_raises_a_documented_error():
    counts = {"ok": 0, "rejected": 0, "total": 0}

    @WARP_SETTINGS
    @given(image=images(), interpolation=st.sampled_from(["nearest", "linear", "cubic", "area"]),
           fill=st.sampled_from([0, 0, 0, 1, 7, -1, 256, 70_000, 2**40, 1e300, float("nan")]),
           angle=st.floats(-20, 20), shift=st.floats(-5, 5))  # fmt: skip
    def check(image, interpolation, fill, angle, shift):
        counts["total"] += 1
        matrix = np.vstack([cv2.getRotationMatrix2D((0.0, 0.0), angle, 1.0), [0, 0, 1]])
        matrix[:2, 2] += shift
        alignment = Alignment(matrix, "euclidean", 1.0, 0.0, image.shape[:2], image.shape[:2])
        # The rejections warp documents for these arguments, and when they apply.
        documented = []
        if interpolation not in ("nearest", "linear", "cubic"):
            documented.append((ValueError, r"^interpolation must be one of"))
        if not _fill_fits(fill, image.dtype):
            documented.append((ValueError, r"^fill_value .* does not fit the image dtype"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                out = warp(image, alignment, interpolation=interpolation, fill_value=fill)
            except Exception as exc:
                assert any(
                    isinstance(exc, kind) and re.search(pattern, str(exc))
                    for kind, pattern in documented
                ), f"undocumented rejection {exc!r} (documented here: {documented})"
                event("warp raised a documented error")
                counts["rejected"] += 1
                return
        assert not documented, f"warp accepted what it documents as invalid: {documented}"
        assert out.shape == image.shape and out.dtype == image.dtype
        assert len(caught) <= 2, [str(w.message) for w in caught]
        nearest = interpolation == "nearest" or image.dtype == np.bool_
        fill_value = bool(fill) if image.dtype == np.bool_ else fill
        if nearest and image.dtype.itemsize <= 4:
            # nearest neighbour invents no value: every output is an input pixel or the fill
            allowed = np.append(image.reshape(-1), np.array(fill_value).astype(image.dtype))
            finite = out[np.isfinite(out)] if out.dtype.kind == "f" else out
            assert np.isin(finite, allowed).all()
        elif interpolation == "linear" and _exact_range(image.dtype):
            # a convex combination of input pixels and the fill: never wraps or overshoots
            lo, hi = min(image.min(), fill_value), max(image.max(), fill_value)
            assert lo <= out.min() and out.max() <= hi
        event("warp returned")
        counts["ok"] += 1

    check()
    assert counts["total"] >= WARP_SETTINGS.max_examples
    assert counts["ok"] >= 0.4 * counts["total"], counts  # the success path ran
    assert counts["rejected"] >= 0.05 * counts["total"], counts  # ... and the rejections


def test_difference_returns_or_raises_a_documented_error():
    counts = {"ok": 0, "rejected": 0, "total": 0}

    @SETTINGS
    @given(data=st.data(), shape=shapes(max_side=24),
           other=st.sampled_from(["same"] * 5 + ["gray", "rows"]),
           mode=st.sampled_from(["absolute", "normalized"]))  # fmt: skip
    def check(data, shape, other, mode):
        counts["total"] += 1
        # Mostly the same (rows, cols[, channels]): the success path is the common one.
        b_shape = {
            "same": shape,
            "gray": shape[:2] if len(shape) == 3 else (*shape, 3),
            "rows": (shape[0] + 1, *shape[1:]),
        }[other]
        a = data.draw(images(shape=shape), label="a")
        b = data.draw(images(shape=b_shape), label="b")
        documented = []
        if a.shape[:2] != b.shape[:2]:
            documented.append((ValueError, r"must share \(rows, cols\)"))
        elif a.shape != b.shape and mode == "absolute":
            documented.append((ValueError, r"differ in channels; use mode='normalized'"))
        try:
            out = difference(a, b, mode=mode)
        except Exception as exc:
            assert any(
                isinstance(exc, kind) and re.search(pattern, str(exc))
                for kind, pattern in documented
            ), f"undocumented rejection {exc!r} (documented here: {documented})"
            event("difference raised a documented error")
            counts["rejected"] += 1
            return
        assert not documented, f"difference accepted what it documents as invalid: {documented}"
        assert out.shape[:2] == a.shape[:2]
        if out.dtype.kind == "f":
            assert np.all(np.isfinite(out)) and out.min() >= 0
        if mode == "absolute" and a.dtype == b.dtype:
            assert out.dtype == (np.bool_ if a.dtype == np.bool_ else
                                 np.dtype(f"u{a.dtype.itemsize}") if a.dtype.kind in "iu"
                                 else a.dtype)  # fmt: skip
            if a.dtype.kind in "iu":  # exact, in Python integers: nothing wraps
                expected = np.abs(a.astype(object) - b.astype(object))
                assert (out.astype(object) == expected).all()
            elif a.dtype.kind == "f":  # |a - b|, 0 where either is NaN or infinite
                with np.errstate(invalid="ignore", over="ignore"):
                    expected = np.where(np.isfinite(a) & np.isfinite(b), np.abs(a - b), 0)
                np.testing.assert_array_equal(out, expected)
            else:
                np.testing.assert_array_equal(out, a ^ b)
        event("difference returned")
        counts["ok"] += 1

    check()
    assert counts["total"] >= SETTINGS.max_examples
    assert counts["ok"] >= 0.5 * counts["total"], counts  # the success path ran
    assert counts["rejected"] >= 1, counts


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
