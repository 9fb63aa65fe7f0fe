"""OME-Zarr images in and out, never loaded whole.

:func:`read_ome_zarr` opens an OME-Zarr image (NGFF 0.4 on zarr v2 or 0.5 on zarr v3)
as lazy dask arrays, one per pyramid level, in the engine's axis order: ``(y, x)``,
``(y, x, channels)`` for RGB(A), or ``(z, y, x)``; with the voxel size and origin of
its ``coordinateTransformations``. :func:`write_ome_zarr` writes an image, lazy or
not, chunk by chunk through Dask (local threads or a ``dask.distributed`` scheduler),
builds its pyramid from the stored levels, and renames the finished store into place:
a crash leaves no half-written store under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np

from ..engine import PathLike, new_owner, temporary_name
from .ngff import (
    Axis,
    Multiscales,
    multiscales_attributes,
    ngff_unit,
    parse_multiscales,
    short_unit,
)
from .ome_zarr_image import OmeZarrImage, downsampled, pyramid_factors, spatial_view

__all__ = ["OmeZarrImage", "atomic_store", "is_zarr_path", "read_ome_zarr", "write_ome_zarr"]

# Chunks of the stores we write: about 1 MiB of uint8 (2D) or 8 MiB of uint16 (3D), as
# napari-ome-zarr and the NGFF examples use.
CHUNKS = {2: (1024, 1024), 3: (64, 256, 256)}
# The pyramid stops when a level's largest plane side is at most this.
_SMALLEST_SIDE = 256


def is_zarr_path(path) -> bool:
    """Whether ``path`` names a zarr store: ends in ``.zarr`` (``.ome.zarr``) or is a
    folder holding zarr metadata."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    name = os.fspath(path).rstrip("/\\")
    if name.lower().endswith(".zarr"):
        return True
    return os.path.isdir(name) and any(
        os.path.isfile(os.path.join(name, meta)) for meta in ("zarr.json", ".zgroup", ".zarray")
    )


def read_ome_zarr(source, *, channel: int | None = None, timepoint: int | None = None):
    """Open an OME-Zarr image lazily.

    Parameters
    ----------
    source : str, os.PathLike or zarr.Group or zarr.Array
        The image's group (the one holding ``multiscales``), by path or opened; a
        plain zarr array (no NGFF metadata) is read as one level of unit spacing.
    channel, timepoint : int, optional
        The channel (time point) to take from an image with several; required when
        there is more than one, except for 3 or 4 channels of a 2D image (RGB, RGBA),
        which become its last axis.

    Returns
    -------
    OmeZarrImage

    Raises
    ------
    FileNotFoundError
        If nothing is at the path.
    ValueError
        For a path or group that is not a zarr image, NGFF metadata that is wrong
        (naming the field), levels whose shapes do not match the axes, fewer than 2
        or more than 3 space axes, or a channel or time axis left unchosen.
    """
    import zarr

    where = _describe(source)
    node = source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "no such file or folder", path)
        try:
            node = zarr.open(store=path, mode="r")
        except Exception as exc:  # zarr's own errors for a folder that is no store
            raise ValueError(f"{path} is not a zarr store: {exc}") from None
    if isinstance(node, zarr.Array):
        return _plain_array(node, where, channel, timepoint)
    if not isinstance(node, zarr.Group):
        raise TypeError(f"source must be a path, zarr group or zarr array, got {type(source)}")
    meta = parse_multiscales(node.attrs.asdict(), where)
    levels = []
    for path in meta.paths:
        try:
            array = node[path]
        except KeyError:
            raise ValueError(
                f"{where}: the dataset {path!r} named by 'multiscales' is missing"
            ) from None
        if not isinstance(array, zarr.Array) or array.ndim != len(meta.axes):
            raise ValueError(
                f"{where}: dataset {path!r} must be an array with one axis per 'axes' "
                f"entry ({len(meta.axes)})"
            )
        levels.append(array)
    return _image(levels, meta, where, channel, timepoint)


def _plain_array(array, where, channel, timepoint):
    names = {2: "yx", 3: "zyx"}.get(array.ndim)
    if names is None:
        raise ValueError(f"{where} is a zarr array of {array.ndim} axes without OME-NGFF axes")
    axes = tuple(Axis(n, "space", None) for n in names)
    meta = Multiscales("", axes, ("",), ((1.0,) * array.ndim,), ((0.0,) * array.ndim,))
    image = _image([array], meta, where, channel, timepoint)
    return image.without_calibration()


def _image(levels, meta: Multiscales, where, channel, timepoint) -> OmeZarrImage:
    views, order = [], None
    for array in levels:
        view, order = spatial_view(array, meta.axes, where, channel=channel, timepoint=timepoint)
        views.append(view)
    spatial = [i for i in order if meta.axes[i].type in ("space", None)]
    spacing = tuple(meta.scales[0][i] for i in spatial)
    origin = tuple(meta.translations[0][i] for i in spatial)
    units = {meta.axes[i].unit for i in spatial} - {None}
    unit = short_unit(units.pop()) if len(units) == 1 else None
    return OmeZarrImage(tuple(views), len(spatial), spacing, unit, origin, meta.version, meta.name)


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    store = getattr(source, "store", None)
    return f"the zarr {type(source).__name__.lower()} at {store}" if store else "the zarr input"


# ----------------------------------------------------------------------------------- writing
def write_ome_zarr(
    path: PathLike,
    image,
    *,
    ndim: int = 2,
    spacing=None,
    unit: str | None = None,
    origin=None,
    version: str = "0.5",
    chunks=None,
    scheduler=None,
    progress: bool = False,
    name: str | None = None,
    atomic: bool = True,
) -> str:
    """Write an image as an OME-Zarr store with its pyramid, chunk by chunk.

    Parameters
    ----------
    path : str or os.PathLike
        The store to make (``.ome.zarr``). An OME-Zarr store already there is replaced
        once the new one is complete; anything else there is refused.
    image : array_like
        ``(y, x)``, ``(y, x, channels)`` or ``(z, y, x)``: numpy, dask (a lazy
        :func:`~napari_ecc_align.warp`, say) or any array dask can wrap. It is
        computed chunk by chunk, never whole.
    ndim : {2, 3}
        Space axes in ``image``.
    spacing, origin : sequence of float, optional
        Pixel (voxel) size and the position of the first pixel's centre, per space
        axis in array order (default 1 and 0).
    unit : str, optional
        Length unit of ``spacing`` (``"µm"``, ``"micrometer"``, ``"nm"``...).
    version : {"0.5", "0.4"}
        NGFF version: 0.5 writes zarr v3, 0.4 zarr v2.
    chunks : tuple of int, optional
        Chunk shape of the space axes (default 1024 x 1024, or 64 x 256 x 256).
    scheduler : str or distributed.Client, optional
        A running ``dask.distributed`` scheduler's address (or a client) to compute
        the chunks on; default: local threads.
    progress : bool
        Show a progress bar on standard error.
    name : str, optional
        The image's name in the metadata.
    atomic : bool
        False: write at ``path`` itself, which must not exist (for a caller that
        already writes to a temporary name, :func:`atomic_store`).

    Returns
    -------
    str
        The store's absolute path.
    """
    import dask.array as da

    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if version not in ("0.4", "0.5"):
        raise ValueError(f"version must be '0.4' or '0.5', got {version!r}")
    target = os.path.abspath(os.fspath(path))
    if atomic:
        _check_replaceable(target)
    array = image if isinstance(image, da.Array) else da.asarray(image)
    if array.ndim not in (ndim, ndim + 1) or (array.ndim == ndim + 1 and ndim == 3):
        raise ValueError(f"image must be (y, x), (y, x, channels) or (z, y, x), got {array.shape}")
    spacing = _per_axis(spacing, ndim, 1.0, "spacing")
    origin = _per_axis(origin, ndim, 0.0, "origin")
    chunks = tuple(chunks) if chunks is not None else CHUNKS[ndim]
    if len(chunks) != ndim or not all(isinstance(c, int) and c > 0 for c in chunks):
        raise ValueError(f"chunks must be {ndim} positive integers, got {chunks}")
    if array.ndim > ndim:  # channels last in the engine, first in NGFF (c, y, x)
        array = da.moveaxis(array, -1, 0)
        chunks = (array.shape[0],) + chunks
    with atomic_store(target) if atomic else contextlib.nullcontext(target) as folder:
        with _compute_on(scheduler) as compute:
            _write_store(folder, array, ndim, spacing, unit, origin, version, chunks,
                         compute, progress, name)  # fmt: skip
    return target


def _write_store(folder, array, ndim, spacing, unit, origin, version, chunks, compute,
                 progress, name) -> None:  # fmt: skip
    import dask.array as da
    import zarr

    group = zarr.open_group(folder, mode="w-", zarr_format=3 if version == "0.5" else 2)
    channels = array.ndim > ndim
    names = ("c",) * channels + tuple("zyx"[3 - ndim :])
    level, factors, paths = array, [(1,) * ndim], []
    for k, step in enumerate(pyramid_factors(array.shape[channels:], spacing, _SMALLEST_SIDE)):
        if k:
            previous = group[paths[-1]]
            level = downsampled(da.from_array(previous, chunks=previous.chunks), step, channels)
            factors.append(tuple(f * s for f, s in zip(factors[-1], step, strict=True)))
        level_chunks = tuple(min(c, n) for c, n in zip(chunks, level.shape, strict=True))
        options = {"dimension_names": list(names)} if version == "0.5" else {
            "chunk_key_encoding": {"name": "v2", "separator": "/"}}  # fmt: skip
        target = group.create_array(
            str(k), shape=level.shape, dtype=level.dtype, chunks=level_chunks,
            fill_value=0, **options,
        )  # fmt: skip
        compute(da.store(level.rechunk(level_chunks), target, lock=False, compute=False),
                progress and k == 0)  # fmt: skip
        paths.append(str(k))
    axis_unit = ngff_unit(unit)
    axes = [{"name": "c", "type": "channel"}] if channels else []
    for letter in names[channels:]:
        axes.append({"name": letter, "type": "space"} | ({"unit": axis_unit} if axis_unit else {}))
    scales, shifts = [], []
    for factor in factors:  # a level's pixel centre sits (factor - 1) / 2 pixels further in
        scale = [s * f for s, f in zip(spacing, factor, strict=True)]
        shift = [o + (f - 1) * s / 2 for o, s, f in zip(origin, spacing, factor, strict=True)]
        scales.append([1.0] * channels + scale)
        shifts.append([0.0] * channels + shift)
    group.attrs.update(multiscales_attributes(version, axes, scales, shifts, paths, name))


@contextlib.contextmanager
def _compute_on(scheduler):
    """A function computing a dask collection on local threads or on ``scheduler``."""
    import dask

    if scheduler is None:

        def local(task, progress):
            if progress:
                from tqdm.dask import TqdmCallback

                with TqdmCallback(desc="writing", unit="chunk", leave=False):
                    dask.compute(task, scheduler="threads")
            else:
                dask.compute(task, scheduler="threads")

        yield local
        return
    import distributed

    own = not isinstance(scheduler, distributed.Client)
    try:
        client = distributed.Client(scheduler, set_as_default=False) if own else scheduler
    except (OSError, ValueError) as exc:
        raise ConnectionError(
            f"cannot connect to the Dask scheduler at {scheduler}: {exc}"
        ) from None

    def remote(task, progress):
        future = client.compute(task)
        if progress:
            distributed.progress(future)
        future.result()

    try:
        yield remote
    finally:
        if own:
            client.close()


@contextlib.contextmanager
def atomic_store(path: PathLike, owner: str | None = None):
    """Context manager yielding a hidden folder beside ``path`` to write a store into,
    renamed onto ``path`` on success (an OME-Zarr store there is replaced then, and
    anything else refused now) and deleted if the body raises. ``owner``: a token from
    :func:`~napari_ecc_align.engine.new_owner` for the folder's name (batch clean-up
    removes its own left-overs by it)."""
    target = os.path.abspath(os.fspath(path))
    _check_replaceable(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    owner = owner or new_owner()
    temporary = os.path.join(parent, temporary_name(target, owner))
    try:
        yield temporary
        _move_into_place(temporary, target, owner)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _check_replaceable(target: str) -> None:
    if not os.path.lexists(target):
        return
    if os.path.isdir(target) and not os.path.islink(target) and _is_store(target):
        return
    raise ValueError(
        f"{target} exists and is not an OME-Zarr store; it is never replaced: choose another name"
    )


def _is_store(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, m)) for m in ("zarr.json", ".zgroup", ".zattrs"))


def _move_into_place(temporary: str, target: str, owner: str) -> None:
    """Rename the finished store onto ``target``; an old store there is moved aside
    first and deleted only once the new one is in place."""
    if not os.path.lexists(target):
        os.rename(temporary, target)
        return
    aside = os.path.join(os.path.dirname(target), temporary_name(target, owner))
    os.rename(target, aside)
    try:
        os.rename(temporary, target)
    except BaseException:
        os.rename(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _per_axis(values, ndim: int, default: float, name: str) -> tuple[float, ...]:
    if values is None:
        return (default,) * ndim
    values = tuple(float(v) for v in values)
    if len(values) != ndim or not all(np.isfinite(values)):
        raise ValueError(f"{name} must be {ndim} finite numbers, got {values}")
    if name == "spacing" and min(values) <= 0:
        raise ValueError(f"spacing must be positive, got {values}")
    return values
