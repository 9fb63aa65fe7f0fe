"""Qt file dialogs of the dock widget (Save transform…, Apply transform…)."""

from __future__ import annotations

from qtpy.QtWidgets import QFileDialog

from ...io.transform_files import is_ambiguous, transform_format

# The formats offered, as file-dialog filters; the one chosen names the format.
FILTERS = {
    "napari-ecc-align (*.json)": "json",
    "ITK (*.tfm *.txt *.mat *.h5)": "itk",
    "elastix / transformix (TransformParameters*.txt)": "elastix",
    "OME-NGFF coordinate transformations (*.ngff.json *.json)": "ngff",
    "BigWarp landmarks (*.csv)": "bigwarp",
    "TransformJ matrix (*.transformj.txt *.txt)": "transformj",
}
_READ_ANY = "Any transform (*.json *.tfm *.txt *.mat *.h5 *.csv)"


def file_dialog(save: bool) -> tuple[str, str | None]:
    """``(path, format)`` the user chose (``("", None)`` when cancelled); the format is
    the chosen filter's, None for "any" (the file's name and contents then decide)."""
    if save:
        path, chosen = QFileDialog.getSaveFileName(
            None, "Save transform", "transform.json", ";;".join(FILTERS)
        )
    else:
        path, chosen = QFileDialog.getOpenFileName(
            None, "Apply transform", "", ";;".join([_READ_ANY, *FILTERS])
        )
    return path, FILTERS.get(chosen)


def chosen_format(path: str, filter_format: str | None) -> str | None:
    """The format to write or read ``path`` in: the one its name says (``.tfm``,
    ``.csv``, ``.ngff.json``, ``TransformParameters*.txt``...), else the dialog's filter
    (a name that is ambiguous, ``.txt`` or ``.json``, or says nothing); None when neither
    decides (saving: the name's default; reading: the contents)."""
    try:
        named = transform_format(path)
    except ValueError:
        return filter_format
    return filter_format if is_ambiguous(path, named) else named
