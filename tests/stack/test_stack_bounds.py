"""``reference="mean"`` ends (issue 19, item 6): a convergence stop and an upper bound."""

import numpy as np
import pytest

from napari_ecc_align import StackAlignment, align_stack, iter_align_stack
from napari_ecc_align.data import natural_image
from napari_ecc_align.stack.align_frames import MAX_MEAN_ITERATIONS


@pytest.fixture(scope="module")
def movie():
    scene = natural_image((200, 200), seed=0)
    return np.stack([scene[10 + t : 138 + t, 10 + 2 * t : 138 + 2 * t] for t in range(6)])


def _run(stack, **kwargs):
    """The events and the result of ``iter_align_stack``."""
    steps = iter_align_stack(stack, reference="mean", motion="translation", workers=2, **kwargs)
    events = []
    try:
        while True:
            events.append(next(steps))
    except StopIteration as stop:
        return events, stop.value


def test_mean_passes_stop_once_the_mean_settles(movie):
    events, result = _run(movie, mean_iterations=MAX_MEAN_ITERATIONS)
    # measured: the third pass moves no corner by 0.01 px (2026, OpenCV 5)
    assert 2 <= result.passes <= 4 < MAX_MEAN_ITERATIONS
    assert len(events) == result.passes * len(movie)  # the passes that really ran
    assert events[-1].total == MAX_MEAN_ITERATIONS * len(movie)  # the bound, not reached
    assert result.ok.all()
    # the same answer as asking for exactly that many passes
    _, exact = _run(movie, mean_iterations=result.passes)
    assert exact.passes == result.passes
    np.testing.assert_allclose(result.matrices, exact.matrices, atol=1e-9)
    # and the passes survive the JSON round trip
    assert StackAlignment.from_json(result.to_json()).passes == result.passes


def test_other_references_run_one_pass(movie):
    assert align_stack(movie[:3], reference="first", motion="translation").passes == 1


@pytest.mark.parametrize("value", [MAX_MEAN_ITERATIONS + 1, 10**9, 2.5, 0])
def test_mean_iterations_beyond_the_bound_is_refused(movie, value):
    with pytest.raises(ValueError, match=rf"mean_iterations .*1 to {MAX_MEAN_ITERATIONS}"):
        align_stack(movie, reference="mean", mean_iterations=value)


def test_frame_shape_is_not_truncated_on_load(movie):
    result = align_stack(movie[:2], reference="first", motion="translation")
    data = result.to_dict()
    data["frame_shape"] = [127.5, 128]
    with pytest.raises(ValueError, match="frame_shape"):
        StackAlignment.from_dict(data)
