"""The service: runs the dither machine and carries out its actions.

It feeds the machine camera messages, PHD2 state and dither outcomes with the
monotonic time, executes what comes back (messages to cameras, the dither operation,
timers, ledger lines), and tells observers (the window's bridge, subscribed controllers)
what changed. It knows nothing about Qt.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ditherapp.core import machine as m
from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.errors import DitherAppError
from ditherapp.core.phd2 import events as ev
from ditherapp.core.settings import READ_ONLY, DitherSettings, SettingError
from ditherapp.net.guider import Guider
from ditherapp.net.listeners import Listeners
from ditherapp.net.phd2_client import LinkStatus

log = logging.getLogger(__name__)

NOTICE_HISTORY = 200

KEEPALIVE_S = 2.5

SaveSettings = Callable[[DitherSettings], None]


class CameraLink(Protocol):
    """How the service talks to one camera agent (a control-socket session)."""

    def send(self, message: dict[str, Any]) -> None: ...


class DitherRefused(DitherAppError):  # noqa: N818 - it is an answer, not a failure of ours
    """dither_now could not start a dither; the message says why."""


# ------------------------------------------------------------------ what observers see


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingChanged:
    name: str
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusChanged:
    """Something in ``snapshot()`` changed (phase, cameras, counters, link)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Phd2EventSeen:
    event: ev.Phd2Event


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice:
    level: m.Level
    message: str
    wall_time: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherRecorded:
    record: dict[str, Any]


ServiceEvent = SettingChanged | StatusChanged | Phd2EventSeen | Notice | DitherRecorded


class Ledger(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...


@dataclass(slots=True)
class SettleProgress:
    started: float
    timeout_s: float
    settle_time_s: float
    target_px: float
    distance: float | None = None
    in_range_s: float = 0.0
    star_locked: bool | None = None


class DitherService:
    def __init__(
        self,
        *,
        settings: DitherSettings,
        guider: Guider,
        ledger: Ledger | None = None,
        save_settings: SaveSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.machine = m.DitherMachine(settings)
        self.guider = guider
        self._ledger = ledger
        self._save_settings = save_settings
        self._clock = clock
        self._wall = wall_clock
        self._links: dict[str, CameraLink] = {}
        self._observers: Listeners[ServiceEvent] = Listeners("service")
        self._timer: asyncio.TimerHandle | None = None
        self._dither_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.notices: deque[Notice] = deque(maxlen=NOTICE_HISTORY)
        self.settle: SettleProgress | None = None
        self.last_settle: SettleProgress | None = None
        self.camera_paused: dict[str, tuple[bool, str]] = {}
        guider.add_link_listener(self._on_link)
        guider.add_event_listener(self._on_phd2_event)

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> None:
        """Run the guider link until cancelled; on the way out, resume every camera."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.guider.run(), name="guider")
                group.create_task(self._keepalive(), name="camera-keepalive")
        finally:
            self.shutdown()

    async def _keepalive(self) -> None:
        """Ping every camera agent: a paused agent resumes by itself after 10 s without a
        word from us (so that a dead app never leaves it paused), and a settle can take
        far longer than that."""
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            for link in list(self._links.values()):
                link.send({"type": "ping"})

    def shutdown(self) -> None:
        """Fail open: every camera we paused is told to save again, at once."""
        self._stopping = True
        cycle = self.machine.cycle
        if cycle is not None:
            for camera in cycle.members:
                link = self._links.get(camera)
                if link is not None:
                    link.send({"type": "resume", "id": 0, "after_next_frame": False})
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()

    # ---------------------------------------------------------------- observers

    def subscribe(self, callback: Callable[[ServiceEvent], None]) -> Callable[[], None]:
        """Tell ``callback`` of every ServiceEvent; returns a function that removes it."""
        return self._observers.add(callback)

    def _emit(self, event: ServiceEvent) -> None:
        self._observers(event)

    # ---------------------------------------------------------------- settings

    @property
    def settings(self) -> DitherSettings:
        return self.machine.settings

    def get_setting(self, name: str) -> Any:
        if name == "ditherstring":
            return self.ditherstring()
        return self.settings.get(name)

    def ditherstring(self) -> str:
        """The exact JSON-RPC line the next dither sends (the event-server backend)."""
        return m.request_from(self.settings).rpc_line(request_id=1)

    def set_setting(self, name: str, raw: object) -> Any:
        """Change one setting (for the next dither); returns the value now in force."""
        name = name.strip().lower()
        if name in READ_ONLY:
            raise SettingError(f"{name} is read-only")
        new = self.settings.with_value(name, raw)
        value = new.get(name)
        if new != self.settings:
            self._apply_settings(new, changed=[name])
        return value

    def replace_settings(self, new: DitherSettings) -> None:
        old = self.settings
        changed = [n for n in new.as_dict() if new.get(n) != old.get(n)]
        if changed:
            self._apply_settings(new, changed=changed)

    def _apply_settings(self, new: DitherSettings, *, changed: list[str]) -> None:
        self._feed(m.SettingsChanged(settings=new))
        if "legacypoll" in changed and hasattr(self.guider, "poll_s"):
            self.guider.poll_s = new.legacypoll  # the legacy backends poll at this rate
        if self._save_settings is not None:
            try:
                self._save_settings(new)
            except OSError as exc:
                self._notice(m.Level.ALERT, f"could not save settings: {exc}")
        for name in changed:
            self._emit(SettingChanged(name=name, value=new.get(name)))
        self._emit(SettingChanged(name="ditherstring", value=self.ditherstring()))

    # ---------------------------------------------------------------- commands

    def dither_now(self) -> None:
        reason = self.machine.refusal()
        if reason is not None:
            raise DitherRefused(reason)
        self._feed(m.DitherNow())

    def set_enabled(self, enabled: bool) -> None:
        self.set_setting("enabled", enabled)

    def reconnect(self) -> None:
        self.guider.reconnect_now()

    # ---------------------------------------------------------------- cameras

    def attach_camera(self, name: str, link: CameraLink) -> str:
        camera = self.machine.camera_id_for(name)
        self._links[camera] = link
        self._feed(m.CameraHello(camera=camera, name=name))
        return camera

    def detach_camera(self, camera: str) -> None:
        if self._links.pop(camera, None) is not None:
            self.camera_paused.pop(camera, None)
            self._feed(m.CameraGone(camera=camera))

    def camera_message(self, camera: str, message: dict[str, Any]) -> None:
        """One message from a camera agent (already known to be a JSON object)."""
        kind = message.get("type")
        if kind == "frame":
            self._feed(
                m.CameraFrame(
                    camera=camera,
                    exposure_s=_number(message.get("exposure_s"), 0.0),
                    saved=message.get("saved") is True,
                    seq=_int_or_none(message.get("seq")),
                )
            )
        elif kind == "capture":
            self._feed(m.CameraCapture(camera=camera, capturing=message.get("capturing") is True))
        elif kind == "paused":
            paused = message.get("paused") is True
            by = str(message.get("by") or "app")
            self.camera_paused[camera] = (paused, by)
            self._feed(
                m.CameraPaused(
                    camera=camera, paused=paused, by=by, reason=str(message.get("reason") or "")
                )
            )
        elif kind == "ack":
            command_id = _int_or_none(message.get("id"))
            if message.get("ok") is False:
                # The agent could not do it (e.g. setting Paused failed): not a
                # confirmation. The machine's deadline calls the dither off.
                self._notice(
                    m.Level.WARNING,
                    f"camera {camera} could not carry out command {command_id}: "
                    f"{str(message.get('error'))[:80]}",
                )
            elif command_id is not None:
                self._feed(m.CameraAck(camera=camera, command_id=command_id))

    # ---------------------------------------------------------------- the machine

    def _feed(self, event: m.Input) -> None:
        phase_before = self.machine.phase
        actions = self.machine.handle(event, self._clock())
        for action in actions:
            self._execute(action)
        if (
            phase_before is m.Phase.IDLE
            and self.machine.phase is m.Phase.PAUSING
            and not self._stopping
        ):
            try:
                self.guider.prepare()  # PHD2 answers while the cameras pause
            except Exception:
                log.exception("could not ask PHD2 ahead; the dither will ask")
        if actions or self.machine.phase is not phase_before or not isinstance(event, m.CameraAck):
            self._emit(StatusChanged())

    def _execute(self, action: m.Action) -> None:
        match action:
            case m.SendPause(camera=camera, command_id=cid, max_s=max_s):
                self._send(camera, {"type": "pause", "id": cid, "max_s": max_s})
            case m.SendResume(camera=camera, command_id=cid, after_next_frame=anf, max_wait_s=w):
                self._send(
                    camera,
                    {"type": "resume", "id": cid, "after_next_frame": anf, "max_wait_s": w},
                )
            case m.StartDither(request=request) if not self._stopping:
                self._start_dither(request)
            case m.CancelDither():
                if self._dither_task is not None:
                    self._dither_task.cancel()
                    self._dither_task = None
                self._end_settle()
            case m.SetTimer(at=at) if not self._stopping:
                self._arm(at)
            case m.Record(entry=entry):
                self._record(entry)
            case m.Notify(level=level, message=message):
                self._notice(level, message)

    def _send(self, camera: str, message: dict[str, Any]) -> None:
        link = self._links.get(camera)
        if link is not None:
            link.send(message)

    def _arm(self, at: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if at is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, at - self._clock())
        self._timer = loop.call_later(delay, self._fire_timer)

    def _fire_timer(self) -> None:
        self._timer = None
        self._feed(m.Tick())
        cycle = self.machine.cycle
        if cycle is not None and self._timer is None:
            # The machine thinks its timer is armed; a timer that fired early (Qt's and
            # Windows' timers do) must not be lost, or the cycle would never end.
            self._arm(max(cycle.deadline, self._clock() + 0.05))

    def _start_dither(self, request: DitherRequest) -> None:
        self.settle = SettleProgress(
            started=self._clock(),
            timeout_s=request.settle_timeout,
            settle_time_s=request.settle_time,
            target_px=request.settle_pixels,
        )
        task = asyncio.get_running_loop().create_task(self._dither(request), name="dither")
        self._dither_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dither(self, request: DitherRequest) -> None:
        try:
            outcome = await self.guider.dither(request, self._settle_started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("dither operation failed")
            outcome = DitherOutcome(kind=OutcomeKind.LOST, message=f"internal error: {exc}")
        if self._dither_task is asyncio.current_task():
            self._dither_task = None
            self._end_settle()
            self._feed(m.DitherFinished(outcome=outcome))

    def _settle_started(self) -> None:
        if self.settle is not None:
            self.settle.started = self._clock()
        self._feed(m.SettleStarted())

    def _end_settle(self) -> None:
        if self.settle is not None:
            self.last_settle = self.settle
        self.settle = None

    def _record(self, entry: m.LedgerEntry) -> None:
        record = {"time": round(self._wall(), 3), **entry.as_dict()}
        if self._ledger is not None:
            try:
                self._ledger.write(record)
            except OSError as exc:
                self._notice(m.Level.ALERT, f"could not write the dither ledger: {exc}")
        self._emit(DitherRecorded(record=record))

    def _notice(self, level: m.Level, message: str) -> None:
        notice = Notice(level=level, message=message, wall_time=self._wall())
        self.notices.append(notice)
        logger = log.info if level is m.Level.INFO else log.warning
        logger("%s", message)
        self._emit(notice)

    # ---------------------------------------------------------------- PHD2

    def _on_link(self, status: LinkStatus) -> None:
        self._feed(
            m.GuiderUpdate(connected=status.connected, state=status.state, settling=status.settling)
        )

    def _on_phd2_event(self, event: ev.Phd2Event) -> None:
        settle = self.settle
        if settle is not None and isinstance(event, ev.Settling):
            settle.distance = event.distance
            settle.in_range_s = event.time
            settle.star_locked = event.star_locked
        if isinstance(event, ev.Alert):
            self._notice(m.Level.WARNING, f"PHD2: {event.msg}")
        self._emit(Phd2EventSeen(event=event))

    # ---------------------------------------------------------------- status

    def snapshot(self) -> dict[str, Any]:
        """Everything ``status`` reports, as plain JSON-ready data."""
        mach = self.machine
        now = self._clock()
        link = self.guider.status
        totals = mach.totals
        settings = self.settings
        cameras = []
        for cam in mach.cameras.values():
            paused, by = self.camera_paused.get(cam.id, (False, ""))
            cameras.append(
                {
                    "id": cam.id,
                    "name": cam.name,
                    "connected": cam.connected,
                    "capturing": cam.capturing,
                    "paused": paused,
                    "paused_by": by if paused else None,
                    "frames_saved": cam.frames_saved,
                    "frames_since_last": cam.frames_since,
                    "frames_to_next": cam.frames_to_next(settings),
                    "exposure_s": cam.last_exposure_s,
                }
            )
        settle = self.settle
        return {
            "type": "status",
            "phd2": {
                "host": link.host,
                "port": link.port,
                "instance": settings.phd2instance,
                "backend": self.guider.backend,
                "connected": link.connected,
                "state": link.state.value,
                "settling": link.settling,
                "version": link.version,
                "retry_in_s": None
                if link.retry_at is None or link.connected
                else round(max(0.0, link.retry_at - now), 1),
                "last_error": link.last_error,
            },
            "enabled": settings.enabled,
            "phase": mach.phase.value,
            "phase_s": round(now - mach.phase_since, 1) if mach.cycle else None,
            "settle": None
            if settle is None
            else {
                "elapsed_s": round(now - settle.started, 1),
                "timeout_s": settle.timeout_s,
                "settle_time_s": settle.settle_time_s,
                "target_px": settle.target_px,
                "distance": settle.distance,
                "in_range_s": settle.in_range_s,
                "star_locked": settle.star_locked,
            },
            "cameras": cameras,
            "dithers": totals.dithers,
            "failures": totals.failures,
            "skipped": totals.skipped,
            "mean_settle_s": None
            if totals.mean_settle_s is None
            else round(totals.mean_settle_s, 2),
            "lost_s": round(totals.lost_s, 1),
            "skip_reason": mach.skip_reason,
            "retry_in_s": None if (retry := mach.retry_in(now)) is None else round(retry, 1),
            "last_outcome": None
            if mach.last_outcome is None
            else {"outcome": mach.last_outcome.kind.value, "message": mach.last_outcome.message},
        }


MAX_EXPOSURE_S = 86_400.0


def _number(value: object, default: float) -> float:
    """A camera's number, within sense: a day at most, never negative or infinite."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return default
    try:
        number = float(value)
    except OverflowError:
        return default
    if not math.isfinite(number):
        return default
    return min(MAX_EXPOSURE_S, max(0.0, number))


def _int_or_none(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None
