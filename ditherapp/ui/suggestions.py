"""Settle suggestions from the ledger, in the window: what the recorded settles say,
and a button per suggestion that applies it. Nothing changes by itself."""

from __future__ import annotations

from PySide6.QtWidgets import QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from ditherapp.core.settings import SPEC_BY_NAME
from ditherapp.core.settle_advice import MIN_DITHERS, GroupAdvice, Suggestion
from ditherapp.ui.bridge import ServiceBridge


class SuggestionsPanel(QGroupBox):
    """Hidden until some dither pattern and amount has ``MIN_DITHERS`` dithers."""

    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__("Settle suggestions", parent)
        self.bridge = bridge
        self.setToolTip(
            f"From the dither ledger (this PHD2 profile, every session), once a dither "
            f"pattern and amount has {MIN_DITHERS} dithers. A click applies a suggestion."
        )
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(8, 4, 8, 6)
        self._layout.setSpacing(4)
        self.buttons: list[QPushButton] = []
        self.advice: list[GroupAdvice] = []
        bridge.ditherRecorded.connect(self.refresh)
        bridge.settingChanged.connect(self._setting_changed)
        self.refresh()

    def _setting_changed(self, name: str, _value: object) -> None:
        if name in ("settledelay", "settlemax"):
            self.refresh()

    def refresh(self, *_args: object) -> None:
        self.advice = self.bridge.settleAdvice()
        while self._layout.count():
            item = self._layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.buttons = []
        for group in self.advice:
            summary = QLabel(group.summary)
            summary.setWordWrap(True)
            summary.setObjectName("caption")
            self._layout.addWidget(summary)
            for suggestion in group.suggestions:
                text = QLabel(suggestion.text)
                text.setWordWrap(True)
                self._layout.addWidget(text)
                button = QPushButton(_button_text(suggestion))
                button.setToolTip(suggestion.text)
                button.clicked.connect(lambda _=False, s=suggestion: self.apply(s))
                self.buttons.append(button)
                self._layout.addWidget(button)
        self.setVisible(bool(self.advice))

    def apply(self, suggestion: Suggestion) -> bool:
        ok = self.bridge.setSetting(suggestion.setting, suggestion.value)
        self.refresh()
        return ok


def _button_text(suggestion: Suggestion) -> str:
    spec = SPEC_BY_NAME[suggestion.setting]
    return f"Set {spec.label.lower()} to {suggestion.value} {spec.unit}".rstrip()
