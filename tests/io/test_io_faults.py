"""Hostile and odd input files (issue 19): bombs, FIFOs, devices, links, permissions, shapes.

Each reader (read_image, read_volume, read_voxel_size, read_pair) refuses them with a
clear error before decoding anything. Cases that would hang (a FIFO) or allocate gigabytes
(a TIFF bomb) if the fix were reverted run in a subprocess, with a timeout or an
address-space cap.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

import napari_ecc_align
from napari_ecc_align import align, difference
from napari_ecc_align.engine.difference import default_difference_mode
from napari_ecc_align.engine.limits import ENV_VAR, PixelBudgetError
from napari_ecc_align.io import read_image, read_pair, read_volume, read_voxel_size, write_image

SOURCE = str(Path(napari_ecc_align.__file__).parents[1])  # this copy of the package
NOBODY = 65534
HANG_GUARD = 300  # seconds: a refused file returns at once, a blocked open never does


def _python(code: str, *args, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter importing this copy of the package."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _scan(shape=(48, 64), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ----------------------------------------------------------------------------- hostile files
def tiny_tiff(width: int, height: int, *, float32: bool = False) -> bytes:
    """A hand-written classic TIFF whose one strip declares ``height × width`` pixels."""
    bits, sample_format = (32, 3) if float32 else (8, 1)
    tags = [  # (tag, type: 3 SHORT / 4 LONG, value)
        (256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1),
        (273, 4, 0), (277, 3, 1), (278, 4, height), (279, 4, 1), (339, 3, sample_format),
    ]  # fmt: skip
    data_offset = 8 + 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, kind, value in tags:
        value = data_offset if tag == 273 else value  # StripOffsets: the one byte below
        fmt = "<HHIHH" if kind == 3 else "<HHII"
        out += struct.pack(fmt, tag, kind, 1, value, *((0,) if kind == 3 else ()))
    return bytes(out + struct.pack("<I", 0) + b"\x00")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(width: int, height: int, *, depth: int = 8, colour: int = 0) -> bytes:
    """A valid PNG header (IHDR with its CRC) declaring ``height × width``, a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16 × 16 JPEG whose SOF0 marker is patched to declare ``height × width``."""
    buffer = io.BytesIO()
    Image.fromarray(_scan((16, 16))).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


_CAPPED_READ = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space
from napari_ecc_align.engine.limits import PixelBudgetError
from napari_ecc_align.io import read_image
try:
    read_image(sys.argv[1])
except PixelBudgetError as exc:
    print("refused:", exc)
except BaseException as exc:
    print("failed:", type(exc).__name__, exc)
else:
    print("read")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_AS is POSIX")
@pytest.mark.parametrize("float32", [False, True], ids=["uint8", "float32"])
def test_tiff_bomb_is_refused_before_any_allocation(tmp_path, float32):
    bomb = tmp_path / "bomb.tif"
    bomb.write_bytes(tiny_tiff(100_000, 100_000, float32=float32))
    assert bomb.stat().st_size < 200
    assert tifffile.TiffFile(bomb).series[0].shape == (100_000, 100_000)  # it does declare that
    result = _python(_CAPPED_READ, bomb)
    # Reverted, this is "failed: MemoryError Unable to allocate 9.31 GiB" (37.3 GiB).
    assert result.stdout.startswith("refused: "), result.stdout + result.stderr
    assert "declares 100000 × 100000 = 10,000,000,000 pixels" in result.stdout
    for how in ("max_pixels=N", f"{ENV_VAR}=N", "--max-pixels N"):
        assert how in result.stdout


def test_deflate_tiff_over_the_budget_is_refused_and_reads_with_a_raised_limit(tmp_path):
    path = tmp_path / "zeros.tif"
    tifffile.imwrite(path, np.zeros((3000, 3000), np.uint8), compression="zlib")
    assert path.stat().st_size < 100_000  # 9 MB of pixels in about 10 kB
    with pytest.raises(PixelBudgetError, match="3000 × 3000 = 9,000,000 pixels, more than the "):
        read_image(path, max_pixels=1_000_000)
    image = read_image(path, max_pixels=9_000_000)
    assert image.shape == (3000, 3000) and not image.any()


def test_the_environment_variable_sets_the_budget_of_every_reader(tmp_path, monkeypatch):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 40, 50), np.uint8), photometric="minisblack")
    write_image(tmp_path / "flat.png", _scan())
    monkeypatch.setenv(ENV_VAR, "5000")
    with pytest.raises(PixelBudgetError, match="3 × 40 × 50 = 6,000 pixels"):
        read_image(path)
    with pytest.raises(PixelBudgetError, match="3 × 40 × 50 = 6,000 pixels"):
        read_volume(path)
    with pytest.raises(PixelBudgetError, match="3 × 40 × 50 = 6,000 pixels"):
        read_pair(path, path, ndim=3)
    with pytest.raises(PixelBudgetError, match="48 × 64 = 3,072 pixels"):
        read_pair(tmp_path / "flat.png", tmp_path / "flat.png", max_pixels=3000)
    assert read_volume(path, max_pixels=6000)[0].shape == (3, 40, 50)  # the argument wins
    assert read_pair(path, path, ndim=3, max_pixels=6000).reference.shape == (3, 40, 50)


def test_pages_count_and_colour_channels_do_not(tmp_path):
    rgb = _scan((40, 50, 3))
    write_image(tmp_path / "rgb.tif", rgb)
    write_image(tmp_path / "rgb.png", rgb)
    tifffile.imwrite(
        tmp_path / "planar.tif", np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"
    )
    for name in ("rgb.tif", "rgb.png", "planar.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / name, max_pixels=2000), rgb)
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((2, 40, 50), np.uint8))
    with pytest.raises(PixelBudgetError, match="2 × 40 × 50 = 4,000 pixels"):
        read_image(tmp_path / "pages.tif", max_pixels=2000)


def test_a_tile_larger_than_the_budget_is_refused(tmp_path):
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8), tile=(256, 256))
    with pytest.raises(PixelBudgetError, match=r"\(one tile\) declares 256 × 256"):
        read_image(path, max_pixels=60_000)
    assert read_image(path, max_pixels=65_536).shape == (16, 16)


@pytest.mark.parametrize(
    ("name", "data", "declared"),
    [
        ("bomb.png", png_declaring(70_000, 60_000), "60000 × 70000"),
        ("bomb16.png", png_declaring(70_000, 60_000, depth=16, colour=2), "60000 × 70000"),
        ("bomb.jpg", jpeg_declaring(65_000, 60_000), "60000 × 65000"),
    ],
    ids=["png", "16-bit-rgb-png", "jpeg"],
)
def test_png_and_jpeg_bombs_are_refused_with_the_budget_message(tmp_path, name, data, declared):
    path = tmp_path / name
    path.write_bytes(data)
    assert path.stat().st_size < 1000
    # Reverted: "An unknown error occurred while initializing plugin `pillow`".
    with pytest.raises(PixelBudgetError, match=f"{path} declares {declared} = ") as caught:
        read_image(path)
    assert "pillow" not in str(caught.value).lower()
    assert "--max-pixels N" in str(caught.value)


def test_pillows_own_limit_does_not_stand_in_for_the_budget(tmp_path, monkeypatch):
    # Pillow's process-wide MAX_IMAGE_PIXELS is neither consulted nor changed by our reads.
    image = _scan((48, 64, 3))
    write_image(tmp_path / "a.png", image)
    write_image(tmp_path / "a.jpg", image)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)
        assert read_image(tmp_path / "a.jpg").shape == (48, 64, 3)
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_bad_budget_names_the_argument(tmp_path):
    write_image(tmp_path / "a.png", _scan())
    for reader in (read_image, read_volume):
        with pytest.raises(ValueError, match="max_pixels must be a positive whole number"):
            reader(tmp_path / "a.png", max_pixels=-1)
    with pytest.raises(ValueError, match="max_pixels must be a positive whole number"):
        read_pair(tmp_path / "a.png", tmp_path / "a.png", max_pixels=0.5)


# ------------------------------------------------------------------------- non-regular files
_EVERY_READER = r"""
import json, sys
from napari_ecc_align.io import read_image, read_pair, read_volume, read_voxel_size
path, other = sys.argv[1], sys.argv[2]
calls = {
    "read_image": lambda: read_image(path),
    "read_volume": lambda: read_volume(path),
    "read_voxel_size": lambda: read_voxel_size(path),
    "read_pair reference": lambda: read_pair(path, other),
    "read_pair moving": lambda: read_pair(other, path),
    "read_pair ndim=3": lambda: read_pair(other, path, ndim=3),
}
results = {}
for name, call in calls.items():
    try:
        call()
        results[name] = "returned"
    except Exception as exc:
        results[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(results))
"""


def _every_reader(path: Path, other: Path) -> dict:
    """Each reader's outcome on ``path``, in a subprocess that must not hang."""
    result = _python(_EVERY_READER, path, other)  # TimeoutExpired here means a reader blocked
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _make_fifo(path: Path) -> str:
    os.mkfifo(path)
    return "a FIFO"


def _make_device_link(path: Path) -> str:
    path.symlink_to("/dev/zero")
    return "a character device"


def _make_directory(path: Path) -> str:
    path.mkdir()
    return "a directory"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs and /dev/zero are POSIX")
@pytest.mark.parametrize("make", [_make_fifo, _make_device_link, _make_directory])
def test_non_regular_files_are_refused_by_type_without_blocking(tmp_path, make):
    write_image(tmp_path / "ok.png", _scan())
    kind = make(tmp_path / "x.png")
    results = _every_reader(tmp_path / "x.png", tmp_path / "ok.png")
    assert len(results) == 6
    for reader, outcome in results.items():
        assert outcome.startswith("ValueError: "), (reader, outcome)
        assert f"is {kind}, not a regular file" in outcome, (reader, outcome)
        assert "x.png" in outcome


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    # Nobody ever writes to this FIFO: opening it for reading would block forever.
    os.mkfifo(tmp_path / "scan.tif")
    result = _python(
        "import sys\nfrom napari_ecc_align.io import read_image\n"
        "try:\n    read_image(sys.argv[1])\nexcept ValueError as exc:\n    print(exc)\n",
        tmp_path / "scan.tif",
    )
    assert result.stdout.strip() == (
        f"{tmp_path / 'scan.tif'} is a FIFO, not a regular file; give the path of the file itself"
    )


# ----------------------------------------------------------------------- the true reasons
def test_a_symlink_loop_is_not_called_missing(tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    write_image(tmp_path / "ok.png", _scan())
    loop = tmp_path / "a.png"
    calls = [
        lambda: read_image(loop),
        lambda: read_volume(loop),
        lambda: read_voxel_size(loop),
        lambda: read_pair(loop, tmp_path / "ok.png"),
        lambda: read_pair(tmp_path / "ok.png", loop, ndim=3),
    ]
    for call in calls:
        with pytest.raises(OSError, match="too many levels of symbolic links") as caught:
            call()
        assert not isinstance(caught.value, FileNotFoundError)  # reverted: "no such file"
        assert caught.value.errno == errno.ELOOP
        assert caught.value.filename == str(loop)


def test_missing_files_and_dangling_links_stay_file_not_found(tmp_path):
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(FileNotFoundError, match="a symbolic link whose target does not exist"):
        read_image(tmp_path / "dangling.png")


@pytest.fixture
def shared_dir():
    """A folder any user may enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="ecc-io-faults-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        if not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


def drop_privileges_code(body: str) -> str:
    """Python code that imports the readers, becomes an ordinary user, then runs ``body``.

    Root may read anything, and the tests run as root here and in CI: the subprocess
    switches to ``nobody`` (after importing, as nobody may not read the sources).
    """
    return f"""
import json, os, sys
import PIL.JpegImagePlugin, PIL.PngImagePlugin, tifffile
from napari_ecc_align.cli import main
from napari_ecc_align.io import read_image, read_pair, read_volume, read_voxel_size
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid({NOBODY})
    os.setuid({NOBODY})
assert os.geteuid() != 0
{body}
"""


_UNREADABLE = drop_privileges_code(
    """
results = {}
for path in sys.argv[2:]:
    for name, call in {
        "read_image": lambda: read_image(path),
        "read_volume": lambda: read_volume(path),
        "read_voxel_size": lambda: read_voxel_size(path),
        "read_pair": lambda: read_pair(sys.argv[1], path),
    }.items():
        try:
            call()
            results[f"{name} {path}"] = "returned"
        except Exception as exc:
            results[f"{name} {path}"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(results))
"""
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_permission_errors_say_permission_denied(shared_dir):
    write_image(shared_dir / "ok.png", _scan())
    (shared_dir / "locked").mkdir()
    write_image(shared_dir / "locked" / "scan.png", _scan())
    write_image(shared_dir / "private.png", _scan())
    (shared_dir / "ok.png").chmod(0o644)
    (shared_dir / "locked").chmod(0o000)  # its file exists, but may not be reached
    (shared_dir / "private.png").chmod(0o000)
    hidden, private = shared_dir / "locked" / "scan.png", shared_dir / "private.png"
    result = _python(_UNREADABLE, shared_dir / "ok.png", hidden, private)
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert len(results) == 8
    for call, outcome in results.items():
        # Reverted, the file in the locked folder is "FileNotFoundError: ... no such file".
        path = hidden if str(hidden) in call else private
        assert outcome == f"PermissionError: [Errno 13] permission denied: '{path}'", call


# ---------------------------------------------------------------------------- odd shapes
@pytest.fixture
def odd_files(tmp_path):
    """A 2D PNG, a plain 5-page TIFF and a (rows, cols, 5) TIFF, all 48 × 64."""
    scan = _scan()
    write_image(tmp_path / "flat.png", scan)
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([scan] * 5))
    tifffile.imwrite(
        tmp_path / "channels.tif", np.dstack([scan] * 5), photometric="minisblack",
        planarconfig="contig",
    )  # fmt: skip
    return tmp_path


@pytest.mark.parametrize("swap", [False, True], ids=["stack-reference", "stack-moving"])
def test_read_pair_refuses_a_stack_opposite_a_2d_image(odd_files, swap):
    stack, flat = odd_files / "pages.tif", odd_files / "flat.png"
    pair = (flat, stack) if swap else (stack, flat)
    roles = ("moving", "reference") if swap else ("reference", "moving")
    with pytest.raises(ValueError) as caught:
        read_pair(*pair)
    message = str(caught.value)
    assert message.startswith(f"the {roles[0]} image {stack} has 5 pages (axes QYX, shape (5,")
    assert f"but the {roles[1]} image {flat} is one 2D image" in message
    assert "save the page to align as its own file" in message
    assert "pass ndim=3 to align them as volumes" in message


@pytest.mark.parametrize("swap", [False, True], ids=["reference", "moving"])
def test_read_pair_refuses_five_channels_and_still_reads_gray_rgb_and_two_stacks(odd_files, swap):
    odd, flat = odd_files / "channels.tif", odd_files / "flat.png"
    role = "moving" if swap else "reference"
    with pytest.raises(ValueError, match=f"the {role} image .*channels.tif has 5 channels") as c:
        read_pair(*((flat, odd) if swap else (odd, flat)))
    assert "which is neither gray, RGB nor RGBA" in str(c.value)
    write_image(odd_files / "rgb.tif", _scan((48, 64, 3)))
    pair = read_pair(*((flat, odd_files / "rgb.tif") if swap else (odd_files / "rgb.tif", flat)))
    assert {pair.reference.shape, pair.moving.shape} == {(48, 64, 3), (48, 64)}
    stacks = read_pair(odd_files / "pages.tif", odd_files / "pages.tif")  # align() says more
    assert stacks.reference.shape == (5, 48, 64) and stacks.ndim == 2


@pytest.mark.parametrize(
    "stack", [np.zeros((5, 48, 64), np.uint8), np.zeros((48, 64, 5), np.uint8)],
    ids=["pages", "channels"],
)  # fmt: skip
@pytest.mark.parametrize("swap", [False, True], ids=["as-reference", "as-moving"])
def test_the_python_api_names_the_argument_not_index_error(stack, swap):
    flat = _scan()
    reference, moving = (flat, stack) if swap else (stack, flat)
    role = "moving" if swap else "reference"
    with pytest.raises(ValueError, match=re.escape(f"{role} has shape {stack.shape}")):
        align(reference, moving)
    with pytest.raises(ValueError, match=r"reference \(.*\) and aligned \(.*\)"):
        difference(reference, moving)
    # Reverted: IndexError "too many indices for array" from _robust_range.
    with pytest.raises(ValueError, match=re.escape(f"{role} {stack.shape} is a (z, y, x) volume")):
        default_difference_mode(reference, moving)


def test_default_difference_mode_checks_ndim_and_axes():
    flat = _scan()
    with pytest.raises(ValueError, match=r"moving has shape \(48, 64\): fewer than the 3 spatial"):
        default_difference_mode(np.zeros((4, 48, 64), np.uint8), flat, ndim=3)
    with pytest.raises(ValueError, match="ndim must be 2"):
        default_difference_mode(flat, flat, ndim=4)
    with pytest.raises(TypeError, match="reference must be an array"):
        default_difference_mode(None, flat)
    assert default_difference_mode(flat, flat) == "absolute"
    assert default_difference_mode(flat, flat.astype(np.float32)) == "normalized"
