"""Read-only views of the service's status: the banner with the cycle phase and PHD2,
the settle progress, the cameras and the counters. Each takes the snapshot dict the
bridge emits and shows it; none of them holds the service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ditherapp.ui import format as fmt
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.qt_utils import ElidedLabel
from ditherapp.ui.theme import State, set_state

Snapshot = Mapping[str, Any]

PHASE_TEXT = {
    "idle": ("IDLE", "cameras saving frames"),
    "pausing": ("PAUSING", "waiting for every camera to stop saving"),
    "dithering": ("DITHERING", "PHD2 is moving the lock position"),
    "settling": ("SETTLING", "waiting for guiding to settle"),
    "resuming": ("RESUMING", "cameras starting to save again"),
    "guarding": ("GUARDING", "guiding is bad, saving paused"),
}

PHD2_STATE_TEXT = {
    "Guiding": ("Guiding", State.OK),
    "Looping": ("Looping, not guiding", State.WARN),
    "Stopped": ("Stopped", State.WARN),
    "Selected": ("Star selected, not guiding", State.WARN),
    "Calibrating": ("Calibrating", State.BUSY),
    "LostLock": ("Lost the guide star", State.BAD),
    "Paused": ("Paused", State.WARN),
    "Unknown": ("Connected", State.WARN),
}

BAD_OUTCOMES = frozenset({"settle_failed", "timed_out", "lost"})


def _label(text: str = "", name: str = "") -> QLabel:
    label = QLabel(text)
    if name:
        label.setObjectName(name)
    return label


def _detail() -> ElidedLabel:
    """The small line under a banner title: as long as it likes, never wider than its
    column (the whole text is in the tooltip and the event log)."""
    label = ElidedLabel()
    label.setObjectName("detail")
    return label


def _waiting_to_retry(snap: Snapshot) -> bool:
    """PHD2 refused the last dither and the next try waits (the machine's back-off)."""
    last = snap.get("last_outcome") or {}
    return (
        snap.get("enabled", True) is not False
        and last.get("outcome") == "refused"
        and isinstance(snap.get("retry_in_s"), int | float)
    )


class StatusBanner(QFrame):
    """The cycle phase, PHD2 and the big buttons: what a user reads from across the room."""

    def __init__(self, bridge: ServiceBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self._bridge = bridge
        self._enabled = True

        self.phase = _label("IDLE", "phaseLabel")
        self.phase_detail = _detail()
        self.phd2 = _label("PHD2", "phd2Label")
        self.phd2_detail = _detail()
        self.enabled_label = _label("", "enabledLabel")
        self.enabled_detail = _detail()
        self.phase.setMinimumWidth(self.phase.fontMetrics().horizontalAdvance("DITHERING 0000 s"))

        self.dither_button = QPushButton("Dither now")
        self.dither_button.setObjectName("primary")
        self.dither_button.setToolTip("Start a dither cycle now (pause, dither, settle, resume).")
        self.enable_button = QPushButton("Disable dithering")
        self.enable_button.setToolTip(
            "Stop or restart automatic dithering. Frames are still counted."
        )
        self.reconnect_button = QPushButton("Reconnect PHD2")
        self.reconnect_button.setToolTip("Drop the PHD2 connection and connect again now.")
        self.dither_button.clicked.connect(bridge.ditherNow)
        self.enable_button.clicked.connect(lambda: bridge.setEnabled(not self._enabled))
        self.reconnect_button.clicked.connect(bridge.reconnectPhd2)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 6)
        layout.setSpacing(20)
        layout.addLayout(self._column(self.phase, self.phase_detail), 3)
        layout.addLayout(self._column(self.phd2, self.phd2_detail), 4)
        layout.addLayout(self._column(self.enabled_label, self.enabled_detail), 2)
        buttons = QGridLayout()
        buttons.setSpacing(6)
        buttons.addWidget(self.dither_button, 0, 0, 1, 2)
        buttons.addWidget(self.enable_button, 1, 0)
        buttons.addWidget(self.reconnect_button, 1, 1)
        layout.addLayout(buttons, 0)
        self.show_enabled(bridge.settings.enabled)

    @staticmethod
    def _column(top: QWidget, bottom: QWidget) -> QVBoxLayout:
        column = QVBoxLayout()
        column.setSpacing(0)
        column.addWidget(top)
        column.addWidget(bottom)
        return column

    def show_enabled(self, enabled: bool) -> None:
        self._enabled = enabled
        self.enable_button.setText("Disable dithering" if enabled else "Enable dithering")
        self.enabled_label.setText("Dithering ON" if enabled else "Dithering OFF")
        set_state(self.enabled_label, State.OK if enabled else State.WARN)
        s = self._bridge.settings
        every = f"every {s.ditherevery} frame{'s' if s.ditherevery != 1 else ''}"
        if s.ditherminutes > 0:
            every += f" or {s.ditherminutes:g} min"
        self.enabled_detail.setText(every if enabled else "frames are only counted")

    def show_status(self, snap: Snapshot) -> None:
        phase = str(snap.get("phase", "idle"))
        title, detail = PHASE_TEXT.get(phase, (phase.upper(), ""))
        elapsed = snap.get("phase_s")
        if phase != "idle" and isinstance(elapsed, int | float):
            title = f"{title} {round(elapsed)} s"
        state = State.OK if phase == "idle" else State.BUSY
        guard = snap.get("guard") or {}
        if phase == "guarding":
            # The frame guard's own words and colour: not a green IDLE.
            state = State.GUARD
            title = "GUARDING"
            detail = f"{guard.get('condition') or 'guiding is bad'}, saving paused"
            held = guard.get("holding_s")
            if isinstance(held, int | float):
                detail += f" · {fmt.duration(held)} of at most {fmt.duration(guard.get('max_s'))}"
        if phase == "idle":
            detail = self._idle_detail(snap, detail)
            last = snap.get("last_outcome") or {}
            if (
                last.get("outcome") in BAD_OUTCOMES
                or _waiting_to_retry(snap)
                or guard.get("let_go")
            ):
                state = State.WARN
        if not snap.get("enabled", True) and phase == "idle":
            state = State.OFF
        self.phase.setText(title)
        self.phase_detail.setText(detail)
        set_state(self.phase, state)
        if snap.get("enabled", True) != self._enabled:
            self.show_enabled(bool(snap.get("enabled", True)))
        self._show_phd2(snap.get("phd2") or {})
        if phase == "guarding" and (snap.get("phd2") or {}).get("connected"):
            set_state(self, State.GUARD)
        self.dither_button.setEnabled(phase == "idle")

    @staticmethod
    def _idle_detail(snap: Snapshot, detail: str) -> str:
        guard = snap.get("guard") or {}
        if guard.get("let_go"):
            return f"frame guard let go, saving anyway: {guard.get('condition')}"
        last = snap.get("last_outcome") or {}
        if last.get("outcome") in BAD_OUTCOMES:
            return f"last dither {last['outcome'].replace('_', ' ')}: {last.get('message', '')}"
        if snap.get("skip_reason"):
            return f"dither due, waiting: {snap['skip_reason']}"
        if _waiting_to_retry(snap):
            why = last.get("message") or "no reason given"
            return f"trying again in {fmt.duration(snap['retry_in_s'])} · refused: {why}"
        cameras = [c for c in snap.get("cameras", []) if c.get("connected")]
        if not cameras:
            return "no camera connected"
        to_next = max(int(c.get("frames_to_next", 0)) for c in cameras)
        return f"{detail} · next dither in {to_next} frame{'s' if to_next != 1 else ''}"

    def _show_phd2(self, link: Mapping[str, Any]) -> None:
        host, port = link.get("host", "?"), link.get("port", "?")
        where = f"{host} · instance {link.get('instance', 1)} · port {port}"
        backend = {"event": "event server", "legacy": "legacy server"}.get(
            str(link.get("backend", "")), str(link.get("backend", ""))
        )
        if link.get("connected"):
            text, state = PHD2_STATE_TEXT.get(str(link.get("state")), ("Connected", State.WARN))
            if link.get("settling"):
                text, state = f"{text}, settling", State.BUSY
            version = f" · PHD2 {link['version']}" if link.get("version") else ""
            detail = f"{where} · {backend}{version}"
        else:
            text, state = "Not connected", State.BAD
            retry = link.get("retry_in_s")
            error = str(link.get("last_error") or "")
            detail = f"retrying in {fmt.duration(retry)}" if retry is not None else "connecting"
            detail += f" · {where}"
            if error:
                detail += f" · {error}"
        self.phd2.setText(f"PHD2: {text}")
        self.phd2_detail.setText(detail)
        self.phd2_detail.setToolTip(detail)
        set_state(self.phd2, state)
        set_state(self, State.BAD if state is State.BAD else None)


FIRST_FRAME_WARN = 1.2
"""A first saved frame guided this much worse than the baseline is shown as a warning."""


def cost_text(record: Mapping[str, Any]) -> str:
    """ "14.2 s of imaging lost; first frame 0.31 px RMS (baseline 0.28 px)"."""
    parts = []
    lost = record.get("lost_imaging_s")
    if isinstance(lost, int | float):
        parts.append(f"{fmt.duration(lost)} of imaging lost")
    first, base = record.get("first_frame_rms"), record.get("baseline_rms")
    if isinstance(first, int | float):
        frame = f"first frame {first:.2f} px RMS"
        if isinstance(base, int | float):
            frame += f" (baseline {base:.2f} px)"
        parts.append(frame)
    return "; ".join(parts) or fmt.NONE


class SettleView(QGroupBox):
    """The settle in progress: time in range against the settle time, the distance
    against the target, and the time left before the settle times out."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settle", parent)
        self.in_range = QProgressBar()
        self.in_range.setTextVisible(True)
        self.distance = _label(fmt.NONE, "bigValue")
        self.target = _label("", "caption")
        self.timeout = QProgressBar()
        self.timeout.setTextVisible(True)
        self.last = _label(fmt.NONE)
        self.cost = _label(fmt.NONE)
        self.cost.setToolTip(
            "Imaging time lost: from the end of the frame that triggered the dither to the "
            "start of the next saved frame. Guiding: the RMS distance from the lock position "
            "during that first saved frame, against the minute before the dither."
        )
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 4, 8, 6)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(4)
        grid.addWidget(_label("Time in range", "caption"), 0, 0)
        grid.addWidget(self.in_range, 0, 1, 1, 3)
        grid.addWidget(_label("Distance", "caption"), 1, 0)
        grid.addWidget(self.distance, 1, 1)
        grid.addWidget(self.target, 1, 2)
        grid.addWidget(_label("Timeout", "caption"), 2, 0)
        grid.addWidget(self.timeout, 2, 1, 1, 3)
        grid.addWidget(_label("Last dither", "caption"), 3, 0)
        grid.addWidget(self.last, 3, 1, 1, 3)
        grid.addWidget(_label("It cost", "caption"), 4, 0)
        grid.addWidget(self.cost, 4, 1, 1, 3)
        grid.setColumnStretch(3, 1)
        self._idle()

    def _idle(self) -> None:
        for bar in (self.in_range, self.timeout):
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat("no settle in progress")
            set_state(bar, None)
        self.distance.setText(fmt.NONE)
        set_state(self.distance, State.OFF)
        self.target.setText("")

    def show_record(self, record: Mapping[str, Any]) -> None:
        outcome = str(record.get("outcome", "")).replace("_", " ")
        settle_s = record.get("settle_s")
        text = outcome
        if isinstance(settle_s, int | float):
            text += f" in {fmt.duration(settle_s)}"
        rule = record.get("settle_rule")
        if rule in fmt.RULE_WORDS:
            text += f" ({fmt.RULE_WORDS[rule]})"
        lost = record.get("lost_s")
        if isinstance(lost, int | float):
            text += f", saving paused {fmt.duration(lost)}"
        self.last.setText(text)
        set_state(self.last, State.WARN if record.get("outcome") in BAD_OUTCOMES else None)
        self.cost.setText(cost_text(record))
        first, base = record.get("first_frame_rms"), record.get("baseline_rms")
        worse = (
            isinstance(first, int | float)
            and isinstance(base, int | float)
            and base > 0
            and first > FIRST_FRAME_WARN * base
        )
        set_state(self.cost, State.WARN if worse else None)

    def show_status(self, snap: Snapshot) -> None:
        settle = snap.get("settle")
        if not settle:
            self._idle()
            return
        need = float(settle.get("settle_time_s") or 0.0)
        have = float(settle.get("in_range_s") or 0.0)
        target = float(settle.get("target_px") or 0.0)
        timeout = float(settle.get("timeout_s") or 0.0)
        elapsed = float(settle.get("elapsed_s") or 0.0)
        distance = settle.get("distance")

        self.in_range.setRange(0, max(1, round(need * 10)))
        self.in_range.setValue(min(round(have * 10), self.in_range.maximum()))
        self.in_range.setFormat(f"{have:.1f} of {need:g} s")
        set_state(self.in_range, State.OK if have > 0 else State.BUSY)

        if isinstance(distance, int | float):
            self.distance.setText(fmt.pixels(distance))
            set_state(self.distance, State.OK if distance <= target else State.WARN)
        else:
            self.distance.setText(fmt.NONE)
            set_state(self.distance, State.OFF)
        self.target.setText(f"target ≤ {target:.2f} px")

        left = max(0.0, timeout - elapsed)
        self.timeout.setRange(0, max(1, round(timeout * 10)))
        self.timeout.setValue(round(left * 10))
        self.timeout.setFormat(f"{fmt.duration(left)} left of {fmt.duration(timeout)}")
        set_state(self.timeout, State.BAD if left < 0.2 * timeout else State.BUSY)


CAMERA_COLUMNS = ("Camera", "State", "Saved", "Next")


class CamerasView(QGroupBox):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Cameras", parent)
        self.table = QTableWidget(0, len(CAMERA_COLUMNS))
        self.table.setHorizontalHeaderLabels(CAMERA_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(CAMERA_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.empty = _label("No camera connected. Load the SharpCap hook script.", "caption")
        self.empty.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.empty)
        layout.addWidget(self.table)
        self._colours: dict[State, Any] = {}
        self.show_cameras([], every=1)

    def set_colours(self, colours: Mapping[State, Any]) -> None:
        """Brushes per state (the table's items are not styled by the style sheet)."""
        self._colours = dict(colours)

    def show_cameras(self, cameras: list[Mapping[str, Any]], *, every: int) -> None:
        self.empty.setVisible(not cameras)
        self.table.setVisible(bool(cameras))
        if self.table.rowCount() != len(cameras):
            self.table.setRowCount(len(cameras))
        for row, cam in enumerate(cameras):
            text, state = camera_state(cam)
            to_next = int(cam.get("frames_to_next", 0))
            cells = (
                str(cam.get("name", "?")),
                text,
                fmt.count(int(cam.get("frames_saved", 0))),
                f"in {to_next}" if cam.get("connected") else fmt.NONE,
            )
            for column, value in enumerate(cells):
                item = self.table.item(row, column)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(row, column, item)
                if item.text() != value:
                    item.setText(value)
                if column == 0:
                    since = int(cam.get("frames_since_last", 0))
                    item.setToolTip(
                        f"{cam.get('name')} ({cam.get('id')}): {since} of {every} frames "
                        "saved since the last dither"
                    )
                if column == 3:
                    item.setToolTip("Saved frames until this camera is due for a dither")
                if column == 1 and state in self._colours:
                    item.setForeground(self._colours[state])
        visible_rows = max(1, min(len(cameras), 4))
        height = self.table.horizontalHeader().height() + 4
        height += sum(self.table.rowHeight(r) for r in range(visible_rows))
        self.table.setFixedHeight(height)


def camera_state(cam: Mapping[str, Any]) -> tuple[str, State]:
    if not cam.get("connected"):
        return "disconnected", State.BAD
    if cam.get("paused") and cam.get("guarded"):
        return "paused (guard)", State.GUARD
    if cam.get("paused"):
        by = str(cam.get("paused_by") or "app")
        text = {"app": "paused (dither)", "user": "paused (by you)"}.get(by, f"paused ({by})")
        return text, State.BUSY if by == "app" else State.WARN
    if not cam.get("capturing"):
        return "not capturing", State.WARN
    return "saving", State.OK


class CountersView(QGroupBox):
    """Frames since the last dither, frames saved, dithers, failures, time lost."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Frames and dithers", parent)
        self.since = _label(fmt.NONE, "bigValue")
        self.saved = _label(fmt.NONE)
        self.dithers = _label(fmt.NONE)
        self.failures = _label(fmt.NONE)
        self.skipped = _label(fmt.NONE)
        self.mean_settle = _label(fmt.NONE)
        self.lost = _label(fmt.NONE)
        self.guarded = _label(fmt.NONE)
        self.suspect = _label(fmt.NONE)
        self.lost_each = _label(fmt.NONE)
        self.lost_each.setToolTip(
            "Mean imaging time a dither cost: from the end of the frame that triggered it to "
            "the start of the next saved frame."
        )
        grid = QGridLayout(self)
        grid.setContentsMargins(8, 4, 8, 6)
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(2)
        grid.addWidget(_label("Since last dither", "caption"), 0, 0)
        grid.addWidget(self.since, 0, 1, 1, 3)
        rows = (
            ("Frames saved", self.saved, "Dithers", self.dithers),
            ("Failures", self.failures, "Skipped", self.skipped),
            ("Mean settle", self.mean_settle, "Time lost", self.lost),
            ("Guarded", self.guarded, "Suspect", self.suspect),
            ("Lost per dither", self.lost_each, "", QLabel("")),
        )
        for r, (a, wa, b, wb) in enumerate(rows, start=1):
            grid.addWidget(_label(a, "caption"), r, 0)
            grid.addWidget(wa, r, 1)
            grid.addWidget(_label(b, "caption"), r, 2)
            grid.addWidget(wb, r, 3)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        self.lost.setToolTip("Imaging time lost to dithering: how long saving was paused.")
        self.skipped.setToolTip("Dithers that were due but not started (PHD2 not guiding, ...).")
        self.guarded.setToolTip(
            "Frames that saw bad guiding: held back by the frame guard, and (after the slash) "
            "saved anyway. Each is in the ledger (ditherctl frames)."
        )
        self.suspect.setToolTip(
            "Frames SharpCap may have saved while saving was paused (ditherctl frames "
            "--suspect): see the Diagnostics view."
        )

    def show_status(self, snap: Snapshot, every: int) -> None:
        cameras = [c for c in snap.get("cameras", []) if c.get("connected")]
        if cameras:
            since = min(int(c.get("frames_since_last", 0)) for c in cameras)
            self.since.setText(f"{since} / {every} frames")
        else:
            self.since.setText(f"{fmt.NONE} / {every} frames")
        every_camera = snap.get("cameras", [])
        self.saved.setText(fmt.count(sum(int(c.get("frames_saved", 0)) for c in every_camera)))
        self.dithers.setText(fmt.count(snap.get("dithers")))
        failures = int(snap.get("failures") or 0)
        self.failures.setText(fmt.count(failures))
        set_state(self.failures, State.BAD if failures else None)
        self.skipped.setText(fmt.count(snap.get("skipped")))
        self.mean_settle.setText(fmt.duration(snap.get("mean_settle_s")))
        self.lost.setText(fmt.duration(snap.get("lost_s")))
        guard = snap.get("guard") or {}
        held, saved = int(guard.get("guarded_frames") or 0), int(guard.get("unguarded_saved") or 0)
        self.guarded.setText(
            f"{fmt.count(held)} / {fmt.count(saved)}" if saved else fmt.count(held)
        )
        set_state(self.guarded, State.GUARD if held else (State.WARN if saved else None))
        suspect = int(guard.get("suspect_frames") or 0)
        self.suspect.setText(fmt.count(suspect))
        set_state(self.suspect, State.BAD if suspect else None)
        self.lost_each.setText(fmt.duration(snap.get("mean_lost_imaging_s")))
