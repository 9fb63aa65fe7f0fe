"""The `napari-ecc-align align` command: real files in, real files out, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from napari_ecc_align import Alignment, __version__, difference
from napari_ecc_align.cli import commands as _cli
from napari_ecc_align.cli import main
from napari_ecc_align.engine.difference import default_difference_mode
from napari_ecc_align.io.images import read_image, write_image

SHIFT = (3.5, -2.25)  # content of the moving image is displaced by this (dx, dy)
REF_BOX = (20, 220, 30, 270)  # rows 20:220, cols 30:270 of the scene: 200 x 240
MOV_BOX = (15, 225, 25, 275)  # 210 x 250: a different grid from the reference's


def _scene(seed=0, size=300):
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.random((size, size), dtype=np.float32), (0, 0), 3)
    return (scene - scene.min()) / (scene.max() - scene.min())


def _pair(seed=0):
    """Reference and moving crops of one smooth scene, moving shifted by SHIFT (sub-pixel).

    Returns float32 images in [0, 1] and the true reference->moving (x, y) translation.
    """
    scene = _scene(seed)
    dx, dy = SHIFT
    # shifted(x, y) = scene(x - dx, y - dy). Linear interpolation: OpenCV's cubic kernel
    # shifts a quarter-pixel sample by about 0.045 px, more than this test's tolerance.
    to_moving = np.float32([[1, 0, dx], [0, 1, dy]])
    shifted = cv2.warpAffine(scene, to_moving, scene.shape[::-1], flags=cv2.INTER_LINEAR)
    r0, r1, c0, c1 = REF_BOX
    m0, m1, n0, n1 = MOV_BOX
    reference = scene[r0:r1, c0:c1]
    moving = shifted[m0:m1, n0:n1]
    # reference pixel (x, y) is scene (x + c0, y + r0) = shifted (x + c0 + dx, y + r0 + dy)
    truth = np.array([c0 + dx - n0, r0 + dy - m0])
    return reference, moving, truth


def _to(img, dtype, top=None):
    top = np.iinfo(dtype).max if top is None else top
    return np.rint(img * top).astype(dtype)


@pytest.fixture
def pair_files(tmp_path):
    reference, moving, truth = _pair()
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    write_image(tmp_path / "mov.png", _to(moving, np.uint8))
    return tmp_path, truth


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# -------------------------------------------------------------------------------------- success
def test_translation_is_recovered_to_a_twentieth_of_a_pixel(pair_files, capsys):
    d, truth = pair_files
    code, out, err = _run(
        capsys,
        "align",
        d / "ref.png",
        d / "mov.png",
        "-o",
        d / "al.png",
        "--motion",
        "translation",
        "--transform",
        d / "t.json",
    )
    assert code == 0, err
    matrix = np.array(json.loads((d / "t.json").read_text())["matrix"])
    np.testing.assert_allclose(matrix[:2, 2], truth, atol=0.05)
    np.testing.assert_allclose(matrix[:2, :2], np.eye(2))
    # one summary line: motion, correlation before -> after, the shift found
    assert out.count("\n") == 1 and out.startswith("translation: correlation")
    assert "->" in out and f"({truth[0]:+.2f}, {truth[1]:+.2f}) px" in out
    assert err == ""


def test_aligned_image_is_on_the_reference_grid_and_matches_it(pair_files, capsys):
    d, _ = pair_files
    code, _, err = _run(capsys, "align", d / "ref.png", d / "mov.png", "-o", d / "out" / "al.png")
    assert code == 0, err
    reference = read_image(d / "ref.png")
    aligned = read_image(d / "out" / "al.png")
    assert aligned.dtype == np.uint8
    assert aligned.shape == reference.shape == (200, 240)  # not the moving (210, 250)
    inner = (slice(10, -10), slice(10, -10))
    error = np.abs(aligned[inner].astype(float) - reference[inner])
    assert error.mean() < 1.5  # 8-bit units; the unaligned pair differs by ~10x more
    moving = read_image(d / "mov.png")[:200, :240]
    assert np.abs(moving[inner].astype(float) - reference[inner]).mean() > 10 * error.mean()


@pytest.mark.parametrize(
    "ext, dtype, top",
    [
        (".tif", np.uint16, 4095),
        (".tif", np.float32, 1.0),
        (".png", np.uint16, 65535),
        (".png", np.uint8, 255),
    ],
)
def test_output_keeps_the_moving_dtype(tmp_path, capsys, ext, dtype, top):
    reference, moving, _ = _pair()
    write_image(tmp_path / f"ref{ext}", _to(reference, np.uint8))  # reference dtype differs
    mov = moving.astype(dtype) if dtype == np.float32 else _to(moving, dtype, top)
    write_image(tmp_path / f"mov{ext}", mov)
    code, out, err = _run(
        capsys,
        "align",
        tmp_path / f"ref{ext}",
        tmp_path / f"mov{ext}",
        "-o",
        tmp_path / f"al{ext}",
        "--quiet",
    )
    assert code == 0, err
    assert out == ""
    aligned = read_image(tmp_path / f"al{ext}")
    assert aligned.dtype == np.dtype(dtype) and aligned.shape == reference.shape
    assert aligned.max() <= top and aligned.max() > 0.5 * top


def test_tiff_12bit_pair_through_the_cli(tmp_path, capsys):
    reference, moving, truth = _pair(seed=3)
    tifffile.imwrite(tmp_path / "ref.tif", _to(reference, np.uint16, 4095))
    tifffile.imwrite(tmp_path / "mov.tif", _to(moving, np.uint16, 4095))
    code, _, err = _run(
        capsys,
        "align",
        tmp_path / "ref.tif",
        tmp_path / "mov.tif",
        "-q",
        "-o",
        tmp_path / "al.tif",
        "--transform",
        tmp_path / "t.json",
    )
    assert code == 0, err
    assert tifffile.imread(tmp_path / "al.tif").dtype == np.uint16
    alignment = Alignment.from_json(tmp_path / "t.json")
    np.testing.assert_allclose(alignment.matrix[:2, 2], truth, atol=0.1)  # affine default


def test_jpeg_moving_image(tmp_path, capsys):
    reference, moving, truth = _pair(seed=1)
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    write_image(tmp_path / "mov.jpg", _to(moving, np.uint8))
    code, out, err = _run(
        capsys,
        "align",
        tmp_path / "ref.png",
        tmp_path / "mov.jpg",
        "-o",
        tmp_path / "al.jpg",
        "--motion",
        "euclidean",
        "--transform",
        tmp_path / "t.json",
    )
    assert code == 0, err
    assert out.startswith("euclidean:")
    assert read_image(tmp_path / "al.jpg").shape == reference.shape
    matrix = Alignment.from_json(tmp_path / "t.json").matrix
    np.testing.assert_allclose(matrix[:2, 2], truth, atol=0.1)


def test_transform_json_round_trips(pair_files, capsys):
    d, _ = pair_files
    code, _, err = _run(
        capsys,
        "align",
        d / "ref.png",
        d / "mov.png",
        "-o",
        d / "al.png",
        "--transform",
        d / "json" / "t.json",
        "--motion",
        "affine",
    )
    assert code == 0, err
    alignment = Alignment.from_json(d / "json" / "t.json")
    assert alignment.motion == "affine"
    assert alignment.reference_shape == (200, 240) and alignment.moving_shape == (210, 250)
    assert alignment.correlation > 0.99 > alignment.correlation_before
    # --init with the saved transform starts at the answer: nothing left to gain
    code, out, err = _run(
        capsys,
        "align",
        d / "ref.png",
        d / "mov.png",
        "-o",
        d / "al2.png",
        "--init",
        d / "json" / "t.json",
    )
    assert code == 0, err
    assert out.split("correlation ")[1].startswith(f"{alignment.correlation:.3f}")


def test_difference_absolute_for_comparable_images(pair_files, capsys):
    d, _ = pair_files
    code, _, err = _run(
        capsys,
        "align",
        d / "ref.png",
        d / "mov.png",
        "-o",
        d / "al.png",
        "--difference",
        d / "diff.png",
    )
    assert code == 0, err
    diff = read_image(d / "diff.png")
    assert diff.dtype == np.uint8 and diff.shape == (200, 240)
    aligned = read_image(d / "al.png").astype(int)
    reference = read_image(d / "ref.png").astype(int)
    inner = (slice(10, -10), slice(10, -10))
    np.testing.assert_array_equal(diff[inner], np.abs(reference - aligned)[inner])


def test_difference_normalized_for_different_dtypes(tmp_path, capsys):
    reference, moving, _ = _pair()
    write_image(tmp_path / "ref.png", reference > 0.5)  # binarised: 0 / 255
    write_image(tmp_path / "mov.tif", _to(moving, np.uint16, 4095))
    for name in ("diff.png", "diff.tif"):
        code, _, err = _run(
            capsys,
            "align",
            tmp_path / "ref.png",
            tmp_path / "mov.tif",
            "-q",
            "-o",
            tmp_path / "al.tif",
            "--difference",
            tmp_path / name,
        )
        assert code == 0, err
    as_png = read_image(tmp_path / "diff.png")
    as_tif = read_image(tmp_path / "diff.tif")
    assert as_tif.dtype == np.float32  # z-score units
    assert as_png.dtype == np.uint16  # the moving image has more than 8 bits
    # documented scale: 4 standard deviations -> 65535
    expected = np.rint(np.clip(as_tif / 4.0, 0, 1) * 65535)
    np.testing.assert_allclose(as_png, expected, atol=1)


def test_difference_is_zero_outside_the_overlap(tmp_path, capsys):
    reference, _, _ = _pair()
    scene = _scene()
    shifted = cv2.warpAffine(scene, np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]]), (300, 300))
    # Same origin as the reference but smaller: the moving image covers reference
    # rows ~2..161 and cols 0..195 only.
    moving = shifted[20:180, 30:230]
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    write_image(tmp_path / "mov.png", _to(moving, np.uint8))
    code, _, err = _run(
        capsys,
        "align",
        tmp_path / "ref.png",
        tmp_path / "mov.png",
        "-q",
        "-o",
        tmp_path / "al.png",
        "--difference",
        tmp_path / "diff.tif",
        "--motion",
        "translation",
    )
    assert code == 0, err
    diff = read_image(tmp_path / "diff.tif")
    assert diff.shape == (200, 240)
    assert not diff[165:].any() and not diff[:, 200:].any() and not diff[:2].any()
    assert diff[10:150, 10:190].any()


def test_difference_mode_choice():
    a = np.linspace(0, 255, 10000).reshape(100, 100).astype(np.uint8)
    assert default_difference_mode(a, a[::-1].copy()) == "absolute"
    assert default_difference_mode(a, (a // 2 + 60).astype(np.uint8)) == "normalized"
    assert default_difference_mode(a, a.astype(np.uint16)) == "normalized"


# -------------------------------------------------------------------------------------- failures
def _one_error_line(err):
    assert err.count("\n") == 1 and err.startswith("napari-ecc-align: error: "), err
    assert "Traceback" not in err
    return err


def test_missing_file(pair_files, capsys):
    d, _ = pair_files
    missing = d / "no_such_image.png"
    code, out, err = _run(capsys, "align", d / "ref.png", missing, "-o", d / "al.png")
    assert code == 2
    assert str(missing) in _one_error_line(err)
    assert out == "" and not (d / "al.png").exists()


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_unalignable_moving_image_exits_1_with_advice(tmp_path, capsys, kind):
    reference, _, _ = _pair()
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    rng = np.random.default_rng(7)
    bad = np.full((210, 250), 128, np.uint8) if kind == "flat" else rng.integers(0, 256, (210, 250))
    write_image(tmp_path / "bad.png", bad.astype(np.uint8))
    code, _, err = _run(
        capsys, "align", tmp_path / "ref.png", tmp_path / "bad.png", "-o", tmp_path / "al.png"
    )
    assert code == 1
    line = _one_error_line(err)
    assert "try" in line or "check" in line  # says what to do next
    assert not (tmp_path / "al.png").exists()


def test_uint16_to_jpeg_fails_before_aligning(tmp_path, capsys, monkeypatch):
    reference, moving, _ = _pair()
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    write_image(tmp_path / "mov.png", _to(moving, np.uint16))

    def must_not_run(*args, **kwargs):
        raise AssertionError("align() ran although the output format cannot hold the result")

    monkeypatch.setattr(_cli, "align", must_not_run)
    code, _, err = _run(
        capsys, "align", tmp_path / "ref.png", tmp_path / "mov.png", "-o", tmp_path / "out.jpg"
    )
    assert code == 2
    line = _one_error_line(err)
    assert "out.jpg" in line and "uint16" in line and ".png" in line
    assert not (tmp_path / "out.jpg").exists()


@pytest.mark.parametrize("option", ["-o", "--difference", "--transform"])
def test_refuses_to_overwrite_an_input(pair_files, capsys, option):
    d, _ = pair_files
    before = (d / "mov.png").read_bytes()
    target = d / "sub" / ".." / "mov.png"  # same file, spelled differently
    args = ["align", d / "ref.png", d / "mov.png", "-o", d / "al.png", option, target]
    if option == "-o":
        args = args[:3] + ["-o", target]
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert "overwrite" in _one_error_line(err)
    assert (d / "mov.png").read_bytes() == before


def test_corrupt_png(pair_files, capsys):
    d, _ = pair_files
    (d / "corrupt.png").write_bytes(np.random.default_rng(0).bytes(2000))
    code, _, err = _run(capsys, "align", d / "ref.png", d / "corrupt.png", "-o", d / "al.png")
    assert code == 2
    assert "corrupt.png" in _one_error_line(err)


def test_bad_option_values_name_the_option(pair_files, capsys):
    d, _ = pair_files
    code, _, err = _run(
        capsys,
        "align",
        d / "ref.png",
        d / "mov.png",
        "-o",
        d / "al.png",
        "--gauss-filter-size",
        "4",
    )
    assert code == 2
    assert "--gauss-filter-size" in _one_error_line(err)


def test_init_must_be_a_transform_file(pair_files, capsys):
    d, _ = pair_files
    (d / "junk.json").write_text('{"not": "an alignment"}')
    code, _, err = _run(
        capsys, "align", d / "ref.png", d / "mov.png", "-o", d / "al.png", "--init", d / "junk.json"
    )
    assert code == 2
    assert "junk.json" in _one_error_line(err)


def test_usage_errors_and_version(capsys):
    assert main(["align", "only_one.png"]) == 2  # argparse: missing arguments
    assert "usage:" in capsys.readouterr().err
    assert main([]) == 2
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"napari-ecc-align {__version__}"


# ------------------------------------------------------------------------------ the entry point
def test_console_script(pair_files):
    d, truth = pair_files
    script = Path(sys.executable).with_name("napari-ecc-align")
    assert script.exists(), f"console script not installed next to {sys.executable}"
    result = subprocess.run(
        [
            str(script),
            "align",
            str(d / "ref.png"),
            str(d / "mov.png"),
            "-o",
            str(d / "al.tif"),
            "--motion",
            "translation",
            "--difference",
            str(d / "diff.tif"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("translation: correlation")
    assert f"({truth[0]:+.2f}, {truth[1]:+.2f}) px" in result.stdout
    assert read_image(d / "al.tif").shape == (200, 240)
    assert read_image(d / "diff.tif").shape == (200, 240)


# ------------------------------------------------------------------- options that reach align
def _transform(capsys, d, *options):
    code, _, err = _run(
        capsys, "align", d / "ref.png", d / "mov.png", "-q", "-o", d / "al.png",
        "--transform", d / "t.json", *options,
    )  # fmt: skip
    assert code == 0, err
    return json.loads((d / "t.json").read_text())


def test_pyramid_and_criteria_options_reach_align(pair_files, capsys):
    d, truth = pair_files
    default = _transform(capsys, d)
    assert default["levels"] > 1 and max(default["iterations"]) > 3  # what the options change
    assert default["parameters"] == {
        "motion": "affine", "max_iterations": 100, "eps": 1e-6, "gauss_filter_size": None,
        "pyramid_levels": None, "intensity": "auto", "intensity_mapped": None,
    }  # fmt: skip

    one_level = _transform(capsys, d, "--pyramid-levels", "1")
    assert one_level["levels"] == 1 and len(one_level["iterations"]) == 1
    assert one_level["parameters"]["pyramid_levels"] == 1

    capped = _transform(capsys, d, "--max-iterations", "3")
    assert len(capped["iterations"]) == default["levels"]
    assert max(capped["iterations"]) <= 3 and capped["parameters"]["max_iterations"] == 3

    other = _transform(capsys, d, "--eps", "0.001", "--gauss-filter-size", "3", "--intensity",
                       "mapped")  # fmt: skip
    assert other["parameters"]["eps"] == 0.001 and other["parameters"]["gauss_filter_size"] == 3
    assert other["parameters"]["intensity"] == "mapped"
    assert other["parameters"]["intensity_mapped"] in ("reference", "moving")
    for result in (one_level, capped, other):  # each still finds the shift
        np.testing.assert_allclose(np.array(result["matrix"])[:2, 2], truth, atol=0.1)


def test_interpolation_option_reaches_the_resampling(tmp_path, capsys):
    reference, moving, _ = _pair(seed=2)
    # float32: linear resampling makes values the moving image never had
    write_image(tmp_path / "ref.png", _to(reference, np.uint8))
    write_image(tmp_path / "mov.tif", moving)
    values = np.append(np.unique(moving), 0)  # 0: outside the moving image
    new_values = {}
    for interpolation in ("nearest", "linear"):
        code, _, err = _run(
            capsys, "align", tmp_path / "ref.png", tmp_path / "mov.tif", "-q",
            "-o", tmp_path / f"{interpolation}.tif", "--interpolation", interpolation,
        )  # fmt: skip
        assert code == 0, err
        aligned = read_image(tmp_path / f"{interpolation}.tif")
        assert aligned.dtype == np.float32 and aligned.shape == reference.shape
        new_values[interpolation] = np.mean(~np.isin(aligned, values))
    assert new_values["nearest"] == 0  # nearest neighbour copies moving pixels
    assert new_values["linear"] > 0.9  # a sub-pixel shift: blends


def test_difference_mode_option_chooses_the_difference(pair_files, capsys):
    d, _ = pair_files
    diffs = {}
    for mode in (None, "absolute", "normalized"):
        name = f"diff_{mode}.tif"
        extra = [] if mode is None else ["--difference-mode", mode]
        _transform(capsys, d, "--difference", d / name, *extra)
        diffs[mode] = read_image(d / name)
    reference = read_image(d / "ref.png")
    aligned = read_image(d / "al.png")
    alignment = Alignment.from_json(d / "t.json")
    assert diffs["absolute"].dtype == np.uint8  # |reference - aligned| in 8-bit units
    # (the moving image covers the whole reference grid: no zeros outside an overlap)
    expected = np.abs(reference.astype(int) - aligned.astype(int))
    np.testing.assert_array_equal(diffs["absolute"], expected)
    np.testing.assert_array_equal(diffs[None], diffs["absolute"])  # the default for this pair
    assert diffs["normalized"].dtype == np.float32  # z-score units
    np.testing.assert_allclose(
        diffs["normalized"],
        difference(reference, aligned, mode="normalized", alignment=alignment),
        atol=1e-5,
    )
    assert not np.allclose(diffs["normalized"], diffs["absolute"], atol=0.5)
