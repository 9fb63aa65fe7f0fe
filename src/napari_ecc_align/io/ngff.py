"""OME-NGFF image metadata (versions 0.4 and 0.5): read from a zarr group's attributes,
checked field by field, and written for the stores :mod:`.ome_zarr` makes.

The one part of the specification we rely on is an image's ``multiscales``: its
``axes`` (name, type, unit) and, per pyramid level, the dataset path and its
``coordinateTransformations`` (a ``scale``, then optionally a ``translation``), both
possibly preceded by transformations common to all levels. Version 0.4 keeps
``multiscales`` among the group's attributes (zarr v2); 0.5 nests it under ``"ome"``
(zarr v3). Anything the metadata gets wrong is a ``ValueError`` naming the field:
the attributes come from a file someone else wrote.

napari-ome-zarr (0.10) reads these fields through zarr alone too; the libraries that
would read them for us (ome-zarr-py, ome-zarr-models) pin pydantic below the version
napari installs and pull in s3fs and aiobotocore, which a local store does not need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# NGFF units (UDUNITS-2 names) and the short forms our TIFF metadata uses.
_UNITS = {
    "angstrom": "Å",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
}
_NGFF_UNITS = {short: long for long, short in _UNITS.items()} | {"um": "micrometer"}
VERSIONS = ("0.4", "0.5")


@dataclass(frozen=True)
class Axis:
    """One axis of an NGFF image: ``name``, ``type`` (``"space"``, ``"channel"``,
    ``"time"`` or None) and ``unit`` (as stored, or None)."""

    name: str
    type: str | None
    unit: str | None


@dataclass(frozen=True)
class Multiscales:
    """The first ``multiscales`` entry of an OME-NGFF image.

    Attributes
    ----------
    version : str
        ``"0.4"`` or ``"0.5"``.
    axes : tuple of Axis
    paths : tuple of str
        The datasets, finest level first.
    scales, translations : tuple of tuple of float
        Each level's scale and translation per axis (the common transformations
        applied), in the axes' order.
    name : str or None
    """

    version: str
    axes: tuple[Axis, ...]
    paths: tuple[str, ...]
    scales: tuple[tuple[float, ...], ...]
    translations: tuple[tuple[float, ...], ...]
    name: str | None = None


def parse_multiscales(attributes, where: str) -> Multiscales:
    """The first image of the ``multiscales`` in a group's ``attributes`` (a dict).

    Raises
    ------
    ValueError
        When there is no ``multiscales``, for an NGFF version other than 0.4 and 0.5,
        and for any field that is missing or of the wrong kind, naming it.
    """
    if not isinstance(attributes, dict):
        raise ValueError(f"{where}: the group's attributes are not a JSON object")
    if "ome" in attributes:  # 0.5: {"ome": {"version": ..., "multiscales": [...]}}
        ome = _object(attributes["ome"], "ome", where)
        version = ome.get("version")
        entries = ome.get("multiscales")
    else:  # 0.4: {"multiscales": [{"version": ..., ...}]}
        entries = attributes.get("multiscales")
        version = entries[0].get("version") if _nonempty_objects(entries) else None
    if entries is None:
        raise ValueError(
            f"{where} is a zarr group without OME-NGFF 'multiscales' metadata; give an "
            "OME-Zarr image (the group that holds 'multiscales'), or one of its arrays"
        )
    if not _nonempty_objects(entries):
        raise ValueError(f"{where}: 'multiscales' must be a non-empty list of objects")
    if version not in VERSIONS:
        raise ValueError(
            f"{where} is OME-NGFF version {version!r}; versions {' and '.join(VERSIONS)} "
            "are read (convert older stores with ome-zarr-py or ngff-zarr)"
        )
    entry = entries[0]
    axes = _axes(entry.get("axes"), where)
    datasets = entry.get("datasets")
    if not _nonempty_objects(datasets):
        raise ValueError(f"{where}: 'multiscales[0].datasets' must be a non-empty list of objects")
    common = _transformations(
        entry.get("coordinateTransformations", []), len(axes), "multiscales[0]", where
    )
    paths, scales, translations = [], [], []
    for k, dataset in enumerate(datasets):
        field = f"multiscales[0].datasets[{k}]"
        path = dataset.get("path")
        if not isinstance(path, str) or not path or path.startswith("/") or ".." in path:
            raise ValueError(f"{where}: '{field}.path' must be a relative path inside the group")
        scale, shift = _transformations(
            dataset.get("coordinateTransformations"), len(axes), field, where, required=True
        )
        # The common transformations apply after the level's own.
        scale = tuple(s * c for s, c in zip(scale, common[0], strict=True))
        shift = tuple(t * c + u for t, c, u in zip(shift, common[0], common[1], strict=True))
        paths.append(path)
        scales.append(scale)
        translations.append(shift)
    name = entry.get("name")
    return Multiscales(
        version, axes, tuple(paths), tuple(scales), tuple(translations),
        name if isinstance(name, str) else None,
    )  # fmt: skip


def _axes(value, where: str) -> tuple[Axis, ...]:
    if not isinstance(value, list) or not 2 <= len(value) <= 5:
        raise ValueError(f"{where}: 'multiscales[0].axes' must be a list of 2 to 5 axes")
    axes = []
    for k, axis in enumerate(value):
        if not isinstance(axis, dict) or not isinstance(axis.get("name"), str):
            raise ValueError(f"{where}: 'multiscales[0].axes[{k}]' must be an object with a 'name'")
        kind, unit = axis.get("type"), axis.get("unit")
        axes.append(Axis(
            axis["name"],
            kind if isinstance(kind, str) else None,
            unit if isinstance(unit, str) else None,
        ))  # fmt: skip
    names = [axis.name for axis in axes]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: axis names {names} repeat")
    return tuple(axes)


def _transformations(value, n: int, field: str, where: str, *, required: bool = False):
    """(scale, translation) of a ``coordinateTransformations`` list."""
    scale, shift = (1.0,) * n, (0.0,) * n
    if value is None and not required:
        return scale, shift
    if not isinstance(value, list) or (required and not value):
        raise ValueError(f"{where}: '{field}.coordinateTransformations' must be a list")
    for k, item in enumerate(value):
        name = f"{field}.coordinateTransformations[{k}]"
        kind = item.get("type") if isinstance(item, dict) else None
        if kind not in ("scale", "translation", "identity"):
            raise ValueError(
                f"{where}: '{name}' must be a scale or translation (got {kind!r}); "
                "transformations stored by path are not read"
            )
        if kind == "identity":
            continue
        numbers = _numbers(item.get(kind), n, f"{name}.{kind}", where)
        if kind == "scale":
            if any(v <= 0 for v in numbers):
                raise ValueError(f"{where}: '{name}.scale' must be positive, got {numbers}")
            scale = tuple(a * b for a, b in zip(scale, numbers, strict=True))
        else:
            shift = tuple(a + b for a, b in zip(shift, numbers, strict=True))
    return scale, shift


def _numbers(value, n: int, name: str, where: str) -> tuple[float, ...]:
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{where}: '{name}' must be a list of {n} finite numbers, one per axis")
    return tuple(float(v) for v in value)


def _object(value, name: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: '{name}' must be a JSON object")
    return value


def _nonempty_objects(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def short_unit(unit: str | None) -> str | None:
    """An NGFF unit in the short form of our TIFF metadata (``micrometer`` → ``µm``)."""
    return _UNITS.get(unit, unit) if unit else None


def ngff_unit(unit: str | None) -> str | None:
    """A unit as NGFF names it (``µm`` → ``micrometer``); units it does not know are dropped."""
    if not unit:
        return None
    unit = _NGFF_UNITS.get(unit, unit)
    return unit if unit in _UNITS else None


def multiscales_attributes(
    version: str, axes, scales, translations, paths, name: str | None = None
) -> dict:
    """The group attributes of an NGFF image (``version`` ``"0.4"`` or ``"0.5"``)
    with the given axes (dicts), per-level scales, translations and paths."""
    datasets = [
        {
            "path": path,
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v) for v in scale]},
                {"type": "translation", "translation": [float(v) for v in shift]},
            ],
        }
        for path, scale, shift in zip(paths, scales, translations, strict=True)
    ]
    entry = {"axes": list(axes), "datasets": datasets}
    if name:
        entry["name"] = name
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **entry}]}
    return {"ome": {"version": version, "multiscales": [entry]}}
