"""Opening input files safely, before any decoder or parser sees them.

Every reader of images, volumes and transform JSON opens its input through
:func:`open_input`:

* Only regular files are read. A FIFO, a device (``x.png`` linking to
  ``/dev/zero``), a socket or a directory named like an image is refused by its
  type, from ``os.stat`` before it is opened and again from ``os.fstat`` of the
  open descriptor (opened non-blocking, so a FIFO swapped in meanwhile cannot
  block either). The caller then reads from that same handle, never the path
  again.
* When the file cannot be reached, the error says why: ``FileNotFoundError``
  only when nothing is there, ``PermissionError`` ("permission denied") for a
  file or folder the user may not read, ``OSError`` "too many levels of
  symbolic links" for a symlink loop, where ``os.path.exists`` would just have
  said False.

It lives in the engine because :meth:`Alignment.from_json` reads files too;
:mod:`napari_ecc_align.io` re-exports it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

PathLike = str | os.PathLike

# What os.stat says a path is, for the message refusing anything but a regular file.
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
# The OS's reasons in the words the CLI prints ("<reason>: <path>").
_REASONS = {
    errno.ENOENT: "no such file",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENOTDIR: "not a directory (a folder on the path is a file)",
}
# Non-blocking open: a FIFO that appears between stat and open must not block us.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def check_input_file(path: PathLike) -> str:
    """Refuse a path that is missing, unreachable or not a regular file; return it as ``str``.

    Nothing is opened: a FIFO or device is recognised by ``os.stat`` alone.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.

    Returns
    -------
    str
        ``os.fspath(path)``.

    Raises
    ------
    FileNotFoundError
        If nothing is at ``path`` (or it is a symbolic link to nothing).
    PermissionError
        If a folder on the path may not be searched.
    OSError
        For a symbolic link loop ("too many levels of symbolic links") and other
        failures of ``os.stat``, with the OS's reason and the path.
    ValueError
        If ``path`` is a directory, FIFO, device or socket.
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
    except OSError as exc:
        raise _true_reason(exc, name) from None
    _refuse_non_regular(mode, name)
    return name


@contextlib.contextmanager
def open_input(path: PathLike) -> Iterator[BinaryIO]:
    """Open an input for binary reading, after :func:`check_input_file` and again by ``fstat``.

    Raises
    ------
    FileNotFoundError, PermissionError, OSError, ValueError
        As :func:`check_input_file`; ``PermissionError`` also for a file that may
        not be read.
    """
    name = check_input_file(path)
    try:
        fd = os.open(name, _OPEN_FLAGS)
    except OSError as exc:
        raise _true_reason(exc, name) from None
    with os.fdopen(fd, "rb") as fh:  # closes fd, also when fdopen's caller fails
        _refuse_non_regular(os.fstat(fd).st_mode, name)
        yield fh


def _refuse_non_regular(mode: int, name: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((text for test, text in _KINDS if test(mode)), "not a file")
    link = f" (a symbolic link to {os.path.realpath(name)})" if os.path.islink(name) else ""
    raise ValueError(
        f"{name}{link} is {kind}, not a regular file; give the path of the file itself"
    )


def _true_reason(exc: OSError, name: str) -> OSError:
    """The same failure with a plain reason; OSError(errno, ...) picks the subclass."""
    code = exc.errno
    reason = _REASONS.get(code) or exc.strerror or str(exc)
    if code == errno.ENOENT and os.path.islink(name):
        reason = "no such file (a symbolic link whose target does not exist)"
    return OSError(code, reason, name)
