"""A small per-frame drift plot for the dock widget (matplotlib's Qt backend).

Shows dx and dy (pixels; and dz, voxels, for 3D time-lapses) and the correlation
of every frame of a stack alignment; failed frames are marked in red. Clicking the
plot reports the frame under the cursor, which the widget uses to move napari's
slider there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class DriftPlot:
    """Wraps a matplotlib canvas; ``native`` is the QWidget to put in a layout."""

    def __init__(self, on_frame: Callable[[int], None] | None = None):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.axes = self.figure.add_subplot(111)
        self.corr_axes = self.axes.twinx()
        self.on_frame = on_frame
        self.frames = np.zeros(0, int)
        self.canvas.mpl_connect("button_press_event", self._clicked)
        self._style()

    @property
    def native(self):
        return self.canvas

    def _style(self) -> None:
        for ax in (self.axes, self.corr_axes):
            ax.tick_params(labelsize=7)
        # clear() puts a twin axis back on the left: keep the correlation on the right
        self.corr_axes.yaxis.tick_right()
        self.corr_axes.yaxis.set_label_position("right")
        self.axes.set_xlabel("frame", fontsize=8)
        self.axes.set_ylabel("drift (px)", fontsize=8)
        self.corr_axes.set_ylabel("correlation", fontsize=8)

    def show_table(self, rows: list[dict]) -> None:
        """Plot the rows of ``StackAlignment.table()``."""
        self.axes.clear()
        self.corr_axes.clear()
        self._style()
        frames = np.array([r["frame"] for r in rows], int)
        ok = np.array([bool(r["ok"]) for r in rows])
        corr = np.array([r["correlation"] if r["ok"] else np.nan for r in rows], float)
        self.frames = frames
        axes = ("dx", "dy", "dz") if rows and "dz" in rows[0] else ("dx", "dy")
        for name in axes:
            drift = np.array([r[name] if r["ok"] else np.nan for r in rows], float)
            self.axes.plot(frames, drift, lw=1, label=name)
        if len(axes) == 3:
            self.axes.set_ylabel("drift (voxels)", fontsize=8)
        self.corr_axes.plot(frames, corr, lw=1, color="0.5", ls=":", label="correlation")
        if (~ok).any():
            bad = frames[~ok]
            self.axes.plot(bad, np.zeros(bad.size), "x", color="red", label="failed")
            for frame in bad:
                self.axes.axvline(frame, color="red", alpha=0.25, lw=1)
        self.axes.legend(fontsize=7, loc="upper left")
        self.canvas.draw_idle()

    def _clicked(self, event) -> None:
        if event.xdata is None or self.on_frame is None or self.frames.size == 0:
            return
        frame = int(np.clip(round(event.xdata), self.frames.min(), self.frames.max()))
        self.on_frame(frame)
