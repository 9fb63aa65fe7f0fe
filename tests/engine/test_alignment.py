"""The Alignment result type: convention, serialisation and geometry helpers."""

import json

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment
from napari_ecc_align.engine.alignment import corner_rms


def _alignment(matrix, motion="affine", ref_shape=(100, 120), mov_shape=(110, 130)):
    return Alignment(
        matrix=matrix,
        motion=motion,
        correlation=0.9,
        correlation_before=0.5,
        reference_shape=ref_shape,
        moving_shape=mov_shape,
        parameters={"eps": 1e-6, "max_iterations": np.int64(100)},
    )


AFFINE = np.array([[1.01, -0.02, 5.5], [0.015, 0.99, -3.25], [0, 0, 1]])
HOMOGRAPHY = np.array([[1.01, -0.02, 5.5], [0.015, 0.99, -3.25], [1e-4, -2e-4, 1]])


def test_matrix_is_padded_float64_and_read_only():
    a = _alignment(AFFINE[:2].astype(np.float32))
    assert a.matrix.shape == (3, 3)
    assert a.matrix.dtype == np.float64
    np.testing.assert_allclose(a.matrix[2], [0, 0, 1])
    with pytest.raises(ValueError):
        a.matrix[0, 0] = 2.0


def test_json_round_trip_is_exact(tmp_path):
    a = _alignment(HOMOGRAPHY, motion="homography")
    text = json.dumps(a.to_dict())  # JSON-safe, numpy scalars included
    b = Alignment.from_dict(json.loads(text))
    assert a == b and a != a.inverse()
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert (b.motion, b.reference_shape, b.moving_shape) == ("homography", (100, 120), (110, 130))
    assert b.parameters["max_iterations"] == 100
    a.to_json(tmp_path / "t.json")
    c = Alignment.from_json(tmp_path / "t.json")
    np.testing.assert_array_equal(a.matrix, c.matrix)
    odd = (
        tmp_path / "new folder" / "{run1}.json"
    )  # created; a name starting with "{" is still a path
    a.to_json(odd)
    np.testing.assert_array_equal(Alignment.from_json(str(odd)).matrix, a.matrix)
    assert Alignment.from_json(a.to_json()).motion == "homography"
    assert [p.name for p in odd.parent.iterdir()] == ["{run1}.json"]  # no temporary left behind


def test_from_dict_rejects_incomplete_data():
    with pytest.raises(ValueError, match="matrix"):
        Alignment.from_dict({"motion": "affine"})
    with pytest.raises(TypeError):
        Alignment.from_dict([1, 2])


def test_invalid_motion_or_matrix_rejected():
    with pytest.raises(ValueError, match="motion"):
        _alignment(AFFINE, motion="similarity")
    with pytest.raises(ValueError, match="0, 0, 1"):
        _alignment(HOMOGRAPHY, motion="affine")
    with pytest.raises(ValueError, match="finite"):
        _alignment(np.full((3, 3), np.nan))


def test_inverse_composes_to_identity():
    a = _alignment(HOMOGRAPHY, motion="homography")
    inv = a.inverse()
    np.testing.assert_allclose(
        inv.matrix @ a.matrix / (inv.matrix @ a.matrix)[2, 2], np.eye(3), atol=1e-12
    )
    assert inv.reference_shape == a.moving_shape and inv.moving_shape == a.reference_shape


@pytest.mark.parametrize("matrix,motion", [(AFFINE, "affine"), (HOMOGRAPHY, "homography")])
def test_transform_points_inverts_the_matrix(matrix, motion):
    a = _alignment(matrix, motion=motion)
    ref_xy = np.array([[10.0, 20.0], [50.5, 7.25], [0, 0]])
    mov = np.column_stack([ref_xy, np.ones(3)]) @ matrix.T
    mov_xy = mov[:, :2] / mov[:, 2:]
    back = a.transform_points(mov_xy[:, ::-1])  # (row, col) in, (row, col) out
    np.testing.assert_allclose(back[:, ::-1], ref_xy, atol=1e-9)


def test_transform_points_keeps_leading_columns():
    a = _alignment(AFFINE)
    pts = np.array([[3.0, 10.0, 20.0]])  # (t, row, col)
    out = a.transform_points(pts)
    assert out[0, 0] == 3.0
    np.testing.assert_allclose(out[0, 1:], a.transform_points(pts[:, 1:])[0])


def test_napari_affine_maps_moving_rc_to_reference_rc():
    a = _alignment(AFFINE)
    aff = a.napari_affine()
    mov_rc = np.array([12.0, 34.0, 1.0])
    ref_rc = aff @ mov_rc
    np.testing.assert_allclose(ref_rc[:2], a.transform_points(mov_rc[:2]), atol=1e-9)


def test_napari_affine_refuses_homography():
    with pytest.raises(ValueError, match="homography"):
        _alignment(HOMOGRAPHY, motion="homography").napari_affine()


def test_matrix_convention_matches_opencv_warp():
    """warpAffine(moving, M, WARP_INVERSE_MAP) samples moving at M·(x, y) per reference pixel."""
    rng = np.random.default_rng(3)
    moving = cv2.GaussianBlur(rng.random((80, 90), dtype=np.float32), (0, 0), 3)
    a = _alignment([[1, 0, 4], [0, 1, 2], [0, 0, 1]], ref_shape=(60, 70), mov_shape=(80, 90))
    out = cv2.warpAffine(
        moving, a.matrix[:2], (70, 60), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    np.testing.assert_allclose(out[10, 20], moving[12, 24], atol=1e-6)  # y + 2, x + 4


def test_corner_rms_in_pixels():
    shifted = np.eye(3)
    shifted[0, 2] = 0.3
    shifted[1, 2] = 0.4
    assert corner_rms(shifted, np.eye(3), (50, 50)) == pytest.approx(0.5)
    assert _alignment(shifted).corner_error(np.eye(3)) == pytest.approx(0.5)


def test_alignments_chain_and_undo_in_2d_and_3d():
    """``a.then(b)`` (= ``b @ a``) maps a's reference where b sends a's moving pixels;
    an alignment followed by its inverse is the identity."""
    from napari_ecc_align.data import rigid_volume_matrix

    rng = np.random.default_rng(5)
    plane = Alignment(np.array([[1.01, 0.02, 3.0], [-0.01, 0.99, -2.0], [0, 0, 1.0]]), "affine",
                      0.9, 0.5, (40, 50), (42, 48))  # fmt: skip
    shift = Alignment(np.array([[1, 0, 1.5], [0, 1, 0.5], [0, 0, 1.0]]), "translation", 0.9, 0.5,
                      (42, 48), (30, 35))  # fmt: skip
    spacing = (2.0, 0.5, 0.5)
    turn = rigid_volume_matrix((0.5, 0.2, 3.0), (1, 2, -1), (10, 20, 30), spacing)
    rigid = Alignment(turn, "euclidean", 0.9, 0.5, (10, 20, 30), (10, 20, 30),
                      parameters={"spacing": list(spacing)})  # fmt: skip
    for first, second in ((plane, shift), (rigid, rigid)):
        chained = first.then(second)
        assert chained == second @ first
        assert chained.reference_shape == first.reference_shape
        assert chained.moving_shape == second.moving_shape
        n = first.ndim
        points = np.column_stack([rng.uniform(0, 20, (10, n)), np.ones(10)])
        one_then_other = points @ first.matrix.T @ second.matrix.T
        np.testing.assert_allclose(points @ chained.matrix.T, one_then_other, atol=1e-12)
        undone = first.then(first.inverse())
        np.testing.assert_allclose(undone.matrix, np.eye(n + 1), atol=1e-12)
    assert plane.then(shift).motion == "affine" and plane.then(shift).init_method == "composed"
    assert rigid.then(rigid).motion == "euclidean"
    with pytest.raises(ValueError, match="moving image of shape"):
        plane.then(plane)
    with pytest.raises(ValueError, match="cannot chain a 2D and a 3D"):
        plane.then(rigid)
    with pytest.raises(TypeError, match="must be an Alignment"):
        plane.then(np.eye(3))
