"""Shared helpers for the core tests, handed out as fixtures (test modules are imported
with importlib and cannot import one another).

``Rig`` drives a ``DitherMachine`` the way the service does: time is passed as ``now``,
timers the machine arms fire as ``Tick`` when time passes them, and each camera is a
``FakeCamera`` that behaves like the SharpCap hook (confirms a pause, reports every frame
and every change of its paused state, resumes at the next frame boundary when asked).
Nothing sleeps: ``advance`` jumps the clock from one frame boundary to the next.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ditherapp.core import machine as m
from ditherapp.core.dither import DitherOutcome, OutcomeKind
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "data" / "transcripts"
START = 1000.0


@dataclass
class TranscriptRecord:
    file: str
    conn: str
    direction: str
    raw: str


def load_transcripts() -> list[TranscriptRecord]:
    records = []
    files = sorted(TRANSCRIPTS.glob("*.jsonl"))
    assert files, f"no PHD2 transcripts in {TRANSCRIPTS}"
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if "raw" in rec:
                records.append(TranscriptRecord(path.stem, rec["conn"], rec["dir"], rec["raw"]))
    return records


@pytest.fixture(scope="session")
def transcripts() -> list[TranscriptRecord]:
    return load_transcripts()


# ------------------------------------------------------------------ the machine rig


@dataclass
class FakeCamera:
    """A camera agent as the hook behaves: saves a frame when capturing and unpaused."""

    id: str
    name: str
    exposure_s: float
    acks: bool = True
    capturing: bool = True
    connected: bool = True
    paused_by_app: bool = False
    paused_by_user: bool = False
    resume_at_boundary: bool = False
    next_end: float = 0.0
    seq: int = 0
    saved: int = 0
    last_pause_id: int | None = None

    @property
    def saving(self) -> bool:
        return self.capturing and not self.paused_by_app and not self.paused_by_user


@dataclass
class Rig:
    settings: DitherSettings = field(default_factory=DitherSettings)
    now: float = START
    machine: m.DitherMachine = field(init=False)
    cameras: dict[str, FakeCamera] = field(default_factory=dict)
    log: list[m.Action] = field(default_factory=list)
    timer: float | None = None
    """When the service would fire Tick (cleared once fired)."""
    armed: float | None = None
    """The last SetTimer the machine asked for."""
    unmatched: dict[str, int] = field(default_factory=dict)
    """Cameras sent a pause not yet followed by a resume (cleared when a camera reconnects)."""
    acked: set[tuple[str, int]] = field(default_factory=set)
    """(camera, pause id) pairs the camera confirmed, by ack or by reporting the pause."""
    _queue: deque[m.Input] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.machine = m.DitherMachine(self.settings)

    @classmethod
    def with_settings(cls, **values: Any) -> Rig:
        return cls(settings=DitherSettings(**values))

    # -- feeding inputs

    def feed(self, event: m.Input, *, at: float | None = None) -> list[m.Action]:
        """Handle ``event`` and every camera reply it causes; return all the actions."""
        if at is not None:
            assert at >= self.now, "time runs forwards"
            self.now = at
        self._queue.append(event)
        out: list[m.Action] = []
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, m.CameraHello):
                self.unmatched.pop(item.camera, None)
            if isinstance(item, m.CameraAck):
                self.acked.add((item.camera, item.command_id))
            elif (
                isinstance(item, m.CameraPaused)
                and item.paused
                and item.by == "app"
                and item.camera in self.unmatched
            ):
                # Reporting the pause confirms the latest pause sent to that camera.
                self.acked.add((item.camera, self.unmatched[item.camera]))
            actions = self.machine.handle(item, self.now)
            out.extend(actions)
            self.log.extend(actions)
            for action in actions:
                self._carry_out(action)
            self._check(actions)
        return out

    def _check(self, actions: list[m.Action]) -> None:
        """What must hold after every single input, in every test."""
        machine = self.machine
        idle = machine.phase is m.Phase.IDLE
        waiting_for_cost = machine.cost is not None
        assert (self.armed is None) == (idle and not waiting_for_cost), (
            "a running cycle, or a ledger line waiting for its cost, always has a timer armed"
        )
        if idle:
            assert self.left_paused() == [], "idle with a camera still paused"
        if any(isinstance(a, m.StartDither) for a in actions):
            assert machine.cycle is not None
            for cid, member in machine.cycle.members.items():
                if machine.cameras[cid].connected:
                    assert (cid, member.pause_id) in self.acked, f"dither before {cid} paused"

    def _carry_out(self, action: m.Action) -> None:
        match action:
            case m.SetTimer(at=at):
                self.timer = self.armed = at
            case m.SendPause(camera=cid, command_id=cmd):
                self.unmatched[cid] = cmd
                cam = self.cameras.get(cid)
                if cam is not None and cam.connected:
                    cam.paused_by_app = True
                    cam.resume_at_boundary = False
                    cam.last_pause_id = cmd
                    if cam.acks:
                        self._queue.append(m.CameraPaused(camera=cid, paused=True, by="app"))
                        self._queue.append(m.CameraAck(camera=cid, command_id=cmd))
            case m.SendResume(camera=cid, command_id=cmd, after_next_frame=later):
                self.unmatched.pop(cid, None)
                cam = self.cameras.get(cid)
                if cam is not None and cam.connected and cam.acks:
                    self._queue.append(m.CameraAck(camera=cid, command_id=cmd))
                    if later and cam.paused_by_app:
                        cam.resume_at_boundary = True
                    elif cam.paused_by_app:
                        cam.paused_by_app = False
                        self._queue.append(m.CameraPaused(camera=cid, paused=False, by="app"))
            case _:
                pass

    # -- cameras

    def connect(
        self,
        cid: str = "cam-1",
        *,
        name: str | None = None,
        exposure_s: float = 10.0,
        capturing: bool = True,
        acks: bool = True,
    ) -> list[m.Action]:
        cam = FakeCamera(
            id=cid,
            name=name or cid.upper(),
            exposure_s=exposure_s,
            acks=acks,
            capturing=capturing,
            next_end=self.now + exposure_s,
        )
        self.cameras[cid] = cam
        out = self.feed(m.CameraHello(camera=cid, name=cam.name))
        out += self.feed(m.CameraCapture(camera=cid, capturing=capturing))
        return out

    def disconnect(self, cid: str) -> list[m.Action]:
        self.cameras[cid].connected = False
        return self.feed(m.CameraGone(camera=cid))

    def frame(self, cid: str) -> list[m.Action]:
        """The camera's current exposure ends now (the clock jumps to its end)."""
        cam = self.cameras[cid]
        self.now = max(self.now, cam.next_end)
        cam.next_end = self.now + cam.exposure_s
        cam.seq += 1
        saved = cam.saving
        cam.saved += saved
        out = self.feed(
            m.CameraFrame(camera=cid, exposure_s=cam.exposure_s, saved=saved, seq=cam.seq)
        )
        if cam.resume_at_boundary:
            # The frame that overlapped the dither is over: save from the next one.
            cam.resume_at_boundary = False
            cam.paused_by_app = False
            out += self.feed(m.CameraPaused(camera=cid, paused=False, by="app"))
        return out

    def frames(self, cid: str, count: int) -> list[m.Action]:
        out: list[m.Action] = []
        for _ in range(count):
            out += self.frame(cid)
        return out

    def advance(self, to: float) -> list[m.Action]:
        """Let time pass to ``to``: every camera's frame boundary and every timer the
        machine armed on the way happen in time order."""
        out: list[m.Action] = []
        while True:
            live = [c for c in self.cameras.values() if c.connected and c.capturing]
            next_frame = min(live, key=lambda c: c.next_end, default=None)
            frame_at = next_frame.next_end if next_frame is not None else None
            candidates = [t for t in (frame_at, self.timer) if t is not None and t <= to]
            if not candidates:
                break
            when = min(candidates)
            if (
                self.timer is not None
                and when == self.timer
                and (frame_at is None or when < frame_at)
            ):
                self.now = max(self.now, when)
                self.timer = None
                out += self.feed(m.Tick())
            else:
                assert next_frame is not None
                out += self.frame(next_frame.id)
        self.now = max(self.now, to)
        return out

    def advance_until(self, kind: type, *, limit_s: float = 100_000.0) -> list[m.Action]:
        """Advance frame by frame until an action of ``kind`` comes out."""
        out: list[m.Action] = []
        end = self.now + limit_s
        while self.now < end:
            live = [c for c in self.cameras.values() if c.connected and c.capturing]
            times = [c.next_end for c in live] + ([self.timer] if self.timer is not None else [])
            if not times:
                break
            step = self.advance(min(times))
            out += step
            if any(isinstance(a, kind) for a in step):
                return out
        raise AssertionError(f"no {kind.__name__} within {limit_s} s")

    def run_until_idle(self, *, limit_s: float = 10_000.0) -> list[m.Action]:
        """Let frames and timers happen, one moment at a time, until the cycle is over."""
        out: list[m.Action] = []
        end = self.now + limit_s
        while self.machine.phase is not m.Phase.IDLE:
            live = [c for c in self.cameras.values() if c.connected and c.capturing]
            times = [c.next_end for c in live] + ([self.timer] if self.timer is not None else [])
            assert times, "a cycle is running with no timer armed"
            when = max(self.now, min(times))
            assert when <= end, f"still {self.machine.phase.value} after {limit_s} s"
            out += self.advance(when)
        return out

    def ack(self, cid: str) -> list[m.Action]:
        cam = self.cameras[cid]
        assert cam.last_pause_id is not None
        return self.feed(m.CameraAck(camera=cid, command_id=cam.last_pause_id))

    # -- the guider

    def guider(
        self,
        state: Phd2State = Phd2State.GUIDING,
        *,
        connected: bool = True,
        settling: bool = False,
    ) -> list[m.Action]:
        return self.feed(m.GuiderUpdate(connected=connected, state=state, settling=settling))

    def settle_started(self) -> list[m.Action]:
        return self.feed(m.SettleStarted())

    def finish(
        self,
        kind: OutcomeKind = OutcomeKind.SETTLED,
        *,
        message: str = "",
        settle_s: float | None = None,
        at: float | None = None,
    ) -> list[m.Action]:
        if at is not None:
            self.advance(at)
        outcome = DitherOutcome(
            kind=kind,
            message=message,
            settle_s=settle_s,
            total_frames=None if settle_s is None else int(settle_s),
            dropped_frames=None if settle_s is None else 0,
        )
        return self.feed(m.DitherFinished(outcome=outcome))

    def set(self, **values: Any) -> list[m.Action]:
        self.settings = dataclasses.replace(self.machine.settings, **values)
        return self.feed(m.SettingsChanged(settings=self.settings))

    # -- what happened

    @property
    def phase(self) -> m.Phase:
        return self.machine.phase

    def records(self) -> list[m.LedgerEntry]:
        """The ledger entries written so far. The last cycle's waits for its cost (the
        next saved frame of every camera): let the frames come until it is written."""
        pending = self.machine.cost
        if pending is not None:
            live = [c for c in self.cameras.values() if c.connected and c.capturing]
            if live:
                self.advance_until(m.Record, limit_s=max(pending[1].deadline - self.now, 0) + 1)
            else:
                self.now = max(self.now, pending[1].deadline)
                self.feed(m.Tick())
        return [a.entry for a in self.log if isinstance(a, m.Record)]

    def left_paused(self) -> list[str]:
        """Connected cameras sent a pause that no resume followed."""
        return sorted(
            cid
            for cid in self.unmatched
            if cid in self.machine.cameras and self.machine.cameras[cid].connected
        )


def of(kind: type, actions: list[m.Action]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def messages(actions: list[m.Action], level: m.Level | None = None) -> list[str]:
    return [
        a.message
        for a in actions
        if isinstance(a, m.Notify) and (level is None or a.level is level)
    ]


@pytest.fixture(scope="session")
def rig_class() -> type[Rig]:
    return Rig


@pytest.fixture(scope="session")
def pick() -> Any:
    """``pick(Kind, actions)``: the actions of one kind."""
    return of


@pytest.fixture(scope="session")
def notes() -> Any:
    """``notes(actions, level=None)``: the messages shown to the user."""
    return messages
