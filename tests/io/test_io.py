"""read_image / write_image: dtypes, channels, format checks, errors and atomic writes."""

import os
import stat

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_ecc_align.io import images as _io
from napari_ecc_align.io.images import check_writable, read_image, write_image


def _gradient(shape=(48, 64), top=255, dtype=np.uint8):
    """Deterministic non-trivial image: a diagonal ramp with a checker pattern."""
    rows, cols = shape[:2]
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = (xx * 3 + yy * 5 + 17 * ((xx // 4 + yy // 4) % 2)) % (top + 1)
    if len(shape) == 3:
        img = np.stack([(img * (c + 1)) % (top + 1) for c in range(shape[2])], axis=-1)
    return img.astype(dtype)


# ------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 3), (48, 64, 4)])
def test_png_8bit_round_trip(tmp_path, shape):
    img = _gradient(shape)
    write_image(tmp_path / "a.png", img)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 3), (48, 64, 4)])
def test_png_16bit_round_trip(tmp_path, shape):
    img = _gradient(shape, top=65535, dtype=np.uint16) * 13
    write_image(tmp_path / "a.png", img)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)


def test_16bit_colour_png_from_another_writer_stays_16bit_and_rgb(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint16)
    rgb[..., 0] = 60000  # red only: a channel-order mistake would show
    cv2.imwrite(str(tmp_path / "red.png"), rgb[..., ::-1])  # OpenCV writes BGR
    out = read_image(tmp_path / "red.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_tiff_uint16_12bit_values(tmp_path):
    img = (np.arange(40 * 50).reshape(40, 50) * 4095 // (40 * 50 - 1)).astype(np.uint16)
    img[::7] //= 3  # not just a ramp
    tifffile.imwrite(tmp_path / "12bit.tif", img)
    out = read_image(tmp_path / "12bit.tif")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, img)
    write_image(tmp_path / "copy.tiff", out)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "copy.tiff"), img)


def test_tiff_float32_keeps_values(tmp_path):
    img = np.linspace(-2.5, 1e6, 40 * 50, dtype=np.float32).reshape(40, 50)
    img[3, 4] = np.nan
    write_image(tmp_path / "f.tif", img)
    out = read_image(tmp_path / "f.tif")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)  # NaN == NaN for assert_array_equal


def test_planar_rgb_tiff_comes_back_channel_last(tmp_path):
    img = _gradient((20, 30, 3))
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(img, -1, 0), photometric="rgb", planarconfig="separate"
    )
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif"), img)


def test_jpeg_input(tmp_path):
    img = cv2.GaussianBlur(_gradient((60, 80, 3)), (0, 0), 2)
    cv2.imwrite(str(tmp_path / "a.jpg"), img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 98])
    out = read_image(tmp_path / "a.jpg")
    assert out.dtype == np.uint8 and out.shape == (60, 80, 3)
    assert np.abs(out.astype(int) - img).mean() < 3  # lossy, but RGB order and values hold
    gray = img[..., 0]
    cv2.imwrite(str(tmp_path / "g.jpeg"), gray)
    assert read_image(tmp_path / "g.jpeg").shape == (60, 80)


def test_jpeg_write_is_8bit_rgb(tmp_path):
    img = cv2.GaussianBlur(_gradient((60, 80, 3)), (0, 0), 2)
    write_image(tmp_path / "a.jpg", img)
    out = cv2.imread(str(tmp_path / "a.jpg"))[..., ::-1]
    assert np.abs(out.astype(int) - img).mean() < 3


def test_palette_gray_alpha_and_1bit_png(tmp_path):
    gray = _gradient((20, 30))
    Image.fromarray(gray).convert("P").save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (20, 30, 3)
    Image.fromarray(gray).convert("P").save(tmp_path / "pt.png", transparency=0)
    assert read_image(tmp_path / "pt.png").shape == (20, 30, 4)
    la = np.stack([gray, np.full_like(gray, 200)], axis=-1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    out = read_image(tmp_path / "la.png")
    assert out.shape == (20, 30, 4)  # gray + alpha -> RGBA: the alpha still masks
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 3], 200)
    Image.fromarray(gray > 100).save(tmp_path / "bits.png")
    bits = read_image(tmp_path / "bits.png")
    assert bits.dtype == np.bool_
    np.testing.assert_array_equal(bits, gray > 100)


def test_bool_png_is_saved_as_0_255(tmp_path):
    mask = _gradient((20, 30)) > 100
    write_image(tmp_path / "m.png", mask)
    out = read_image(tmp_path / "m.png")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.where(mask, 255, 0))


# ---------------------------------------------------------------------------------- read errors
def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(path)


@pytest.mark.parametrize(
    "name, content",
    [
        ("random.png", np.random.default_rng(0).bytes(500)),
        ("empty.tif", b""),
        ("truncated.png", None),  # a real PNG cut in half
    ],
)
def test_undecodable_file_is_value_error(tmp_path, name, content):
    path = tmp_path / name
    if content is None:
        write_image(tmp_path / "good.png", _gradient((100, 100, 3)))
        data = (tmp_path / "good.png").read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=name) as info:
        read_image(path)
    assert "PNG" in str(info.value) and "TIFF" in str(info.value)  # says what is supported


def test_unsupported_extension(tmp_path):
    path = tmp_path / "a.bmp"
    cv2.imwrite(str(path), _gradient((10, 10)))
    with pytest.raises(ValueError, match=r"a\.bmp.*\.png.*\.tif"):
        read_image(path)
    with pytest.raises(ValueError, match="unsupported"):
        write_image(tmp_path / "b.gif", _gradient((10, 10)))


def test_content_decides_over_extension(tmp_path):
    img = _gradient((20, 30))
    write_image(tmp_path / "really.png", img)
    os.replace(tmp_path / "really.png", tmp_path / "named.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "named.tif"), img)


# --------------------------------------------------------------------------------- write checks
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_jpeg_refuses_more_than_8_bits(tmp_path, dtype):
    with pytest.raises(ValueError, match=r"JPEG.*\.png.*\.tif"):
        write_image(tmp_path / "a.jpg", _gradient((10, 10)).astype(dtype))
    assert not list(tmp_path.iterdir())


def test_jpeg_refuses_alpha(tmp_path):
    with pytest.raises(ValueError, match="4 channels"):
        write_image(tmp_path / "a.jpg", _gradient((10, 10, 4)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_png_refuses_float_and_wide_ints(tmp_path, dtype):
    with pytest.raises(ValueError, match=r"\.tif"):
        write_image(tmp_path / "a.png", np.zeros((10, 10), dtype))


def test_check_writable_without_data():
    assert check_writable("x.TIF", np.float64, (3, 10, 10)) == "TIFF"
    assert check_writable("x.png", np.uint16, (10, 10, 3)) == "PNG"
    with pytest.raises(ValueError, match="stacks"):
        check_writable("x.png", np.uint8, (3, 10, 10, 3))


def test_write_never_modifies_the_input(tmp_path):
    for name, img in [
        ("a.png", _gradient((20, 30)) > 50),
        ("b.png", _gradient((20, 30, 1))),
        ("c.tif", _gradient((20, 30, 3), dtype=np.float32)),
    ]:
        before = img.copy()
        write_image(tmp_path / name, img)
        np.testing.assert_array_equal(img, before)
        assert img.dtype == before.dtype and img.shape == before.shape


# -------------------------------------------------------------------------------- atomic writes
def test_write_creates_folders_and_leaves_no_temporary_files(tmp_path):
    target = tmp_path / "new" / "deeper" / "a.png"
    write_image(target, _gradient((20, 30)))
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]


def test_new_file_permissions_follow_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    write_image(tmp_path / "a.tif", _gradient((5, 5)))
    assert stat.S_IMODE(os.stat(tmp_path / "a.tif").st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "a.png"
    write_image(target, _gradient((20, 30)))
    good = target.read_bytes()

    def broken_write(tmp, arr, fmt, ext):
        with open(tmp, "wb") as fh:
            fh.write(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(_io, "_write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, _gradient((20, 30)) // 2)
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_temporary_name_is_hidden_and_keeps_the_extension(tmp_path, monkeypatch):
    seen = []
    real_write = _io._write

    def spy(tmp, arr, fmt, ext):
        seen.append(os.path.basename(tmp))
        real_write(tmp, arr, fmt, ext)

    monkeypatch.setattr(_io, "_write", spy)
    write_image(tmp_path / "out.tiff", _gradient((5, 5)))
    (name,) = seen
    assert name.startswith(".") and name.endswith(".tiff") and name != "out.tiff"


def test_non_atomic_write(tmp_path):
    write_image(tmp_path / "a.png", _gradient((5, 5)), atomic=False)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), _gradient((5, 5)))
