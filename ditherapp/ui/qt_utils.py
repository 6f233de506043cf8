"""Small Qt helpers: blocking signals while the model updates a widget, a one-line label
that never widens its layout, and finding the bundled resources (the icon) in the source
tree or the installed package."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QIcon, QPainter, QPaintEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

log = logging.getLogger(__name__)

ICON_NAME = "ditherapp.svg"


@contextlib.contextmanager
def signals_blocked(obj: QObject) -> Iterator[None]:
    """Update a widget from the model without the widget telling the model again."""
    previous = obj.blockSignals(True)
    try:
        yield
    finally:
        obj.blockSignals(previous)


class ElidedLabel(QLabel):
    """One line of text that takes the width its layout gives it and no more: a text
    too long ends in "…" (the whole of it is in the tooltip), so a long message never
    pushes the columns beside it around."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, event: QPaintEvent) -> None:
        del event
        painter = QPainter(self)
        self.style().drawItemText(
            painter,
            self.contentsRect(),
            int(self.alignment()),
            self.palette(),
            self.isEnabled(),
            self.shown_text(),
            self.foregroundRole(),
        )

    def shown_text(self) -> str:
        """The text as it fits now (what a user reads)."""
        width = self.contentsRect().width()
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight, width)


def resource_path(name: str) -> Path | None:
    """A file from ``resources/``: the installed copy (``ditherapp/_resources``) first,
    then the source tree (an editable install or a checkout)."""
    with contextlib.suppress(ModuleNotFoundError, FileNotFoundError, NotADirectoryError):
        installed = importlib.resources.files("ditherapp") / "_resources" / name
        if installed.is_file():
            return Path(str(installed))
    source = Path(__file__).resolve().parents[2] / "resources" / name
    return source if source.is_file() else None


def app_icon() -> QIcon:
    path = resource_path(ICON_NAME)
    return QIcon(str(path)) if path is not None else QIcon()
