"""The window as a user sees it: the status at a glance, the buttons, alerts, themes,
a layout that is remembered, and nothing clipped on a small laptop screen."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel

from ditherapp.core.dither import OutcomeKind
from ditherapp.ui.main_window import MainWindow
from ditherapp.ui.qt_utils import ICON_NAME, resource_path
from ditherapp.ui.theme import RED, THEMES
from ditherapp.ui.window_app import ErrorReporter


def test_phd2_connection_is_shown_with_its_countdown(
    qtbot: Any, window: MainWindow, rig: Any
) -> None:
    rig.guider.connect()
    qtbot.waitUntil(lambda: window.banner.phd2.text() == "PHD2: Guiding")
    assert "127.0.0.1 · instance 1 · port 4400 · event server" in window.banner.phd2_detail.text()
    rig.guider.drop(retry_in=9.0)
    qtbot.waitUntil(lambda: window.banner.phd2.text() == "PHD2: Not connected")
    detail = window.banner.phd2_detail.text()
    assert detail.startswith("retrying in ")
    assert "connection refused" in detail
    assert window.banner.property("state") == "bad", "the whole banner turns to an alert"


def test_cameras_and_frame_counts(qtbot: Any, window: MainWindow, rig: Any) -> None:
    rig.guider.connect()
    camera = rig.camera("QHY268M")
    camera.frame()
    camera.frame()
    table = window.cameras.table
    qtbot.waitUntil(lambda: table.rowCount() == 1 and table.item(0, 2).text() == "2")
    assert [table.item(0, c).text() for c in range(4)] == ["QHY268M", "saving", "2", "in 1"]
    assert window.counters.since.text() == "2 / 3 frames"
    assert window.banner.phase.text() == "IDLE"
    assert "next dither in 1 frame" in window.banner.phase_detail.text()
    camera.leave()
    qtbot.waitUntil(lambda: table.item(0, 1).text() == "disconnected")
    assert "camera QHY268M disconnected" in window.alert_label.text()


async def test_dither_now_runs_a_cycle_the_window_follows(
    window: MainWindow, rig: Any, until: Any
) -> None:
    rig.guider.connect()
    camera = rig.camera()
    await until(window.banner.dither_button.isEnabled)
    window.banner.dither_button.click()
    await until(lambda: window.banner.phase.text().startswith("SETTLING"), what="settling")
    assert camera.paused
    rig.guider.settle(3.1, 1.4, 1.0)
    await until(lambda: window.settle_view.distance.text() == "1.00 px", what="distance")
    assert window.settle_view.in_range.text() == "2.0 of 3 s"
    assert window.settle_view.target.text() == "target ≤ 2.00 px"
    assert "left of 30 s" in window.settle_view.timeout.text()
    assert not window.banner.dither_button.isEnabled(), "one cycle at a time"
    window.settle_graph.refresh()
    assert window.settle_graph.points() == 3
    rig.guider.finish()
    await until(lambda: window.banner.phase.text() == "IDLE", what="idle again")
    await until(lambda: window.counters.dithers.text() == "1")
    camera.frame(exposure_s=1.0)  # the next saved frame completes the dither's cost
    await until(lambda: window.settle_view.last.text().startswith("settled in 4 s"))
    assert "of imaging lost" in window.settle_view.cost.text()
    assert window.settle_view.in_range.text() == "no settle in progress"
    assert not camera.paused


async def test_a_failed_dither_is_an_alert(window: MainWindow, rig: Any, until: Any) -> None:
    rig.guider.connect()
    rig.camera()
    window.bridge.ditherNow()
    await until(lambda: rig.guider.outcome is not None)
    rig.guider.finish(OutcomeKind.SETTLE_FAILED, "timed-out waiting for guider to settle")
    await until(lambda: window.banner.phase.text() == "IDLE")
    await until(lambda: window.counters.failures.text() == "1")
    assert "dither 1: settle_failed" in window.alert_label.text()
    assert window.banner.phase.property("state") == "warn"
    assert "last dither settle failed" in window.banner.phase_detail.text()


async def test_a_refused_dither_says_why_and_when_it_is_tried_again(
    window: MainWindow, rig: Any, until: Any
) -> None:
    rig.guider.connect()
    camera = rig.camera()
    for _ in range(3):
        camera.frame()
    await until(lambda: rig.guider.outcome is not None, what="a due dither")
    rig.guider.finish(OutcomeKind.REFUSED, "PHD2 is paused")
    await until(lambda: "trying again in" in window.banner.phase_detail.text(), what="retry")
    detail = window.banner.phase_detail.text()
    assert detail.startswith(("trying again in 30 s", "trying again in 29 s"))
    assert detail.endswith(" · refused: PHD2 is paused")
    assert window.banner.phase.property("state") == "warn"
    window.banner.enable_button.click()
    await until(lambda: "trying again" not in window.banner.phase_detail.text(), what="off")
    assert window.banner.phase.property("state") == "off"


async def test_a_long_message_does_not_push_the_banner_around(
    window: MainWindow, rig: Any, until: Any
) -> None:
    window.resize(1366, 768)
    rig.guider.connect()
    rig.camera()
    await until(lambda: window.banner.phd2.text() == "PHD2: Guiding")
    QApplication.processEvents()
    phd2_x = window.banner.phd2.mapTo(window, window.banner.phd2.rect().topLeft()).x()
    window.bridge.ditherNow()
    await until(lambda: rig.guider.outcome is not None)
    reason = "timed-out waiting for guider to settle " * 4
    rig.guider.finish(OutcomeKind.SETTLE_FAILED, reason)
    await until(lambda: reason in window.banner.phase_detail.text())
    QApplication.processEvents()
    detail = window.banner.phase_detail
    assert window.banner.phd2.mapTo(window, window.banner.phd2.rect().topLeft()).x() == phd2_x
    assert detail.shown_text().endswith("…"), "cut short where the column ends"
    assert reason in detail.toolTip(), "the whole message is a hover away"


def test_dither_now_refused_says_why(window: MainWindow) -> None:
    window.banner.dither_button.click()
    assert window.statusBar().currentMessage() == "Cannot dither now: PHD2 is not connected"
    assert "Cannot dither now" in window.event_log.messages()[-1]


def test_enable_and_disable_from_button_menu_and_elsewhere(
    qtbot: Any, window: MainWindow, rig: Any
) -> None:
    window.banner.enable_button.click()
    assert rig.service.settings.enabled is False
    assert window.banner.enabled_label.text() == "Dithering OFF"
    assert window.banner.enable_button.text() == "Enable dithering"
    assert not window.enable_action.isChecked()
    assert window.settings_panel.bindings["enabled"].value() is False
    window.enable_action.trigger()
    assert rig.service.settings.enabled is True
    rig.service.set_setting("enabled", False)  # ditherctl disable
    assert window.banner.enabled_label.text() == "Dithering OFF"
    assert not window.enable_action.isChecked()
    assert [name for name, _ in rig.set_calls] == ["enabled", "enabled", "enabled"]


def test_reconnect_button(window: MainWindow, rig: Any) -> None:
    window.banner.reconnect_button.click()
    assert rig.guider.reconnects == 1


def test_the_event_log_shows_earlier_notices_and_is_bounded(
    qtbot: Any, bridge: Any, rig: Any, store: Any
) -> None:
    rig.guider.connect()
    window = MainWindow(bridge, store, tray=False)
    qtbot.addWidget(window)
    assert window.event_log.messages()[-1].endswith("connected to PHD2")
    for i in range(700):
        window.event_log.add("info", f"line {i}", 0.0)
    assert window.event_log.count() == 500
    assert window.event_log.messages()[-1].endswith("line 699")


def reds_only(colour: str) -> bool:
    c = QColor(colour)
    return c.red() >= 2 * max(c.green(), c.blue()) or c.value() < 24


def test_the_night_vision_theme_is_red_on_black() -> None:
    for name in ("text", "dim", "ok", "busy", "warn", "bad", "ra", "dec", "settle", "marker"):
        assert reds_only(getattr(RED, name)), name
    for name in ("window", "base", "plot_bg"):
        assert QColor(getattr(RED, name)).value() < 16, name
    for rgba in (RED.window_fill, RED.paused_fill):
        assert rgba[0] >= 2 * max(rgba[1], rgba[2])


def palette_colours(app: QApplication) -> list[QColor]:
    p = app.palette()
    return [
        p.color(group, role)
        for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Disabled)
        for role in (
            QPalette.ColorRole.WindowText,
            QPalette.ColorRole.Text,
            QPalette.ColorRole.ButtonText,
            QPalette.ColorRole.HighlightedText,
        )
    ]


def test_switching_theme_restyles_everything_and_is_remembered(
    qtbot: Any, window: MainWindow, bridge: Any, store: Any, qapp: QApplication
) -> None:
    window.theme_actions["red"].trigger()
    assert window.theme is RED
    assert all(reds_only(c.name()) for c in palette_colours(qapp))
    for graph in (window.settle_graph, window.guide_graph):
        assert graph.backgroundBrush().color().name() == RED.plot_bg
    assert store.load_text("theme") == "red"
    again = MainWindow(bridge, store, tray=False)
    qtbot.addWidget(again)
    assert again.theme is RED
    again.toggle_night_vision()
    assert again.theme is THEMES["dark"]
    assert store.load_text("theme") == "dark"


def test_the_layout_is_remembered(qtbot: Any, window: MainWindow, bridge: Any, store: Any) -> None:
    window.main_split.setSizes([360, 640, 350])
    window.graph_split.setSizes([200, 300])
    graphs = window.graph_split.sizes()
    window.close()
    again = MainWindow(bridge, store, tray=False)
    qtbot.addWidget(again)
    again.show()
    settings, _, right = again.main_split.sizes()
    assert (settings, right) == (360, 350), "the side panels keep their widths"
    assert again.graph_split.sizes() == graphs


def test_closing_the_window_says_so_once(qtbot: Any, window: MainWindow) -> None:
    with qtbot.waitSignal(window.closed):
        window.close()
    with qtbot.assertNotEmitted(window.closed):
        window.close()


def test_unreadable_settings_are_a_visible_warning(window: MainWindow) -> None:
    window.show_problems(["settings.ini: ditherevery must be a whole number from 1 to 1000"])
    assert window.problems.isVisible()
    assert "reset to their defaults" in window.problems_text.text()
    assert "ditherevery must be" in window.event_log.messages()[-1]


def test_unexpected_errors_are_shown(window: MainWindow) -> None:
    reporter = ErrorReporter()
    reporter.window = window
    try:
        raise ValueError("boom")  # noqa: TRY301
    except ValueError:
        reporter.excepthook(*sys.exc_info())  # type: ignore[arg-type]
    assert window.event_log.messages()[-1].endswith("internal error: ValueError: boom")
    assert "ValueError: boom" in window.alert_label.text()


@pytest.mark.parametrize("theme", ["dark", "red"])
@pytest.mark.parametrize("size", [(1366, 768), (1366, 700)])
async def test_nothing_is_clipped_on_a_small_laptop(
    window: MainWindow, rig: Any, until: Any, size: tuple[int, int], theme: str
) -> None:
    """1366x768, and what is left of it under a title bar and a taskbar."""
    window.apply_theme(THEMES[theme])
    rig.guider.connect()
    for name in ("ZWO ASI294MC Pro", "QHY268M"):
        rig.camera(name).frame()
    window.bridge.ditherNow()
    await until(lambda: window.banner.phase.text().startswith("SETTLING"))
    rig.guider.settle(3.2, 1.5)
    window.show_alert("lost the connection to PHD2 at 127.0.0.1:4400")
    window.resize(*size)
    await until(lambda: window.size().toTuple() == size, what="the size to apply")
    QApplication.sendPostedEvents()  # the layouts the last status update asked for
    hint = window.minimumSizeHint()
    assert hint.width() <= size[0]
    assert hint.height() <= size[1]
    clipped = [
        f"{type(w).__name__} {w.text()!r}: {w.width()} < {w.minimumSizeHint().width()}"
        for w in window.findChildren(QLabel) + window.findChildren(QAbstractButton)
        if w.isVisible()
        and w.text()
        and not (isinstance(w, QLabel) and w.wordWrap())
        and w.width() < w.minimumSizeHint().width()
    ]
    assert clipped == []
    for graph in (window.settle_graph, window.guide_graph):
        assert graph.height() >= 110
    assert window.cameras.table.isVisible()
    assert window.settings_panel.width() >= 240
    rig.guider.finish()


def test_the_window_has_the_bundled_icon(window: MainWindow) -> None:
    path = resource_path(ICON_NAME)
    assert path is not None
    assert path.read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert not window.windowIcon().isNull()
    assert window.windowIcon().pixmap(32, 32).width() == 32


class _Pinger(QObject):
    ping = Signal()


def test_signals_do_not_leak_references_to_true(qapp: QApplication) -> None:
    """PySide6 6.12.0 on CPython 3.11 took a reference from True on every emit, and a
    night of status ticks and plot redraws ended in "Fatal Python error: bool_dealloc";
    pyproject excludes that release. This fails if a PySide6 like it comes back."""
    pinger = _Pinger()
    before = sys.getrefcount(True)
    for _ in range(10_000):
        pinger.ping.emit()
    assert sys.getrefcount(True) > before - 100
