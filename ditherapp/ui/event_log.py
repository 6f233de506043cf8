"""The event log: what the service told the user, newest at the bottom, bounded."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from ditherapp.ui.theme import DARK, Theme

MAX_ENTRIES = 500
LEVEL_ROLE = Qt.ItemDataRole.UserRole


class EventLog(QListWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setWordWrap(True)
        self.setUniformItemSizes(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def add(self, level: str, message: str, wall_time: float) -> None:
        at_bottom = self.verticalScrollBar().value() >= self.verticalScrollBar().maximum() - 2
        stamp = time.strftime("%H:%M:%S", time.localtime(wall_time))
        item = QListWidgetItem(f"{stamp}  {message}")
        item.setData(LEVEL_ROLE, level)
        item.setToolTip(f"{stamp} {level}: {message}")
        self._style(item)
        self.addItem(item)
        while self.count() > MAX_ENTRIES:
            self.takeItem(0)
        if at_bottom:
            self.scrollToBottom()

    def messages(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for i in range(self.count()):
            self._style(self.item(i))

    def _style(self, item: QListWidgetItem) -> None:
        level = item.data(LEVEL_ROLE)
        colour = {
            "alert": self.theme.bad,
            "error": self.theme.bad,
            "warning": self.theme.warn,
        }.get(level, self.theme.text)
        item.setForeground(QBrush(QColor(colour)))
        font = QFont(self.font())
        font.setBold(level in ("alert", "error"))
        item.setFont(font)
