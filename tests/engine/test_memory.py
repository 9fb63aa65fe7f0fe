"""Memory: large pairs stay within a budget (measured as peak RSS of a fresh process)."""

import subprocess
import sys
import textwrap

PROBE = textwrap.dedent(
    """
    import resource, sys, time
    import cv2, numpy as np
    from napari_ecc_align import align
    rows, cols = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    small = (rng.random((rows // 64 + 2, cols // 64 + 2)) * 255).astype(np.uint8)
    scene = cv2.resize(small, (cols + 16, rows + 16), interpolation=cv2.INTER_CUBIC)  # uint8
    reference = np.ascontiguousarray(scene[8:-8, 8:-8])
    moving = np.ascontiguousarray(scene[5:-11, 11:-5])
    del scene, small
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    result = align(reference, moving, motion="translation", init="identity")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    dx, dy = result.matrix[0, 2], result.matrix[1, 2]
    print(f"{before:.2f} {peak:.2f} {dx:.3f} {dy:.3f} {time.perf_counter() - start:.1f}")
    """
)


def _probe(rows, cols):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(rows), str(cols)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    before, peak, dx, dy, seconds = (float(v) for v in out.stdout.split())
    return before, peak, dx, dy, seconds


def test_8_megapixel_pair_peaks_under_1_5_gb():
    before, peak, dx, dy, _ = _probe(2448, 3264)
    assert peak < 1.5, f"peak RSS {peak:.2f} GB"
    assert abs(dx + 3) < 0.05 and abs(dy - 3) < 0.05  # moving = scene shifted by (-3, +3)


def test_30000_by_20000_pair_aligns_within_4_gb_beyond_its_inputs():
    before, peak, dx, dy, seconds = _probe(20000, 30000)
    # inputs: two 600 MB uint8 images; everything align() adds must stay under 4 GB
    assert peak - before < 4.0, f"align added {peak - before:.2f} GB (peak {peak:.2f} GB)"
    assert abs(dx + 3) < 0.1 and abs(dy - 3) < 0.1
