"""The one object between the service and the window.

It subscribes to the ``DitherService`` and re-emits what happens as typed Qt signals,
and it carries the window's commands to the service. Widgets connect to its signals and
call its slots; none of them holds the service or a socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from ditherapp.core import machine as m
from ditherapp.core.phd2 import events as ev
from ditherapp.core.settings import DitherSettings, SettingError
from ditherapp.core.settle_advice import GroupAdvice
from ditherapp.net.service import (
    DitherRecorded,
    DitherRefused,
    DitherService,
    FrameRecorded,
    Notice,
    Phd2EventSeen,
    SelfCheckChanged,
    ServiceEvent,
    SettingChanged,
    StatusChanged,
)

STATUS_TICK_MS = 250
"""Countdowns and elapsed times tick at this rate even when nothing else changes."""


class ServiceBridge(QObject):
    statusChanged = Signal(object)
    """The service's ``snapshot()`` dict: PHD2 link, phase, settle, cameras, counters."""
    settingChanged = Signal(str, object)
    """A setting's value now in force, whoever changed it (window, ditherctl, a file)."""
    guideStep = Signal(float, float, float)
    """Wall time, RA and Dec error in guide-camera pixels (RADistanceRaw, DECDistanceRaw)."""
    settleBegun = Signal(float, float, float)
    """PHD2 started settling: target (px), time in range needed (s), timeout (s)."""
    settleSample = Signal(float, float, float)
    """Seconds since the settle began, distance (px), time in range so far (s)."""
    settleEnded = Signal(bool, str)
    """The settle is over: succeeded, and PHD2's error text when it did not."""
    ditherBegun = Signal(float)
    """Wall time a dither cycle began (saving pauses from here)."""
    ditherMoved = Signal(float, float, float)
    """Wall time PHD2 moved the lock position, and by how much in RA and Dec (px)."""
    ditherEnded = Signal(float, str, str)
    """Wall time the cycle ended (saving again), its outcome and message."""
    settleJudged = Signal(str, bool, float)
    """The dither's settle ended: the rule that ended it (phd2, calm, timeout, failed),
    whether it settled, and its time (s)."""
    ditherRecorded = Signal(object)
    """The ledger record of a finished cycle (dict)."""
    notice = Signal(str, str, float)
    """Level (info, warning, alert), message, wall time."""
    alert = Signal(str)
    """A notice the user must see even from across the room."""
    commandFailed = Signal(str)
    """A command from the window could not be carried out; the text says why."""
    diagnosticsChanged = Signal()
    """A camera's self-check or the list of guarded/suspect frames changed."""

    def __init__(
        self,
        service: DitherService,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        tick_ms: int = STATUS_TICK_MS,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._clock = clock
        self._wall = wall_clock
        self._phase = service.machine.phase
        self._settle_began: float | None = None
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(0)
        self._pending.timeout.connect(self.refresh_status)
        self._tick = QTimer(self)
        self._tick.setInterval(tick_ms)
        self._tick.timeout.connect(self.refresh_status)
        self._tick.start()
        self._unsubscribe: Callable[[], None] | None = service.subscribe(self._on_event)

    # ---------------------------------------------------------------- reading

    @property
    def settings(self) -> DitherSettings:
        return self._service.settings

    def diagnostics(self) -> dict[str, Any]:
        """Every camera's self-check and the suspect frames (the Diagnostics view)."""
        return self._service.diagnostics()

    def frame_records(self) -> list[dict[str, Any]]:
        return self._service.frame_records()

    def notices(self) -> list[tuple[str, str, float]]:
        """The notices so far (the log starts with what happened before the window)."""
        return [(n.level.value, n.message, n.wall_time) for n in self._service.notices]

    def detach(self) -> None:
        """Stop listening: the window is closing and the service is about to stop."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._tick.stop()
        self._pending.stop()

    # ---------------------------------------------------------------- commands

    @Slot()
    def ditherNow(self) -> None:
        try:
            self._service.dither_now()
        except DitherRefused as exc:
            self.commandFailed.emit(f"Cannot dither now: {exc}")

    @Slot(bool)
    def setEnabled(self, enabled: bool) -> None:
        self.setSetting("enabled", enabled)

    @Slot()
    def reconnectPhd2(self) -> None:
        self._service.reconnect()
        self.refresh_status()

    def settleAdvice(self) -> list[GroupAdvice]:
        """Settle suggestions from the ledger (empty until there are enough dithers)."""
        return self._service.settle_advice()

    def setSetting(self, name: str, value: object) -> bool:
        """Change a setting for the next dither; False (and the widget put back) if the
        service refused the value."""
        try:
            self._service.set_setting(name, value)
        except SettingError as exc:
            self.commandFailed.emit(str(exc))
            self.settingChanged.emit(name, self._service.get_setting(name))
            return False
        return True

    # ---------------------------------------------------------------- events

    @Slot()
    def refresh_status(self) -> None:
        self.statusChanged.emit(self._service.snapshot())

    def _status_soon(self) -> None:
        if not self._pending.isActive():
            self._pending.start()

    def _on_event(self, event: ServiceEvent) -> None:
        match event:
            case StatusChanged():
                self._follow_phase()
                self._status_soon()
            case Phd2EventSeen(event=phd2):
                self._on_phd2(phd2)
            case SettingChanged(name=name, value=value):
                self.settingChanged.emit(name, value)
                self._status_soon()
            case Notice(level=level, message=message, wall_time=wall):
                self.notice.emit(level.value, message, wall)
                if level is m.Level.ALERT:
                    self.alert.emit(message)
            case DitherRecorded(record=record):
                self.ditherRecorded.emit(record)
            case FrameRecorded() | SelfCheckChanged():
                self.diagnosticsChanged.emit()

    def _follow_phase(self) -> None:
        phase = self._service.machine.phase
        if phase is self._phase:
            return
        was, self._phase = self._phase, phase
        if phase is m.Phase.RESUMING and was in (m.Phase.DITHERING, m.Phase.SETTLING):
            outcome = self._service.machine.last_outcome
            if outcome is not None and outcome.rule:
                self._settle_began = None
                self.settleJudged.emit(outcome.rule, outcome.ok, float(outcome.settle_s or 0.0))
        quiet = (m.Phase.IDLE, m.Phase.GUARDING)  # no dither cycle running
        if was in quiet and phase in quiet:
            return
        if was in quiet:
            self.ditherBegun.emit(self._wall())
        elif phase in quiet:
            outcome = self._service.machine.last_outcome
            kind = outcome.kind.value if outcome is not None else ""
            message = outcome.message if outcome is not None else ""
            self.ditherEnded.emit(self._wall(), kind, message)

    def _on_phd2(self, event: ev.Phd2Event) -> None:
        match event:
            case ev.GuideStep(ra_distance_raw=ra, dec_distance_raw=dec):
                self.guideStep.emit(self._wall(), float(ra), float(dec))
                return
            case ev.SettleBegin():
                self._begin_settle()
            case ev.Settling(distance=distance, time=in_range):
                if self._settle_began is None:  # connected mid-settle, or a missed begin
                    self._begin_settle()
                began = self._settle_began if self._settle_began is not None else self._clock()
                self.settleSample.emit(self._clock() - began, float(distance), float(in_range))
            case ev.SettleDone(error=error):
                self._settle_began = None
                self.settleEnded.emit(event.succeeded, error or "")
            case ev.GuidingDithered(dx=dx, dy=dy):
                self.ditherMoved.emit(self._wall(), float(dx), float(dy))
        self._status_soon()

    def _begin_settle(self) -> None:
        self._settle_began = self._clock()
        progress = self._service.settle
        if progress is not None:
            self.settleBegun.emit(progress.target_px, progress.settle_time_s, progress.timeout_s)
        else:  # someone else's dither (PHD2's own button, another client)
            s = self._service.settings
            self.settleBegun.emit(s.settletarget, float(s.settledelay), float(s.settlemax))
