"""`napari-ecc-align align` on hostile and odd inputs (issue 19): one line, exit 2, no output.

Every case ends in exit status 2 and exactly one stderr line starting with
``napari-ecc-align: error:``, with no traceback and no output file. Cases that would
hang (a FIFO), allocate gigabytes (a TIFF bomb) or need an ordinary user (permissions;
the tests run as root) run ``main`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_ecc_align
from napari_ecc_align.cli import main
from napari_ecc_align.engine.limits import ENV_VAR
from napari_ecc_align.io.images import write_image

SOURCE = str(Path(napari_ecc_align.__file__).parents[1])  # this copy of the package
PREFIX = "napari-ecc-align: error: "

# main(argv) in a fresh interpreter; prints {"code": ..., "stderr": ...} as JSON.
_MAIN = r"""
import contextlib, io, json, os, sys
{setup}
from napari_ecc_align.cli import main
{drop}
err = io.StringIO()
with contextlib.redirect_stderr(err):
    code = main(sys.argv[1:])
print(json.dumps({{"code": code, "stderr": err.getvalue()}}))
"""
_CAP = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))"
_DROP = """
if os.geteuid() == 0:  # root reads anything: become nobody (after the imports)
    import PIL.JpegImagePlugin, PIL.PngImagePlugin, tifffile
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
assert os.geteuid() != 0
"""


def _main_in_subprocess(*args, setup: str = "", drop: str = "") -> tuple[int, str]:
    """(exit code, stderr) of ``main(args)`` run in a subprocess that must not hang."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SOURCE, env.get("PYTHONPATH")]))
    code = _MAIN.format(setup=setup, drop=drop)
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,  # a refused input returns at once; a blocked open never does
        env=env,
    )
    assert result.returncode == 0 and result.stdout, result.stderr
    outcome = json.loads(result.stdout)
    return outcome["code"], outcome["stderr"]


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _assert_one_line_error(code: int, err: str, *, output: Path) -> str:
    assert code == 2, err
    assert err.startswith(PREFIX) and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert not output.exists()
    return err[len(PREFIX) : -1]


def _scan(shape=(48, 64), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def flat(tmp_path) -> Path:
    write_image(tmp_path / "flat.png", _scan())
    return tmp_path / "flat.png"


# ------------------------------------------------------------------------------ odd shapes
def _pages(path: Path) -> None:
    tifffile.imwrite(path, np.stack([_scan(seed=s) for s in range(5)]))


def _channels(path: Path) -> None:
    image = np.dstack([_scan(seed=s) for s in range(5)])
    tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig")


@pytest.mark.parametrize("difference", [False, True], ids=["plain", "with-difference"])
@pytest.mark.parametrize("swap", [False, True], ids=["odd-reference", "odd-moving"])
@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (_pages, "has 5 pages (axes QYX, shape (5, 48, 64))"),
        (_channels, "has 5 channels (shape (48, 64, 5)), which is neither gray, RGB nor RGBA"),
    ],
    ids=["5-pages", "5-channels"],
)
def test_a_stack_or_five_channels_opposite_a_2d_image(
    tmp_path, flat, capsys, write, expected, swap, difference
):
    # Reverted: "IndexError: too many indices" from difference._robust_range (odd reference),
    # or "out.png: PNG stores 1 to 4 channels" (odd moving).
    write(tmp_path / "odd.tif")
    inputs = (flat, tmp_path / "odd.tif") if swap else (tmp_path / "odd.tif", flat)
    extra = ["--difference", tmp_path / "diff.png"] if difference else []
    code, err = _run(capsys, "align", *inputs, "-o", tmp_path / "out.png", *extra)
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    role = "moving" if swap else "reference"
    assert message.startswith(f"the {role} image {tmp_path / 'odd.tif'} {expected}")
    if write is _pages:
        assert "save the page to align as its own file" in message
        assert "pass --ndim 3 to align them as volumes" in message
    assert not (tmp_path / "diff.png").exists()


# ---------------------------------------------------------------------------- pixel budget
def _tiny_tiff_bomb(width: int, height: int) -> bytes:
    """A 135-byte TIFF whose one uint8 strip declares ``height × width`` pixels."""
    tags = [
        (256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
        (273, 4, 134), (277, 3, 1), (278, 4, height), (279, 4, 1), (339, 3, 1),
    ]  # fmt: skip
    out = bytearray(b"II*\x00" + struct.pack("<IH", 8, len(tags)))
    for tag, kind, value in tags:
        out += (
            struct.pack("<HHIHH", tag, kind, 1, value, 0)
            if kind == 3
            else struct.pack("<HHII", tag, kind, 1, value)
        )
    return bytes(out + struct.pack("<I", 0) + b"\x00")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_AS is POSIX")
def test_a_tiff_bomb_is_one_line_under_a_memory_cap(tmp_path, flat):
    (tmp_path / "bomb.tif").write_bytes(_tiny_tiff_bomb(100_000, 100_000))
    assert (tmp_path / "bomb.tif").stat().st_size == 135
    # Reverted: a traceback ending in "_ArrayMemoryError: Unable to allocate 9.31 GiB".
    code, err = _main_in_subprocess(
        "align", tmp_path / "bomb.tif", flat, "-o", tmp_path / "out.png", setup=_CAP
    )
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert message.startswith(f"{tmp_path / 'bomb.tif'} declares 100000 × 100000 = ")
    assert f"{ENV_VAR}=N or the command-line option --max-pixels N" in message


def test_the_environment_variable_budget_reaches_the_cli(tmp_path, flat, capsys, monkeypatch):
    tifffile.imwrite(tmp_path / "zeros.tif", np.zeros((3000, 3000), np.uint8), compression="zlib")
    monkeypatch.setenv(ENV_VAR, "1000000")
    code, err = _run(capsys, "align", tmp_path / "zeros.tif", flat, "-o", tmp_path / "out.png")
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert "declares 3000 × 3000 = 9,000,000 pixels, more than the pixel budget of 1,000,000" in (
        message
    )


# ------------------------------------------------------------------------ odd files, reasons
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
@pytest.mark.parametrize("swap", [False, True], ids=["fifo-reference", "fifo-moving"])
def test_a_fifo_named_like_an_image_does_not_block_align(tmp_path, flat, swap):
    os.mkfifo(tmp_path / "x.png")  # nobody writes to it: opening it would block forever
    inputs = (flat, tmp_path / "x.png") if swap else (tmp_path / "x.png", flat)
    code, err = _main_in_subprocess("align", *inputs, "-o", tmp_path / "out.png")
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert message == f"{tmp_path / 'x.png'} is a FIFO, not a regular file; " + (
        "give the path of the file itself"
    )


@pytest.mark.skipif(sys.platform == "win32", reason="/dev/zero is POSIX")
def test_a_device_link_and_a_directory_named_like_images(tmp_path, flat, capsys):
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "folder.png").mkdir()
    code, err = _run(capsys, "align", tmp_path / "zero.png", flat, "-o", tmp_path / "out.png")
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert message.startswith(f"{tmp_path / 'zero.png'} (a symbolic link to /dev/zero) is a ")
    assert "is a character device, not a regular file" in message
    code, err = _run(capsys, "align", flat, tmp_path / "folder.png", "-o", tmp_path / "out.png")
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert "folder.png is a directory, not a regular file" in message


def test_a_symlink_loop_is_not_called_missing(tmp_path, flat, capsys):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    code, err = _run(capsys, "align", tmp_path / "a.png", flat, "-o", tmp_path / "out.png")
    message = _assert_one_line_error(code, err, output=tmp_path / "out.png")
    assert message == f"too many levels of symbolic links: {tmp_path / 'a.png'}"


@pytest.fixture
def shared_dir():
    """A folder any user may enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="ecc-cli-faults-"))
    folder.chmod(0o777)  # nobody may write here: the refusal, not the folder, stops the output
    yield folder
    for path in folder.rglob("*"):
        path.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_file_in_an_unreadable_folder_says_permission_denied(shared_dir):
    write_image(shared_dir / "flat.png", _scan())
    (shared_dir / "flat.png").chmod(0o644)
    (shared_dir / "locked").mkdir()
    write_image(shared_dir / "locked" / "ref.png", _scan(seed=1))
    (shared_dir / "locked").chmod(0o000)
    hidden, output = shared_dir / "locked" / "ref.png", shared_dir / "out.png"
    # Reverted: "no such file: .../locked/ref.png".
    for inputs in ((hidden, shared_dir / "flat.png"), (shared_dir / "flat.png", hidden)):
        code, err = _main_in_subprocess("align", *inputs, "-o", output, drop=_DROP)
        message = _assert_one_line_error(code, err, output=output)
        assert message == f"permission denied: {hidden}"
