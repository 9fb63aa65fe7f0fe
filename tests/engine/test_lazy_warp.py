"""``warp`` of lazy images: a dask array on the reference grid whose chunks read only the
region of the moving image they need, with the eager warp's values."""

import numpy as np
import pytest

from napari_ecc_align import align, difference, warp
from napari_ecc_align.data import natural_pair
from napari_ecc_align.engine import lazy_warp

da = pytest.importorskip("dask.array")  # a base dependency: always there


@pytest.fixture(scope="module")
def pair():
    reference, moving, _ = natural_pair((900, 1100), seed=1)
    return moving, align(reference, moving)


class Logged:
    """A sliceable array that records every region read from it (as zarr would serve)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.chunks = array, array.shape, array.dtype, None
        self.ndim = array.ndim
        self.reads = []

    def __getitem__(self, key):
        part = self.array[key]
        self.reads.append(part.shape)
        return part


def test_lazy_warp_equals_the_eager_one_chunk_by_chunk(pair, monkeypatch):
    monkeypatch.setattr(lazy_warp, "CHUNK", 256)  # 4 x 5 chunks on this 900 x 1100 grid
    moving, alignment = pair
    image = (moving * 255).astype(np.uint8)
    logged = Logged(image)
    lazy = warp(logged, alignment)
    assert isinstance(lazy, da.Array) and max(max(c) for c in lazy.chunks) <= 256
    assert logged.reads == []  # nothing read until computed
    result = lazy.compute()
    eager = warp(image, alignment)
    difference = np.abs(result.astype(int) - eager.astype(int))
    assert difference.max() <= 1 and np.count_nonzero(difference) < 1e-3 * eager.size
    assert len(logged.reads) == 20  # one region per output chunk
    assert all(rows * cols < 0.1 * image.size for rows, cols in logged.reads)


@pytest.mark.parametrize("case", ["cubic nan", "rgb stack", "homography", "pyramid"])
def test_lazy_warp_cases(pair, case):
    moving, alignment = pair
    matrix, kwargs = alignment, {}
    image = moving.astype(np.float32)
    if case == "cubic nan":
        kwargs = {"interpolation": "cubic", "fill_value": np.nan}
    elif case == "rgb stack":
        image = np.stack([np.dstack([image, image / 2, image / 3])] * 2)  # (2, rows, cols, 3)
    elif case == "homography":
        matrix = alignment.matrix.copy()
        matrix[2, :2] = (2e-6, -1e-6)
    lazy_input = [image, image[::2, ::2]] if case == "pyramid" else da.from_array(image, chunks=300)
    result = warp(lazy_input, matrix, **kwargs).compute()
    eager = warp(image, matrix, **kwargs)
    assert result.shape == eager.shape
    assert np.array_equal(np.isnan(result), np.isnan(eager))
    assert np.nanmax(np.abs(result - eager)) < 1e-4


def test_chunks_outside_the_moving_image_hold_the_fill(pair):
    moving, alignment = pair
    far = alignment.matrix.copy()
    far[0, 2] += 5000  # every output pixel samples far right of the moving image
    lazy = warp(da.from_array(moving.astype(np.float32)), far, fill_value=-1.0)
    assert np.all(lazy.compute() == -1.0)


# ------------------------------------------------------------------------------ difference
CASES = [
    (mode, case) for mode in ("absolute", "normalized") for case in ("gray", "rgb", "nan and mask")
]


@pytest.mark.parametrize(("mode", "case"), [*CASES, ("normalized", "rgb against gray")])
def test_lazy_difference_equals_the_eager_one(pair, mode, case):
    """A lazy input gives a lazy difference in the lazy warp's chunks, with the eager
    values exactly (the normalized statistics come from one chunked pass)."""
    from napari_ecc_align import difference

    moving, alignment = pair
    aligned = warp((moving * 255).astype(np.uint8), alignment)
    reference = np.clip(aligned.astype(np.int16) + 7, 0, 255).astype(np.uint8)
    mask = None
    if case == "rgb":
        reference, aligned = (np.dstack([x, x // 2, x // 3]) for x in (reference, aligned))
    elif case == "nan and mask":
        reference, aligned = reference.astype(np.float32), aligned.astype(np.float32)
        aligned[:40] = np.nan
        mask = np.zeros(reference.shape, bool)
        mask[100:700, 200:900] = True
    elif case == "rgb against gray":  # compared by luminance
        reference = np.dstack([reference] * 3)
    lazy = difference(da.from_array(reference, chunks=300), aligned, mode=mode,
                      alignment=alignment, mask=mask)  # fmt: skip
    eager = difference(reference, aligned, mode=mode, alignment=alignment, mask=mask)
    assert isinstance(lazy, da.Array) and lazy.dtype == eager.dtype
    assert np.array_equal(lazy.compute(), eager)


@pytest.fixture(scope="module")
def volume_case():
    from napari_ecc_align.data import volume_pair

    pair = volume_pair((40, 150, 170), seed=1)
    moving = np.round(pair.moving * 4000).astype(np.uint16)
    reference = np.round(pair.reference * 4000).astype(np.uint16)
    return reference, moving, align(pair.reference, pair.moving, ndim=3, spacing=pair.spacing)


@pytest.mark.parametrize("interpolation", ["linear", "cubic", "nearest"])
@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_lazy_volume_warp_equals_the_eager_one(volume_case, monkeypatch, interpolation, dtype):
    """Chunk by chunk (16 x 64 x 64 here), each from the moving region it maps onto:
    the eager values, to one grey level (uint16 rounding of the same sum) or float32
    rounding; NaN fill where the eager one has it."""
    monkeypatch.setattr(lazy_warp, "VOLUME_CHUNK", (16, 64, 64))
    _, moving, alignment = volume_case
    moving = moving.astype(dtype)
    fill = 0 if dtype == "uint16" else np.nan
    logged = Logged(moving)
    lazy = warp(logged, alignment, interpolation=interpolation, fill_value=fill)
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == (16, 16, 8)
    assert not logged.reads  # nothing read before compute
    got = lazy.compute()
    assert max(np.prod(shape) for shape in logged.reads) < moving.size / 4
    eager = warp(moving, alignment, interpolation=interpolation, fill_value=fill)
    np.testing.assert_array_equal(np.isnan(got.astype(float)), np.isnan(eager.astype(float)))
    # float32 sample positions (cv2.remap's maps): within 1/512 voxel of the eager ones
    np.testing.assert_allclose(got, eager, atol=2e-4 * float(moving.max()), rtol=0)


def test_lazy_volume_difference_equals_the_eager_one(volume_case):
    reference, moving, alignment = volume_case
    aligned = warp(moving, alignment)
    for mode in ("absolute", "normalized"):
        eager = difference(reference, aligned, mode=mode, alignment=alignment)
        lazy = difference(da.from_array(reference, chunks=(7, 40, 40)), aligned, mode=mode,
                          alignment=alignment)  # fmt: skip
        assert isinstance(lazy, da.Array) and lazy.dtype == eager.dtype
        np.testing.assert_allclose(lazy.compute(), eager, atol=1e-4, rtol=0)
