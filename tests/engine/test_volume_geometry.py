"""Volume (3D) alignments: the 4×4 convention, serialisation, points, warp and difference."""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_ecc_align import Alignment, difference, warp
from napari_ecc_align.engine.alignment import corner_rms
from napari_ecc_align.engine.warping import overlap

SHAPE = (24, 30, 36)  # (z, y, x)


def _rotation(axis, degrees):
    """3×3 rotation of (x, y, z) about the x (0), y (1) or z (2) axis."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r = np.eye(3)
    r[i, i] = r[j, j] = c
    r[i, j], r[j, i] = -s, s
    return r


def _rigid(shape=SHAPE, degrees=(4.0, -3.0, 7.0), shift=(1.25, -0.75, 0.5)):
    """Reference voxel (x, y, z, 1) -> moving (x, y, z): a rotation about the volume
    centre followed by a shift (dx, dy, dz)."""
    rot = _rotation(0, degrees[0]) @ _rotation(1, degrees[1]) @ _rotation(2, degrees[2])
    centre = (np.array(shape[::-1], float) - 1) / 2
    m = np.eye(4)
    m[:3, :3] = rot
    m[:3, 3] = centre - rot @ centre + np.asarray(shift)
    return m


def _volume_alignment(matrix, motion="euclidean", ref_shape=SHAPE, mov_shape=SHAPE):
    return Alignment(matrix, motion, 0.9, 0.4, ref_shape, mov_shape, parameters={"ndim": 3})


def _smooth_volume(shape=SHAPE, seed=0, sigma=2.5):
    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.random(shape), sigma)
    return ((vol - vol.min()) / (vol.max() - vol.min())).astype(np.float32)


def _scipy_warp(volume, matrix, order=1, cval=0.0):
    """The ground truth: scipy samples input[M_zyx @ o + offset] in (z, y, x) order."""
    return ndimage.affine_transform(volume, matrix[2::-1, 2::-1], matrix[2::-1, 3],
                                    order=order, mode="grid-constant", cval=cval)  # fmt: skip


def _ramp(shape=SHAPE):
    z, y, x = np.indices(shape, dtype=np.float64)
    return 0.3 * x + 0.2 * y - 0.1 * z + 5.0


# -- the result type --------------------------------------------------------------------------


def test_volume_alignment_round_trips_through_json(tmp_path):
    a = _volume_alignment(_rigid()[:3], mov_shape=(20, 32, 40))  # 3x4: padded
    assert a.matrix.shape == (4, 4) and a.ndim == 3
    np.testing.assert_array_equal(a.matrix[3], [0, 0, 0, 1])
    data = json.loads(a.to_json())
    assert data["ndim"] == 3
    assert data["convention"].startswith("reference (x, y, z, 1) -> moving (x, y, z); 4x4")
    back = Alignment.from_json(a.to_json(tmp_path / "volume.json"))
    assert back == a and back.ndim == 3
    np.testing.assert_array_equal(back.matrix, a.matrix)  # exact, not approximately
    assert back.reference_shape == SHAPE and back.moving_shape == (20, 32, 40)
    with pytest.raises(ValueError, match="ndim=2"):
        Alignment.from_dict({**data, "ndim": 2})
    assert Alignment(np.eye(3), "affine", 1, 1, (4, 5), (4, 5)).to_dict()["ndim"] == 2


def test_inverse_composes_to_identity_and_swaps_shapes():
    affine = _rigid()
    affine[:3, :3] = affine[:3, :3] @ np.diag([1.05, 0.97, 1.1])
    a = _volume_alignment(affine, motion="affine", mov_shape=(20, 32, 40))
    inv = a.inverse()
    np.testing.assert_allclose(inv.matrix @ a.matrix, np.eye(4), atol=1e-12)
    np.testing.assert_array_equal(inv.matrix[3], [0, 0, 0, 1])
    assert inv.reference_shape == (20, 32, 40) and inv.moving_shape == SHAPE
    np.testing.assert_allclose(inv.inverse().matrix, a.matrix, atol=1e-12)


def test_homography_and_projective_rows_are_rejected_for_volumes():
    with pytest.raises(ValueError, match="homography"):
        _volume_alignment(np.eye(4), motion="homography")
    projective = np.eye(4)
    projective[3, 0] = 1e-3
    with pytest.raises(ValueError, match=r"\[0, 0, 0, 1\]"):
        _volume_alignment(projective, motion="affine")
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        _volume_alignment(np.eye(4), ref_shape=(30, 36))
    with pytest.raises(ValueError, match="4x4"):
        _volume_alignment(np.eye(5))


def test_corner_rms_uses_the_eight_corners_in_voxels():
    shift = np.eye(4)
    shift[:3, 3] = [1.0, 2.0, 2.0]  # (dx, dy, dz): length 3
    assert corner_rms(shift, np.eye(4), SHAPE) == pytest.approx(3.0)
    assert _volume_alignment(shift).corner_error(np.eye(4)) == pytest.approx(3.0)
    # z scaled by 2 on a grid of 3 planes: the 4 corners at z = 2 move by 2, those at z = 0 stay
    stretch = np.diag([1.0, 1.0, 2.0, 1.0])
    assert corner_rms(stretch, np.eye(4), (3, 10, 20)) == pytest.approx(np.sqrt(2.0))
    assert corner_rms(stretch[:3], np.eye(4)[:3], (3, 10, 20)) == pytest.approx(np.sqrt(2.0))
    with pytest.raises(ValueError, match="dimensions"):
        corner_rms(np.eye(4), np.eye(3), SHAPE)


def test_rigid_pair_points_warp_and_napari_affine_agree():
    """A known rigid 4×4: warp(moving) is the reference, moving landmarks map onto the
    reference landmarks, and napari_affine does what transform_points does."""
    matrix = _rigid()
    moving = _smooth_volume()
    reference = _scipy_warp(moving, matrix)
    a = _volume_alignment(matrix)
    aligned = warp(moving, a)
    assert aligned.shape == SHAPE and aligned.dtype == np.float32
    interior = ndimage.binary_erosion(overlap(a), iterations=2)
    assert interior.mean() > 0.5
    error = np.abs(aligned - reference)[interior]  # OpenCV < 5: 1/32-pixel positions in-plane
    assert error.max() < 5e-3 and error.mean() < 1e-3
    assert np.abs(moving - reference)[interior].mean() > 0.05  # the motion is not negligible

    rng = np.random.default_rng(3)
    ref_zyx = rng.uniform(2, 20, size=(10, 3))
    xyz1 = np.column_stack([ref_zyx[:, ::-1], np.ones(10)])
    mov_zyx = (xyz1 @ matrix.T)[:, 2::-1]  # the matrix sends reference voxels to moving ones
    np.testing.assert_allclose(a.transform_points(mov_zyx), ref_zyx, atol=1e-9)
    with_time = np.column_stack([np.arange(10), mov_zyx])  # a leading column passes through
    np.testing.assert_allclose(a.transform_points(with_time)[:, 1:], ref_zyx, atol=1e-9)
    np.testing.assert_array_equal(a.transform_points(with_time)[:, 0], np.arange(10))
    np.testing.assert_allclose(a.transform_points(mov_zyx[0]), ref_zyx[0], atol=1e-9)

    napari = a.napari_affine()
    assert napari.shape == (4, 4)
    np.testing.assert_array_equal(napari[3], [0, 0, 0, 1])
    mapped = (np.column_stack([mov_zyx, np.ones(10)]) @ napari.T)[:, :3]
    np.testing.assert_allclose(mapped, a.transform_points(mov_zyx), atol=1e-9)


# -- warp -------------------------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["linear", "cubic"])
@pytest.mark.parametrize("kind", ["rigid", "translation"])
def test_warp_reproduces_a_linear_ramp(interpolation, kind):
    """Inside, warp(ramp) is the ramp at M @ o: exactly for the trilinear kernel, within
    OpenCV's cubic bias (a = -0.75 displaces ramps by up to ~0.07 pixel) for the cubic one.
    The translation takes the one-plane-per-tap path, the rigid motion the remap path."""
    matrix = _rigid() if kind == "rigid" else _rigid(degrees=(0, 0, 0))
    a = _volume_alignment(matrix)
    out = warp(_ramp(), a, interpolation=interpolation)
    z, y, x = np.indices(SHAPE, dtype=np.float64)
    mx, my, mz = (matrix[i, 0] * x + matrix[i, 1] * y + matrix[i, 2] * z + matrix[i, 3]
                  for i in range(3))  # fmt: skip
    expected = 0.3 * mx + 0.2 * my - 0.1 * mz + 5.0
    inner = (mx >= 2) & (mx <= SHAPE[2] - 3) & (my >= 2) & (my <= SHAPE[1] - 3)
    inner &= (mz >= 2) & (mz <= SHAPE[0] - 3)
    assert inner.mean() > 0.3
    # linear: 1e-2 as OpenCV < 5 rounds in-plane positions to 1/32 pixel (0.3 / 64 here)
    atol = 1e-2 if interpolation == "linear" else 0.05
    np.testing.assert_allclose(out[inner], expected[inner], atol=atol)


@pytest.mark.parametrize("shift", [(3.5, 12.25, 2.0), (-14.0, 0.5, -6.75), (2.0, -9.5, 30.0)])
def test_warp_matches_scipy_everywhere_including_far_outside(shift):
    """Also at the borders (samples blend with the fill as in OpenCV 2D and scipy's
    grid-constant mode) and far outside, where no other plane's rows may leak in."""
    matrix = _rigid(shift=shift)
    moving = _smooth_volume() + 1.0  # no zeros: a leak from another plane would show
    out = warp(moving, matrix)
    error = np.abs(out - _scipy_warp(moving, matrix))
    assert error.max() < 5e-3 and error.mean() < 1e-3  # OpenCV < 5: 1/32-pixel positions
    assert (out == 0).mean() > 0.2


@pytest.mark.parametrize("path", ["one plane per tap", "remap"])
def test_z_kernel_is_opencvs_in_plane_kernel(path):
    """A profile along z shifted by a fraction of a plane equals the same profile along x
    shifted by OpenCV's 2D warp: the z taps use OpenCV's linear and cubic kernels."""
    profile = np.cos(np.linspace(0, 3, 24)) * 50
    volume = np.broadcast_to(profile[:, None, None], (24, 8, 8)).astype(np.float32)
    image = np.broadcast_to(profile[None, :], (8, 24)).astype(np.float32)
    shift = np.eye(4)
    shift[2, 3] = 0.3125  # a multiple of 1/32: OpenCV < 5 rounds in-plane positions to that
    shift[2, 0] = 0.0 if path == "one plane per tap" else 1e-9  # z depends on x: remap
    for interpolation in ("linear", "cubic"):
        along_z = warp(volume, shift, interpolation=interpolation)[:, 4, 4]
        along_x = warp(image, [[1, 0, 0.3125], [0, 1, 0], [0, 0, 1]], interpolation=interpolation)
        np.testing.assert_allclose(along_z[2:-3], along_x[4, 2:-3], atol=1e-3)
    assert abs(along_z[10] - profile[10]) > 0.5  # the shift is visible


def test_integer_shift_copies_voxels_and_fills_outside():
    vol = _smooth_volume()
    shift = np.eye(4)
    shift[:3, 3] = [5, -2, 3]  # reference (x, y, z) samples moving (x + 5, y - 2, z + 3)
    for interpolation in ("linear", "cubic", "nearest"):
        out = warp(vol, shift, interpolation=interpolation, fill_value=-1)
        np.testing.assert_array_equal(out[:-3, 2:, :-5], vol[3:, :-2, 5:])
        assert np.all(out[-3:] == -1) and np.all(out[:, :2] == -1) and np.all(out[..., -5:] == -1)
    nan = warp(vol, shift, fill_value=np.nan)
    np.testing.assert_array_equal(nan[:-3, 2:, :-5], vol[3:, :-2, 5:])  # NaN does not leak
    assert np.isnan(nan[-3:]).all() and np.isnan(nan[..., -5:]).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_warp_keeps_dtype_and_rounds_like_the_float_result(dtype):
    lo, hi = (-3000, 3000) if dtype == np.int16 else (0, 250)
    vol = (_smooth_volume() * (hi - lo) + lo).astype(dtype)
    a = _volume_alignment(_rigid(shift=(4.5, -3.0, 2.25)))
    out = warp(vol, a, fill_value=7)
    assert out.dtype == dtype and out.shape == SHAPE
    as_float = warp(vol.astype(np.float32), a, fill_value=7)
    expected = as_float if dtype == np.float32 else np.rint(as_float)
    np.testing.assert_allclose(out.astype(np.float64), expected, atol=1e-4)
    far = ~ndimage.binary_dilation(overlap(a), iterations=3)  # no kernel reaches inside
    assert far.sum() > 1000 and np.all(out[far] == 7)


def test_integer_warps_clip_the_cubic_overshoot_instead_of_wrapping():
    step = np.zeros(SHAPE, np.uint8)
    step[:, :, SHAPE[2] // 2 :] = 255
    half = np.eye(4)
    half[:3, 3] = [0.5, 0.0, 0.25]
    as_float = warp(step.astype(np.float32), half, interpolation="cubic")
    assert as_float.max() > 255.5 and as_float.min() < -0.5  # the kernel overshoots
    out = warp(step, half, interpolation="cubic")
    np.testing.assert_array_equal(out, np.clip(np.rint(as_float), 0, 255).astype(np.uint8))


def test_bool_and_labels_warp_by_nearest_without_new_values():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 6, size=SHAPE).astype(np.int64) + 2**40  # beyond float32
    a = _volume_alignment(_rigid())
    out = warp(labels, a, interpolation="nearest", fill_value=0)
    assert out.dtype == np.int64
    assert set(np.unique(out)) <= set(np.unique(labels)) | {0}
    expected = _scipy_warp(labels - 2**40, a.matrix, order=0, cval=-(2**40))
    np.testing.assert_array_equal(out - 2**40, expected)  # each voxel is its nearest source
    mask = labels % 2 == 0
    bool_out = warp(mask, a)  # "linear", but bool always uses nearest
    assert bool_out.dtype == np.bool_
    nearest = warp(mask.astype(np.uint8), a, interpolation="nearest")
    np.testing.assert_array_equal(bool_out, nearest == 1)
    with pytest.raises(ValueError, match="fill_value"):
        warp(labels.astype(np.uint8), a, fill_value=300)


def test_leading_and_channel_axes_share_the_transform():
    vol = _smooth_volume()
    a = _volume_alignment(_rigid())
    stack = np.stack([vol, 2 * vol, vol[::-1].copy()])  # (channel, z, y, x)
    out = warp(stack[None], a)  # (time, channel, z, y, x)
    assert out.shape == (1, 3) + SHAPE
    for c in range(3):
        np.testing.assert_array_equal(out[0, c], warp(stack[c], a))
    rgb = np.stack([vol, 2 * vol, 0.5 * vol], axis=-1)  # channel-last (z, y, x, 3)
    out_rgb = warp(rgb, a)
    assert out_rgb.shape == SHAPE + (3,)
    np.testing.assert_allclose(out_rgb[..., 1], warp(2 * vol, a), rtol=1e-6, atol=1e-7)


def test_output_shape_bare_matrix_and_argument_errors():
    vol = _smooth_volume()
    assert warp(vol, np.eye(4)).shape == SHAPE  # a bare matrix: the volume's own grid
    a = _volume_alignment(np.eye(4), ref_shape=(10, 12, 14))
    assert warp(vol, a).shape == (10, 12, 14)
    np.testing.assert_array_equal(warp(vol, a), vol[:10, :12, :14])
    assert warp(vol, a, output_shape=(30, 31, 40)).shape == (30, 31, 40)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        warp(vol, a, output_shape=(30, 40))
    projective = np.eye(4)
    projective[3, 2] = 0.01
    with pytest.raises(ValueError, match=r"\[0, 0, 0, 1\]"):
        warp(vol, projective)
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        warp(vol[0], a)


def test_planes_reaching_many_moving_planes_are_split():
    """A 90° turn about y makes each output row cross every moving plane: more rows than
    cv2.remap takes in one tall image, so the boxes are split; same result as scipy."""
    vol = _smooth_volume((160, 220, 40), sigma=1.5)
    turn = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 159], [0, 0, 0, 1.0]])
    out = warp(vol, turn, output_shape=(40, 220, 160))  # moving (x, y, z) = (z, y, 159 - x)
    np.testing.assert_array_equal(out, np.transpose(vol, (2, 1, 0))[:, :, ::-1])


def test_volumes_beyond_opencv_limit_use_scipy():
    vol = np.tile(np.arange(33000, dtype=np.float32), (2, 3, 1))  # x side >= 32767
    half = np.eye(4)
    half[:3, 3] = [0.5, 0.0, 0.0]
    out = warp(vol, half)
    np.testing.assert_allclose(out[..., :-1], vol[..., :-1] + 0.5)
    assert out[0, 0, -1] == pytest.approx(0.5 * 32999)  # half the last voxel, half the fill


# -- overlap and difference -------------------------------------------------------------------


def test_overlap_of_a_shift_counts_the_covered_voxels():
    shift = np.eye(4)
    shift[:3, 3] = [2.5, -1.0, 3.0]
    covered = overlap(_volume_alignment(shift))
    assert covered.shape == SHAPE
    # x + 2.5 <= 35: x <= 32 (33 of 36); y - 1 >= 0: 29 of 30; z + 3 <= 23: 21 of 24
    assert covered.sum() == 21 * 29 * 33
    assert covered[:21, 1:, :33].all()


def test_difference_of_volumes():
    ref = (_smooth_volume() * 200).astype(np.uint8)
    ali = (_smooth_volume(seed=1) * 200).astype(np.uint8)
    diff = difference(ref, ali)
    assert diff.shape == SHAPE and diff.dtype == np.uint8
    np.testing.assert_array_equal(diff, np.abs(ref.astype(int) - ali.astype(int)))

    shift = np.eye(4)
    shift[:3, 3] = [4.0, 0.0, 2.0]
    a = _volume_alignment(shift)
    moving = _smooth_volume()
    aligned = warp(moving, a)
    masked = difference(_smooth_volume(seed=2), aligned, alignment=a)
    assert np.all(masked[-2:] == 0) and np.all(masked[..., -4:] == 0)
    assert masked[:-2, :, :-4].min() >= 0 and masked[:-2, :, :-4].mean() > 0.05

    gain = 40 + 150 * aligned  # other range and offset, same content
    norm = difference(aligned, gain.astype(np.float32), mode="normalized", alignment=a)
    assert norm.dtype == np.float32 and norm.shape == SHAPE
    assert norm.max() < 1e-3 and np.all(norm[..., -4:] == 0)
    other = difference(aligned, _smooth_volume(seed=4), mode="normalized", alignment=a)
    assert other[:-2, :, :-4].mean() > 0.3

    mask = np.zeros(SHAPE, bool)
    mask[5:10] = True
    only = difference(ref, ali, mask=mask)
    assert np.all(only[:5] == 0) and np.array_equal(only[5:10], diff[5:10])
    with pytest.raises(ValueError, match="mask"):
        difference(ref, ali, mask=mask[0])
    with pytest.raises(ValueError, match=r"\(z, y, x\)"):
        difference(ref, ali[:-1], alignment=a)


def test_default_difference_mode_compares_volumes_of_different_shapes():
    from napari_ecc_align.engine.difference import default_difference_mode

    rng = np.random.default_rng(0)
    a = rng.integers(0, 1000, (20, 30, 40)).astype(np.uint16)
    b = rng.integers(0, 1000, (22, 32, 44)).astype(np.uint16)
    assert default_difference_mode(a, b) == "absolute"  # a (z, y, x) volume, by its shape
    assert default_difference_mode(a, b, ndim=3) == "absolute"
    assert default_difference_mode(a, (b * 3).astype(np.uint16), ndim=3) == "normalized"
    rgb = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)  # RGB images still count channels
    assert default_difference_mode(rgb, rgb[..., 0]) == "normalized"
