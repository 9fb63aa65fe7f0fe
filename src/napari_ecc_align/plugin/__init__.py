"""The napari side: layers in, the engine in the middle, layers out.

Nothing here imports Qt at module level; the dock widget and its Qt-only parts
live in :mod:`._qt`.

- :mod:`.layers` — layers ↔ arrays: the image to align, world transforms,
  carrying Labels/Points/Shapes/Vectors/Tracks through an alignment;
- :mod:`.jobs` — what the widget runs in its worker thread, as plain generators;
- :mod:`.outputs` — putting results into the viewer (main thread);
- :mod:`.commands` — ``align_images``, the npe2 command for scripts and other plugins;
- :mod:`.sample_data` — File › Open Sample.

``AlignWidget`` is importable from here; it loads Qt only when asked for.
"""

from __future__ import annotations


def __getattr__(name: str):
    if name == "AlignWidget":  # Qt is imported only by whoever asks for the widget
        from ._qt.widget import AlignWidget

        return AlignWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
