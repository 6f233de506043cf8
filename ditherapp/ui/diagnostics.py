"""The Diagnostics view: what each camera agent found when it checked SharpCap for itself
(versions, the members it uses, whether pausing really stops saving, the capture folder),
and the frames the user should look at (saved while paused, or with bad guiding).

The same facts as ``ditherctl doctor`` and ``ditherctl frames``; it reads them through
the bridge and holds nothing of its own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.theme import State, set_state

VERDICT = {
    "ok": ("ok", State.OK),
    "warn": ("warning", State.WARN),
    "fail": ("FAILED", State.BAD),
    "unknown": ("not known yet", State.OFF),
}
CHECK_TITLES = {
    "sharpcap": "SharpCap",
    "python": "Python",
    "camera": "Camera",
    "members": "Members the hook uses",
    "frame_counter": "Saved-frame counter",
    "binning": "Binning",
    "pixel_size": "Pixel size",
    "pause_stops_saving": "Pausing stops saving",
    "capture_folder": "Capture folder",
}
FRAME_COLUMNS = ("Time", "Camera", "SharpCap frame", "What", "Why / file")
MAX_FRAME_ROWS = 500


class DiagnosticsView(QWidget):
    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._colours: dict[State, Any] = {}
        self.summary = QLabel("")
        self.summary.setObjectName("bigValue")
        self.refresh_button = QPushButton("Check again")
        self.refresh_button.setToolTip("Read the latest reports (agents report by themselves).")
        self.refresh_button.clicked.connect(self.refresh)
        self.checks = QTreeWidget()
        self.checks.setColumnCount(3)
        self.checks.setHeaderLabels(("Check", "Verdict", "Detail"))
        self.checks.setRootIsDecorated(True)
        self.checks.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.checks.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.checks.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.frames_caption = QLabel("Frames to look at")
        self.frames_caption.setObjectName("caption")
        self.frames = QTableWidget(0, len(FRAME_COLUMNS))
        self.frames.setHorizontalHeaderLabels(FRAME_COLUMNS)
        self.frames.verticalHeader().setVisible(False)
        self.frames.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.frames.setWordWrap(False)
        self.frames.setShowGrid(False)
        frame_header = self.frames.horizontalHeader()
        for column in range(len(FRAME_COLUMNS) - 1):
            frame_header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        frame_header.setStretchLastSection(True)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.checks, 3)
        layout.addWidget(self.frames_caption)
        layout.addWidget(self.frames, 2)
        bridge.diagnosticsChanged.connect(self.refresh)
        self.refresh()

    def set_colours(self, colours: Mapping[State, Any]) -> None:
        self._colours = dict(colours)
        self.refresh()

    def refresh(self) -> None:
        report = self._bridge.diagnostics()
        self._show_checks(report)
        self._show_frames(self._bridge.frame_records())

    # ---------------------------------------------------------------- checks

    def _show_checks(self, report: Mapping[str, Any]) -> None:
        self.checks.clear()
        failed = unknown = 0
        cameras = list(report.get("cameras") or [])
        for cam in cameras:
            selfcheck = cam.get("selfcheck")
            item = QTreeWidgetItem(self.checks, [self._camera_title(cam, selfcheck), "", ""])
            item.setFirstColumnSpanned(True)
            font = item.font(0)
            font.setBold(True)
            item.setFont(0, font)
            if not selfcheck:
                unknown += 1
                self._check_row(item, "Self-check", "unknown", "this agent does not check itself")
            else:
                for check in selfcheck.get("checks") or []:
                    verdict = str(check.get("verdict", "unknown"))
                    failed += verdict == "fail"
                    name = str(check.get("name", "?"))
                    self._check_row(
                        item, CHECK_TITLES.get(name, name), verdict, str(check.get("detail", ""))
                    )
                last = (selfcheck.get("capture") or {}).get("last_file")
                if last:
                    self._check_row(item, "Last file saved", "ok", str(last))
            item.setExpanded(True)
        suspects = len(report.get("suspect_frames") or [])
        if not cameras:
            text, state = "No camera agent connected: load the SharpCap hook", State.WARN
        elif failed or suspects:
            parts = []
            if failed:
                parts.append(f"{failed} check{'s' if failed != 1 else ''} FAILED")
            if suspects:
                parts.append(f"{suspects} suspect frame{'s' if suspects != 1 else ''}")
            text, state = " · ".join(parts), State.BAD
        elif unknown:
            text, state = "No failure; some agents do not check themselves", State.OK
        else:
            text, state = "All checks passed", State.OK
        self.summary.setText(text)
        set_state(self.summary, state)

    @staticmethod
    def _camera_title(cam: Mapping[str, Any], selfcheck: Mapping[str, Any] | None) -> str:
        parts = [f"{cam.get('name')} ({cam.get('id')})"]
        if cam.get("agent"):
            parts.append(str(cam["agent"]))
        if selfcheck and selfcheck.get("runtime"):
            parts.append(str(selfcheck["runtime"]))
        return " · ".join(parts)

    def _check_row(self, parent: QTreeWidgetItem, name: str, verdict: str, detail: str) -> None:
        word, state = VERDICT.get(verdict, VERDICT["unknown"])
        row = QTreeWidgetItem(parent, [name, word, detail])
        row.setToolTip(2, detail)
        brush = self._colours.get(state)
        if brush is not None:
            row.setForeground(1, brush)
        if verdict == "fail":
            font = row.font(1)
            font.setBold(True)
            row.setFont(1, font)

    # ---------------------------------------------------------------- frames

    def _show_frames(self, records: list[dict[str, Any]]) -> None:
        rows = records[-MAX_FRAME_ROWS:][::-1]  # newest first
        self.frames_caption.setText(
            f"Frames to look at ({len(records)}): saved while paused, or with bad guiding"
            if records
            else "Frames to look at: none this session"
        )
        self.frames.setRowCount(len(rows))
        for r, record in enumerate(rows):
            t = record.get("time")
            when = (
                time.strftime("%H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else ""
            )
            suspect = record.get("kind") == "suspect_frame"
            what = (
                "saved while paused"
                if suspect
                else ("saved, bad guiding" if record.get("saved") else "held back")
            )
            why = (
                str(record.get("file") or "") if suspect else "; ".join(record.get("reasons") or [])
            )
            count = record.get("count")
            cells = (when, str(record.get("camera", "")), "" if count is None else str(count), what)
            for column, value in enumerate((*cells, why)):
                item = QTableWidgetItem(value)
                if column == 3:
                    state = (
                        State.BAD
                        if suspect
                        else (State.WARN if record.get("saved") else State.GUARD)
                    )
                    brush = self._colours.get(state)
                    if brush is not None:
                        item.setForeground(brush)
                self.frames.setItem(r, column, item)


class DiagnosticsDialog(QDialog):
    """The view in a window of its own (View > Diagnostics), left open beside the main one."""

    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("ditherapp: Diagnostics")
        self.view = DiagnosticsView(bridge)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        self.resize(820, 560)
