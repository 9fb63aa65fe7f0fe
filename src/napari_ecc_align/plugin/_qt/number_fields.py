"""A float field for small tolerances: ECC's ``eps`` in scientific notation.

``QDoubleSpinBox`` shows a fixed number of decimals (1e-6 would read ``0.00``) and
magicgui's ``FloatSpinBox`` inherits that. This one shows ``1e-06``, accepts what
``float()`` accepts while typing (``2.5e-7``, ``0.0001``), refuses anything else,
clamps to its range, and steps by factors of ten (the arrows go 1e-06 → 1e-05).
"""

from __future__ import annotations

import math

# magicgui's Qt backend base for ranged widgets: public enough to subclass (its own
# FloatSpinBox does), and present in every magicgui version we support (0.8 on).
from magicgui.backends._qtpy.widgets import QBaseRangedWidget
from magicgui.widgets.bases import RangedWidget
from qtpy.QtGui import QValidator
from qtpy.QtWidgets import QDoubleSpinBox

_SHOWN_DIGITS = 6


class ScientificSpinBox(QDoubleSpinBox):
    """``QDoubleSpinBox`` that reads and writes ``1e-06``-style text."""

    def __init__(self, parent=None):
        super().__init__(parent)
        # QDoubleSpinBox rounds every value to decimals(): keep all of a tiny one.
        self.setDecimals(323)

    def textFromValue(self, value: float) -> str:  # noqa: N802 (Qt's name)
        return f"{value:.{_SHOWN_DIGITS}g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            # what can still become a number as the user types: "", "1e", "1e-", "-"
            partial = stripped.rstrip("eE+-.")
            ok = not partial or _is_number(partial)
            state = QValidator.State.Intermediate if ok else QValidator.State.Invalid
            return state, text, pos
        if not math.isfinite(value):
            return QValidator.State.Invalid, text, pos
        inside = self.minimum() <= value <= self.maximum()
        return (QValidator.State.Acceptable if inside else QValidator.State.Intermediate), text, pos

    def fixup(self, text: str) -> str:
        """Out of range or unfinished text on leaving the field: the nearest allowed value."""
        try:
            value = float(text.strip())
        except ValueError:
            return self.textFromValue(self.value())
        return self.textFromValue(min(max(value, self.minimum()), self.maximum()))

    def stepBy(self, steps: int) -> None:  # noqa: N802
        value = self.value() if self.value() > 0 else self.minimum()
        self.setValue(float(f"{value * 10.0**steps:.12g}"))  # 1e-05, not 9.999999999999999e-06


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _ScientificBackend(QBaseRangedWidget):
    def __init__(self, **kwargs):
        super().__init__(ScientificSpinBox, **kwargs)

    def _mgui_set_value(self, value) -> None:
        super()._mgui_set_value(float(value))


class ScientificFloat(RangedWidget):
    """magicgui widget for a positive float shown in scientific notation.

    Parameters
    ----------
    value : float
        Initial value.
    min, max : float
        The allowed range; typed values outside it are clamped when the field loses focus.
    **kwargs
        Any other magicgui widget option (``label``, ``tooltip``, ...).
    """

    def __init__(self, value: float = 1e-6, *, min: float = 1e-12, max: float = 1.0, **kwargs):  # noqa: A002
        super().__init__(value=value, min=min, max=max, widget_type=_ScientificBackend, **kwargs)
