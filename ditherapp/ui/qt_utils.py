"""Small Qt helpers: blocking signals while the model updates a widget, and finding
the bundled resources (the icon) in the source tree or the installed package."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.resources
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from PySide6.QtCore import QObject, Signal
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


class _Probe(QObject):
    ping = Signal()


_PROBES = 64
_REFERENCE_RESERVE = 1 << 40


def guard_singleton_refcounts() -> bool:
    """Keep a PySide6 reference-count bug from crashing a long session.

    PySide6 6.12.0 on CPython 3.11 returns ``True`` from ``SignalInstance.emit()``
    without a new reference, and ``None`` from ``QObject.property()`` of an unset
    property likewise; each call takes one reference from the singleton, and a night of
    status updates and plot redraws takes them all ("Fatal Python error: bool_dealloc").
    CPython 3.12 made these objects immortal; on an older CPython that has the bug, give
    them a reserve of references no session can use up. Returns whether it did.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    if sys.getrefcount(True) > _REFERENCE_RESERVE // 2:
        return True  # guarded already
    probe = _Probe()
    before = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(_PROBES):
        probe.ping.emit()
        probe.property("ditherappProbe")
    after = sys.getrefcount(True), sys.getrefcount(None)
    if after[0] > before[0] - _PROBES // 2 and after[1] > before[1] - _PROBES // 2:
        return False
    for singleton in (True, False, None):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))
        refcount.value += _REFERENCE_RESERVE
    log.debug("PySide6 under-counts references to True/None here; guarded")
    return True
