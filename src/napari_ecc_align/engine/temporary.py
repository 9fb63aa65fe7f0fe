"""Names of the hidden temporary files that atomic writes rename into place, by owner.

Every file is written to a hidden temporary name beside its target and renamed onto
it, so a reader never sees half a file. A writer that passes an *owner* token (one per
batch run, :func:`new_owner`) gets temporary names that only that owner makes::

    .<stem>.<owner>-<8 hex digits>.tmp<ext>      e.g. .p01.ecc3f9a0c1d2b4e5f6a7-1b2c3d4e.tmp.png

so clean-up code can prove that a left-over file is its own (:func:`temporary_owner`
gives the owner back) and leave every other file alone, whatever it is called.
"""

from __future__ import annotations

import os
import re
import secrets

_OWNER = re.compile(r"ecc[0-9a-f]{16}")
_TEMPORARY = re.compile(
    r"\.(?P<stem>.*)\.(?P<owner>ecc[0-9a-f]{16})-[0-9a-f]{8}\.tmp(?P<ext>\.[^.]*)?", re.DOTALL
)
# Part of the target's stem kept in a temporary name, for a readable listing: bounded
# so that the name stays within the 255-byte limit of most file systems.
_STEM_CHARACTERS = 48


def new_owner() -> str:
    """A fresh owner token: ``"ecc"`` and 16 random hexadecimal digits.

    One token per writer (a batch run makes one); :func:`temporary_name` puts it in
    the names of that writer's temporary files.

    Returns
    -------
    str
        ``"ecc"`` followed by 16 lowercase hexadecimal digits from :mod:`secrets`
        (19 characters), different at each call.

    Examples
    --------
    >>> from napari_ecc_align.engine.temporary import is_owner, new_owner
    >>> token = new_owner()
    >>> len(token), token.startswith("ecc"), is_owner(token)
    (19, True, True)
    """
    return "ecc" + secrets.token_hex(8)


def is_owner(token) -> bool:
    """True when ``token`` is an owner token as :func:`new_owner` makes them.

    Parameters
    ----------
    token : object
        Anything; only a string can be a token.

    Returns
    -------
    bool
        True when ``token`` is a string of exactly ``"ecc"`` and 16 lowercase
        hexadecimal digits, False otherwise (other types included: no error).

    Examples
    --------
    >>> from napari_ecc_align.engine.temporary import is_owner
    >>> is_owner("ecc0123456789abcdef"), is_owner("ecc0123"), is_owner(None)
    (True, False, False)
    """
    return isinstance(token, str) and _OWNER.fullmatch(token) is not None


def temporary_name(target: str, owner: str) -> str:
    """The base name of a new temporary file for ``target``, owned by ``owner``.

    The name is ``.<stem>.<owner>-<8 hex digits>.tmp<ext>``: hidden, with the first
    48 characters of the target's stem, the owner token, 8 random hexadecimal digits
    (a new name at each call) and the target's extension, so that it sits beside the
    target and :func:`temporary_owner` gives ``owner`` back.

    Parameters
    ----------
    target : str or os.PathLike
        The file the temporary file will be renamed onto; only its base name is used.
    owner : str
        A token from :func:`new_owner`.

    Returns
    -------
    str
        A base name (no folder): join it to the target's folder.

    Raises
    ------
    ValueError
        If ``owner`` is not a token from :func:`new_owner`.

    Examples
    --------
    >>> from napari_ecc_align.engine.temporary import temporary_name
    >>> temporary_name("out/p01.png", "ecc0123456789abcdef")  # doctest: +ELLIPSIS
    '.p01.ecc0123456789abcdef-....tmp.png'
    """
    if not is_owner(owner):
        raise ValueError(f"owner must be a token from new_owner(), got {owner!r}")
    stem, ext = os.path.splitext(os.path.basename(os.fspath(target)))
    return f".{stem[:_STEM_CHARACTERS]}.{owner}-{secrets.token_hex(4)}.tmp{ext}"


def create_temporary(target, owner: str | None = None) -> str:
    """Create an empty hidden temporary file beside ``target`` and return its path.

    The one place atomic writes make their temporary files: in the target's folder
    (``os.replace`` is atomic only within one file system; missing folders are
    created), named by :func:`temporary_name` for an ``owner``, else
    ``.<stem>.<8 hex>.tmp<ext>``, keeping the real extension. ``O_EXCL`` never
    clobbers a stranger's file, and mode 0o666 lets the umask apply as for any new
    file.

    Parameters
    ----------
    target : str or os.PathLike
        The file the temporary file will be renamed onto.
    owner : str, optional
        A token from :func:`new_owner`.

    Returns
    -------
    str
        The absolute path of the new, empty file.

    Raises
    ------
    ValueError
        If ``owner`` is not a token from :func:`new_owner` (before anything is made).
    OSError
        If the folder or the file cannot be created.
    """
    folder, base = os.path.split(os.path.abspath(os.fspath(target)))
    if owner is not None:
        name = temporary_name(base, owner)
    else:
        stem, ext = os.path.splitext(base)
        name = f".{stem}.{secrets.token_hex(4)}.tmp{ext}"
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return path


def temporary_owner(name: str) -> str | None:
    """The owner token of a temporary file's base ``name``, or None if it is not one.

    Parameters
    ----------
    name : str
        A base name (no folder), as :func:`os.walk` or :func:`os.listdir` give them.

    Returns
    -------
    str or None
        The owner token when the whole of ``name`` has the form that
        :func:`temporary_name` makes, else None. The name alone is looked at: the
        caller checks that the token is one of its own and that the file is one.

    Examples
    --------
    >>> from napari_ecc_align.engine.temporary import temporary_owner
    >>> temporary_owner(".p01.ecc0123456789abcdef-1b2c3d4e.tmp.png")
    'ecc0123456789abcdef'
    >>> temporary_owner("p01.png") is None
    True
    """
    match = _TEMPORARY.fullmatch(name)
    return match.group("owner") if match else None
