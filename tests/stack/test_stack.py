"""Stack alignment: reference modes, chaining, channels, lazy inputs, failures, I/O."""

import csv
import math
import threading
import time

import cv2
import numpy as np
import pytest

from napari_ecc_align import AlignmentError, StackAlignment, align_stack, warp, warp_stack
from napari_ecc_align.data import fluorescence_spots, natural_image
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.stack import FrameProgress, iter_align_stack

SHAPE = (128, 160)


def _walk(frames, step, rot, seed):
    """Per-frame (dx, dy, angle_deg) of a random walk starting at 0."""
    rng = np.random.default_rng(seed)
    steps = np.column_stack([rng.uniform(-step, step, (frames, 2)), rng.uniform(-rot, rot, frames)])
    steps[0] = 0
    return np.cumsum(steps, axis=0)


def _to_scene(dx, dy, angle, shape, margin):
    """Frame pixel (x, y, 1) -> scene pixel: rotation about the frame centre, then a shift."""
    rows, cols = shape
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    m = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    centre = np.array([(cols - 1) / 2, (rows - 1) / 2])
    m[:2, 2] = centre + margin + [dx, dy] - m[:2, :2] @ centre
    return m


def _cut(scene, to_scene, shape):
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(scene, to_scene[:2], (shape[1], shape[0]), flags=flags)


def drift_stack(frames=24, shape=SHAPE, step=1.0, rot=0.2, seed=0, margin=32, scenes=None):
    """Frames cut from one (or several, as channels) scene(s) along a known random walk.

    Returns the stack (frames, rows, cols) -- or (frames, C, rows, cols) for several
    scenes -- and each frame's frame -> scene matrix T_t. The exact transform between
    frames is then ``align(frame_s, frame_t).matrix == inv(T_t) @ T_s``.
    """
    big = (shape[0] + 2 * margin, shape[1] + 2 * margin)
    scenes = scenes or [natural_image(big, seed=seed)]
    truths = [_to_scene(*p, shape, margin) for p in _walk(frames, step, rot, seed)]
    stack = np.stack([np.stack([_cut(s, t, shape) for s in scenes]) for t in truths])
    return (stack[:, 0] if len(scenes) == 1 else stack), truths


def relative(truths, s, t):
    """True matrix mapping frame s pixels to frame t pixels."""
    return np.linalg.inv(truths[t]) @ truths[s]


def max_error(result, truths, ref=0, shape=SHAPE):
    """Worst corner RMS over frames of W_t (or W_t @ inv(W_ref) for the mean grid)."""
    m = result.matrices
    base = np.linalg.inv(m[ref]) if result.reference == "mean" else np.eye(3)
    return max(
        corner_rms(m[t] @ base, relative(truths, ref, t), shape)
        for t in range(len(truths))
        if result.ok[t]
    )


class CountingStack:
    """A minimal array-like (shape, ndim, dtype, __getitem__) counting frame reads."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.shape, self.ndim, self.dtype = data.shape, data.ndim, data.dtype
        self.lock = threading.Lock()

    def __getitem__(self, index):
        with self.lock:
            self.reads.append(index)
        return self.data[index]


@pytest.fixture(scope="module")
def drift():
    return drift_stack()


# ------------------------------------------------------------------------------ reference modes
@pytest.mark.parametrize("reference", ["first", "previous", "mean", 7, -3])
def test_reference_modes_recover_known_drift(drift, reference):
    stack, truths = drift
    result = align_stack(stack, reference=reference, workers=2)
    assert len(result) == len(stack) and result.ok.all() and not any(result.errors)
    assert result.frame_shape == SHAPE and result.motion == "euclidean"
    ref = {"first": 0, "previous": 0, "mean": 0, 7: 7, -3: len(stack) - 3}[reference]
    assert result.reference == (reference if isinstance(reference, str) else ref)
    assert max_error(result, truths, ref) < 0.1
    if reference != "mean":
        np.testing.assert_array_equal(result.matrices[ref], np.eye(3))
        assert result.alignments[ref].correlation == 1.0


def test_mean_grid_sits_in_the_middle_of_the_drift(drift):
    stack, truths = drift
    result = align_stack(stack, reference="mean", mean_iterations=1)
    assert max_error(result, truths) < 0.1
    # The mean image's grid is close to the average pose, not to frame 0.
    centres = np.array([row["dx"] for row in result.table()])
    assert abs(centres.mean()) < 1.0


def test_previous_follows_slow_drift_over_100_frames():
    shape = (64, 80)
    stack, truths = drift_stack(100, shape, step=0.4, rot=0.05, seed=3, margin=24)
    result = align_stack(stack, reference="previous", workers=2)
    assert result.ok.all()
    last = corner_rms(result.matrices[-1], relative(truths, 0, 99), shape)
    assert last < 0.5
    # every chained frame records which frame it was aligned to
    assert result.alignments[50].parameters["aligned_to"] == 49


def test_workers_do_not_change_the_result(drift):
    stack, _ = drift
    one = align_stack(stack[:10], reference="previous", workers=1)
    two = align_stack(stack[:10], reference="previous", workers=2)
    np.testing.assert_allclose(one.matrices, two.matrices, atol=1e-9)


def test_thread_settings_are_restored(drift):
    before = cv2.getNumThreads()
    align_stack(drift[0][:6], reference="first", workers=2)
    assert cv2.getNumThreads() == before


# ------------------------------------------------------------------------------------- channels
def test_channels_follow_the_estimation_channel():
    rows, cols = SHAPE
    big = (rows + 64, cols + 64)
    scenes = [natural_image(big, seed=5), fluorescence_spots(big, seed=6)]
    stack, truths = drift_stack(12, scenes=scenes, step=2.0, seed=5)  # (t, c, y, x)
    result = align_stack(stack, reference="first", channel_axis=1, workers=2)
    assert result.channel_axis == 1 and result.channel == 0 and result.axis == 0
    assert max_error(result, truths) < 0.1
    out = warp_stack(stack, result)
    assert out.shape == stack.shape and out.dtype == stack.dtype
    inner = (slice(16, -16), slice(16, -16))
    for t in (5, 11):  # channel 1 lands where the true transform puts it
        expected = warp(stack[t, 1], relative(truths, 0, t))
        peak = stack[:, 1].max()
        assert np.abs(out[t, 1] - expected)[inner].max() < 0.02 * peak
        assert np.abs(stack[t, 1] - expected)[inner].max() > 0.2 * peak
    # channel-last layout, negative axes: same transforms
    last = align_stack(np.moveaxis(stack, 1, -1), reference="first", channel_axis=-1, axis=-4)
    assert (last.axis, last.channel_axis) == (0, 3)
    np.testing.assert_allclose(last.matrices, result.matrices, atol=1e-6)
    moved = warp_stack(np.moveaxis(stack, 1, -1), last)
    np.testing.assert_allclose(np.moveaxis(moved, -1, 1), out, atol=1e-5)


def test_rgb_stack_is_estimated_on_luminance(drift):
    stack, truths = drift
    gains = np.array([0.9, 0.6, 0.3], np.float32)
    rgb = np.clip(stack[:10, ..., None] * gains * 255 + 10, 0, 255).astype(np.uint8)
    result = align_stack(rgb, reference="first")
    assert result.channel is None and result.channel_axis is None
    assert max_error(result, truths[:10]) < 0.1
    out = warp_stack(rgb, result)
    assert out.shape == rgb.shape and out.dtype == np.uint8


# -------------------------------------------------------------------------------- lazy inputs
def test_dask_input_is_read_one_frame_at_a_time(drift):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    stack, truths = drift
    computed = []

    def frame(t):
        computed.append(t)
        return stack[t]

    lazy = da.stack(
        [da.from_delayed(dask.delayed(frame)(t), SHAPE, stack.dtype) for t in range(len(stack))]
    )
    result = align_stack(lazy, reference="first", workers=2)
    assert sorted(computed) == list(range(len(stack)))  # each frame once, none twice
    assert max_error(result, truths) < 0.1
    computed.clear()
    align_stack(lazy, reference="previous")
    assert sorted(computed) == list(range(len(stack)))
    computed.clear()
    out = warp_stack(lazy, result)
    assert isinstance(out, da.Array) and not computed  # lazy: nothing computed yet
    np.testing.assert_array_equal(out[4].compute(), warp_stack(stack, result)[4])
    assert computed == [4]


def test_memmapped_tiff_input(tmp_path, drift):
    tifffile = pytest.importorskip("tifffile")
    stack, truths = drift
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, stack)
    mapped = tifffile.memmap(path)
    assert isinstance(mapped, np.memmap)
    result = align_stack(mapped, reference="previous")
    assert max_error(result, truths) < 0.1
    out = warp_stack(mapped, result)
    assert isinstance(out, np.ndarray) and not isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, warp_stack(stack, result))


def test_array_like_reads_frames_not_the_stack(drift):
    source = CountingStack(drift[0])
    align_stack(source, reference="mean", workers=2)
    # mean image, then two passes: three reads of every frame, each a single frame
    assert len(source.reads) == 3 * len(drift[0])
    assert all(isinstance(i, tuple) and isinstance(i[0], int) for i in source.reads)


@pytest.mark.parametrize("reference", ["first", "previous", "mean"])
def test_closing_the_generator_stops_the_work(reference):
    stack, _ = drift_stack(40, (96, 112), seed=2)
    for workers in (1, 2):
        source = CountingStack(stack)
        steps = iter_align_stack(source, reference=reference, workers=workers)
        got = [next(steps), next(steps)]
        steps.close()
        assert all(isinstance(s, FrameProgress) for s in got)
        reads = len(source.reads)
        time.sleep(0.2)
        assert len(source.reads) == reads  # nothing runs after close()
        # "mean" reads every frame once for the mean image before aligning any
        assert reads < (len(stack) if reference == "mean" else 0) + len(stack) // 2


def test_progress_callback_and_generator_result(drift):
    stack = drift[0][:8]
    calls = []
    align_stack(stack, reference="first", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 8) for i in range(1, 9)]
    assert len(align_stack(stack[:3], reference="first", progress="tqdm")) == 3
    with pytest.raises(TypeError, match="progress"):
        align_stack(stack, progress=True)
    steps = iter_align_stack(stack, reference="mean", mean_iterations=2, workers=2)
    seen = []
    try:
        while True:
            seen.append(next(steps))
    except StopIteration as stop:
        result = stop.value
    assert isinstance(result, StackAlignment) and len(seen) == 16
    assert seen[-1].done == seen[-1].total == 16
    assert sorted(s.index for s in seen[8:]) == list(range(8))


# ------------------------------------------------------------------------------------- failures
@pytest.mark.parametrize("reference", ["first", "previous"])
@pytest.mark.parametrize("bad", ["blank", "noise"])
def test_failed_frame_is_flagged_and_skipped(drift, reference, bad):
    stack, truths = drift
    stack = stack.copy()
    rng = np.random.default_rng(1)
    stack[9] = 0.5 if bad == "blank" else rng.random(SHAPE, dtype=np.float32)
    result = align_stack(stack, reference=reference, workers=2)
    assert list(np.flatnonzero(~result.ok)) == [9]
    assert result.errors[9] and result.alignments[9] is None
    np.testing.assert_array_equal(result.matrices[9], np.eye(3))
    assert max_error(result, truths) < 0.1  # the frames after it are still right
    if reference == "previous":
        assert result.alignments[10].parameters["aligned_to"] == 8
    row = result.table()[9]
    assert row["ok"] is False and math.isnan(row["dx"]) and row["error"] == result.errors[9]
    out = warp_stack(stack, result)
    np.testing.assert_array_equal(out[9], stack[9])  # passed through unwarped
    with pytest.raises(AlignmentError, match=r"^frame 9: "):
        align_stack(stack, reference=reference, workers=2, fail_fast=True)


# ---------------------------------------------------------------------------------- warp_stack
def test_warp_stack_goes_lazy_over_max_memory(drift):
    da = pytest.importorskip("dask.array")
    stack, _ = drift
    result = align_stack(stack, reference="first")
    eager = warp_stack(stack, result)
    assert isinstance(eager, np.ndarray) and eager.dtype == stack.dtype
    lazy = warp_stack(stack, result, max_memory=1000)
    assert isinstance(lazy, da.Array) and lazy.shape == stack.shape
    assert lazy.chunks[0] == (1,) * len(stack)
    np.testing.assert_array_equal(lazy.compute(), eager)
    # the aligned frames agree with frame 0 where they overlap
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(eager[-1][inner] - stack[0][inner]).mean() < 0.01


def test_warp_stack_keeps_integer_dtypes_and_other_axes(drift):
    stack, _ = drift
    u16 = (stack[:6] * 60000).astype(np.uint16)
    result = align_stack(u16, reference="first")
    moved = np.moveaxis(u16, 0, -1)  # frames last: (rows, cols, t)
    out = warp_stack(moved, result, axis=-1, interpolation="nearest")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(
        np.moveaxis(out, -1, 0), warp_stack(u16, result, interpolation="nearest")
    )


# ----------------------------------------------------------------------------------- I/O, table
def test_table_csv_and_json_round_trip(tmp_path, drift):
    stack, truths = drift
    stack = stack[:8].copy()
    stack[3] = 0.0
    result = align_stack(stack, reference="first")
    rows = result.table()
    assert [r["frame"] for r in rows] == list(range(8))
    keys = ["frame", "ok", "dx", "dy", "rotation_deg", "scale", "correlation"]
    assert list(rows[0])[:7] == keys and list(rows[0])[7:] == ["correlation_before", "error"]
    # dx, dy: where the grid centre lands in frame t, minus the centre
    true = relative(truths, 0, 5)
    centre = np.array([(SHAPE[1] - 1) / 2, (SHAPE[0] - 1) / 2, 1])
    np.testing.assert_allclose(
        [rows[5]["dx"], rows[5]["dy"]], (true @ centre)[:2] - centre[:2], atol=0.05
    )
    angle = math.degrees(math.atan2(true[1, 0], true[0, 0]))
    assert rows[5]["rotation_deg"] == pytest.approx(angle, abs=0.01)
    assert rows[5]["scale"] == pytest.approx(1.0, abs=1e-6)

    path = tmp_path / "sub" / "drift.csv"
    result.to_csv(path)
    with open(path, newline="") as fh:
        read = list(csv.DictReader(fh))
    assert len(read) == 8 and list(read[0]) == list(rows[0])
    assert float(read[5]["dx"]) == pytest.approx(rows[5]["dx"], abs=1e-8)
    assert read[3]["ok"] == "False" and read[3]["error"] == result.errors[3]
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed

    text = result.to_json(tmp_path / "stack.json")
    for restored in (
        StackAlignment.from_json(tmp_path / "stack.json"),
        StackAlignment.from_json(str(tmp_path / "stack.json")),
        StackAlignment.from_json(text),
        StackAlignment.from_dict(result.to_dict()),
    ):
        np.testing.assert_array_equal(restored.matrices, result.matrices)
        assert restored.errors == result.errors and restored.alignments[3] is None
        assert restored.alignments[5] == result.alignments[5]
        for name in ("reference", "axis", "channel_axis", "channel", "motion", "frame_shape"):
            assert getattr(restored, name) == getattr(result, name)


# ------------------------------------------------------------------------------ invalid input
@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((5, 20, 30), {"axis": 3}, "axis=3"),
        ((5, 20, 30), {"axis": -4}, "axis=-4"),
        ((5, 2, 20, 30), {}, r"shape \(5, 2, 20, 30\).*channel_axis"),
        ((5, 2, 20, 30, 3), {"channel_axis": 1}, "channel_axis=1"),
        ((5, 2, 20, 30), {"channel_axis": 0}, "channel_axis must differ from axis"),
        ((5, 2, 20, 30), {"channel_axis": 1, "channel": 2}, "channel"),
        ((5, 20, 30), {"channel": 0}, "channel"),
        ((5, 20, 30), {"reference": "last"}, "reference"),
        ((5, 20, 30), {"reference": 5}, "reference"),
        ((5, 20, 30), {"workers": 0}, "workers"),
        ((5, 20, 30), {"mean_iterations": 0}, "mean_iterations"),
        ((5, 20, 30), {"motion": "rigid"}, "motion"),
        ((5, 20, 30), {"init": "guess"}, "init"),
    ],
)
def test_invalid_arguments_name_themselves(shape, kwargs, match):
    stack = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=match):
        iter_align_stack(stack, **kwargs)  # raised at the call, before any frame is read
    with pytest.raises(ValueError, match=match):
        align_stack(stack, **kwargs)


def test_warp_stack_rejects_mismatched_stacks(drift):
    stack, _ = drift
    result = align_stack(stack[:4], reference="first")
    with pytest.raises(ValueError, match="frames"):
        warp_stack(stack[:5], result)
    with pytest.raises(ValueError, match="grid"):
        warp_stack(stack[:4, :64], result)
    with pytest.raises(TypeError, match="StackAlignment"):
        warp_stack(stack[:4], result.alignments[1])
    with pytest.raises(ValueError, match="interpolation"):
        warp_stack(stack[:4], result, interpolation="bicubic")
