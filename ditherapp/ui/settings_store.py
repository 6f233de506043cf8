"""The one adapter between DitherSettings and the INI file (QSettings, user scope).

QSettings writes through a temporary file and a rename, so a crash never leaves a
half-written file (a power loss still can: an empty file, or blocks of zeros). A file
that cannot be read falls back to the defaults, is reported as a bad value is, and is
kept beside the new one as ``NAME.bad-TIME`` for the user to look at, never overwritten.
A bad value falls back to the default for that value. Problems are reported, never
raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from ditherapp.core.settings import SPECS, DitherSettings, Kind

ORGANISATION = "ditherapp"
APPLICATION = "ditherapp"
GROUP = "settings"


class SettingsStore:
    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            self._qs = QSettings(
                QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION
            )
        else:
            self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        self._qs.setAtomicSyncRequired(True)
        self.kept_as: Path | None = None
        """Where an unreadable settings file was moved to, if it was."""
        self.pinned: frozenset[str] = frozenset()
        """Names set on the command line for this run only: never written back."""
        self._stored: dict[str, str] = {}
        self._lock = threading.RLock()
        """The runtime saves from a worker thread, the window from the main one: one
        QSettings object is not safe to share between threads unguarded."""

    @property
    def path(self) -> Path:
        return Path(self._qs.fileName())

    def load(self) -> tuple[DitherSettings, list[str]]:
        with self._lock:
            why = unreadable(self.path)
            if why is None and self._qs.status() is QSettings.Status.FormatError:
                why = "it is not a readable INI file"
            if why is not None:
                return DitherSettings(), [self._set_aside(why)]
            self._qs.beginGroup(GROUP)
            try:
                values = {key: self._qs.value(key) for key in self._qs.childKeys()}
            finally:
                self._qs.endGroup()
            self._stored = {k: str(v) for k, v in values.items()}
        settings, bad = DitherSettings.from_mapping(values)
        return settings, [f"{self.path}: {p}" for p in bad]

    def _set_aside(self, why: str) -> str:
        """Move the unreadable file out of the way, start afresh, and say so."""
        path = self.path
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = path.with_name(f"{path.name}.bad-{stamp}")
        number = 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}.bad-{stamp}-{number}")
        try:
            path.replace(target)
        except OSError as exc:
            return (
                f"{path} cannot be read ({why}); using the defaults. It could not be kept "
                f"aside ({exc.strerror or exc}) and will be replaced at the next change"
            )
        self.kept_as = target
        self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        self._qs.setAtomicSyncRequired(True)
        self._stored = {}
        return (
            f"{path} cannot be read ({why}); using the defaults. "
            f"The unreadable file is kept as {target.name}"
        )

    def save(self, settings: DitherSettings, names: Iterable[str] | None = None) -> None:
        with self._lock:
            self._save(settings, names)

    def _save(self, settings: DitherSettings, names: Iterable[str] | None) -> None:
        wanted = set(names) if names is not None else {spec.name for spec in SPECS}
        self._qs.beginGroup(GROUP)
        try:
            for spec in SPECS:
                if spec.name not in wanted or spec.name in self.pinned:
                    continue
                value = settings.get(spec.name)
                text = ("true" if value else "false") if spec.kind is Kind.BOOL else str(value)
                self._qs.setValue(spec.name, text)
        finally:
            self._qs.endGroup()
        self._qs.sync()
        if self._qs.status() is QSettings.Status.AccessError:
            raise OSError(f"cannot write {self.path}")

    def save_changes(self, settings: DitherSettings) -> None:
        """Write the settings that differ from what the file holds (the service's hook;
        the runtime calls it from a worker thread)."""
        with self._lock:
            changed = [
                spec.name
                for spec in SPECS
                if self._stored.get(spec.name) != _text(settings, spec.name, spec.kind)
            ]
            if changed:
                self._save(settings, changed)
                for name in changed:
                    if name not in self.pinned:
                        self._stored[name] = _text(settings, name, SPEC_KIND[name])

    def load_bytes(self, key: str) -> QByteArray | None:
        with self._lock:
            value = self._qs.value(f"window/{key}")
        return value if isinstance(value, QByteArray) else None

    def save_bytes(self, key: str, value: QByteArray) -> None:
        with self._lock:
            self._qs.setValue(f"window/{key}", value)
            self._qs.sync()

    def load_text(self, key: str, default: str = "") -> str:
        with self._lock:
            value = self._qs.value(f"window/{key}", default)
        return value if isinstance(value, str) else default

    def save_text(self, key: str, value: str) -> None:
        with self._lock:
            self._qs.setValue(f"window/{key}", value)
            self._qs.sync()


SPEC_KIND = {spec.name: spec.kind for spec in SPECS}

_CONTROL_BYTES = frozenset(range(32)) - {9, 10, 13}


def unreadable(path: Path) -> str | None:
    """Why the settings file at ``path`` cannot be what we wrote, or None if it can be
    (a missing file is fine: it is a first start). QSettings reads empty files, binary
    and lines of garbage without a complaint, as files with nothing in them."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be opened: {exc.strerror or exc}"
    if not data.strip():
        return "it is empty"
    if _CONTROL_BYTES.intersection(data):
        return "it holds binary data"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"it is not UTF-8 text (byte {exc.start})"
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#" or "=" in line:
            continue
        if not (line.startswith("[") and line.endswith("]")):
            return f"line {number} is neither a [section] nor NAME=VALUE"
    return None


def _text(settings: DitherSettings, name: str, kind: Kind) -> str:
    value = settings.get(name)
    if kind is Kind.BOOL:
        return "true" if value else "false"
    return str(value)
