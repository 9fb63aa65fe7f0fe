"""Multimodal ECC (issue 21, item 3): ``intensity="linear" | "mapped" | "auto"``.

Accuracy is the corner RMS error against the known matrix. The generated pairs map
the moving image's intensities through a non-monotonic function (mid grays brightest),
as a second modality would; plain ECC ends visibly off on them.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_ecc_align import Alignment, AlignmentError, align, align_stack
from napari_ecc_align.data import natural_pair, volume_pair
from napari_ecc_align.engine.intensity import (
    BINS,
    apply_table,
    conditional_mean,
    measure,
)

REALDATA = Path(__file__).resolve().parents[3] / "shared" / "realdata"
ITK = REALDATA / "itk-brain-slices"


def _remapped(image):
    """Mid grays brightest, both ends dark: a function, but not a monotonic one."""
    lo, hi = float(np.min(image)), float(np.max(image))
    return np.sin(np.pi * (image - lo) / (hi - lo)).astype(np.float32)


# ------------------------------------------------------------------------- the relation
def test_conditional_mean_is_a_step_at_the_threshold_and_turns_over_for_an_inverted_mask():
    gray = np.random.default_rng(1).random(200_000)
    table, explained = conditional_mean(gray, (gray > 0.3).astype(np.float64))
    assert len(table.values) == BINS
    low, high = table.centres[table.centres < 0.28], table.centres[table.centres > 0.32]
    assert np.all(table.values[: len(low)] < 0.05) and np.all(table.values[-len(high) :] > 0.95)
    assert explained > 0.95  # one bin straddles the threshold
    inverted, _ = conditional_mean(gray, (gray <= 0.3).astype(np.float64))
    assert np.allclose(inverted.values, 1 - table.values, atol=0.01)
    mapped = apply_table(np.float32([[0.1, 0.9]]), table)
    assert mapped.dtype == np.float32 and mapped.shape == (1, 2)
    assert mapped[0, 0] < 0.05 and mapped[0, 1] > 0.95


def test_a_few_hot_pixels_do_not_squeeze_the_table():
    """The bins span the 0.1st-99.9th percentiles: a hot pixel at 20x the content's
    range left the content in 2 of 32 bins when they spanned the whole range."""
    rng = np.random.default_rng(5)
    gray = rng.random(100_000) * 0.05  # the content, squeezed by one bright outlier
    gray[0] = 1.0
    table, explained = conditional_mean(gray, (gray > 0.025).astype(np.float64))
    assert table.high < 0.06 and explained > 0.95
    mapped = apply_table(np.float32([[0.01, 0.04, 1.0]]), table)
    assert mapped[0, 0] < 0.05 and mapped[0, 1] > 0.95 and mapped[0, 2] > 0.95


def test_a_linear_relation_is_not_markedly_better_mapped():
    rng = np.random.default_rng(2)
    ref = rng.random(100_000)
    mov = 0.2 + 0.7 * ref + rng.normal(0, 0.05, ref.size)
    relation = measure(ref, mov)
    assert abs(relation.mapped - relation.linear) < 0.005
    assert not relation.markedly_better()


def test_a_non_monotonic_relation_maps_the_side_that_predicts_the_other():
    rng = np.random.default_rng(3)
    ref = rng.random(100_000)
    mov = np.sin(np.pi * ref) + rng.normal(0, 0.02, ref.size)  # a function of ref, not back
    relation = measure(ref, mov)
    assert relation.side == "reference" and relation.markedly_better()
    assert relation.linear < 0.01 and relation.mapped > 0.95
    assert measure(ref, mov, side="moving").mapped < 0.1  # ref is two-valued given mov


def test_few_samples_do_not_overfit_noise():
    """64 bins fitted to 300 unrelated samples explain 18 % of the variance before the
    adjustment; adjusted, about nothing, and never "markedly better" than a line."""
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(20):
        relation = measure(rng.random(300), rng.random(300))
        assert relation.mapped < 0.1
        hits += not relation.markedly_better()
    assert hits == 20
    assert measure(rng.random(100), rng.random(100)) is None  # too few to measure


# ------------------------------------------------------------------------------ images
def _multimodal_pair(seed):
    reference, moving, truth = natural_pair((320, 320), seed, angle_deg=1.0)
    return reference, _remapped(moving), truth


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_maps_a_non_monotonic_pair_and_plain_ecc_does_not_reach_it(seed):
    reference, moving, truth = _multimodal_pair(seed)
    result = align(reference, moving)
    assert result.parameters["intensity_mapped"] in ("reference", "moving")
    assert result.corner_error(truth) < 0.1
    assert result.correlation > 0.9  # the correlation ECC maximised: with the mapped image
    try:
        plain = align(reference, moving, intensity="linear")
    except Exception:  # noqa: BLE001 - refusing is as much a miss as a wrong pose
        return
    assert plain.parameters["intensity_mapped"] is None
    assert plain.corner_error(truth) > 3 * result.corner_error(truth)


def test_gray_pairs_stay_linear_under_auto_and_mapped_is_as_accurate():
    reference, moving, truth = natural_pair((320, 320), 0)
    auto = align(reference, moving)
    assert auto.parameters["intensity"] == "auto"
    assert auto.parameters["intensity_mapped"] is None
    linear = align(reference, moving, intensity="linear")
    np.testing.assert_array_equal(auto.matrix, linear.matrix)
    mapped = align(reference, moving, intensity="mapped")
    assert mapped.parameters["intensity_mapped"] is not None
    assert mapped.corner_error(truth) < 0.05 and auto.corner_error(truth) < 0.05


def test_a_binarised_photo_is_mapped_under_auto_and_plain_when_asked():
    reference, moving, truth = natural_pair((320, 320), 1, angle_deg=1.2)
    binary = reference > 0.5 * (reference.min() + reference.max())
    mapped = align(binary, moving)
    # The grayscale moving image is mapped onto the binarised reference, not the reverse.
    assert mapped.parameters["bilevel"] == "reference"
    assert mapped.parameters["intensity_mapped"] == "moving"
    plain = align(binary, moving, intensity="linear")
    assert plain.parameters["intensity_mapped"] is None
    assert mapped.corner_error(truth) <= 0.6 * plain.corner_error(truth)  # 0.28 vs 0.50


@pytest.mark.parametrize("value", ["log", "", "MAPPED!"])
def test_an_unknown_intensity_is_refused_by_name(value):
    reference, moving, _ = natural_pair((64, 64), 0)
    with pytest.raises(ValueError, match="intensity"):
        align(reference, moving, intensity=value)
    with pytest.raises(TypeError, match="intensity"):
        align(reference, moving, intensity=1)


# ----------------------------------------------------------------------------- volumes
def test_a_remapped_volume_is_aligned_within_six_hundredths_of_a_voxel():
    pair = volume_pair((24, 64, 64), 0, spacing=(1.0, 1.0, 1.0))
    moving = _remapped(pair.moving.astype(np.float32))
    kwargs = {"ndim": 3, "spacing": pair.spacing, "motion": "euclidean"}
    result = align(pair.reference, moving, **kwargs)
    assert result.parameters["intensity_mapped"] is not None
    # The mapped objective is flat here: ECC started at the true pose stops 0.049 voxel
    # off (correlations within 1e-4). Until the thin-stack fix this pair searched on two
    # levels only, because its 6-plane level failed; on three it ends 0.054 off.
    assert result.corner_error(pair.matrix) < 0.06
    plain = align(pair.reference, moving, intensity="linear", **kwargs)
    assert plain.corner_error(pair.matrix) > 2 * result.corner_error(pair.matrix)


# --------------------------------------------------------------------- ITK's T1/PD pair
def _slice(name):
    path = ITK / name
    if not path.is_file():
        pytest.skip(f"{path} is not here (../shared/realdata)")
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("shift", [(0, 0), (13, 17)])
def test_itk_t1_against_pd_within_the_target(shift):
    """Plain ECC ended 0.95 px (identity) and 1.72 px (shifted) off, with no warning."""
    t1 = _slice("BrainT1SliceBorder20.png")
    name = "BrainProtonDensitySlice" + ("Shifted13x17y" if any(shift) else "Border20") + ".png"
    pd = _slice(name)
    truth = np.eye(3)
    truth[:2, 2] = shift
    result = align(t1, pd, motion="euclidean")
    assert result.parameters["intensity_mapped"] is not None
    assert result.corner_error(truth) <= 0.15


def test_unrelated_images_are_told_about_the_mapping():
    reference, _, _ = natural_pair((128, 128), 0)
    noise = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    with pytest.raises(AlignmentError, match="look unrelated.*intensity='mapped'"):
        align(reference, noise)


def test_the_mapping_is_recorded_and_survives_json(tmp_path):
    reference, moving, truth = _multimodal_pair(0)
    result = align(reference, moving)
    path = tmp_path / "t.json"
    result.to_json(path)
    back = Alignment.from_json(path)
    assert back.parameters["intensity"] == "auto"
    assert back.parameters["intensity_mapped"] == result.parameters["intensity_mapped"]
    assert back.parameters["gauss_filter_size"] is None
    np.testing.assert_array_equal(back.matrix, result.matrix)


def test_align_stack_takes_the_intensity_option():
    reference, moving, truth = _multimodal_pair(1)
    stack = np.stack([reference, moving])
    mapped = align_stack(stack, reference="first", motion="affine")
    plain = align_stack(stack, reference="first", motion="affine", intensity="linear")
    assert mapped.alignments[1].parameters["intensity_mapped"] is not None
    assert plain.alignments[1].parameters["intensity_mapped"] is None
    assert mapped.alignments[1].corner_error(truth) < 0.15
