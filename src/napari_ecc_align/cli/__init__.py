"""The ``napari-ecc-align`` command line: ``align``, ``batch`` and ``demo``."""

from .commands import main

__all__ = ["main"]
