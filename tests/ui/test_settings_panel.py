"""Every setting has a widget built from its spec, bound both ways: a change in the
window reaches the service once, and a change made elsewhere (what ``ditherctl set``
does) shows up in the widget without being sent back."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QLabel,
    QLineEdit,
    QSpinBox,
)

from ditherapp.core.settings import SPECS, Kind, SettingSpec
from ditherapp.ui.settings_panel import SettingsPanel

NUMBERS = [s for s in SPECS if s.kind in (Kind.INT, Kind.FLOAT)]
OTHERS = [s for s in SPECS if s.kind not in (Kind.INT, Kind.FLOAT)]


@pytest.fixture
def panel(qtbot: Any, bridge: Any) -> SettingsPanel:
    p = SettingsPanel(bridge)
    qtbot.addWidget(p)
    p.resize(320, 700)
    p.show()
    return p


def other_value(spec: SettingSpec, current: Any) -> Any:
    """A valid value different from ``current``."""
    if spec.name == "settledelay":  # below the rig's settlemax (30 s): the pair must fit
        return 20 if current != 20 else 5
    match spec.kind:
        case Kind.INT:
            return int(spec.maximum) if current != spec.maximum else int(spec.minimum)
        case Kind.FLOAT:
            low, high = float(spec.minimum), float(spec.maximum)
            return round(low + (high - low) / 4 + spec.step, spec.decimals)
        case Kind.BOOL:
            return not current
        case Kind.CHOICE:
            return next(c for c in spec.choices if c != current)
        case Kind.TEXT:
            if "url" in spec.name:
                return "https://ntfy.sh/my-observatory"
            return "10.0.0.7" if "host" in spec.name else "QHY268M"
    raise AssertionError(spec.kind)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_each_widget_is_built_from_its_spec(panel: SettingsPanel, spec: SettingSpec) -> None:
    widget = panel.bindings[spec.name].widget
    assert spec.help in widget.toolTip()
    match spec.kind:
        case Kind.INT:
            assert isinstance(widget, QSpinBox)
            assert (widget.minimum(), widget.maximum()) == (spec.minimum, spec.maximum)
            assert widget.singleStep() == spec.step
        case Kind.FLOAT:
            assert isinstance(widget, QDoubleSpinBox)
            assert (widget.minimum(), widget.maximum()) == (spec.minimum, spec.maximum)
            assert widget.singleStep() == spec.step
            assert widget.decimals() == spec.decimals
        case Kind.BOOL:
            assert isinstance(widget, QCheckBox)
        case Kind.CHOICE:
            assert isinstance(widget, QComboBox)
            assert [widget.itemText(i) for i in range(widget.count())] == list(spec.choices)
        case Kind.TEXT:
            assert isinstance(widget, QLineEdit)
    if spec.unit:
        assert isinstance(widget, QSpinBox | QDoubleSpinBox)
        assert widget.suffix() == f" {spec.unit}"


def test_widgets_start_with_the_services_values(panel: SettingsPanel, rig: Any) -> None:
    for spec in SPECS:
        assert panel.bindings[spec.name].value() == rig.service.settings.get(spec.name)


def change_in_widget(panel: SettingsPanel, spec: SettingSpec, value: Any) -> None:
    """What a user does: arrows/typing then Enter, a click, a pick, an edit."""
    widget = panel.bindings[spec.name].widget
    if isinstance(widget, QSpinBox | QDoubleSpinBox):
        widget.setValue(value)
    elif isinstance(widget, QCheckBox):
        widget.click()
    elif isinstance(widget, QComboBox):
        widget.setCurrentText(value)
    elif isinstance(widget, QLineEdit):
        widget.setText(value)
        widget.editingFinished.emit()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_a_change_in_the_window_reaches_the_service_once(
    panel: SettingsPanel, rig: Any, spec: SettingSpec
) -> None:
    value = other_value(spec, rig.service.settings.get(spec.name))
    change_in_widget(panel, spec, value)
    assert rig.service.settings.get(spec.name) == value
    assert rig.changes(spec.name) == [value]
    assert rig.set_calls == [(spec.name, value)]
    assert rig.saved[-1].get(spec.name) == value, "the service saves what the user set"
    assert panel.bindings[spec.name].value() == value


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_a_change_made_elsewhere_shows_up_without_echo(
    panel: SettingsPanel, rig: Any, spec: SettingSpec
) -> None:
    value = other_value(spec, rig.service.settings.get(spec.name))
    rig.service.set_setting(spec.name, value)  # what ditherctl set does
    assert panel.bindings[spec.name].value() == value
    assert rig.set_calls == [(spec.name, value)], "the widget must not send it back"
    assert rig.changes(spec.name) == [value]


def test_leaving_a_text_field_unchanged_sends_nothing(panel: SettingsPanel, rig: Any) -> None:
    line = panel.bindings["phd2host"].widget
    assert isinstance(line, QLineEdit)
    line.editingFinished.emit()
    assert rig.set_calls == []


def test_a_refused_value_is_reported_and_the_widget_put_back(
    qtbot: Any, panel: SettingsPanel, bridge: Any, rig: Any
) -> None:
    line = panel.bindings["phd2host"].widget
    assert isinstance(line, QLineEdit)
    with qtbot.waitSignal(bridge.commandFailed) as failed:
        line.setText("bad\thost")
        line.editingFinished.emit()
    assert "phd2host" in failed.args[0]
    assert line.text() == rig.service.settings.phd2host == "127.0.0.1"


def test_a_settle_time_beyond_the_settle_timeout_is_explained_and_put_back(
    qtbot: Any, panel: SettingsPanel, bridge: Any, rig: Any
) -> None:
    box = panel.bindings["settledelay"].widget
    assert isinstance(box, QSpinBox)
    before = rig.service.settings.settledelay
    with qtbot.waitSignal(bridge.commandFailed) as failed:
        box.setValue(600)  # settlemax is 30 s here: every dither would fail
    assert "can never be met within a settle timeout of 30 s" in failed.args[0]
    assert box.value() == rig.service.settings.settledelay == before


def test_typing_a_number_sends_it_once_on_enter(qtbot: Any, panel: SettingsPanel, rig: Any) -> None:
    box = panel.bindings["ditherevery"].widget
    assert isinstance(box, QSpinBox)
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, "25")
    assert rig.set_calls == [], "nothing is sent while typing"
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert rig.set_calls == [("ditherevery", 25)]
    assert rig.service.settings.ditherevery == 25


def test_the_wheel_does_not_change_a_setting_it_scrolls_past(
    panel: SettingsPanel, rig: Any, qapp: QApplication
) -> None:
    box = panel.bindings["settletarget"].widget
    assert isinstance(box, QDoubleSpinBox)
    assert not box.hasFocus()
    before = box.value()
    centre = QPointF(box.rect().center())
    wheel = QWheelEvent(
        centre,
        QPointF(box.mapToGlobal(box.rect().center())),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    qapp.sendEvent(box, wheel)
    assert box.value() == before
    assert rig.set_calls == []


def test_settings_that_apply_at_restart_are_grouped_and_marked(panel: SettingsPanel) -> None:
    for spec in SPECS:
        widget = panel.bindings[spec.name].widget
        box = widget.parentWidget()
        assert isinstance(box, QGroupBox)
        if spec.live:
            assert box.title() != "Control socket", spec.name
        else:
            assert box.title() == "Control socket", spec.name
            assert "restarts" in widget.toolTip()
    restart_box = panel.bindings["controlport"].widget.parentWidget()
    assert restart_box is not None
    assert any("restarts" in label.text() for label in restart_box.findChildren(QLabel))
