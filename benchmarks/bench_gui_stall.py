"""Longest stall of napari's event loop while the widget aligns an 8 MP pair (or two
OME-Zarr images opened by napari-ome-zarr).

A QTimer asks for a tick every 2 ms; the longest gap between ticks while the
worker runs is how long the viewer would have been frozen. Needs a display
(run under ``xvfb-run`` on a headless machine)::

    xvfb-run -a python benchmarks/bench_gui_stall.py [--megapixels 8] [--runs 3]
    xvfb-run -a python benchmarks/bench_gui_stall.py --ome-zarr REF.ome.zarr MOV.ome.zarr

With ``--ome-zarr`` the layers are multiscale and dask-backed (e.g. the 2 GiB volumes
``bench_large.py --volume 256,2048,2048`` writes); the widget's defaults apply (Move
layer only for multiscale layers).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ome-zarr", nargs=2, metavar=("REFERENCE", "MOVING"))
    args = parser.parse_args(argv)

    import napari
    from bench_align import affine_pair
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_ecc_align.plugin._qt.widget import AlignWidget

    viewer = napari.Viewer(show=True)
    if args.ome_zarr:
        layers = [viewer.open(path, plugin="napari-ome-zarr")[0] for path in args.ome_zarr]
        shape = " x ".join(map(str, layers[0].data[0].shape))
        name = f"two OME-Zarr images of {shape} ({layers[0].data[0].nbytes / 2**30:.2f} GiB each)"
    else:
        name, reference, moving, _ = affine_pair(args.megapixels)
        layers = [viewer.add_image(reference, name="reference"),
                  viewer.add_image(moving, name="moving")]  # fmt: skip
    widget = AlignWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.reference.value, widget.moving.value = layers
    app = QApplication.instance()
    for _ in range(20):  # let the window settle before measuring
        app.processEvents()
        time.sleep(0.01)

    print(f"{name}: event-loop stall while the widget aligns (timer every 2 ms)")
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(2)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    start = time.perf_counter()
    while time.perf_counter() - start < 1.0:  # the same viewer, idle: the baseline
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    idle = np.diff([start, *ticks]) * 1000
    print(f"idle viewer for 1 s: longest stall {idle.max():.0f} ms")
    for run in range(args.runs):
        ticks: list[float] = []
        timer = QTimer()
        timer.setInterval(2)
        timer.timeout.connect(lambda ticks=ticks: ticks.append(time.perf_counter()))
        timer.start()
        start = time.perf_counter()
        widget.run()
        returned: list[float] = []
        widget._worker.returned.connect(lambda _, r=returned: r.append(time.perf_counter()))
        while widget.running:
            app.processEvents()
            time.sleep(0.001)
        end = time.perf_counter()
        timer.stop()
        times = np.array([start, *ticks, end])
        gaps = np.diff(times) * 1000
        # gaps that end before the result arrived: the worker was computing
        split = returned[0] if returned else end
        working = gaps[times[1:] <= split]
        updating = gaps[times[1:] > split]
        print(
            f"run {run + 1}: worker {split - start:.2f} s, longest stall {working.max():.0f} ms "
            f"(99th percentile {np.percentile(working, 99):.0f} ms); layer update on the main "
            f"thread {end - split:.2f} s, longest stall {updating.max():.0f} ms"
        )
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
