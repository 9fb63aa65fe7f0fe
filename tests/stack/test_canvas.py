"""``warp_stack(..., canvas="union")`` (issue 14): the output grows until no frame is
cropped, on the reference grid's pitch with an integer origin; ``"reference"`` (the
default) is unchanged."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import Alignment, Canvas, StackAlignment, align_stack, warp, warp_stack
from napari_ecc_align.data import natural_image

SHAPE = (48, 64)
# (dx, dy) of each frame: the reference-grid pixel (x, y) is at (x + dx, y + dy) in frame t.
SHIFTS = [(0, 0), (3, 5), (-4, -7)]
MARGIN = 16


def _stack_alignment(alignments, frame_shape=SHAPE, channel_axis=None, motion="translation"):
    """A StackAlignment of known matrices (None: a failed frame), frames on axis 0."""
    errors = ["" if a is not None else "failed" for a in alignments]
    channel = None if channel_axis is None else 0
    return StackAlignment(alignments, errors, "first", 0, channel_axis, channel, motion,
                          frame_shape, ndim=len(frame_shape))  # fmt: skip


def _shift(shift, frame_shape=SHAPE):
    """The Alignment of a pure shift: reference grid -> frame t adds (dx, dy[, dz])."""
    matrix = np.eye(len(frame_shape) + 1)
    matrix[: len(shift), -1] = shift
    return Alignment(matrix, "translation", 1.0, 1.0, frame_shape, frame_shape)


def _known(shifts, frame_shape=SHAPE, channel_axis=None):
    return _stack_alignment([_shift(d, frame_shape) for d in shifts], frame_shape, channel_axis)


def _cut(scene, dx, dy, shape=SHAPE):
    """The frame at shift (dx, dy): frame pixel q shows reference position q - (dx, dy)."""
    to_scene = np.array([[1.0, 0, MARGIN - dx], [0, 1, MARGIN - dy]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(scene, to_scene, shape[::-1], flags=flags)


@pytest.fixture(scope="module")
def scene():
    return natural_image((SHAPE[0] + 2 * MARGIN, SHAPE[1] + 2 * MARGIN), seed=3) + 0.1


# ------------------------------------------------------------------------------ the geometry
def test_union_of_known_shifts_has_the_expected_shape_and_origin():
    result = _known(SHIFTS)
    # rows: dy in {0, +5, -7} -> 5 above and 7 below the reference grid; cols: dx in {0, 3, -4}
    assert result.canvas() == result.canvas("union") == Canvas((48 + 12, 64 + 7), (-5, -3))
    assert result.canvas("reference") == Canvas(SHAPE, (0, 0))
    np.testing.assert_array_equal(
        result.canvas().matrix, [[1, 0, -3], [0, 1, -5], [0, 0, 1]]
    )  # output pixel (x, y) -> reference pixel (x - 3, y - 5)
    # ECC's sub-pixel noise on an integer shift does not add a row of fill ...
    assert _known([(0, 0), (3.004, 4.996)]).canvas() == Canvas((53, 67), (-5, -3))
    # ... a real fraction reaches the next row, which linear interpolation draws on.
    assert _known([(0, 0), (3.3, -0.5)]).canvas() == Canvas((49, 68), (0, -4))


def test_the_union_bounds_rotated_and_projective_footprints():
    rows, cols = SHAPE
    angle = np.radians(10)
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 2.0], [s, c, -3.0], [0, 0, 1]])
    homography = np.array([[1.02, 0.03, -6.0], [-0.02, 0.98, 4.0], [4e-4, -3e-4, 1.0]])
    result = _stack_alignment(
        [None, Alignment(rotation, "euclidean", 1, 1, SHAPE, SHAPE),
         Alignment(homography, "homography", 1, 1, SHAPE, SHAPE)], motion="homography",
    )  # fmt: skip
    corners = np.array([[[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]]], float)
    mapped = [cv2.perspectiveTransform(corners, np.linalg.inv(m))[0] for m in result.matrices]
    points = np.concatenate(mapped)  # (x, y); the failed frame 0 counts at the identity
    start = np.floor(points.min(axis=0) + 0.01).astype(int)
    stop = np.ceil(points.max(axis=0) - 0.01).astype(int)
    canvas = result.canvas()
    assert canvas.origin == (start[1], start[0]) and min(canvas.origin) < -5
    assert canvas.shape == (stop[1] - start[1] + 1, stop[0] - start[0] + 1)
    # Every frame pixel (not only the corners) lands inside, and the box is tight.
    yx = np.indices(SHAPE).reshape(2, 1, -1)[::-1].transpose(1, 2, 0).astype(float)
    inside = np.concatenate([cv2.perspectiveTransform(yx, np.linalg.inv(m))[0]
                             for m in result.matrices])  # fmt: skip
    low, high = inside.min(axis=0)[::-1] - canvas.origin, inside.max(axis=0)[::-1] - canvas.origin
    assert np.all(low > -1) and np.all(low < 1)
    assert np.all(high < canvas.shape) and np.all(high > np.array(canvas.shape) - 2)


# ---------------------------------------------------------------------------- the pixels, 2D
@pytest.mark.parametrize("layout", ["frames", "channels", "rgb", "frames last"])
def test_union_keeps_every_frame_whole_and_reference_crops_them(scene, layout):
    frames = np.stack([_cut(scene, dx, dy) for dx, dy in SHIFTS])  # (t, y, x) float32
    result = _known(SHIFTS)
    stack, kwargs, to_tyx = {
        "frames": (frames, {}, lambda a: a),
        "channels": (np.stack([frames, 2 * frames], axis=1), {"channel_axis": 1},
                     lambda a: a[:, 1] / 2),
        "rgb": (np.stack([frames, frames, 3 * frames], axis=-1), {}, lambda a: a[..., 2] / 3),
        "frames last": (np.moveaxis(frames, 0, -1), {"axis": -1}, lambda a: np.moveaxis(a, -1, 0)),
    }[layout]  # fmt: skip
    union = warp_stack(stack, result, canvas="union", **kwargs)
    canvas = result.canvas()
    spatial_union = to_tyx(union)
    assert spatial_union.shape == (3, *canvas.shape) and union.dtype == stack.dtype
    cropped = to_tyx(warp_stack(stack, result, **kwargs))
    for t, (dx, dy) in enumerate(SHIFTS):
        total = frames[t].sum()
        np.testing.assert_allclose(spatial_union[t].sum(), total, rtol=1e-5)  # nothing lost
        # Frame t shows reference positions q - (dx, dy): at output index q - d - origin.
        top, left = -dy - canvas.origin[0], -dx - canvas.origin[1]
        np.testing.assert_allclose(
            spatial_union[t, top : top + SHAPE[0], left : left + SHAPE[1]], frames[t], atol=1e-5
        )
        lost = 1 - cropped[t].sum() / total
        if t == 0:
            assert abs(lost) < 1e-6
        else:  # 5 + 3 (7 + 4) of 48 + 64 rows and columns leave the reference grid
            assert lost > 0.1, lost
    # The reference grid sits at -origin, so its pixels of frame 0 are frame 0 itself.
    ref = (slice(5, 5 + SHAPE[0]), slice(3, 3 + SHAPE[1]))
    np.testing.assert_allclose(spatial_union[0][ref], frames[0], atol=1e-6)


def test_aligned_drift_keeps_every_frame_whole(scene):
    shifts = [(0.0, 0.0), (1.3, -2.4), (3.6, -4.3), (5.4, -6.3), (-2.7, 3.2)]
    frames = np.stack([_cut(scene, dx, dy) for dx, dy in shifts])
    result = align_stack(frames, reference="first", motion="translation", workers=2)
    assert result.ok.all()
    np.testing.assert_allclose(result.matrices[:, :2, 2], shifts, atol=0.05)
    canvas = result.canvas()
    # rows: -dy reaches 6.3 below (7 rows), -3.2 above (4 rows); cols 2.7 left (3), 5.4 right (6)
    assert canvas == Canvas((48 + 4 + 7, 64 + 6 + 3), (-4, -6))
    union = warp_stack(frames, result, canvas="union")
    cropped = warp_stack(frames, result, canvas="reference")
    kept = union.sum(axis=(1, 2)) / frames.sum(axis=(1, 2))
    lost = 1 - cropped.sum(axis=(1, 2)) / frames.sum(axis=(1, 2))
    # Measured: kept within 2e-7 of 1 (linear interpolation of a shift conserves the sum);
    # the reference grid lost 0.073, 0.150, 0.219, 0.128 of frames 1-4.
    np.testing.assert_allclose(kept, 1, atol=1e-4)
    assert np.all(lost[1:] > 0.05) and lost[0] == 0
    # The union contains the reference output where the reference grid lies.
    ref = (slice(None), slice(4, 4 + SHAPE[0]), slice(6, 6 + SHAPE[1]))
    np.testing.assert_array_equal(union[0][ref[1:]], frames[0])
    np.testing.assert_allclose(union[ref], cropped, atol=1e-5)  # measured 3e-7


def test_failed_frames_sit_at_the_identity_and_fill_fills_the_rest(scene):
    frames = (np.stack([_cut(scene, dx, dy) for dx, dy in SHIFTS]) * 200).astype(np.uint8)
    result = _stack_alignment([_shift(SHIFTS[0]), None, _shift(SHIFTS[2])])
    canvas = result.canvas()
    assert canvas == Canvas((48 + 7, 64 + 4), (0, 0))  # frame 1's shift no longer counts
    union = warp_stack(frames, result, canvas="union", fill_value=255)
    assert union.dtype == np.uint8
    np.testing.assert_array_equal(union[1, :48, :64], frames[1])  # passed through, on the grid
    assert np.all(union[1, 48:] == 255) and np.all(union[1, :, 64:] == 255)
    np.testing.assert_array_equal(union[2, 7:, 4:], frames[2])


def test_default_is_the_reference_grid_bit_for_bit(scene):
    frames = np.stack([_cut(scene, dx, dy) for dx, dy in SHIFTS])
    result = _stack_alignment([_shift((0, 0)), _shift((3.37, 4.79)), None])
    default = warp_stack(frames, result)
    np.testing.assert_array_equal(default, warp_stack(frames, result, canvas="reference"))
    # ... and what warp_stack gave before canvas existed: warp per frame, failures as they are.
    before = [warp(frames[0], result.matrices[0]), warp(frames[1], result.matrices[1]), frames[2]]
    assert default.tobytes() == np.stack(before).tobytes()


def test_dask_input_gives_a_lazy_union_equal_to_the_eager_one(scene):
    da = pytest.importorskip("dask.array")
    frames = np.stack([_cut(scene, dx, dy) for dx, dy in SHIFTS])
    stack = np.stack([frames, frames + 1], axis=1)  # (t, c, y, x)
    result = _known(SHIFTS, channel_axis=1)
    eager = warp_stack(stack, result, canvas="union")
    assert isinstance(eager, np.ndarray) and eager.shape == (3, 2, 60, 71)
    for lazy in (
        warp_stack(da.from_array(stack, chunks=(1, 2, 24, 32)), result, canvas="union"),
        warp_stack(stack, result, canvas="union", max_memory=eager.nbytes - 1),
    ):
        assert isinstance(lazy, da.Array) and lazy.shape == eager.shape
        assert lazy.chunks == ((1, 1, 1), (2,), (60,), (71,))
        np.testing.assert_array_equal(lazy.compute(), eager)
    # max_memory counts the grown output: the eager one fits exactly
    assert isinstance(
        warp_stack(stack, result, canvas="union", max_memory=eager.nbytes), np.ndarray
    )


# -------------------------------------------------------------------------------------- volumes
FRAME = (12, 20, 24)
SHIFTS_3D = [(0, 0, 0), (3, -2, 2), (-4, 5, -3)]  # (dx, dy, dz)


def _volume_scene(seed=0):
    rng = np.random.default_rng(seed)
    shape = tuple(n + 2 * 8 for n in FRAME)
    return ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), 1.5) + 0.1


def _cut_volume(scene, dx, dy, dz, margin=8):
    nz, ny, nx = FRAME
    z0, y0, x0 = margin - dz, margin - dy, margin - dx
    return scene[z0 : z0 + nz, y0 : y0 + ny, x0 : x0 + nx]


def test_volumes_grow_in_z_y_and_x():
    scene = _volume_scene()
    volumes = np.stack([_cut_volume(scene, *d) for d in SHIFTS_3D])  # (t, z, y, x)
    stack = np.stack([volumes, 3 * volumes], axis=1)  # (t, c, z, y, x)
    result = _known(SHIFTS_3D, FRAME, channel_axis=1)
    canvas = result.canvas()
    # z: dz in {0, 2, -3}; y: dy in {0, -2, 5}; x: dx in {0, 3, -4}
    assert canvas == Canvas((12 + 5, 20 + 7, 24 + 7), (-2, -5, -3))
    union = warp_stack(stack, result, canvas="union")
    cropped = warp_stack(stack, result)
    assert union.shape == (3, 2, 17, 27, 31) and cropped.shape == stack.shape
    for t, (dx, dy, dz) in enumerate(SHIFTS_3D):
        np.testing.assert_allclose(union[t].sum(axis=(1, 2, 3)), stack[t].sum(axis=(1, 2, 3)),
                                   rtol=1e-5)  # fmt: skip
        z, y, x = -dz + 2, -dy + 5, -dx + 3
        np.testing.assert_allclose(union[t, :, z : z + 12, y : y + 20, x : x + 24], stack[t],
                                   atol=1e-5)  # fmt: skip
        lost = 1 - cropped[t].sum() / stack[t].sum()
        assert (lost > 0.2) if t else (abs(lost) < 1e-6), lost


def test_an_aligned_volume_drift_keeps_every_volume_whole():
    scene = _volume_scene(seed=1)
    shifts = [(0, 0, 0), (2, -3, 1), (-3, 2, -2)]
    volumes = np.stack([_cut_volume(scene, *d) for d in shifts])
    result = align_stack(volumes, reference="first", ndim=3, motion="translation", workers=2)
    assert result.ok.all()
    np.testing.assert_allclose(result.matrices[:, :3, 3], shifts, atol=0.05)
    canvas = result.canvas()
    assert canvas == Canvas((12 + 3, 20 + 5, 24 + 5), (-1, -2, -2))
    union = warp_stack(volumes, result, canvas="union")
    kept = union.sum(axis=(1, 2, 3)) / volumes.sum(axis=(1, 2, 3))
    lost = 1 - warp_stack(volumes, result).sum(axis=(1, 2, 3)) / volumes.sum(axis=(1, 2, 3))
    np.testing.assert_allclose(kept, 1, atol=1e-4)  # measured 7e-6
    assert np.all(lost[1:] > 0.2)  # measured 0.28, 0.34
    np.testing.assert_array_equal(union[0, 1:13, 2:22, 2:26], volumes[0])


# --------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("value", ["full", "Union", None, 1])
def test_a_bad_canvas_is_named(value):
    result = _known(SHIFTS)
    with pytest.raises(ValueError, match=r"canvas must be one of \('reference', 'union'\)"):
        warp_stack(np.zeros((3, *SHAPE), np.float32), result, canvas=value)
    with pytest.raises(ValueError, match="canvas must be one of"):
        result.canvas(value)


@pytest.mark.parametrize(
    ("matrix", "match"),
    [
        (np.diag([0.1, 1.0, 1.0]), r"canvas='union' would be \(48, 631\) .* frame 1's matrix"),
        (np.diag([1.0, 0.0, 1.0]), r"canvas='union': frame 1's matrix is singular"),
        (np.array([[1, 0, 0], [0, 1, 0], [0.05, 0, 1.0]]), "frame 1's homography sends"),
    ],
)
def test_an_absurd_canvas_is_refused_with_the_frame_named(matrix, match):
    # Alignment accepts any finite matrix for a homography, even a singular one.
    bad = Alignment(matrix, "homography", 1, 1, SHAPE, SHAPE)
    result = _stack_alignment([_shift((0, 0)), bad], motion="homography")
    with pytest.raises(ValueError, match=match):
        result.canvas()
    with pytest.raises(ValueError, match="keep canvas='reference'"):
        warp_stack(np.zeros((2, *SHAPE), np.float32), result, canvas="union")
    assert warp_stack(np.ones((2, *SHAPE), np.float32), result).shape == (2, *SHAPE)
