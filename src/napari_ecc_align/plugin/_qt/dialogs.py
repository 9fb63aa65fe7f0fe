"""Qt file dialogs of the dock widget (Save transform…, Apply transform…)."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog


def file_dialog(save: bool) -> str:
    if save:
        path, _ = QFileDialog.getSaveFileName(
            None, "Save transform", "transform.json", "JSON (*.json)"
        )
    else:
        path, _ = QFileDialog.getOpenFileName(None, "Apply transform", "", "JSON (*.json)")
    return path
