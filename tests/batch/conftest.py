"""Shared by the batch tests: a dataset of pairs in sub-folders, and a batch command killed
with SIGKILL part-way through."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_ecc_align.data import natural_pair
from napari_ecc_align.io.images import write_image


@pytest.fixture
def batch_dataset():
    """``make(root, pairs)``: ``root/ref`` and ``root/mov`` with ``pairs`` uint8 PNG pairs
    (160 × 200, shifted by (2, -1) px) named ``day{k % 2}/p{k:02d}.png``."""

    def make(root, pairs: int) -> None:
        for k in range(pairs):
            reference, moving, _ = natural_pair((160, 200), seed=k, shift=(2.0, -1.0), scale=1.0)
            name = f"day{k % 2}/p{k:02d}.png"
            write_image(root / "ref" / name, np.rint(reference * 255).astype(np.uint8))
            write_image(root / "mov" / name, np.rint(moving * 255).astype(np.uint8))

    return make


@pytest.fixture
def kill_batch_midway():
    """``kill(args, out, after=2)``: start ``napari-ecc-align batch *args`` in a new session,
    wait until ``after`` pairs under ``out`` are complete (their transform JSON exists), then
    SIGKILL the command and its Dask worker processes."""

    def kill(args, out, after: int = 2) -> None:
        cmd = [sys.executable, "-m", "napari_ecc_align.cli.commands", "batch", *map(str, args)]
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            deadline = time.monotonic() + 300  # a hang guard only: slow machines take long
            while len(list(out.rglob("*.transform.json"))) < after:
                assert proc.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, f"{after} pairs not done within 300 s"
                time.sleep(0.005)  # short: the kill follows the count closely
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask worker processes
            proc.wait()

    return kill
