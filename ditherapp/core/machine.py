# ruff: noqa: SLF001 - the transition table below names the machine's own handlers
"""The dither machine: every dither decision, in one place, with no I/O.

Feed it inputs (camera messages, guider state, the dither operation's outcome, setting
changes, timer ticks) with the current monotonic time; it returns actions for the
service to carry out (pause or resume a camera, start a dither, arm a timer, write a
ledger line, tell the user something).

The cycle::

    IDLE --due--> PAUSING --all cameras acked--> DITHERING --SettleBegin--> SETTLING
      ^                                              |                         |
      |                                              +------ outcome ----------+
      |                                                          |
      +--- every camera unpaused (or deadline) --- RESUMING <----+

Rules that keep frames safe (and the user's night productive):

* A dither starts only after every camera confirmed its pause, so no frame is saved
  while the mount moves. A camera that does not confirm in time cancels the dither
  (the cameras resume; the next frame tries again).
* A camera that connects mid-cycle is paused at once.
* Whatever happens (settle failure, our deadline, PHD2 lost), the cameras are resumed:
  the machine fails open. With ``waitfornextframe`` they resume from the frame after
  the next boundary, since the frame in progress overlapped the settle.
* A dither is only started when PHD2 is guiding and not settling; otherwise it is
  skipped with a stated reason and tried again at the next frame.
* The frame guard (``core/frame_guard.py``) says when guiding is bad; the machine then
  holds saving paused (GUARDING) through the same pause/resume messages as a dither,
  and resumes from the next frame boundary once guiding is back (at once if the guard
  let go after ``guardmax``). Every frame that saw bad guiding goes in the ledger.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.dither_cost import CostMeter, DitherCost
from ditherapp.core.frame_guard import FrameGuard, GuardConfig
from ditherapp.core.guiding_stats import GuideHistory, GuideSample
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings

PAUSE_ACK_TIMEOUT_S = 5.0
"""How long cameras get to confirm a pause before the dither is called off."""
DITHER_GUARD_MARGIN_S = 120.0
"""Our last-resort deadline beyond the settle timeout, should the operation never end."""
PAUSE_MARGIN_S = 30.0
"""How much later than our own last-resort deadline a camera's fail-open limit (``max_s``)
falls: its watchdog is for when ditherapp is gone, so it must not beat our deadline."""
UNKNOWN_EXPOSURE_S = 600.0
"""The exposure assumed for a camera that has not reported a frame yet."""
REFUSED_RETRY_S = 30.0
"""After a dither was called off before the mount moved, wait this long before the next
automatic attempt."""
RESUME_GRACE_S = 30.0
"""How long past one exposure a camera may take to report that it is saving again."""
GUARD_PAUSE_S = 300.0
"""The fail-open limit of each pause the frame guard sends (renewed while it holds), so a
camera left alone resumes by itself within minutes, whatever ``guardmax`` says."""
GUARD_RENEW_S = 120.0
"""How often a guard's pause is renewed while the guard holds."""
SUSPECT_ALERT_S = 300.0
"""After alerting that a camera saved while paused, further such frames from it within
this time go to the ledger and the log without another alert."""


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraHello:
    camera: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraFrame:
    camera: str
    exposure_s: float
    saved: bool
    seq: int | None = None
    count: int | None = None
    """SharpCap's own saved-frame counter after this frame, where the agent reads one."""
    file: str | None = None
    """The file SharpCap last saved, where the agent knows it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraSuspect:
    """The agent saw SharpCap's saved-frame counter go up while it held saving paused."""

    camera: str
    count: int | None
    seq: int | None = None
    agent_t: float | None = None
    file: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideStepSeen:
    """One GuideStep: raw RA and Dec distance from the lock position (guide pixels)."""

    ra: float
    dec: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraCapture:
    camera: str
    capturing: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraPaused:
    camera: str
    paused: bool
    by: str = "app"
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraAck:
    camera: str
    command_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraGone:
    camera: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GuiderUpdate:
    connected: bool
    state: Phd2State
    settling: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleStarted:
    """Our dither's settle began (SettleBegin, or the legacy backend's first poll)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherFinished:
    outcome: DitherOutcome


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsChanged:
    settings: DitherSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherNow:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """A timer armed with ``SetTimer`` fired (or the service just wants a check)."""


Input = (
    CameraHello
    | CameraFrame
    | CameraCapture
    | CameraPaused
    | CameraAck
    | CameraGone
    | CameraSuspect
    | GuideStepSeen
    | GuiderUpdate
    | SettleStarted
    | DitherFinished
    | SettingsChanged
    | DitherNow
    | Tick
)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True, kw_only=True)
class SendPause:
    camera: str
    command_id: int
    max_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResume:
    camera: str
    command_id: int
    after_next_frame: bool
    max_wait_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StartDither:
    request: DitherRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelDither:
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTimer:
    at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class CameraRecord:
    name: str
    frames_since_last: int
    paused_s: float
    frames_not_saved: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEntry:
    cycle: int
    trigger: str
    request: DitherRequest
    outcome: DitherOutcome
    cameras: tuple[CameraRecord, ...]
    cycle_s: float
    lost_s: float
    """Imaging time the cycle cost: the longest any camera stayed paused."""
    cost: DitherCost = field(default_factory=DitherCost)
    """Measured from the frames after the cycle (``core.dither_cost``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle,
            "trigger": self.trigger,
            "amount": self.request.amount,
            "ra_only": self.request.ra_only,
            "settle": {
                "pixels": self.request.settle_pixels,
                "time": self.request.settle_time,
                "timeout": self.request.settle_timeout,
            },
            "outcome": self.outcome.kind.value,
            "message": self.outcome.message,
            "settle_s": self.outcome.settle_s,
            "total_frames": self.outcome.total_frames,
            "dropped_frames": self.outcome.dropped_frames,
            "cameras": [
                {
                    "name": c.name,
                    "frames_since_last": c.frames_since_last,
                    "paused_s": round(c.paused_s, 3),
                    "frames_not_saved": c.frames_not_saved,
                }
                for c in self.cameras
            ],
            "cycle_s": round(self.cycle_s, 3),
            "lost_s": round(self.lost_s, 3),
            "settle_mode": self.request.settle_mode,
            "settle_exposure_s": self.request.settle_exposure_s,
            "settle_rule": self.outcome.rule,
            "in_range_after_s": _rounded(self.outcome.in_range_after_s),
            "broken_run_s": _rounded(self.outcome.broken_run_s),
            "phd2_profile": self.outcome.profile,
            "lost_imaging_s": self.cost.as_dict()["lost_imaging_s"],
            "first_frame_rms": self.cost.as_dict()["first_frame_rms"],
            "baseline_rms": self.cost.as_dict()["baseline_rms"],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    entry: LedgerEntry


class FrameKind(StrEnum):
    GUARDED = "guarded_frame"
    """The frame saw bad guiding (saved or not)."""
    SUSPECT = "suspect_frame"
    """SharpCap may have saved this frame while saving was paused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameEntry:
    """A ledger line about one frame (not a dither cycle)."""

    kind: FrameKind
    camera: str
    camera_id: str
    saved: bool
    reasons: tuple[str, ...] = ()
    exposure_s: float | None = None
    seq: int | None = None
    count: int | None = None
    file: str | None = None
    agent_t: float | None = None
    cycle: int | None = None
    """The dither cycle under way when it happened, if any."""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "camera": self.camera,
            "camera_id": self.camera_id,
            "saved": self.saved,
        }
        optional = {
            "reasons": list(self.reasons) if self.reasons else None,
            "exposure_s": self.exposure_s,
            "seq": self.seq,
            "count": self.count,
            "file": self.file,
            "agent_t": self.agent_t,
            "cycle": self.cycle,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRecord:
    entry: FrameEntry


class Level(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ALERT = "alert"
    """Something the user should see even from across the room."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    level: Level
    message: str


Action = (
    SendPause | SendResume | StartDither | CancelDither | SetTimer | Record | FrameRecord | Notify
)

# ---------------------------------------------------------------- state


class Phase(StrEnum):
    IDLE = "idle"
    PAUSING = "pausing"
    DITHERING = "dithering"
    SETTLING = "settling"
    RESUMING = "resuming"
    GUARDING = "guarding"
    """No dither: saving held paused while guiding is bad (the frame guard)."""


@dataclass(slots=True)
class Camera:
    id: str
    name: str
    order: int
    connected: bool = True
    capturing: bool = False
    frames_saved: int = 0
    frames_since: int = 0
    seconds_since: float = 0.0
    last_exposure_s: float = 0.0
    paused_by_app: bool = False
    paused_by_user: bool = False
    last_watchdog_reason: str = ""
    suspect_alert_at: float = -math.inf
    held_back: tuple[str, ...] = ()
    """Why the guard held saving, while its resume waits for the next frame boundary:
    the frame in progress is not saved, and is named with these reasons."""

    def due(self, settings: DitherSettings) -> bool:
        if self.frames_since >= settings.ditherevery:
            return True
        minutes = settings.ditherminutes
        return minutes > 0 and self.seconds_since >= minutes * 60.0

    def frames_to_next(self, settings: DitherSettings) -> int:
        return max(0, settings.ditherevery - self.frames_since)


@dataclass(slots=True)
class _Member:
    """One camera's part in a cycle."""

    pause_id: int
    paused_at: float
    frames_since_last: int
    acked: bool = False
    resume_id: int | None = None
    resumed_at: float | None = None
    frames_not_saved: int = 0


@dataclass(slots=True)
class Cycle:
    number: int
    trigger: str
    started: float
    request: DitherRequest
    after_next_frame: bool
    members: dict[str, _Member] = field(default_factory=dict)
    deadline: float = 0.0
    outcome: DitherOutcome | None = None
    finished_at: float | None = None


@dataclass(slots=True)
class Totals:
    dithers: int = 0
    failures: int = 0
    skipped: int = 0
    settle_s_sum: float = 0.0
    settle_count: int = 0
    lost_s: float = 0.0
    guarded_frames: int = 0
    """Frames that saw bad guiding and were not saved (the guard held saving)."""
    unguarded_saved: int = 0
    """Frames that saw bad guiding and were saved anyway (before the pause took hold,
    or after the guard let go)."""
    suspect_frames: int = 0
    """Frames SharpCap may have saved while saving was paused."""
    guard_s: float = 0.0
    """How long the guard held saving paused in all."""
    lost_imaging_s_sum: float = 0.0
    lost_imaging_count: int = 0

    @property
    def mean_lost_imaging_s(self) -> float | None:
        if not self.lost_imaging_count:
            return None
        return self.lost_imaging_s_sum / self.lost_imaging_count

    @property
    def mean_settle_s(self) -> float | None:
        return self.settle_s_sum / self.settle_count if self.settle_count else None


def request_from(settings: DitherSettings) -> DitherRequest:
    return DitherRequest(
        amount=settings.maxpixels,
        ra_only=settings.raonly,
        settle_pixels=settings.settletarget,
        settle_time=settings.settledelay,
        settle_timeout=settings.settlemax,
        settle_mode=settings.settlemode,
        settle_exposure_s=settings.settleexposure,
    )


class DitherMachine:
    def __init__(
        self, settings: DitherSettings | None = None, history: GuideHistory | None = None
    ) -> None:
        self.settings = settings or DitherSettings()
        self.history = history if history is not None else GuideHistory()
        """PHD2's guide steps, fed by whoever reads PHD2 (not through ``handle``: they
        change no decision until a dither asks for its baseline or its cost)."""
        self.cost: tuple[LedgerEntry, CostMeter] | None = None
        """The last cycle's ledger entry, waiting for the frames that complete its cost."""
        self.phase = Phase.IDLE
        self.phase_since = 0.0
        self.cameras: dict[str, Camera] = {}
        self.guider = GuiderUpdate(connected=False, state=Phd2State.UNKNOWN)
        self.cycle: Cycle | None = None
        self.last_outcome: DitherOutcome | None = None
        self.last_entry: LedgerEntry | None = None
        self.skip_reason: str | None = None
        self.totals = Totals()
        self._ids = itertools.count(1)
        self._cycles = itertools.count(1)
        self._camera_numbers = itertools.count(1)
        self._timer: float | None = None
        self._retry_at = -math.inf
        self.guard = FrameGuard(GuardConfig.from_settings(self.settings), self.history)
        self.hold: dict[str, int] = {}
        """Cameras the guard holds paused, with the id of the pause sent."""
        self._hold_reasons: list[str] = []
        self._renew_at: float | None = None

    # ------------------------------------------------------------ entry point

    def handle(self, event: Input, now: float) -> list[Action]:
        """Apply one input; return what to do, in order."""
        actions: list[Action] = []
        handler = _TABLE.get((self.phase, type(event))) or _ANY_PHASE.get(type(event))
        if handler is not None:
            handler(self, event, now, actions)
        self._sync_guard(now, actions)
        if self.cost is not None and self.cost[1].complete(now):
            self._record_cost(actions)
        self._sync_timer(actions)
        return actions

    def flush(self, now: float) -> list[Action]:
        """Write the ledger line still waiting for its cost (ditherapp is stopping)."""
        del now
        actions: list[Action] = []
        self._record_cost(actions)
        return actions

    def camera_id_for(self, name: str) -> str:
        """The id a camera of this name gets (a reconnecting camera keeps its id)."""
        for cam in self.cameras.values():
            if cam.name == name and not cam.connected:
                return cam.id
        return f"cam-{next(self._camera_numbers)}"

    def refusal(self) -> str | None:
        """Why a dither cannot start now, or None if it can."""
        if self.phase is Phase.GUARDING:
            condition = self.guard.condition()
            why = condition.text if condition is not None else "guiding is bad"
            return f"saving is paused by the frame guard: {why}"
        if self.phase is not Phase.IDLE:
            return f"a dither cycle is already running ({self.phase.value})"
        g = self.guider
        if not g.connected:
            return "PHD2 is not connected"
        if g.state is Phd2State.PAUSED:
            return "PHD2 is paused"
        if g.state is Phd2State.LOST_LOCK:
            return "PHD2 has lost the guide star"
        if g.state is not Phd2State.GUIDING:
            return f"PHD2 is not guiding (state {g.state.value})"
        if g.settling:
            return "PHD2 is already settling"
        return None

    def capturing_cameras(self) -> list[Camera]:
        return [c for c in self.cameras.values() if c.connected and c.capturing]

    def pacing_cameras(self) -> list[Camera]:
        """The cameras whose frame counts decide when the next dither is due."""
        # A camera the user paused saves nothing, so it would never become due.
        capturing = [c for c in self.capturing_cameras() if not c.paused_by_user]
        if self.settings.multicamera == "primary" and capturing:
            primary = self._primary()
            if primary is not None and primary.capturing:
                return [primary]
        return capturing

    def retry_in(self, now: float) -> float | None:
        """Seconds until a due dither is tried again after PHD2 refused one, or None."""
        return self._retry_at - now if self._retry_at > now else None

    def is_due(self) -> bool:
        pacing = self.pacing_cameras()
        return bool(pacing) and all(c.due(self.settings) for c in pacing)

    # ------------------------------------------------------------ handlers

    def _on_hello(self, event: CameraHello, now: float, actions: list[Action]) -> None:
        cam = self.cameras.get(event.camera)
        if cam is None:
            cam = Camera(id=event.camera, name=event.name, order=len(self.cameras))
            if any(c.connected and c.frames_saved for c in self.cameras.values()):
                # Joining a session under way: do not hold the others back ("all") until
                # this camera has its own ditherevery frames.
                cam.frames_since = self.settings.ditherevery
            self.cameras[event.camera] = cam
        cam.connected = True
        cam.name = event.name
        cam.paused_by_app = False
        cam.paused_by_user = False
        actions.append(Notify(level=Level.INFO, message=f"camera {cam.name} connected"))
        if self.cycle is not None and self.phase in (
            Phase.PAUSING,
            Phase.DITHERING,
            Phase.SETTLING,
        ):
            # It must not save frames while the mount moves: pause it straight away.
            self._pause_member(cam, self.cycle, now, actions, acked=self.phase is not Phase.PAUSING)
        elif self.phase is Phase.GUARDING:
            self._hold_camera(cam, actions)

    def _on_gone(self, event: CameraGone, now: float, actions: list[Action]) -> None:
        cam = self.cameras.get(event.camera)
        if cam is None:
            return
        cam.connected = False
        cam.capturing = False
        cam.paused_by_app = False
        self.hold.pop(event.camera, None)
        if self.cost is not None:
            self.cost[1].camera_left(event.camera)
        actions.append(Notify(level=Level.ALERT, message=f"camera {cam.name} disconnected"))
        cycle = self.cycle
        if cycle is None or event.camera not in cycle.members:
            return
        member = cycle.members[event.camera]
        if member.resumed_at is None:
            member.resumed_at = now
        if self.phase is Phase.PAUSING:
            self._maybe_all_acked(now, actions)
        elif self.phase is Phase.RESUMING:
            self._maybe_resumed(now, actions)

    def _on_capture(self, event: CameraCapture, now: float, actions: list[Action]) -> None:
        del now, actions
        cam = self.cameras.get(event.camera)
        if cam is not None:
            cam.capturing = event.capturing

    def _on_paused(self, event: CameraPaused, now: float, actions: list[Action]) -> None:
        cam = self.cameras.get(event.camera)
        if cam is None:
            return
        if event.by == "user":
            cam.paused_by_user = event.paused
            if event.paused and self.cost is not None:
                self.cost[1].camera_left(event.camera)
            self._maybe_resumed(now, actions)
        elif event.by == "watchdog":
            cam.paused_by_app = False
            cam.last_watchdog_reason = event.reason
            actions.append(
                Notify(
                    level=Level.WARNING,
                    message=f"camera {cam.name} resumed by its watchdog: {event.reason or '?'}",
                )
            )
        else:
            cam.paused_by_app = event.paused
        if not event.paused and event.by != "user":
            self._note_unpaused(event.camera, now, actions, by_watchdog=event.by == "watchdog")
        elif event.paused and event.by == "app" and self.phase is Phase.PAUSING:
            self._ack(event.camera, None, now, actions)

    def _on_ack(self, event: CameraAck, now: float, actions: list[Action]) -> None:
        self._ack(event.camera, event.command_id, now, actions)

    def _on_frame(self, event: CameraFrame, now: float, actions: list[Action]) -> None:
        cam = self.cameras.get(event.camera)
        if cam is None:
            return
        cam.last_exposure_s = max(0.0, event.exposure_s)
        if self.cost is not None:
            self.cost[1].frame(
                event.camera,
                end=now,
                exposure_s=cam.last_exposure_s,
                saved=event.saved,
                history=self.history,
            )
        cycle = self.cycle
        member = cycle.members.get(event.camera) if cycle is not None else None
        if event.saved:
            cam.capturing = True
            cam.frames_saved += 1
            cam.frames_since += 1
            cam.seconds_since += cam.last_exposure_s
            if member is not None and self.phase in (Phase.DITHERING, Phase.SETTLING):
                actions.append(
                    Notify(
                        level=Level.ALERT,
                        message=f"camera {cam.name} saved a frame during the dither",
                    )
                )
        elif member is not None:
            member.frames_not_saved += 1
        self._judge_frame(cam, event, now, actions)
        if self.phase is Phase.IDLE:
            self._maybe_start(now, actions)

    def _judge_frame(
        self, cam: Camera, event: CameraFrame, now: float, actions: list[Action]
    ) -> None:
        """Put a frame that saw bad guiding in the ledger: saved (the user may want to
        delete it) or held back by the guard."""
        if not cam.capturing:
            return
        conditions = tuple(c.text for c in self.guard.judge_frame(now - cam.last_exposure_s, now))
        if event.saved:
            cam.held_back = ()
        elif not conditions and cam.held_back:
            # The frame in progress when guiding came back: the guard's resume waited
            # for its end, so it was not saved either (its overlap with the bad stretch
            # may be shorter than the time its report took to arrive).
            conditions, cam.held_back = cam.held_back, ()
        if not conditions:
            return
        cycle = self.cycle
        in_cycle = cycle is not None and cam.id in cycle.members
        if event.saved:
            self.totals.unguarded_saved += 1
        elif in_cycle:
            return  # held back by the dither, not by the guard
        else:
            self.totals.guarded_frames += 1
        actions.append(
            FrameRecord(
                entry=FrameEntry(
                    kind=FrameKind.GUARDED,
                    camera=cam.name,
                    camera_id=cam.id,
                    saved=event.saved,
                    reasons=conditions,
                    exposure_s=cam.last_exposure_s,
                    seq=event.seq,
                    count=event.count,
                    file=event.file,
                    cycle=cycle.number if cycle is not None and in_cycle else None,
                )
            )
        )

    def _on_suspect(self, event: CameraSuspect, now: float, actions: list[Action]) -> None:
        cam = self.cameras.get(event.camera)
        if cam is None:
            return
        self.totals.suspect_frames += 1
        cycle = self.cycle
        actions.append(
            FrameRecord(
                entry=FrameEntry(
                    kind=FrameKind.SUSPECT,
                    camera=cam.name,
                    camera_id=cam.id,
                    saved=True,
                    reasons=("SharpCap's saved-frame counter went up while saving was paused",),
                    seq=event.seq,
                    count=event.count,
                    file=event.file,
                    agent_t=event.agent_t,
                    cycle=cycle.number if cycle is not None else None,
                )
            )
        )
        number = f"frame {event.count}" if event.count is not None else "a frame"
        text = (
            f"camera {cam.name}: SharpCap saved {number} while ditherapp had paused saving: "
            "pausing does not stop this SharpCap from saving (see ditherctl frames --suspect)"
        )
        if now - cam.suspect_alert_at >= SUSPECT_ALERT_S:
            cam.suspect_alert_at = now
            actions.append(Notify(level=Level.ALERT, message=text))
        else:
            actions.append(Notify(level=Level.WARNING, message=text))

    def _on_guide_step(self, event: GuideStepSeen, now: float, actions: list[Action]) -> None:
        del actions
        self.history.add(GuideSample(t=now, ra=event.ra, dec=event.dec))
        window = max((c.last_exposure_s for c in self.capturing_cameras()), default=0.0)
        self.guard.guiding_error(now, window)

    def _on_guider(self, event: GuiderUpdate, now: float, actions: list[Action]) -> None:
        was = self.guider
        self.guider = event
        if event.state is not Phd2State.GUIDING or not event.connected:
            self.history.break_at(now)
        if self.phase is Phase.IDLE and self.refusal() is None:
            self.skip_reason = None  # announce the next skip again, whatever its reason
        if was.connected and not event.connected:
            actions.append(Notify(level=Level.ALERT, message="lost the connection to PHD2"))
        elif event.connected and not was.connected:
            actions.append(Notify(level=Level.INFO, message="connected to PHD2"))
        if not event.connected and self.phase in (Phase.DITHERING, Phase.SETTLING):
            # Fail open: nobody will tell us how this settle ends.
            actions.append(CancelDither(reason="PHD2 connection lost"))
            self._finish(
                DitherOutcome(kind=OutcomeKind.LOST, message="PHD2 connection lost mid-dither"),
                now,
                actions,
            )
        elif not event.connected and self.phase is Phase.PAUSING:
            self._finish(
                DitherOutcome(kind=OutcomeKind.REFUSED, message="PHD2 connection lost"),
                now,
                actions,
            )

    def _on_settle_started(self, event: SettleStarted, now: float, actions: list[Action]) -> None:
        del event, actions
        self._set_phase(Phase.SETTLING, now)

    def _on_finished(self, event: DitherFinished, now: float, actions: list[Action]) -> None:
        self._finish(event.outcome, now, actions)

    def _on_settings(self, event: SettingsChanged, now: float, actions: list[Action]) -> None:
        del now, actions
        self.settings = event.settings
        self.guard.configure(GuardConfig.from_settings(event.settings))

    def _on_dither_now(self, event: DitherNow, now: float, actions: list[Action]) -> None:
        del event
        reason = self.refusal()
        if reason is not None:
            actions.append(Notify(level=Level.WARNING, message=f"cannot dither now: {reason}"))
            return
        self._start_cycle("manual", now, actions)

    def _on_tick(self, event: Tick, now: float, actions: list[Action]) -> None:
        del event
        cycle = self.cycle
        if cycle is None or now < cycle.deadline:
            return
        if self.phase is Phase.PAUSING:
            slow = [self.cameras[cid].name for cid, m in cycle.members.items() if not m.acked]
            self._finish(
                DitherOutcome(
                    kind=OutcomeKind.REFUSED,
                    message="no pause confirmation from " + ", ".join(sorted(slow)),
                ),
                now,
                actions,
            )
        elif self.phase in (Phase.DITHERING, Phase.SETTLING):
            actions.append(CancelDither(reason="dither deadline passed"))
            self._finish(
                DitherOutcome(
                    kind=OutcomeKind.TIMED_OUT,
                    message="no result from PHD2 within the settle timeout plus margin",
                ),
                now,
                actions,
            )
        elif self.phase is Phase.RESUMING:
            self._complete(now, actions)

    # ------------------------------------------------------------ cycle steps

    def _maybe_start(self, now: float, actions: list[Action]) -> None:
        if not self.settings.enabled or not self.is_due() or now < self._retry_at:
            return
        reason = self.refusal()
        if reason is not None:
            if reason != self.skip_reason:
                self.totals.skipped += 1
                actions.append(
                    Notify(level=Level.WARNING, message=f"dither due but skipped: {reason}")
                )
            self.skip_reason = reason
            return
        self.skip_reason = None
        pacing = self.pacing_cameras()
        by_time = not any(c.frames_since >= self.settings.ditherevery for c in pacing)
        self._start_cycle("time" if by_time else "frames", now, actions)

    def _start_cycle(self, trigger: str, now: float, actions: list[Action]) -> None:
        self._record_cost(actions)  # the last dither's line first, with what is known
        s = self.settings
        cycle = Cycle(
            number=next(self._cycles),
            trigger=trigger,
            started=now,
            request=request_from(s),
            after_next_frame=s.waitfornextframe,
        )
        self.cycle = cycle
        self._set_phase(Phase.PAUSING, now)
        cycle.deadline = now + PAUSE_ACK_TIMEOUT_S
        for cam in self.cameras.values():
            if cam.connected:
                self._pause_member(cam, cycle, now, actions, acked=False)
        self._maybe_all_acked(now, actions)

    def _pause_member(
        self, cam: Camera, cycle: Cycle, now: float, actions: list[Action], *, acked: bool
    ) -> None:
        command_id = next(self._ids)
        member = cycle.members.get(cam.id)
        if member is None:
            cycle.members[cam.id] = _Member(
                pause_id=command_id,
                paused_at=now,
                frames_since_last=cam.frames_since,
                acked=acked,
            )
        else:
            # Back after dropping out mid-cycle: the same member, paused again; what it
            # did not save before it dropped still counts.
            member.pause_id = command_id
            member.acked = acked
            member.resume_id = None
            member.resumed_at = None
        max_s = (
            PAUSE_ACK_TIMEOUT_S
            + cycle.request.settle_timeout
            + DITHER_GUARD_MARGIN_S
            + PAUSE_MARGIN_S
        )
        actions.append(SendPause(camera=cam.id, command_id=command_id, max_s=max_s))

    def _ack(self, camera: str, command_id: int | None, now: float, actions: list[Action]) -> None:
        cycle = self.cycle
        if cycle is None or camera not in cycle.members:
            return
        member = cycle.members[camera]
        if command_id is not None and command_id not in (member.pause_id, member.resume_id):
            return
        if command_id is None or command_id == member.pause_id:
            member.acked = True
            if self.phase is Phase.PAUSING:
                self._maybe_all_acked(now, actions)

    def _maybe_all_acked(self, now: float, actions: list[Action]) -> None:
        cycle = self.cycle
        if cycle is None or self.phase is not Phase.PAUSING:
            return
        waiting = [
            cid for cid, m in cycle.members.items() if not m.acked and self.cameras[cid].connected
        ]
        if waiting:
            return
        self._set_phase(Phase.DITHERING, now)
        cycle.deadline = now + cycle.request.settle_timeout + DITHER_GUARD_MARGIN_S
        # The guiding of the minute before the mount moves: what calm settles back to,
        # and what the first saved frame after the dither is measured against.
        cycle.request = dataclasses.replace(cycle.request, baseline=self.history.baseline(now))
        actions.append(StartDither(request=cycle.request))

    def _finish(self, outcome: DitherOutcome, now: float, actions: list[Action]) -> None:
        """The dither is over, one way or another: let every camera save again."""
        cycle = self.cycle
        if cycle is None:
            return
        cycle.outcome = outcome
        cycle.finished_at = now
        self.last_outcome = outcome
        if outcome.kind.moved:
            # No later baseline spans the settle: it starts from here.
            self.history.break_at(now)
        refused = outcome.kind is OutcomeKind.REFUSED and cycle.trigger != "manual"
        if refused and self.guider.connected:
            # Each attempt costs every camera its frame in progress: do not try again at
            # every frame while whatever refused it lasts. (Called off because the link
            # dropped: nothing starts while PHD2 is away, and once it is back the due
            # dither should not wait.)
            self._retry_at = now + REFUSED_RETRY_S
        if outcome.kind.moved:
            self.totals.dithers += 1
            for cam in self.cameras.values():
                cam.frames_since = 0
                cam.seconds_since = 0.0
        if not outcome.ok:
            self.totals.failures += 1
        if outcome.settle_s is not None and outcome.ok:
            self.totals.settle_s_sum += outcome.settle_s
            self.totals.settle_count += 1
        level = Level.INFO if outcome.ok else Level.ALERT
        text = f"dither {cycle.number}: {outcome.kind.value}"
        if outcome.message:
            text += f" ({outcome.message})"
        actions.append(Notify(level=level, message=text))
        self._set_phase(Phase.RESUMING, now)
        # A dither that never started did not move the mount: the frame in progress is good.
        after_next_frame = cycle.after_next_frame and outcome.kind.moved
        # Guiding is bad as the dither ends (PHD2 went away, lost the star, stopped): the
        # frame guard takes the cameras over as they are, paused. A resume first would let
        # the frame in progress be saved unguided before the guard's pause arrived.
        to_guard = self._guard_takes_over(now)
        longest = 0.0
        for cid, member in cycle.members.items():
            cam = self.cameras[cid]
            # Until a frame told us, assume a long exposure: giving up on the frame
            # boundary too early would save the frame that overlapped the settle.
            exposure = cam.last_exposure_s or UNKNOWN_EXPOSURE_S
            longest = max(longest, exposure)
            if not cam.connected or to_guard:
                member.resumed_at = member.resumed_at or now
                continue
            member.resume_id = next(self._ids)
            actions.append(
                SendResume(
                    camera=cid,
                    command_id=member.resume_id,
                    after_next_frame=after_next_frame,
                    max_wait_s=exposure + RESUME_GRACE_S,
                )
            )
        wait = longest if after_next_frame else 0.0
        cycle.deadline = now + wait + RESUME_GRACE_S
        self._maybe_resumed(now, actions)

    def _note_unpaused(
        self, camera: str, now: float, actions: list[Action], *, by_watchdog: bool = False
    ) -> None:
        cycle = self.cycle
        if cycle is None or camera not in cycle.members:
            return
        member = cycle.members[camera]
        # A watchdog resume ends the camera's pause before we asked: it will not report
        # another unpause after our resume, so it counts as resumed from now.
        if (member.resume_id is not None or by_watchdog) and member.resumed_at is None:
            member.resumed_at = now
            self._maybe_resumed(now, actions)

    def _maybe_resumed(self, now: float, actions: list[Action]) -> None:
        cycle = self.cycle
        if cycle is None or self.phase is not Phase.RESUMING:
            return
        # A camera the user paused will not report saving again until the user says so.
        if all(
            member.resumed_at is not None or self.cameras[cid].paused_by_user
            for cid, member in cycle.members.items()
        ):
            self._complete(now, actions)

    def _complete(self, now: float, actions: list[Action]) -> None:
        cycle = self.cycle
        if cycle is None or cycle.outcome is None:
            return
        records = []
        lost = 0.0
        for cid, member in cycle.members.items():
            end = member.resumed_at if member.resumed_at is not None else now
            paused_s = max(0.0, end - member.paused_at)
            lost = max(lost, paused_s)
            records.append(
                CameraRecord(
                    name=self.cameras[cid].name,
                    frames_since_last=member.frames_since_last,
                    paused_s=paused_s,
                    frames_not_saved=member.frames_not_saved,
                )
            )
        self.totals.lost_s += lost
        entry = LedgerEntry(
            cycle=cycle.number,
            trigger=cycle.trigger,
            request=cycle.request,
            outcome=cycle.outcome,
            cameras=tuple(records),
            cycle_s=now - cycle.started,
            lost_s=lost,
        )
        # The ledger line waits for the first saved frame of every camera that saves.
        saving = [
            cid
            for cid in cycle.members
            if self.cameras[cid].connected
            and self.cameras[cid].capturing
            and not self.cameras[cid].paused_by_user
        ]
        longest = max(
            (self.cameras[cid].last_exposure_s or UNKNOWN_EXPOSURE_S for cid in saving),
            default=0.0,
        )
        meter = CostMeter.start(
            cameras=saving,
            trigger_end=cycle.started,
            settle_end=cycle.finished_at if cycle.finished_at is not None else now,
            deadline=now + longest + RESUME_GRACE_S,
            settle_s=cycle.outcome.settle_s,
            baseline=cycle.request.baseline,
        )
        self.cost = (entry, meter)
        self.cycle = None
        self._set_phase(Phase.IDLE, now)
        if meter.complete(now):  # no camera saves: nothing to wait for
            self._record_cost(actions)

    def _record_cost(self, actions: list[Action]) -> None:
        if self.cost is None:
            return
        entry, meter = self.cost
        self.cost = None
        cost = meter.result()
        entry = dataclasses.replace(entry, cost=cost)
        if cost.lost_imaging_s is not None:
            self.totals.lost_imaging_s_sum += cost.lost_imaging_s
            self.totals.lost_imaging_count += 1
        self.last_entry = entry
        actions.append(Record(entry=entry))

    # ------------------------------------------------------------ the frame guard

    def _sync_guard(self, now: float, actions: list[Action]) -> None:
        """After every input: tell the guard what PHD2 is doing, then hold saving or let
        it go as the guard says."""
        g = self.guider
        self.guard.guider(
            now,
            connected=g.connected,
            state=g.state,
            settling=g.settling,
            our_dither=self.phase not in (Phase.IDLE, Phase.GUARDING),
        )
        if self.phase is Phase.IDLE:
            if self.guard.should_hold() and any(c.connected for c in self.cameras.values()):
                self._start_hold(now, actions)
        elif self.phase is Phase.GUARDING:
            if not self.guard.should_hold():
                self._end_hold(now, actions)
                return
            condition = self.guard.condition()
            if condition is not None and condition.text not in self._hold_reasons:
                self._hold_reasons.append(condition.text)

    def _guard_takes_over(self, now: float) -> bool:
        """Whether the guard holds saving the moment the dither in progress ends."""
        g = self.guider
        # PHD2 still settling now is the settle of this dither, not someone else's.
        self.guard.guider(
            now, connected=g.connected, state=g.state, settling=g.settling, our_dither=True
        )
        return self.guard.should_hold() and any(c.connected for c in self.cameras.values())

    def _start_hold(self, now: float, actions: list[Action]) -> None:
        condition = self.guard.condition()
        self._set_phase(Phase.GUARDING, now)
        self.guard.hold_started(now)
        self._renew_at = now + GUARD_RENEW_S
        for cam in self.cameras.values():
            if cam.connected:
                self._hold_camera(cam, actions)
        why = condition.text if condition is not None else "guiding is bad"
        self._hold_reasons = [why]
        actions.append(Notify(level=Level.WARNING, message=f"GUARDING: {why}, saving paused"))

    def _hold_camera(self, cam: Camera, actions: list[Action]) -> None:
        command_id = next(self._ids)
        self.hold[cam.id] = command_id
        actions.append(SendPause(camera=cam.id, command_id=command_id, max_s=GUARD_PAUSE_S))

    def _end_hold(self, now: float, actions: list[Action]) -> None:
        let_go = self.guard.let_go
        since = self.guard.hold_since
        if since is not None:
            self.totals.guard_s += max(0.0, now - since)
        for cid in self.hold:
            cam = self.cameras[cid]
            if not cam.connected:
                continue
            exposure = cam.last_exposure_s or UNKNOWN_EXPOSURE_S
            if not let_go:
                cam.held_back = tuple(self._hold_reasons)
            actions.append(
                SendResume(
                    camera=cid,
                    command_id=next(self._ids),
                    # The frame in progress saw the bad guiding: save from the next one.
                    # Letting go saves at once, as the user asked.
                    after_next_frame=not let_go,
                    max_wait_s=exposure + RESUME_GRACE_S,
                )
            )
        self.hold.clear()
        self.guard.hold_ended()
        self._renew_at = None
        self._set_phase(Phase.IDLE, now)
        if not let_go:
            actions.append(
                Notify(level=Level.INFO, message="guiding is back: saving from the next frame")
            )

    def _on_guard_tick(self, event: Tick, now: float, actions: list[Action]) -> None:
        del event
        if self.guard.check_max(now):
            condition = self.guard.condition()
            why = condition.text if condition is not None else "guiding is bad"
            minutes = self.guard.config.max_s / 60.0
            actions.append(
                Notify(
                    level=Level.ALERT,
                    message=f"frame guard let go after {minutes:g} min ({why}): frames are "
                    "being saved without good guiding",
                )
            )
            self._end_hold(now, actions)
            return
        if self._renew_at is not None and now >= self._renew_at:
            self._renew_at = now + GUARD_RENEW_S
            for cid in list(self.hold):
                cam = self.cameras[cid]
                if cam.connected:
                    self._hold_camera(cam, actions)

    # ------------------------------------------------------------ helpers

    def _primary(self) -> Camera | None:
        wanted = self.settings.primarycamera.strip()
        connected = [c for c in self.cameras.values() if c.connected]
        if wanted:
            for cam in connected:
                if wanted in (cam.name, cam.id):
                    return cam
        return min(connected, key=lambda c: c.order, default=None)

    def _set_phase(self, phase: Phase, now: float) -> None:
        if phase is not self.phase:
            self.phase = phase
            self.phase_since = now

    def _sync_timer(self, actions: list[Action]) -> None:
        deadlines = [self.cycle.deadline] if self.cycle is not None else []
        if self.phase is Phase.GUARDING:
            deadlines += [t for t in (self._renew_at, self.guard.let_go_at()) if t is not None]
        if self.cost is not None:
            deadlines.append(self.cost[1].deadline)  # the ledger line is written by then
        wanted = min(deadlines, default=None)
        if wanted != self._timer:
            self._timer = wanted
            actions.append(SetTimer(at=wanted))


_Handler = Callable[[DitherMachine, Any, float, list[Action]], None]

_ACTIVE = (Phase.PAUSING, Phase.DITHERING, Phase.SETTLING, Phase.RESUMING)

# Inputs whose meaning depends on the phase. Anything not listed for a phase falls
# back to _ANY_PHASE, and an input in neither table is ignored in that phase (for
# instance a late DitherFinished when no dither is running).
_TABLE: dict[tuple[Phase, type], _Handler] = {
    (Phase.IDLE, DitherNow): DitherMachine._on_dither_now,
    (Phase.DITHERING, SettleStarted): DitherMachine._on_settle_started,
    (Phase.DITHERING, DitherFinished): DitherMachine._on_finished,
    (Phase.SETTLING, DitherFinished): DitherMachine._on_finished,
    **{(phase, Tick): DitherMachine._on_tick for phase in _ACTIVE},
    (Phase.GUARDING, Tick): DitherMachine._on_guard_tick,
}

_ANY_PHASE: dict[type, _Handler] = {
    CameraHello: DitherMachine._on_hello,
    CameraGone: DitherMachine._on_gone,
    CameraCapture: DitherMachine._on_capture,
    CameraPaused: DitherMachine._on_paused,
    CameraAck: DitherMachine._on_ack,
    CameraFrame: DitherMachine._on_frame,
    CameraSuspect: DitherMachine._on_suspect,
    GuideStepSeen: DitherMachine._on_guide_step,
    GuiderUpdate: DitherMachine._on_guider,
    SettingsChanged: DitherMachine._on_settings,
}


def _refuse_busy(
    machine: DitherMachine, event: DitherNow, now: float, actions: list[Action]
) -> None:
    del event, now
    actions.append(Notify(level=Level.WARNING, message=f"cannot dither now: {machine.refusal()}"))


for _phase in (*_ACTIVE, Phase.GUARDING):
    _TABLE[(_phase, DitherNow)] = _refuse_busy
