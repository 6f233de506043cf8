"""Small Qt helpers: blocking signals while the model updates a widget, and finding
the bundled resources (the icon) in the source tree or the installed package."""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QIcon

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
