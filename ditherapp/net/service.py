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
from ditherapp.core.settings import (
    READ_ONLY,
    SPEC_BY_NAME,
    DitherSettings,
    SettingError,
    SettingLocked,
)
from ditherapp.core.settle_advice import GroupAdvice, advise
from ditherapp.net.guider import Guider
from ditherapp.net.listeners import Listeners
from ditherapp.net.phd2_client import LinkStatus

log = logging.getLogger(__name__)

NOTICE_HISTORY = 200
FRAME_HISTORY = 2000
"""Guarded and suspect frames kept for ``ditherctl frames`` (they are all in the ledger)."""
CHECK_VERDICTS = ("ok", "warn", "fail", "unknown")
MAX_CHECKS = 64
LEDGER_HISTORY = 5000
"""Ledger lines kept for settle suggestions (this session's and earlier ones')."""

KEEPALIVE_S = 2.5

SaveSettings = Callable[[DitherSettings], None]
"""Called on the event loop with the settings after each change: it must not block (the
runtime hands in a ``SettingsSaver``'s ``submit``)."""

_GUIDING_BROKEN = (ev.StarLost, ev.GuidingStopped, ev.Paused, ev.StartGuiding)
"""Events after which the guiding before them is no baseline for the guiding after."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRecorded:
    """A guarded or suspect frame went in the ledger (the record, with its time)."""

    record: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfCheckChanged:
    """A camera agent reported its self-check (the cleaned report)."""

    camera: str
    report: dict[str, Any]


ServiceEvent = (
    SettingChanged
    | StatusChanged
    | Phd2EventSeen
    | Notice
    | DitherRecorded
    | FrameRecorded
    | SelfCheckChanged
)


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
        self.frames: deque[dict[str, Any]] = deque(maxlen=FRAME_HISTORY)
        """Guarded and suspect frames of this session, oldest first."""
        self.selfchecks: dict[str, dict[str, Any]] = {}
        """The latest self-check of each camera agent that sent one."""
        self.agents: dict[str, str] = {}
        self.ledger_lines: deque[dict[str, Any]] = deque(maxlen=LEDGER_HISTORY)
        """The ledger as read at start plus every line since: what suggestions read."""
        read = getattr(ledger, "read", None)
        if callable(read):
            try:
                self.ledger_lines.extend(read())
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("could not read the dither ledger for suggestions: %s", exc)
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
        if not self._stopping:
            for action in self.machine.flush(self._clock()):
                self._execute(action)  # the last dither's ledger line, cost as measured
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

    async def wait_stopped(self, timeout_s: float) -> None:
        """After ``shutdown``: give the cancelled dither up to ``timeout_s`` to clean up
        (it puts PHD2's guide exposure back)."""
        running = [t for t in self._tasks if not t.done()]
        if running:
            await asyncio.wait(running, timeout=timeout_s)

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

    def set_setting(self, name: str, raw: object, *, remote: bool = False) -> Any:
        """Change one setting (for the next dither); returns the value now in force.

        ``remote``: the change comes over the control socket, which may not change who
        may connect to it (SettingLocked says where it can be changed instead)."""
        name = name.strip().lower()
        if name in READ_ONLY:
            raise SettingError(f"{name} is read-only")
        spec = SPEC_BY_NAME.get(name)
        if remote and spec is not None and not spec.remote:
            raise SettingLocked(
                f"{name} decides who may connect to the control socket, so it cannot be "
                "changed over it: set it in the window, on the command line or in the "
                "settings file"
            )
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

    def alert(self, message: str) -> None:
        """Tell the user of a problem outside the machine (a settings file not saved)."""
        self._notice(m.Level.ALERT, message)

    # ---------------------------------------------------------------- cameras

    def attach_camera(self, name: str, link: CameraLink, *, agent: str = "") -> str:
        camera = self.machine.camera_id_for(name)
        self._links[camera] = link
        self.agents[camera] = agent[:80]
        self.selfchecks.pop(camera, None)  # a new session checks again
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
                    count=_int_or_none(message.get("count")),
                    file=_text_or_none(message.get("file")),
                )
            )
        elif kind == "suspect":
            t = message.get("t")
            self._feed(
                m.CameraSuspect(
                    camera=camera,
                    count=_int_or_none(message.get("count")),
                    seq=_int_or_none(message.get("seq")),
                    agent_t=float(t) if isinstance(t, int | float) and math.isfinite(t) else None,
                    file=_text_or_none(message.get("file")),
                )
            )
        elif kind == "selfcheck":
            self._self_check(camera, message)
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
        quiet = isinstance(event, m.CameraAck | m.GuideStepSeen)
        if actions or self.machine.phase is not phase_before or not quiet:
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
            case m.FrameRecord(entry=entry):
                self._record_frame(entry)
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

    def settle_advice(self) -> list[GroupAdvice]:
        """Suggestions from the ledger's dithers with PHD2's current profile."""
        settings = self.settings
        return advise(
            self.ledger_lines,
            profile=getattr(self.guider, "profile", None),
            settle_time=settings.settledelay,
            settle_timeout=settings.settlemax,
        )

    def _record(self, entry: m.LedgerEntry) -> None:
        record = {"time": round(self._wall(), 3), **entry.as_dict()}
        self.ledger_lines.append(record)
        if self._ledger is not None:
            try:
                self._ledger.write(record)
            except OSError as exc:
                self._notice(m.Level.ALERT, f"could not write the dither ledger: {exc}")
        self._emit(DitherRecorded(record=record))

    def _record_frame(self, entry: m.FrameEntry) -> None:
        record = {"time": round(self._wall(), 3), **entry.as_dict()}
        self.frames.append(record)
        if self._ledger is not None:
            try:
                self._ledger.write(record)
            except OSError as exc:
                self._notice(m.Level.ALERT, f"could not write the dither ledger: {exc}")
        self._emit(FrameRecorded(record=record))

    def frame_records(self, *, suspect_only: bool = False) -> list[dict[str, Any]]:
        kinds = {m.FrameKind.SUSPECT.value} if suspect_only else {k.value for k in m.FrameKind}
        return [r for r in self.frames if r.get("kind") in kinds]

    # ---------------------------------------------------------------- self-checks

    def _self_check(self, camera: str, message: dict[str, Any]) -> None:
        report = clean_self_check(message)
        before = self.selfchecks.get(camera)
        self.selfchecks[camera] = report
        name = self.machine.cameras[camera].name if camera in self.machine.cameras else camera
        old = {c["name"]: c["verdict"] for c in (before or {}).get("checks", [])}
        for check in report["checks"]:
            if check["verdict"] == "fail" and old.get(check["name"]) != "fail":
                self._notice(
                    m.Level.ALERT,
                    f"camera {name} self-check failed: {check['name']}: {check['detail']}",
                )
        self._emit(SelfCheckChanged(camera=camera, report=report))
        self._emit(StatusChanged())

    def diagnostics(self) -> dict[str, Any]:
        """Every camera's self-check and the session's suspect frames (ditherctl doctor)."""
        cameras = []
        for cam in self.machine.cameras.values():
            if not cam.connected:
                continue
            cameras.append(
                {
                    "id": cam.id,
                    "name": cam.name,
                    "agent": self.agents.get(cam.id, ""),
                    "selfcheck": self.selfchecks.get(cam.id),
                }
            )
        link = self.guider.status
        return {
            "type": "diagnostics",
            "phd2": {"connected": link.connected, "state": link.state.value},
            "cameras": cameras,
            "suspect_frames": self.frame_records(suspect_only=True),
        }

    def _notice(self, level: m.Level, message: str) -> None:
        notice = Notice(level=level, message=message, wall_time=self._wall())
        self.notices.append(notice)
        logger = log.info if level is m.Level.INFO else log.warning
        logger("%s", message)
        self._emit(notice)

    # ---------------------------------------------------------------- PHD2

    def _on_link(self, status: LinkStatus) -> None:
        if not status.connected:
            self.machine.history.break_at(self._clock())
        self._feed(
            m.GuiderUpdate(connected=status.connected, state=status.state, settling=status.settling)
        )

    def _on_phd2_event(self, event: ev.Phd2Event) -> None:
        if isinstance(event, ev.GuideStep):
            self._feed(m.GuideStepSeen(ra=event.ra_distance_raw, dec=event.dec_distance_raw))
        elif isinstance(event, _GUIDING_BROKEN):
            self.machine.history.break_at(self._clock())
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
                    "guarded": cam.id in mach.hold,
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
            "guard": self._guard_status(now),
            "dithers": totals.dithers,
            "failures": totals.failures,
            "skipped": totals.skipped,
            "mean_settle_s": None
            if totals.mean_settle_s is None
            else round(totals.mean_settle_s, 2),
            "lost_s": round(totals.lost_s, 1),
            "mean_lost_imaging_s": None
            if totals.mean_lost_imaging_s is None
            else round(totals.mean_lost_imaging_s, 2),
            "last_cost": None
            if mach.last_entry is None
            else {
                **mach.last_entry.cost.as_dict(),
                "settle_rule": mach.last_entry.outcome.rule,
            },
            "skip_reason": mach.skip_reason,
            "retry_in_s": None if (retry := mach.retry_in(now)) is None else round(retry, 1),
            "last_outcome": None
            if mach.last_outcome is None
            else {"outcome": mach.last_outcome.kind.value, "message": mach.last_outcome.message},
        }

    def _guard_status(self, now: float) -> dict[str, Any]:
        mach = self.machine
        guard = mach.guard
        condition = guard.condition()
        since = guard.hold_since
        totals = mach.totals
        return {
            "enabled": self.settings.guard,
            "armed": guard.armed,
            "condition": condition.text if condition is not None else None,
            "reason": condition.reason.value if condition is not None else None,
            "holding": mach.phase is m.Phase.GUARDING,
            "let_go": guard.let_go,
            "holding_s": None if since is None else round(now - since, 1),
            "max_s": guard.config.max_s,
            "guarded_frames": totals.guarded_frames,
            "unguarded_saved": totals.unguarded_saved,
            "suspect_frames": totals.suspect_frames,
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


def _text_or_none(value: object, limit: int = 260) -> str | None:
    """A short one-line text from an agent, or None."""
    if not isinstance(value, str) or not value:
        return None
    return "".join(c if c.isprintable() else "?" for c in value[:limit])


def clean_self_check(message: dict[str, Any]) -> dict[str, Any]:
    """An agent's self-check as ditherapp keeps it: known fields, short texts, verdicts
    from the known set (anything else counts as unknown); nothing an agent sends can
    make it raise."""
    checks = []
    raw = message.get("checks")
    for item in raw[:MAX_CHECKS] if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        name = _text_or_none(item.get("name"), 60)
        if name is None:
            continue
        verdict = item.get("verdict")
        checks.append(
            {
                "name": name,
                "verdict": verdict if verdict in CHECK_VERDICTS else "unknown",
                "detail": _text_or_none(item.get("detail"), 300) or "",
            }
        )
    capture = message.get("capture")
    capture = capture if isinstance(capture, dict) else {}
    return {
        "sharpcap": _text_or_none(message.get("sharpcap"), 80),
        "runtime": _text_or_none(message.get("runtime"), 120),
        "camera": _text_or_none(message.get("camera"), 128),
        "checks": checks,
        "capture": {
            "folder": _text_or_none(capture.get("folder")),
            "last_file": _text_or_none(capture.get("last_file")),
        },
    }
