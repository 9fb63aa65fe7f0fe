"""align(): arguments, errors, initialisation and progress."""

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment, AlignmentError, Progress, align, iter_align
from napari_ecc_align.engine import project_to_motion


def _pair(shift=(3.0, -2.0), shape=(160, 200), seed=0):
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(
        rng.random((shape[0] + 40, shape[1] + 40), dtype=np.float32), (0, 0), 2.5
    )
    reference = np.ascontiguousarray(scene[20:-20, 20:-20])
    true = np.array([[1, 0, shift[0]], [0, 1, shift[1]], [0, 0, 1.0]])
    to_scene = np.float32(
        [[1, 0, 20 - shift[0]], [0, 1, 20 - shift[1]]]
    )  # moving(x) = scene(x + 20 - shift)
    moving = cv2.warpAffine(
        scene, to_scene, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    return reference, moving, true


def test_translation_recovered_and_result_fields():
    reference, moving, true = _pair()
    result = align(reference, moving, motion="translation")
    assert isinstance(result, Alignment)
    np.testing.assert_allclose(result.matrix, true, atol=0.02)
    assert result.motion == "translation"
    assert result.reference_shape == reference.shape and result.moving_shape == moving.shape
    assert result.correlation > 0.99 > result.correlation_before
    assert result.elapsed > 0 and result.levels >= 1
    assert result.init_method in ("identity", "phase", "fourier-mellin", "features")
    assert result.parameters["max_iterations"] == 100
    assert np.array_equal(result.matrix[:2, :2], np.eye(2))  # translation stays a translation


@pytest.mark.parametrize("motion", ["affine", "homography"])
def test_max_iterations_bounds_every_level_including_the_staged_coarsest(motion):
    reference, moving, true = _pair()
    free = align(reference, moving, motion=motion, init="identity")
    # the coarsest level fits translation, euclidean, ... in turn: more than 3 in all
    assert free.iterations[0] > 3, free.iterations
    for budget in (1, 3):
        capped = align(reference, moving, motion=motion, init="identity", max_iterations=budget)
        assert len(capped.iterations) == capped.levels == free.levels
        assert max(capped.iterations) <= budget, (budget, capped.iterations)
        assert capped.parameters["max_iterations"] == budget
        assert capped.corner_error(true) < 0.5  # fewer iterations, still near the answer


def test_inputs_are_not_modified():
    reference, moving, _ = _pair()
    moving[5:10, 5:10] = np.nan
    ref_copy, mov_copy = reference.copy(), moving.copy()
    align(reference, moving, motion="translation")
    np.testing.assert_array_equal(reference, ref_copy)
    np.testing.assert_array_equal(moving, mov_copy)


def test_init_matrix_is_used_and_projected():
    reference, moving, true = _pair(shift=(30.0, 25.0))
    result = align(reference, moving, motion="euclidean", init=[[1, 0, 29], [0, 1, 24], [0, 0, 1]])
    assert result.corner_error(true) < 0.05
    assert result.init_method == "matrix"
    sheared = np.array([[1.1, 0.2, 5], [0.0, 0.9, 3], [0, 0, 1]])
    rot = project_to_motion(sheared, "euclidean")
    np.testing.assert_allclose(rot[:2, :2] @ rot[:2, :2].T, np.eye(2), atol=1e-12)
    assert np.linalg.det(rot[:2, :2]) > 0
    np.testing.assert_array_equal(project_to_motion(sheared, "translation")[:2, :2], np.eye(2))


def test_iter_align_reports_each_level_then_the_result():
    reference, moving, _ = _pair()
    steps = list(iter_align(reference, moving, motion="affine", pyramid_levels=3, init=None))
    progress, result = steps[:-1], steps[-1]
    assert [p.level for p in progress] == [2, 1, 0]
    assert all(isinstance(p, Progress) and p.levels == 3 for p in progress)
    assert isinstance(result, Alignment) and result.levels == 3


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"motion": "rigid"}, ValueError, "motion"),
        ({"motion": 3}, TypeError, "motion"),
        ({"max_iterations": 0}, ValueError, "max_iterations"),
        ({"max_iterations": 2.5}, TypeError, "max_iterations"),
        ({"eps": -1}, ValueError, "eps"),
        ({"eps": "small"}, TypeError, "eps"),
        ({"gauss_filter_size": 4}, ValueError, "gauss_filter_size"),
        ({"pyramid_levels": 0}, ValueError, "pyramid_levels"),
        ({"init": "sideways"}, ValueError, "init"),
        ({"init": np.eye(4)}, ValueError, "init"),
        ({"init": np.zeros((3, 3))}, ValueError, "init"),
        ({"reference_mask": np.ones((3, 3), bool)}, ValueError, "reference_mask"),
        ({"moving_mask": np.ones((160, 201), bool)}, ValueError, "moving_mask"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    reference, moving, _ = _pair()
    with pytest.raises(error, match=match):
        align(reference, moving, **kwargs)


@pytest.mark.parametrize(
    "reference,error,match",
    [
        (np.zeros((5, 6, 7)), ValueError, "stack"),
        (np.zeros((2, 3, 40, 40)), ValueError, "stack"),
        (np.zeros((40, 40), complex), TypeError, "complex"),
        (np.array([["a", "b"], ["c", "d"]]), TypeError, "numeric"),
        (None, TypeError, "reference"),
        (np.zeros((1, 40)), ValueError, "2x2"),
        (np.full((40, 40), np.nan), ValueError, "no valid pixels"),
    ],
)
def test_invalid_images(reference, error, match):
    _, moving, _ = _pair()
    with pytest.raises(error, match=match):
        align(reference, moving)


def test_flat_image_raises_alignment_error_with_advice():
    reference, _, _ = _pair()
    with pytest.raises(AlignmentError, match="no contrast"):
        align(reference, np.full((100, 100), 7, np.uint8))


def test_unrelated_images_raise_alignment_error_not_cv2_error():
    rng = np.random.default_rng(5)
    a = cv2.GaussianBlur(rng.random((150, 150), dtype=np.float32), (0, 0), 2)
    b = cv2.GaussianBlur(rng.random((150, 150), dtype=np.float32), (0, 0), 2)
    with pytest.raises(AlignmentError, match="try"):
        align(a, b, motion="affine")


def test_non_overlapping_init_raises_alignment_error():
    reference, moving, _ = _pair()
    with pytest.raises(AlignmentError, match="overlap"):
        align(reference, moving, init=[[1, 0, 5000], [0, 1, 0], [0, 0, 1]])


def test_dask_like_and_list_inputs():
    reference, moving, true = _pair()

    class Lazy:  # anything with .compute(), like a dask array
        def __init__(self, data):
            self.data = data

        def compute(self):
            return self.data

    result = align(Lazy(reference), moving.tolist(), motion="translation")
    np.testing.assert_allclose(result.matrix, true, atol=0.02)


def test_every_caller_words_an_option_mistake_the_same_way(tmp_path):
    # One validator behind align, align_stack, batch_align and read_pair: the same
    # mistake gives the same words, whoever was called.
    from napari_ecc_align import align_stack, batch_align
    from napari_ecc_align.io import read_pair

    image = np.zeros((16, 16), np.float32)
    (tmp_path / "r").mkdir()
    (tmp_path / "m").mkdir()
    calls = {
        "align": lambda **kw: align(image, image, **kw),
        "align_stack": lambda **kw: align_stack(np.stack([image, image]), **kw),
        "batch_align": lambda **kw: batch_align(
            tmp_path / "r", tmp_path / "m", tmp_path / "o", progress=False, **kw
        ),  # fmt: skip
    }
    mistakes = [
        ({"motion": "similarity"}, "motion must be one of"),
        ({"ndim": 3, "motion": "homography"}, "motion='homography' is for 2D images only"),
        ({"ndim": 2, "spacing": (3, 1, 1)}, "it goes with ndim=3, not ndim=2"),
        ({"ndim": 3, "spacing": (1e300, 1, 1)}, "spacing must lie between"),
    ]
    for options, words in mistakes:
        messages = set()
        for call in calls.values():
            with pytest.raises(ValueError, match=words) as error:
                call(**options)
            messages.add(str(error.value))
        assert len(messages) == 1, (options, messages)
    with pytest.raises(ValueError, match="it goes with ndim=3, not ndim=2"):
        read_pair(tmp_path / "r.png", tmp_path / "m.png", ndim=2, spacing=(3, 1, 1))
    with pytest.raises(ValueError, match=r"ndim must be 2 \(images\), 3 \(volumes\) or None"):
        read_pair(tmp_path / "r.png", tmp_path / "m.png", ndim=4)
