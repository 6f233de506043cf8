"""The main window: layout, menus, themes, alerts, and the layout that persists.

It only arranges the views and connects them to the bridge; the views show, the bridge
acts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QBrush, QCloseEvent, QColor, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from ditherapp import __version__
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.diagnostics import DiagnosticsDialog
from ditherapp.ui.event_log import EventLog
from ditherapp.ui.hook_dialog import HookDialog
from ditherapp.ui.plots import GuideGraph, SettleGraph
from ditherapp.ui.qt_utils import app_icon, signals_blocked
from ditherapp.ui.settings_panel import SettingsPanel
from ditherapp.ui.settings_store import SettingsStore
from ditherapp.ui.status_panel import CamerasView, CountersView, SettleView, StatusBanner
from ditherapp.ui.suggestions import SuggestionsPanel
from ditherapp.ui.theme import THEMES, State, Theme, apply_theme, set_state, theme_named

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1366, 768)
SPLIT_SIZES = (340, 660, 366)
"""Settings, graphs, status: the middle takes what the window gains or loses."""


class MainWindow(QMainWindow):
    closed = Signal()
    """The user closed the window: time to shut everything down."""

    def __init__(
        self,
        bridge: ServiceBridge,
        store: SettingsStore | None = None,
        *,
        theme: str | None = None,
        control_address: str = "",
        tray: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self._store = store
        self._closing = False
        self.alert_sounds = 0
        """Alerts that played the alert sound (``alertsound``)."""
        self.setWindowTitle("ditherapp")
        self.setWindowIcon(app_icon())
        self.setMinimumSize(960, 600)

        self.banner = StatusBanner(bridge)
        self.settings_panel = SettingsPanel(bridge)
        self.settle_view = SettleView()
        self.settle_graph = SettleGraph(bridge)
        self.guide_graph = GuideGraph(bridge)
        self.cameras = CamerasView()
        self.counters = CountersView()
        self.suggestions = SuggestionsPanel(bridge)
        self.event_log = EventLog()
        self.problems = self._problems_bar()
        self.diagnostics = DiagnosticsDialog(bridge, self)

        self.graph_split = QSplitter(Qt.Orientation.Vertical)
        self.graph_split.setObjectName("graphSplit")
        self.graph_split.addWidget(self.settle_graph)
        self.graph_split.addWidget(self.guide_graph)
        self.graph_split.setChildrenCollapsible(False)
        center = QWidget()
        center_layout = QVBoxLayout(center)
        center_layout.setContentsMargins(0, 0, 0, 0)
        center_layout.setSpacing(6)
        center_layout.addWidget(self.settle_view)
        center_layout.addWidget(self.graph_split, 1)

        log_box = QGroupBox("Event log")
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(4, 4, 4, 4)
        log_layout.addWidget(self.event_log)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.setSpacing(6)
        right_layout.addWidget(self.cameras)
        right_layout.addWidget(self.counters)
        right_layout.addWidget(self.suggestions)
        right_layout.addWidget(log_box, 1)

        settings_box = QGroupBox("Settings")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.setContentsMargins(2, 4, 2, 2)
        settings_layout.addWidget(self.settings_panel)

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.setObjectName("mainSplit")
        self.main_split.addWidget(settings_box)
        self.main_split.addWidget(center)
        self.main_split.addWidget(right)
        self.main_split.setStretchFactor(0, 0)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setStretchFactor(2, 0)
        self.main_split.setSizes(list(SPLIT_SIZES))

        body = QWidget()
        body_layout = QVBoxLayout(body)
        body_layout.setContentsMargins(0, 0, 0, 0)
        body_layout.setSpacing(0)
        body_layout.addWidget(self.problems)
        body_layout.addWidget(self.banner)
        inner = QWidget()
        inner_layout = QVBoxLayout(inner)
        inner_layout.setContentsMargins(6, 6, 6, 4)
        inner_layout.addWidget(self.main_split)
        body_layout.addWidget(inner, 1)
        self.setCentralWidget(body)

        self.alert_label = QLabel("")
        self.alert_label.setObjectName("alertLabel")
        self.statusBar().addWidget(self.alert_label, 1)
        self.control_label = QLabel(f"control socket {control_address}" if control_address else "")
        self.control_label.setObjectName("caption")
        self.statusBar().addPermanentWidget(self.control_label)
        self.statusBar().setSizeGripEnabled(False)

        self._build_menus()
        self.tray = self._build_tray() if tray else None

        bridge.statusChanged.connect(self.show_status)
        bridge.settingChanged.connect(self._setting_changed)
        bridge.notice.connect(self.event_log.add)
        bridge.alert.connect(self.show_alert)
        bridge.commandFailed.connect(self.show_refusal)
        bridge.ditherRecorded.connect(self.settle_view.show_record)
        for level, message, wall in bridge.notices():
            self.event_log.add(level, message, wall)

        self.theme = theme_named(theme or (store.load_text("theme", "dark") if store else None))
        self.apply_theme(self.theme, remember=False)
        self.resize(self._default_size())
        self._restore_layout()
        bridge.refresh_status()

    # ---------------------------------------------------------------- building

    def _problems_bar(self) -> QFrame:
        bar = QFrame()
        bar.setObjectName("problems")
        layout = QHBoxLayout(bar)
        layout.setContentsMargins(10, 4, 6, 4)
        self.problems_text = QLabel("")
        self.problems_text.setWordWrap(True)
        self.problems_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        dismiss = QPushButton("Dismiss")
        dismiss.clicked.connect(bar.hide)
        layout.addWidget(self.problems_text, 1)
        layout.addWidget(dismiss, 0, Qt.AlignmentFlag.AlignTop)
        bar.hide()
        return bar

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)

        dither_menu = bar.addMenu("&Dither")
        self.dither_action = QAction("&Dither now", self)
        self.dither_action.setShortcut(QKeySequence("Ctrl+D"))
        self.dither_action.triggered.connect(self.bridge.ditherNow)
        self.enable_action = QAction("&Enable dithering", self)
        self.enable_action.setCheckable(True)
        self.enable_action.setChecked(self.bridge.settings.enabled)
        self.enable_action.setShortcut(QKeySequence("Ctrl+E"))
        self.enable_action.toggled.connect(self._enable_toggled)
        reconnect = QAction("&Reconnect PHD2", self)
        reconnect.triggered.connect(self.bridge.reconnectPhd2)
        dither_menu.addActions([self.dither_action, self.enable_action, reconnect])

        view_menu = bar.addMenu("&View")
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name, theme in THEMES.items():
            action = QAction(theme.title, self)
            action.setCheckable(True)
            action.triggered.connect(lambda _=False, t=theme: self.apply_theme(t))
            group.addAction(action)
            theme_menu.addAction(action)
            self.theme_actions[name] = action
        night = QAction("Toggle &night vision", self)
        night.setShortcut(QKeySequence("Ctrl+N"))
        night.triggered.connect(self.toggle_night_vision)
        view_menu.addAction(night)
        reset = QAction("&Reset layout", self)
        reset.triggered.connect(self.reset_layout)
        view_menu.addAction(reset)
        view_menu.addSeparator()
        diagnostics = QAction("D&iagnostics...", self)
        diagnostics.setShortcut(QKeySequence("Ctrl+I"))
        diagnostics.setToolTip("What the SharpCap hook found when it checked SharpCap")
        diagnostics.triggered.connect(self.show_diagnostics)
        view_menu.addAction(diagnostics)

        help_menu = bar.addMenu("&Help")
        hook = QAction("&SharpCap hook script...", self)
        hook.setToolTip("Where the hook script is; copy its path, or save a copy for SharpCap")
        hook.triggered.connect(self.show_hook)
        help_menu.addAction(hook)
        about = QAction("&About ditherapp", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    def _build_tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        tray = QSystemTrayIcon(app_icon(), self)
        tray.setToolTip("ditherapp")
        menu = QMenu(self)
        menu.addAction("Show window", self.showNormal)
        menu.addAction("Dither now", self.bridge.ditherNow)
        menu.addSeparator()
        menu.addAction("Quit", self.close)
        tray.setContextMenu(menu)
        tray.activated.connect(self._raise_from_tray)
        tray.show()
        return tray

    def _raise_from_tray(self) -> None:
        self.showNormal()
        self.raise_()
        self.activateWindow()

    # ---------------------------------------------------------------- showing

    def show_status(self, snap: Mapping[str, Any]) -> None:
        every = self.bridge.settings.ditherevery
        self.banner.show_status(snap)
        self.settle_view.show_status(snap)
        self.cameras.show_cameras(list(snap.get("cameras", [])), every=every)
        self.counters.show_status(snap, every)
        self.dither_action.setEnabled(snap.get("phase") == "idle")

    def _setting_changed(self, name: str, value: object) -> None:
        if name == "enabled":
            with signals_blocked(self.enable_action):
                self.enable_action.setChecked(bool(value))
            self.banner.show_enabled(bool(value))
        elif name in ("ditherevery", "ditherminutes"):
            self.banner.show_enabled(self.bridge.settings.enabled)

    def _enable_toggled(self, checked: bool) -> None:
        self.bridge.setEnabled(checked)

    def show_alert(self, message: str) -> None:
        stamp = time.strftime("%H:%M", time.localtime())
        self.alert_label.setText(f"⚠ {stamp} {message}")
        set_state(self.alert_label, State.BAD)
        if self.tray is not None and self.tray.supportsMessages():
            self.tray.showMessage("ditherapp", message, QSystemTrayIcon.MessageIcon.Warning)
        if self.bridge.settings.alertsound:
            self.alert_sounds += 1
            QApplication.beep()

    def show_diagnostics(self) -> None:
        self.diagnostics.view.refresh()
        self.diagnostics.show()
        self.diagnostics.raise_()
        self.diagnostics.activateWindow()

    def show_hook(self) -> HookDialog:
        dialog = HookDialog(self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    def show_refusal(self, message: str) -> None:
        self.statusBar().showMessage(message, 10_000)
        self.event_log.add("warning", message, time.time())

    def show_problems(self, problems: list[str]) -> None:
        """Settings that could not be read (a corrupt INI file): shown until dismissed."""
        if not problems:
            return
        text = "Some settings could not be read and were reset to their defaults:\n"
        text += "\n".join(f"• {p}" for p in problems)
        self.problems_text.setText(text)
        self.problems.show()
        for problem in problems:
            self.event_log.add("warning", f"settings: {problem}", time.time())

    def show_error(self, text: str) -> None:
        """An unexpected error (the excepthook): logged, and told to the user."""
        self.event_log.add("error", f"internal error: {text}", time.time())
        self.alert_label.setText(f"⚠ internal error: {text}")
        set_state(self.alert_label, State.BAD)

    # ---------------------------------------------------------------- themes, layout

    def apply_theme(self, theme: Theme, *, remember: bool = True) -> None:
        self.theme = theme
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, theme)
        self.settle_graph.apply_theme(theme)
        self.guide_graph.apply_theme(theme)
        self.event_log.apply_theme(theme)
        self.cameras.set_colours({s: QBrush(QColor(theme.colour(s))) for s in State})
        self.diagnostics.view.set_colours({s: QBrush(QColor(theme.colour(s))) for s in State})
        self.theme_actions[theme.name].setChecked(True)
        if remember and self._store is not None:
            self._store.save_text("theme", theme.name)
        self.bridge.refresh_status()

    def toggle_night_vision(self) -> None:
        self.apply_theme(THEMES["dark" if self.theme.name == "red" else "red"])

    def _restore_layout(self) -> None:
        if self._store is None:
            return
        geometry = self._store.load_bytes("geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        for split in (self.main_split, self.graph_split):
            saved = self._store.load_bytes(split.objectName())
            if saved is not None:
                split.restoreState(saved)

    def save_layout(self) -> None:
        if self._store is None:
            return
        self._store.save_bytes("geometry", self.saveGeometry())
        for split in (self.main_split, self.graph_split):
            self._store.save_bytes(split.objectName(), split.saveState())

    def reset_layout(self) -> None:
        self.main_split.setSizes(list(SPLIT_SIZES))
        self.graph_split.setSizes([1, 1])
        self.resize(self._default_size())

    def _default_size(self) -> QSize:
        size = QSize(*DEFAULT_SIZE)
        screen = self.screen()
        if screen is not None:
            size = size.boundedTo(screen.availableGeometry().size())
        return size

    def save_screenshot(self, path: Path) -> bool:
        for graph in (self.settle_graph, self.guide_graph):
            graph.refresh()
        QApplication.sendPostedEvents()  # pending layouts, so the picture is current
        ok = self.grab().save(str(path), "PNG")
        log.info("screenshot %s %s", path, "saved" if ok else "could not be saved")
        return bool(ok)

    def _about(self) -> None:
        QMessageBox.about(
            self,
            "About ditherapp",
            f"<b>ditherapp {__version__}</b><p>Pauses saving in SharpCap, dithers through "
            "PHD2, waits for the settle, and resumes saving.</p>",
        )

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing:
            self._closing = True
            self.save_layout()
            if self.tray is not None:
                self.tray.hide()
            self.closed.emit()
        event.accept()
