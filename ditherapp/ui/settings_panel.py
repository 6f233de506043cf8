"""A widget for every setting, built from the settings table (labels, units, ranges,
steps, decimals, help texts), bound both ways to the service through the bridge.

A change in a widget goes to the service (it takes effect for the next dither and the
service saves it). A change made elsewhere (``ditherctl set``, the enable button)
comes back as ``settingChanged`` and is shown with the widget's signals blocked, so it
is never sent back: the service sees each change once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ditherapp.core.settings import SPECS, Group, Kind, SettingSpec
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.qt_utils import signals_blocked

Commit = Callable[[str, object], object]

RESTART_NOTE = "Apply when ditherapp restarts."


class _NoWheelUnlessFocused:
    """A spin box or combo under the mouse wheel while the user scrolls the panel must
    not change a dither variable mid-session: the wheel only works once it has focus."""

    def wheelEvent(self, event: QWheelEvent) -> None:
        if self.hasFocus():  # type: ignore[attr-defined]
            super().wheelEvent(event)  # type: ignore[misc]
        else:
            event.ignore()


class SpinBox(_NoWheelUnlessFocused, QSpinBox):
    pass


class DoubleSpinBox(_NoWheelUnlessFocused, QDoubleSpinBox):
    pass


class ComboBox(_NoWheelUnlessFocused, QComboBox):
    pass


def tooltip(spec: SettingSpec) -> str:
    text = f"{spec.help}\n\nAllowed: {spec.range_text()}. Default: {_shown(spec.default)}."
    text += f"\nditherctl name: {spec.name}"
    if not spec.live:
        text += "\nApplies when ditherapp restarts."
    return text


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value == "":
        return "empty"
    return str(value)


class Binding:
    """One setting's widget: ``show`` puts a value in without echo; ``commit`` is
    called with the value the user chose."""

    def __init__(self, spec: SettingSpec, commit: Commit) -> None:
        self.spec = spec
        self._commit = commit
        self.widget = self._build()
        self.widget.setToolTip(tooltip(spec))
        self.widget.setObjectName(f"setting_{spec.name}")

    def _build(self) -> QWidget:
        spec = self.spec
        match spec.kind:
            case Kind.INT:
                box = SpinBox()
                box.setRange(int(spec.minimum or 0), int(spec.maximum or 2**31 - 1))
                box.setSingleStep(max(1, int(spec.step)))
                self._setup_spin(box)
                box.valueChanged.connect(self._changed)
                return box
            case Kind.FLOAT:
                dbox = DoubleSpinBox()
                dbox.setDecimals(spec.decimals)
                dbox.setRange(float(spec.minimum or 0.0), float(spec.maximum or 1e9))
                dbox.setSingleStep(spec.step)
                self._setup_spin(dbox)
                dbox.valueChanged.connect(self._changed)
                return dbox
            case Kind.BOOL:
                check = QCheckBox()
                check.toggled.connect(self._changed)
                return check
            case Kind.CHOICE:
                combo = ComboBox()
                combo.addItems(list(spec.choices))
                combo.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
                combo.currentTextChanged.connect(self._changed)
                return combo
            case Kind.TEXT:
                line = QLineEdit()
                line.setMaxLength(256)
                if spec.name.endswith("token"):
                    line.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
                    line.setPlaceholderText("none")
                elif spec.default == "":
                    line.setPlaceholderText("(empty)")
                line.editingFinished.connect(lambda: self._changed(line.text()))
                return line
        raise AssertionError(spec.kind)  # pragma: no cover - every kind is matched

    def _setup_spin(self, box: QSpinBox | QDoubleSpinBox) -> None:
        if self.spec.unit:
            box.setSuffix(f" {self.spec.unit}")
        # Typing "25" must not send 2 and then 25: commit on Enter, focus-out or arrows.
        box.setKeyboardTracking(False)
        box.setAccelerated(True)
        box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        box.setAlignment(Qt.AlignmentFlag.AlignRight)

    def _changed(self, value: object) -> None:
        self._commit(self.spec.name, value)

    def value(self) -> Any:
        w = self.widget
        if isinstance(w, QSpinBox | QDoubleSpinBox):
            return w.value()
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        if isinstance(w, QLineEdit):
            return w.text()
        raise AssertionError(type(w))  # pragma: no cover

    def show(self, value: Any) -> None:
        w = self.widget
        with signals_blocked(w):
            if isinstance(w, QSpinBox):
                w.setValue(int(value))
            elif isinstance(w, QDoubleSpinBox):
                w.setValue(float(value))
            elif isinstance(w, QCheckBox):
                w.setChecked(bool(value))
            elif isinstance(w, QComboBox):
                w.setCurrentText(str(value))
            elif isinstance(w, QLineEdit):
                w.setText(str(value))
                w.setCursorPosition(0)


class SettingsPanel(QScrollArea):
    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self.bindings: dict[str, Binding] = {}
        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(4, 4, 4, 4)
        column.setSpacing(8)
        forms = {
            "dither": self._group(column, "Dither", "Applies to the next dither."),
            "guard": self._group(column, "Frame guard and alerts"),
            "phd2": self._group(column, "PHD2"),
            "restart": self._group(column, "Control socket", RESTART_NOTE),
        }
        labels: list[QLabel] = []
        for spec in SPECS:
            if not spec.live:
                form = forms["restart"]
            elif spec.group is Group.DITHER:
                form = forms["dither"]
            elif spec.group is Group.GUARD:
                form = forms["guard"]
            else:
                form = forms["phd2"]
            binding = Binding(spec, self._commit)
            self.bindings[spec.name] = binding
            label = QLabel(spec.label)
            label.setToolTip(binding.widget.toolTip())
            label.setBuddy(binding.widget)
            form.addRow(label, binding.widget)
            labels.append(label)
        # One label column for every group, so the fields line up.
        widest = max(label.sizeHint().width() for label in labels)
        for label in labels:
            label.setMinimumWidth(widest)
        note = QLabel(
            "Hover over a setting for what it does. Changes are saved at once; "
            "ditherctl set changes show up here."
        )
        note.setObjectName("caption")
        note.setWordWrap(True)
        column.addWidget(note)
        column.addStretch(1)
        self.setWidget(body)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFrameShape(QScrollArea.Shape.NoFrame)
        # Never narrower than the fields: with no horizontal scroll bar, a squeezed panel
        # would cut off the spin boxes' arrows and the combo boxes.
        scrollbar = self.verticalScrollBar().sizeHint().width()
        self.setMinimumWidth(body.minimumSizeHint().width() + scrollbar + 2)
        self.show_all()
        bridge.settingChanged.connect(self.show_value)

    @staticmethod
    def _group(column: QVBoxLayout, title: str, note: str = "") -> QFormLayout:
        box = QGroupBox(title)
        form = QFormLayout(box)
        form.setContentsMargins(8, 6, 8, 6)
        form.setVerticalSpacing(5)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        if note:
            caption = QLabel(note)
            caption.setObjectName("caption")
            caption.setWordWrap(True)
            form.addRow(caption)
        column.addWidget(box)
        return form

    def show_all(self) -> None:
        settings = self._bridge.settings
        for name, binding in self.bindings.items():
            binding.show(settings.get(name))

    def show_value(self, name: str, value: object) -> None:
        binding = self.bindings.get(name)
        if binding is not None:
            binding.show(value)

    def _commit(self, name: str, value: object) -> None:
        if value == self._bridge.settings.get(name):
            return  # a text field left unchanged, a combo set to what it shows
        self._bridge.setSetting(name, value)
