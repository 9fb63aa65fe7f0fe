"""Deprecated alias of :mod:`napari_ecc_align.batch`, kept for one release.

``from napari_ecc_align._batch import batch_align`` was the documented way to
run a batch before 0.2. It still works and warns; import ``batch_align`` from
:mod:`napari_ecc_align` (or :mod:`napari_ecc_align.batch`) instead.
"""

from __future__ import annotations

import warnings

from . import batch as _batch_package


def __getattr__(name: str):
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(_batch_package, name)  # AttributeError for names batch never had
    warnings.warn(
        f"napari_ecc_align._batch is deprecated and will be removed in the next release; "
        f"use `from napari_ecc_align import {name}` or `from napari_ecc_align.batch import "
        f"{name}`",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
