"""The widget's result panel: the last result in words, its matrix, save and apply
buttons, and (after a stack) the drift plot.

:class:`ResultPanel` owns these controls and their callbacks; the dock lays its
``widgets`` out in its own form, and the drift plot goes below them in ``host``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from magicgui.widgets import Container, Label, PushButton, TextEdit

from ...engine import Alignment


class ResultPanel:
    """Shows a pair's or a stack's result; ``save`` and ``apply`` run on the buttons."""

    def __init__(self, host: Container, save: Callable[[], object], apply: Callable[[], object]):
        self.result = Label(value="")
        self.matrix_view = TextEdit(value="", enabled=True, visible=False)
        self.matrix_view.native.setReadOnly(True)
        self.save_button = PushButton(text="Save transform…", enabled=False)
        self.apply_button = PushButton(text="Apply transform…")
        self.widgets = [self.result, self.matrix_view, self.save_button, self.apply_button]
        self._host = host
        self.drift_plot = None  # created on the first stack result (imports matplotlib)
        self._add_callbacks(save, apply)

    def _add_callbacks(self, save, apply) -> None:
        self.save_button.changed.connect(lambda: save())
        self.apply_button.changed.connect(lambda: apply())

    def show_alignment(self, alignment: Alignment, note: str | None = None) -> None:
        """Correlations, motion, start and levels of a pair's result, and its matrix;
        ``note``: one more line (the landmark fit of a points start)."""
        volume = alignment.ndim == 3
        spacing = alignment.parameters.get("spacing") if volume else None
        voxel = f"\nvoxel size (dz, dy, dx): {', '.join(f'{s:g}' for s in spacing or ())}"
        self.result.value = (
            f"correlation {alignment.correlation_before:.3f} → {alignment.correlation:.3f}\n"
            f"{'volume, ' if volume else ''}{alignment.motion}, init: {alignment.init_method}, "
            f"levels: {alignment.levels}, {alignment.elapsed:.2f} s"
            + (voxel if spacing else "")
            + (f"\n{note}" if note else "")
        )
        point = "voxel (x, y, z, 1)" if volume else "pixel (x, y, 1)"
        self.matrix_view.value = f"reference {point} → moving:\n" + np.array2string(
            alignment.matrix, precision=5, suppress_small=True
        )
        self.matrix_view.visible = True
        self.save_button.enabled = True

    def show_stack(self, stack_alignment, on_frame: Callable[[int], None]) -> None:
        """Frames aligned and failed, the median correlation, and the drift plot (a click
        on it calls ``on_frame`` with the frame)."""
        rows = stack_alignment.table()
        failed = [r["frame"] for r in rows if not r["ok"]]
        corr = [r["correlation"] for r in rows if r["ok"]]
        self.result.value = (
            f"{len(rows)} frames aligned to {stack_alignment.reference!r}, "
            f"{len(failed)} failed{(': ' + ', '.join(map(str, failed[:10]))) if failed else ''}\n"
            f"median correlation {np.median(corr) if corr else float('nan'):.3f}, "
            f"{stack_alignment.elapsed:.1f} s"
        )
        if self.drift_plot is None:
            from .drift_plot import DriftPlot

            self.drift_plot = DriftPlot(on_frame=on_frame)
            self._host.native.layout().addWidget(self.drift_plot.native)
        self.drift_plot.show_table(rows)
        self.save_button.enabled = True
