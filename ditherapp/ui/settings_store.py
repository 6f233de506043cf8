"""The one adapter between DitherSettings and the INI file (QSettings, user scope).

QSettings writes through a temporary file and a rename, so a crash never leaves a
half-written file. A file that cannot be read, or holds a bad value, falls back to the
defaults for what is wrong, and the problems are reported, never raised.
"""

from __future__ import annotations

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
        self.pinned: frozenset[str] = frozenset()
        """Names set on the command line for this run only: never written back."""
        self._stored: dict[str, str] = {}

    @property
    def path(self) -> Path:
        return Path(self._qs.fileName())

    def load(self) -> tuple[DitherSettings, list[str]]:
        problems: list[str] = []
        if self._qs.status() is QSettings.Status.FormatError:
            problems.append(f"{self.path} is not a readable INI file; using the defaults")
            return DitherSettings(), problems
        self._qs.beginGroup(GROUP)
        try:
            values = {key: self._qs.value(key) for key in self._qs.childKeys()}
        finally:
            self._qs.endGroup()
        self._stored = {k: str(v) for k, v in values.items()}
        settings, bad = DitherSettings.from_mapping(values)
        problems.extend(f"{self.path}: {p}" for p in bad)
        return settings, problems

    def save(self, settings: DitherSettings, names: Iterable[str] | None = None) -> None:
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
        """Write the settings that differ from what the file holds (the service's hook)."""
        changed = [
            spec.name
            for spec in SPECS
            if self._stored.get(spec.name) != _text(settings, spec.name, spec.kind)
        ]
        if changed:
            self.save(settings, changed)
            for name in changed:
                if name not in self.pinned:
                    self._stored[name] = _text(settings, name, SPEC_KIND[name])

    def load_bytes(self, key: str) -> QByteArray | None:
        value = self._qs.value(f"window/{key}")
        return value if isinstance(value, QByteArray) else None

    def save_bytes(self, key: str, value: QByteArray) -> None:
        self._qs.setValue(f"window/{key}", value)
        self._qs.sync()

    def load_text(self, key: str, default: str = "") -> str:
        value = self._qs.value(f"window/{key}", default)
        return value if isinstance(value, str) else default

    def save_text(self, key: str, value: str) -> None:
        self._qs.setValue(f"window/{key}", value)
        self._qs.sync()


SPEC_KIND = {spec.name: spec.kind for spec in SPECS}


def _text(settings: DitherSettings, name: str, kind: Kind) -> str:
    value = settings.get(name)
    if kind is Kind.BOOL:
        return "true" if value else "false"
    return str(value)
