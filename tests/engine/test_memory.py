"""Memory: what ``align`` adds to a process on large pairs stays within a budget.

Measured in a fresh process, on Linux's peak-RSS counter (VmHWM). Building the inputs
leaves a higher peak behind than the inputs themselves (the scene they are cut from is
freed afterwards: 0.6 GB for the 30000x20000 pair), so the peak is reset (clear_refs)
once the inputs exist and only ``align``'s own peak is compared with the RSS at its start.
"""

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import re, sys, time
    import cv2, numpy as np
    from napari_ecc_align import align

    def status_gb(key):
        with open("/proc/self/status") as fh:
            return int(re.search(rf"^{key}:\\s+(\\d+) kB", fh.read(), re.M).group(1)) / 2**20

    rows, cols = int(sys.argv[1]), int(sys.argv[2])
    rng = np.random.default_rng(0)
    small = (rng.random((rows // 64 + 2, cols // 64 + 2)) * 255).astype(np.uint8)
    scene = cv2.resize(small, (cols + 16, rows + 16), interpolation=cv2.INTER_CUBIC)  # uint8
    reference = np.ascontiguousarray(scene[8:-8, 8:-8])
    moving = np.ascontiguousarray(scene[5:-11, 11:-5])
    built_peak = status_gb("VmHWM")  # scene + reference + moving
    del scene, small
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak to the current RSS: reference + moving + imports
    before, reset_peak = status_gb("VmRSS"), status_gb("VmHWM")
    start = time.perf_counter()
    result = align(reference, moving, motion="translation", init="identity")
    peak = status_gb("VmHWM")
    dx, dy = result.matrix[0, 2], result.matrix[1, 2]
    inputs = (reference.nbytes + moving.nbytes) / 2**30
    print(built_peak, before, reset_peak, peak, inputs, dx, dy, time.perf_counter() - start)
    """
)


def _probe(rows, cols):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak RSS")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(rows), str(cols)],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    built_peak, before, reset_peak, peak, inputs, dx, dy, _ = map(float, out.stdout.split())
    # The reset worked: the peak left by the freed scene no longer counts.
    assert reset_peak - before < 0.05, (reset_peak, before)
    assert before >= inputs  # both inputs are resident when align starts
    return built_peak, before, peak, inputs, dx, dy


def test_8_megapixel_pair_adds_under_0_4_gb():
    _, before, peak, inputs, dx, dy = _probe(2448, 3264)
    # inputs: two 8 MB uint8 images; align's float32 copies, pyramids and samples
    # measured 0.13 GB (2026, numpy 2.4, OpenCV 5)
    assert peak - before < 0.4, f"align added {peak - before:.2f} GB (peak {peak:.2f} GB)"
    assert abs(dx + 3) < 0.05 and abs(dy - 3) < 0.05  # moving = scene shifted by (-3, +3)


def test_30000_by_20000_pair_adds_under_1_2_gb():
    built_peak, before, peak, inputs, dx, dy = _probe(20000, 30000)
    assert built_peak - before > 0.5  # the freed scene: the peak the old baseline hid
    # inputs: two 0.6 GB uint8 images, estimated on a halved copy (beyond 40 MP); align
    # measured 0.57 GB. One float32 copy of a full-size input alone would be 2.4 GB.
    assert peak - before < 1.2, f"align added {peak - before:.2f} GB (peak {peak:.2f} GB)"
    assert abs(dx + 3) < 0.1 and abs(dy - 3) < 0.1
