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
    """A fresh owner token: ``"ecc"`` and 16 random hexadecimal digits."""
    return "ecc" + secrets.token_hex(8)


def is_owner(token) -> bool:
    """True when ``token`` is an owner token as :func:`new_owner` makes them."""
    return isinstance(token, str) and _OWNER.fullmatch(token) is not None


def temporary_name(target: str, owner: str) -> str:
    """The base name of a new temporary file for ``target``, owned by ``owner``.

    Raises
    ------
    ValueError
        If ``owner`` is not a token from :func:`new_owner`.
    """
    if not is_owner(owner):
        raise ValueError(f"owner must be a token from new_owner(), got {owner!r}")
    stem, ext = os.path.splitext(os.path.basename(os.fspath(target)))
    return f".{stem[:_STEM_CHARACTERS]}.{owner}-{secrets.token_hex(4)}.tmp{ext}"


def temporary_owner(name: str) -> str | None:
    """The owner token of a temporary file's base ``name``, or None if it is not one."""
    match = _TEMPORARY.fullmatch(name)
    return match.group("owner") if match else None
