"""The dither machine, rule by rule, with time passed as ``now`` (nothing sleeps).

Cameras are fake SharpCap hooks (conftest.FakeCamera): they confirm a pause, report every
frame and every change of their paused state, and resume at the next frame boundary when
asked to. Each scenario ends by checking what the user cares about most: the machine is
idle again and no camera was left paused.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditherapp.core import machine as m
from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings

S = Phd2State
K = OutcomeKind
T0 = 1000.0  # the rig's clock at the start; cameras connect then


@pytest.fixture
def make(rig_class):
    """A rig with PHD2 guiding and cameras connected, capturing from T0."""

    def make(cameras=(("cam-1", 10.0),), *, guider=S.GUIDING, names=None, **values):
        rig = rig_class.with_settings(**values)
        if guider is not None:
            rig.guider(guider)
        for i, (cid, exposure) in enumerate(cameras):
            name = names[i] if names else None
            rig.connect(cid, exposure_s=exposure, name=name)
        return rig

    return make


def end_of_cycle(rig, *, within_s: float = 1000.0) -> None:
    """Let the cycle run out (frames and timers) and check nothing was left paused."""
    rig.run_until_idle(limit_s=within_s)
    assert rig.phase is m.Phase.IDLE
    assert rig.left_paused() == []
    assert rig.timer is None or rig.machine.cost is not None, "no timer but the cost's"


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions if not isinstance(a, m.SetTimer)]


# ------------------------------------------------------------------ when a dither is due


@pytest.mark.parametrize("every", [1, 3, 10])
def test_a_dither_is_due_after_ditherevery_saved_frames(make, pick, every):
    rig = make(ditherevery=every)
    for n in range(1, every):
        assert pick(m.SendPause, rig.frame("cam-1")) == [], f"not due after {n} frames"
    actions = rig.frame("cam-1")
    assert rig.now == T0 + 10 * every
    (pause,) = pick(m.SendPause, actions)
    assert pause.camera == "cam-1"
    (start,) = pick(m.StartDither, actions)
    assert kinds(actions).index("StartDither") > kinds(actions).index("SendPause")
    s = DitherSettings()
    assert start.request == DitherRequest(
        amount=s.maxpixels,
        ra_only=s.raonly,
        settle_pixels=s.settletarget,
        settle_time=s.settledelay,
        settle_timeout=s.settlemax,
    )
    assert rig.phase is m.Phase.DITHERING


def test_unsaved_frames_do_not_count(make, pick):
    rig = make(ditherevery=3)
    unsaved = m.CameraFrame(camera="cam-1", exposure_s=10.0, saved=False)
    for _ in range(10):
        assert pick(m.SendPause, rig.feed(unsaved)) == []
    assert rig.machine.cameras["cam-1"].frames_since == 0
    rig.frames("cam-1", 2)
    assert pick(m.SendPause, rig.frame("cam-1"))


def test_a_camera_that_is_not_capturing_saves_nothing_and_is_never_due(make, pick):
    rig = make(ditherevery=2)
    rig.connect("cam-2", exposure_s=5.0, capturing=False)
    rig.frames("cam-1", 1)
    assert pick(m.SendPause, rig.frame("cam-1")), "only capturing cameras are waited for"


class Cadence(NamedTuple):
    minutes: float
    exposure: float
    frames_to_dither: int
    trigger: str


CADENCES = [
    pytest.param(Cadence(1.0, 25.0, 3, "time"), id="75s-of-frames-pass-1-min"),
    pytest.param(Cadence(2.0, 60.0, 2, "time"), id="exactly-2-min"),
    pytest.param(Cadence(0.0, 25.0, 4, "frames"), id="0-turns-time-off"),
    pytest.param(Cadence(10.0, 30.0, 4, "frames"), id="frames-come-first"),
]


@pytest.mark.parametrize("case", CADENCES)
def test_time_cadence_ditherminutes(make, pick, case):
    minutes, exposure, frames_to_dither, trigger = case
    every = 4 if trigger == "frames" else 100
    rig = make((("cam-1", exposure),), ditherevery=every, ditherminutes=minutes)
    for _ in range(frames_to_dither - 1):
        assert pick(m.SendPause, rig.frame("cam-1")) == []
    assert pick(m.StartDither, rig.frame("cam-1"))
    assert rig.machine.cameras["cam-1"].seconds_since == frames_to_dither * exposure
    rig.settle_started()
    rig.finish(K.SETTLED, settle_s=5.0)
    assert rig.machine.cameras["cam-1"].seconds_since == 0.0, "the time cadence restarts"
    end_of_cycle(rig)
    (entry,) = rig.records()
    assert entry.trigger == trigger
    assert entry.cameras[0].frames_since_last == frames_to_dither


# ------------------------------------------------------------------ several cameras


class Pacing(NamedTuple):
    rule: str
    primary: str
    slow_capturing: bool
    after_s: float
    """Seconds from the start until the cameras are paused."""


MULTI = [
    pytest.param(Pacing("all", "", True, 90.0), id="all-waits-for-the-slow-camera"),
    pytest.param(Pacing("primary", "", True, 30.0), id="primary-defaults-to-the-first-camera"),
    pytest.param(Pacing("primary", "Slow 533", True, 90.0), id="primary-by-name"),
    pytest.param(Pacing("primary", "cam-2", True, 90.0), id="primary-by-id"),
    pytest.param(Pacing("primary", "nobody", True, 30.0), id="unknown-primary-is-the-first-camera"),
    pytest.param(Pacing("all", "", False, 30.0), id="all-counts-capturing-cameras-only"),
    pytest.param(
        Pacing("primary", "cam-2", False, 30.0), id="primary-not-capturing-falls-back-to-all"
    ),
]


@pytest.mark.parametrize("case", MULTI)
def test_two_cameras_with_different_exposures(make, pick, case):
    rule, primary, slow_capturing, after_s = case
    rig = make(
        (("cam-1", 10.0), ("cam-2", 30.0)),
        names=["Fast 294", "Slow 533"],
        ditherevery=3,
        multicamera=rule,
        primarycamera=primary,
    )
    if not slow_capturing:
        rig.cameras["cam-2"].capturing = False
        rig.feed(m.CameraCapture(camera="cam-2", capturing=False))
    actions = rig.advance_until(m.SendPause)
    assert rig.now == T0 + after_s
    assert sorted(p.camera for p in pick(m.SendPause, actions)) == ["cam-1", "cam-2"], (
        "every connected camera is paused, whoever set the pace"
    )
    assert pick(m.StartDither, actions)
    rig.settle_started()
    rig.finish(K.SETTLED, settle_s=8.0)
    end_of_cycle(rig)
    (entry,) = rig.records()
    assert {c.name for c in entry.cameras} == {"Fast 294", "Slow 533"}


def test_under_all_the_fast_camera_keeps_saving_until_the_slow_one_is_due(make):
    rig = make((("cam-1", 10.0), ("cam-2", 30.0)), ditherevery=3)
    rig.advance_until(m.StartDither)
    fast, slow = rig.machine.cameras["cam-1"], rig.machine.cameras["cam-2"]
    assert (fast.frames_since, slow.frames_since) == (9, 3)


def test_when_the_primary_stops_capturing_the_other_camera_sets_the_pace(make, pick):
    rig = make(
        (("cam-1", 10.0), ("cam-2", 30.0)),
        ditherevery=3,
        multicamera="primary",
        primarycamera="cam-2",
    )
    rig.advance(T0 + 60)  # cam-1 is due (6 frames), the primary cam-2 is not (2 frames)
    assert rig.phase is m.Phase.IDLE
    rig.cameras["cam-2"].capturing = False
    rig.feed(m.CameraCapture(camera="cam-2", capturing=False))
    assert pick(m.SendPause, rig.frame("cam-1"))


def test_a_camera_the_user_paused_does_not_hold_up_the_others(make, pick):
    rig = make((("cam-1", 10.0), ("cam-2", 10.0)), ditherevery=3)
    rig.cameras["cam-2"].paused_by_user = True
    rig.feed(m.CameraPaused(camera="cam-2", paused=True, by="user"))
    actions = rig.advance_until(m.StartDither)
    assert rig.now == T0 + 30
    assert {p.camera for p in pick(m.SendPause, actions)} == {"cam-1", "cam-2"}
    rig.settle_started()
    rig.finish(K.SETTLED)
    end_of_cycle(rig)


def test_under_all_a_camera_the_user_paused_paces_again_once_unpaused(make, pick):
    rig = make((("cam-1", 10.0), ("cam-2", 30.0)), ditherevery=3)
    rig.cameras["cam-2"].paused_by_user = True
    rig.feed(m.CameraPaused(camera="cam-2", paused=True, by="user"))
    rig.cameras["cam-2"].paused_by_user = False
    rig.feed(m.CameraPaused(camera="cam-2", paused=False, by="user"))
    rig.advance_until(m.SendPause)
    assert rig.now == T0 + 90


# ------------------------------------------------------------------ when PHD2 cannot dither


def phd2(state: Phd2State, *, connected: bool = True, settling: bool = False) -> m.GuiderUpdate:
    return m.GuiderUpdate(connected=connected, state=state, settling=settling)


SKIPS = [
    pytest.param(phd2(S.UNKNOWN, connected=False), "PHD2 is not connected", id="disconnected"),
    pytest.param(phd2(S.STOPPED), "PHD2 is not guiding (state Stopped)", id="stopped"),
    pytest.param(phd2(S.LOOPING), "PHD2 is not guiding (state Looping)", id="looping"),
    pytest.param(phd2(S.SELECTED), "PHD2 is not guiding (state Selected)", id="selected"),
    pytest.param(phd2(S.CALIBRATING), "PHD2 is not guiding (state Calibrating)", id="calibrating"),
    pytest.param(phd2(S.PAUSED), "PHD2 is paused", id="paused"),
    pytest.param(phd2(S.LOST_LOCK), "PHD2 has lost the guide star", id="lost-lock"),
    pytest.param(phd2(S.GUIDING, settling=True), "PHD2 is already settling", id="settling"),
]


@pytest.mark.parametrize(("guider", "reason"), SKIPS)
def test_a_due_dither_is_skipped_with_the_reason_and_retried_at_the_next_frame(
    make, pick, notes, guider, reason
):
    # With the frame guard off: with it on, bad guiding holds saving instead
    # (tests/core/test_frame_guard_machine.py).
    rig = make(ditherevery=2, guider=None, guard=False)
    rig.feed(guider)
    rig.frame("cam-1")
    actions = rig.frame("cam-1")
    assert pick(m.SendPause, actions) == []
    assert notes(actions, m.Level.WARNING) == [f"dither due but skipped: {reason}"]
    assert rig.machine.skip_reason == reason
    assert rig.machine.refusal() == reason
    assert rig.machine.totals.skipped == 1
    # Tried again at the next frame: still skipped, and not announced twice.
    actions = rig.frame("cam-1")
    assert pick(m.SendPause, actions) == []
    assert notes(actions, m.Level.WARNING) == []
    # Guiding again: nothing happens mid-frame; the next frame starts the dither.
    assert pick(m.SendPause, rig.guider(S.GUIDING)) == []
    actions = rig.frame("cam-1")
    assert pick(m.SendPause, actions)
    assert pick(m.StartDither, actions)
    assert rig.machine.skip_reason is None
    rig.settle_started()
    rig.finish(K.SETTLED)
    end_of_cycle(rig)


def test_a_new_reason_is_announced(make, notes):
    rig = make(ditherevery=1, guider=S.PAUSED)
    assert notes(rig.frame("cam-1")) == ["dither due but skipped: PHD2 is paused"]
    rig.guider(S.LOST_LOCK)
    assert notes(rig.frame("cam-1")) == ["dither due but skipped: PHD2 has lost the guide star"]
    assert rig.machine.totals.skipped == 2


# ------------------------------------------------------------------ pausing the cameras


def test_the_dither_starts_only_after_every_camera_confirmed_its_pause(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1)
    rig.guider()
    rig.connect("cam-1", acks=False)
    rig.connect("cam-2", acks=False, capturing=False)
    actions = rig.frame("cam-1")
    pauses = {p.camera: p for p in pick(m.SendPause, actions)}
    assert set(pauses) == {"cam-1", "cam-2"}
    assert pick(m.StartDither, actions) == []
    assert rig.phase is m.Phase.PAUSING
    # A stale or foreign command id confirms nothing.
    assert pick(m.StartDither, rig.feed(m.CameraAck(camera="cam-1", command_id=999))) == []
    assert pick(m.StartDither, rig.ack("cam-1")) == []
    assert pick(m.StartDither, rig.ack("cam-1")) == [], "one camera twice is still one"
    assert pick(m.StartDither, rig.ack("cam-2"))
    assert rig.phase is m.Phase.DITHERING


def test_a_paused_report_from_the_camera_counts_as_its_confirmation(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1)
    rig.guider()
    rig.connect("cam-1", acks=False)
    rig.frame("cam-1")
    assert pick(m.StartDither, rig.feed(m.CameraPaused(camera="cam-1", paused=True, by="app")))


def test_a_user_pause_is_not_a_confirmation(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1)
    rig.guider()
    rig.connect("cam-1", acks=False)
    rig.frame("cam-1")
    assert (
        pick(m.StartDither, rig.feed(m.CameraPaused(camera="cam-1", paused=True, by="user"))) == []
    )
    assert rig.phase is m.Phase.PAUSING


def test_no_confirmation_in_time_calls_the_dither_off_and_resumes_everyone(rig_class, pick, notes):
    rig = rig_class.with_settings(ditherevery=1, waitfornextframe=True)
    rig.guider()
    rig.connect("cam-1", name="Main")
    rig.connect("cam-2", name="Side", acks=False, capturing=False)
    rig.frame("cam-1")
    assert rig.timer == rig.now + m.PAUSE_ACK_TIMEOUT_S
    assert rig.feed(m.Tick(), at=rig.timer - 0.01) == []
    actions = rig.feed(m.Tick(), at=rig.timer)
    assert pick(m.StartDither, actions) == []
    assert pick(m.CancelDither, actions) == [], "nothing was started, nothing to cancel"
    resumes = {r.camera: r for r in pick(m.SendResume, actions)}
    assert set(resumes) == {"cam-1", "cam-2"}
    assert not any(r.after_next_frame for r in resumes.values()), (
        "the mount never moved: the frame in progress is good"
    )
    assert notes(actions, m.Level.ALERT) == ["dither 1: refused (no pause confirmation from Side)"]
    rig.feed(m.CameraPaused(camera="cam-2", paused=False, by="app"))
    assert rig.phase is m.Phase.IDLE
    assert rig.machine.cameras["cam-1"].frames_since == 1, "counters kept: try again"
    assert rig.left_paused() == []
    refused_at = rig.now
    assert not pick(m.SendPause, rig.frame("cam-1")), "not at every frame: each try costs a frame"
    rig.advance_until(m.SendPause)
    assert refused_at + m.REFUSED_RETRY_S <= rig.now < refused_at + m.REFUSED_RETRY_S + 15, (
        "tried again at the first frame after the back-off"
    )


def test_the_pause_lasts_longer_than_the_machine_can_keep_a_camera_paused(make, pick):
    """The camera's own fail-open limit is for when ditherapp is gone: a dither whose
    SettleDone never arrives must be ended by our deadline before the camera's watchdog
    fires (else the camera would save frames while we still think we are dithering)."""
    rig = make(ditherevery=1, settlemax=60)
    rig.cameras["cam-1"].acks = False
    (pause,) = pick(m.SendPause, rig.frame("cam-1"))
    paused_at = rig.now
    rig.advance(paused_at + m.PAUSE_ACK_TIMEOUT_S - 0.5)
    rig.cameras["cam-1"].acks = True
    assert pick(m.StartDither, rig.ack("cam-1"))
    actions = rig.advance_until(m.CancelDither)
    assert pick(m.SendResume, actions)
    assert rig.now - paused_at < pause.max_s


# ------------------------------------------------------------------ a whole dither


class Happy(NamedTuple):
    wait: bool
    """waitfornextframe"""
    resumed_at: float
    paused_s: float
    not_saved: int
    """Frames the camera did not save."""


HAPPY = [
    # Paused at T0+30 (third frame), settled at T0+45; frames end every 10 s.
    pytest.param(Happy(True, T0 + 50, 20.0, 2), id="wait-for-next-frame"),
    pytest.param(Happy(False, T0 + 45, 15.0, 1), id="resume-at-once"),
]


@pytest.mark.parametrize("case", HAPPY)
def test_a_whole_dither_cycle(make, pick, notes, case):
    wait, resumed_at, paused_s, not_saved = case
    rig = make(ditherevery=3, waitfornextframe=wait)
    actions = rig.advance_until(m.StartDither)
    assert rig.now == T0 + 30
    (pause,) = pick(m.SendPause, actions)
    assert pause.max_s > rig.settings.settlemax
    assert rig.timer == T0 + 30 + rig.settings.settlemax + m.DITHER_GUARD_MARGIN_S

    rig.settle_started()
    assert rig.phase is m.Phase.SETTLING

    actions = rig.finish(K.SETTLED, settle_s=14.0, at=T0 + 45)
    (resume,) = pick(m.SendResume, actions)
    assert resume.camera == "cam-1"
    assert resume.after_next_frame is wait
    assert resume.max_wait_s == 10.0 + m.RESUME_GRACE_S
    assert notes(actions, m.Level.INFO) == ["dither 1: settled"]
    assert rig.machine.cameras["cam-1"].frames_since == 0
    assert rig.machine.cameras["cam-1"].seconds_since == 0.0

    rig.advance(resumed_at)
    assert rig.phase is m.Phase.IDLE
    (entry,) = rig.records()
    assert entry.cycle == 1
    assert entry.trigger == "frames"
    assert entry.outcome.kind is K.SETTLED
    assert entry.cameras == (
        m.CameraRecord(
            name="CAM-1", frames_since_last=3, paused_s=paused_s, frames_not_saved=not_saved
        ),
    )
    assert entry.lost_s == paused_s
    assert entry.cycle_s == resumed_at - (T0 + 30)
    ledger_line = json.dumps(entry.as_dict())
    assert json.loads(ledger_line)["cameras"][0]["paused_s"] == paused_s
    totals = rig.machine.totals
    assert (totals.dithers, totals.failures, totals.mean_settle_s) == (1, 0, 14.0)
    assert rig.machine.last_outcome == entry.outcome
    assert rig.left_paused() == []
    assert rig.timer is None

    # The next dither comes after ditherevery more saved frames.
    rig.advance_until(m.StartDither)
    assert rig.machine.cameras["cam-1"].frames_since == 3
    assert rig.machine.cycle is not None
    assert rig.machine.cycle.number == 2


def test_saving_resumes_only_after_the_frame_that_overlapped_the_dither(make):
    rig = make(ditherevery=3, waitfornextframe=True)
    rig.advance_until(m.StartDither)
    rig.settle_started()
    rig.finish(K.SETTLED, at=T0 + 45)
    cam = rig.cameras["cam-1"]
    saved_before = cam.saved
    rig.advance(T0 + 50)  # the frame 40-50 overlapped the settle: not saved
    assert cam.saved == saved_before
    rig.advance(T0 + 60)  # 50-60 started after the settle: saved
    assert cam.saved == saved_before + 1


def test_a_camera_that_never_reports_its_resume_does_not_block_the_machine(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1, waitfornextframe=False)
    rig.guider()
    rig.connect("cam-1", acks=False, exposure_s=10.0)
    rig.frame("cam-1")
    rig.ack("cam-1")
    rig.settle_started()
    actions = rig.finish(K.SETTLED)
    assert pick(m.SendResume, actions)
    assert rig.phase is m.Phase.RESUMING
    assert rig.timer == rig.now + m.RESUME_GRACE_S
    rig.feed(m.Tick(), at=rig.timer)
    assert rig.phase is m.Phase.IDLE
    assert rig.records()[0].cameras[0].paused_s == m.RESUME_GRACE_S
    assert rig.left_paused() == []


# ------------------------------------------------------------------ every way a dither can fail


class Failure(NamedTuple):
    stage: str
    """The phase the cycle reached."""
    what: str | OutcomeKind
    """What happens then: 'tick' (the armed timer fires), 'phd2-lost', or an outcome the
    dither operation reports."""
    cancel: bool
    """Whether the machine must cancel the operation."""
    kind: OutcomeKind
    after_next: bool
    """Whether the cameras resume after the next frame boundary (waitfornextframe on)."""


FAILURES = [
    pytest.param(Failure("pausing", "tick", False, K.REFUSED, False), id="pause-not-confirmed"),
    pytest.param(
        Failure("pausing", "phd2-lost", False, K.REFUSED, False), id="phd2-lost-while-pausing"
    ),
    pytest.param(
        Failure("dithering", "phd2-lost", True, K.LOST, True), id="phd2-lost-while-dithering"
    ),
    pytest.param(
        Failure("settling", "phd2-lost", True, K.LOST, True), id="phd2-lost-while-settling"
    ),
    pytest.param(
        Failure("dithering", "tick", True, K.TIMED_OUT, True), id="deadline-while-dithering"
    ),
    pytest.param(
        Failure("settling", "tick", True, K.TIMED_OUT, True), id="deadline-while-settling"
    ),
    pytest.param(
        Failure("settling", K.SETTLE_FAILED, False, K.SETTLE_FAILED, True), id="settle-failed"
    ),
    pytest.param(
        Failure("dithering", K.REFUSED, False, K.REFUSED, False), id="phd2-refused-the-dither"
    ),
    pytest.param(Failure("dithering", K.LOST, False, K.LOST, True), id="operation-lost"),
    pytest.param(
        Failure("settling", K.TIMED_OUT, False, K.TIMED_OUT, True), id="operation-timed-out"
    ),
    pytest.param(Failure("settling", K.SETTLED, False, K.SETTLED, True), id="control-settled"),
]


@pytest.mark.parametrize("case", FAILURES)
def test_every_failure_resumes_the_cameras_and_is_recorded(make, pick, notes, case):
    stage, what, cancel, kind, after_next = case
    # The dither's own fail-open; with the frame guard on, a PHD2 lost mid-dither hands the
    # paused cameras to the guard instead (tests/core/test_frame_guard_machine.py).
    rig = make(
        (("cam-1", 10.0), ("cam-2", 20.0)), ditherevery=2, waitfornextframe=True, guard=False
    )
    if stage == "pausing":
        rig.cameras["cam-2"].acks = False
    rig.advance_until(m.SendPause)
    rig.cameras["cam-2"].acks = True
    if stage == "settling":
        rig.settle_started()
    assert rig.phase.value == stage
    assert rig.now == T0 + 40, "both cameras are due at 40 s"

    if what == "tick":
        deadline = rig.timer
        assert deadline is not None
        before = rig.advance(deadline - 0.01)
        assert pick(m.SendResume, before) == [], "nothing happens before the deadline"
        actions = rig.advance(deadline)
    elif what == "phd2-lost":
        actions = rig.guider(S.UNKNOWN, connected=False)
    else:
        actions = rig.finish(what, message="from the operation")

    assert bool(pick(m.CancelDither, actions)) is cancel
    if cancel:
        assert kinds(actions).index("CancelDither") < kinds(actions).index("SendResume")
    resumes = pick(m.SendResume, actions)
    assert {r.camera for r in resumes} == {"cam-1", "cam-2"}, "fail open: every camera resumes"
    assert all(r.after_next_frame is after_next for r in resumes)
    level = m.Level.INFO if kind is K.SETTLED else m.Level.ALERT
    assert [n for n in notes(actions, level) if n.startswith(f"dither 1: {kind.value}")]
    frames_since = rig.machine.cameras["cam-1"].frames_since
    assert frames_since == (0 if kind.moved else 4), (
        "counters reset only if the mount may have moved"
    )

    end_of_cycle(rig)
    (entry,) = rig.records()
    assert entry.outcome.kind is kind
    assert rig.machine.last_outcome == entry.outcome
    assert rig.machine.totals.failures == (0 if kind is K.SETTLED else 1)
    assert rig.machine.totals.dithers == (1 if kind.moved else 0)
    assert entry.lost_s == max(c.paused_s for c in entry.cameras)
    assert entry.cycle_s >= entry.lost_s


def test_phd2_lost_mid_dither_resumes_at_once_and_a_late_result_is_ignored(make, pick):
    rig = make(ditherevery=1, guard=False)  # unguarded: the dither fails open
    rig.frame("cam-1")
    rig.settle_started()
    actions = rig.guider(S.UNKNOWN, connected=False)
    assert pick(m.CancelDither, actions)
    assert pick(m.SendResume, actions)
    assert rig.machine.last_outcome is not None
    assert rig.machine.last_outcome.kind is K.LOST
    # The operation reports its own failure afterwards: it changes nothing.
    assert rig.finish(K.LOST) == []
    end_of_cycle(rig)
    assert len(rig.records()) == 1
    # PHD2 comes back: the next due frame dithers again.
    rig.guider(S.GUIDING)
    assert pick(m.StartDither, rig.advance_until(m.StartDither))


def test_a_refused_dither_does_not_reset_the_counters_and_is_retried(make, pick):
    rig = make(ditherevery=2)
    rig.advance_until(m.StartDither)
    rig.finish(K.REFUSED, message="Dither error")
    end_of_cycle(rig, within_s=0.0)
    assert rig.machine.cameras["cam-1"].frames_since == 2
    refused_at = rig.now
    assert not pick(m.SendPause, rig.frame("cam-1")), "no new pause straight away"
    rig.advance_until(m.StartDither)
    assert rig.now >= refused_at + m.REFUSED_RETRY_S, "due again after the back-off"


def test_a_cycle_called_off_by_a_lost_link_is_tried_again_as_soon_as_phd2_is_back(rig_class, pick):
    """No 30 s back-off for a link that dropped while the cameras paused: PHD2 did not
    refuse anything, and nothing starts while it is away anyway."""
    rig = rig_class.with_settings(ditherevery=1, waitfornextframe=False, guard=False)
    rig.guider()
    rig.connect("cam-1", name="Main")
    rig.connect("cam-2", name="Slow", acks=False, capturing=False)  # keeps it pausing
    assert pick(m.SendPause, rig.frame("cam-1"))
    assert rig.phase is m.Phase.PAUSING
    rig.guider(S.UNKNOWN, connected=False)
    assert rig.machine.last_outcome is not None
    assert rig.machine.last_outcome.kind is K.REFUSED
    rig.feed(m.CameraPaused(camera="cam-2", paused=False, by="app"))
    assert rig.phase is m.Phase.IDLE
    assert rig.machine.retry_in(rig.now) is None
    back_at = rig.now
    rig.guider(S.GUIDING)
    rig.advance_until(m.SendPause)
    assert rig.now - back_at < 15, "tried again at the first frames after PHD2 came back"


# ------------------------------------------------------------------ cameras coming and going


@pytest.mark.parametrize("stage", ["dithering", "settling"])
def test_a_camera_lost_mid_dither_is_no_longer_waited_for(make, pick, notes, stage):
    rig = make((("cam-1", 10.0), ("cam-2", 10.0)), names=["Main", "Side"], ditherevery=1)
    rig.advance_until(m.StartDither)
    if stage == "settling":
        rig.settle_started()
    rig.advance(rig.now + 3)
    actions = rig.disconnect("cam-2")
    assert notes(actions, m.Level.ALERT) == ["camera Side disconnected"]
    actions = rig.finish(K.SETTLED, at=rig.now + 5)
    assert [r.camera for r in pick(m.SendResume, actions)] == ["cam-1"]
    rig.advance(rig.now + 10)
    assert rig.phase is m.Phase.IDLE
    assert rig.left_paused() == []
    entry = rig.records()[0]  # (its cost is the next saved frame, which starts a dither)
    side = next(c for c in entry.cameras if c.name == "Side")
    assert side.paused_s == 3.0


def test_a_camera_lost_while_the_others_confirmed_lets_the_dither_start(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1)
    rig.guider()
    rig.connect("cam-1")
    rig.connect("cam-2", acks=False, capturing=False)
    rig.frame("cam-1")
    assert rig.phase is m.Phase.PAUSING
    rig.cameras["cam-2"].connected = False
    assert pick(m.StartDither, rig.feed(m.CameraGone(camera="cam-2")))


def test_a_camera_lost_while_resuming_ends_the_cycle(rig_class):
    rig = rig_class.with_settings(ditherevery=1, waitfornextframe=True, multicamera="primary")
    rig.guider()
    rig.connect("cam-1", exposure_s=10.0)
    rig.connect("cam-2", exposure_s=300.0)
    rig.frame("cam-1")
    rig.finish(K.SETTLED, at=rig.now + 1)
    rig.advance(rig.now + 10)  # cam-1 is saving again; cam-2 is still in its long frame
    assert rig.phase is m.Phase.RESUMING
    rig.disconnect("cam-2")
    assert rig.phase is m.Phase.IDLE


@pytest.mark.parametrize("stage", ["dithering", "settling"])
def test_a_camera_connecting_mid_dither_is_paused_at_once(make, pick, stage):
    rig = make(ditherevery=1)
    rig.frame("cam-1")
    if stage == "settling":
        rig.settle_started()
    actions = rig.connect("cam-9", exposure_s=5.0)
    (pause,) = pick(m.SendPause, actions)
    assert pause.camera == "cam-9"
    assert pick(m.StartDither, actions) == [], "the dither already running is not restarted"
    actions = rig.finish(K.SETTLED)
    assert {r.camera for r in pick(m.SendResume, actions)} == {"cam-1", "cam-9"}
    end_of_cycle(rig)


def test_a_camera_connecting_while_pausing_must_confirm_too(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=1)
    rig.guider()
    rig.connect("cam-1", acks=False)
    rig.frame("cam-1")
    assert pick(m.SendPause, rig.connect("cam-2", acks=False))
    assert pick(m.StartDither, rig.ack("cam-1")) == []
    assert pick(m.StartDither, rig.ack("cam-2"))


def test_a_camera_connecting_while_resuming_is_left_alone(make, pick):
    rig = make(ditherevery=1, waitfornextframe=True)
    rig.frame("cam-1")
    rig.finish(K.SETTLED)
    assert rig.phase is m.Phase.RESUMING
    assert pick(m.SendPause, rig.connect("cam-2")) == []
    end_of_cycle(rig)


def test_a_camera_that_reconnects_keeps_its_id_and_its_count(rig_class):
    rig = rig_class.with_settings(ditherevery=5)
    rig.guider()
    first = rig.machine.camera_id_for("ASI294")
    rig.connect(first, name="ASI294")
    second = rig.machine.camera_id_for("ASI533")
    rig.connect(second, name="ASI533")
    assert first != second
    rig.frames(first, 3)
    rig.disconnect(first)
    assert rig.machine.camera_id_for("ASI294") == first
    rig.connect(first, name="ASI294")
    assert rig.machine.cameras[first].frames_since == 3


# ------------------------------------------------------------------ dither now


def test_dither_now_when_idle_dithers_at_once(make, pick):
    rig = make(ditherevery=100)
    rig.frame("cam-1")
    actions = rig.feed(m.DitherNow())
    assert pick(m.SendPause, actions)
    assert pick(m.StartDither, actions)
    rig.settle_started()
    rig.finish(K.SETTLED)
    assert rig.machine.cameras["cam-1"].frames_since == 0, "the count starts again"
    end_of_cycle(rig)
    assert rig.records()[0].trigger == "manual"


def test_dither_now_without_cameras_just_dithers(rig_class, pick):
    rig = rig_class()
    rig.guider()
    assert pick(m.StartDither, rig.feed(m.DitherNow()))


@pytest.mark.parametrize("stage", ["pausing", "dithering", "settling", "resuming"])
def test_dither_now_is_refused_while_a_cycle_runs(make, pick, notes, stage):
    rig = make(ditherevery=1, waitfornextframe=True)
    if stage == "pausing":
        rig.cameras["cam-1"].acks = False
    rig.frame("cam-1")
    if stage == "settling":
        rig.settle_started()
    if stage == "resuming":
        rig.finish(K.SETTLED)
    assert rig.phase.value == stage
    actions = rig.feed(m.DitherNow())
    assert notes(actions) == [f"cannot dither now: a dither cycle is already running ({stage})"]
    assert pick(m.SendPause, actions) == []
    assert pick(m.StartDither, actions) == []
    assert rig.phase.value == stage


@pytest.mark.parametrize(("guider", "reason"), SKIPS)
def test_dither_now_is_refused_when_phd2_cannot_dither(make, pick, notes, guider, reason):
    rig = make(guider=None, guard=False)
    rig.feed(guider)
    actions = rig.feed(m.DitherNow())
    assert notes(actions) == [f"cannot dither now: {reason}"]
    assert pick(m.SendPause, actions) == []
    assert rig.phase is m.Phase.IDLE


# ------------------------------------------------------------------ enabling, disabling, settings


def test_disabled_means_no_automatic_dither_but_dither_now_works(make, pick, notes):
    rig = make(ditherevery=2, enabled=False)
    actions = rig.frames("cam-1", 10)
    assert pick(m.SendPause, actions) == []
    assert notes(actions, m.Level.WARNING) == [], "nothing skipped: nothing was due"
    assert rig.machine.cameras["cam-1"].frames_since == 10, "frames are still counted"
    assert pick(m.StartDither, rig.feed(m.DitherNow()))
    rig.finish(K.SETTLED)
    end_of_cycle(rig)


def test_enabling_dithers_at_the_next_frame(make, pick):
    rig = make(ditherevery=2, enabled=False)
    rig.frames("cam-1", 5)
    assert pick(m.SendPause, rig.set(enabled=True)) == []
    assert pick(m.StartDither, rig.frame("cam-1"))


def test_disabling_mid_dither_lets_the_dither_finish_and_resume(make, pick):
    rig = make(ditherevery=1)
    rig.frame("cam-1")
    rig.settle_started()
    assert rig.set(enabled=False) == []
    assert pick(m.SendResume, rig.finish(K.SETTLED))
    end_of_cycle(rig)
    assert pick(m.SendPause, rig.frames("cam-1", 5)) == []


def test_settings_changed_mid_dither_apply_to_the_next_dither_only(make, pick):
    rig = make(ditherevery=3, waitfornextframe=True, settlemax=60, maxpixels=10.0)
    first = pick(m.StartDither, rig.advance_until(m.StartDither))[0].request
    deadline = rig.timer
    rig.settle_started()
    rig.set(ditherevery=2, waitfornextframe=False, settlemax=30, maxpixels=4.0, raonly=True)
    assert rig.timer == deadline, "this dither keeps its deadline"
    (resume,) = pick(m.SendResume, rig.finish(K.SETTLED))
    assert resume.after_next_frame is True, "this dither keeps its own waitfornextframe"
    end_of_cycle(rig, within_s=20.0)
    assert rig.records()[0].request == first
    start_frames = rig.cameras["cam-1"].saved
    second = pick(m.StartDither, rig.advance_until(m.StartDither))[0].request
    assert rig.cameras["cam-1"].saved - start_frames <= 2
    assert second == DitherRequest(
        amount=4.0, ra_only=True, settle_pixels=2.0, settle_time=10, settle_timeout=30
    )
    (resume,) = pick(m.SendResume, rig.finish(K.SETTLED))
    assert resume.after_next_frame is False


# ------------------------------------------------------------------ what the cameras report


@pytest.mark.parametrize("stage", ["dithering", "settling"])
def test_a_frame_saved_during_the_dither_raises_an_alert(make, notes, stage):
    rig = make(ditherevery=1)
    rig.frame("cam-1")
    if stage == "settling":
        rig.settle_started()
    actions = rig.feed(m.CameraFrame(camera="cam-1", exposure_s=10.0, saved=True))
    assert notes(actions, m.Level.ALERT) == ["camera CAM-1 saved a frame during the dither"]


def test_frames_not_saved_while_paused_are_not_alerts(make, notes):
    rig = make(ditherevery=1)
    rig.frame("cam-1")
    rig.settle_started()
    assert notes(rig.frame("cam-1"), m.Level.ALERT) == []


def test_a_watchdog_resume_is_reported_and_the_camera_is_not_waited_for(make, pick, notes):
    rig = make((("cam-1", 10.0), ("cam-2", 10.0)), ditherevery=1, waitfornextframe=False)
    rig.advance_until(m.StartDither)
    paused_at = rig.now
    rig.settle_started()
    rig.cameras["cam-2"].paused_by_app = False
    actions = rig.feed(
        m.CameraPaused(
            camera="cam-2", paused=False, by="watchdog", reason="paused longer than 190 s"
        ),
        at=paused_at + 7,
    )
    assert notes(actions, m.Level.WARNING) == [
        "camera CAM-2 resumed by its watchdog: paused longer than 190 s"
    ]
    assert rig.machine.cameras["cam-2"].last_watchdog_reason == "paused longer than 190 s"
    rig.cameras["cam-2"].acks = False  # an agent already saving reports no unpause
    actions = rig.finish(K.SETTLED, at=paused_at + 9)
    assert {r.camera for r in pick(m.SendResume, actions)} == {"cam-1", "cam-2"}
    assert rig.phase is m.Phase.IDLE, "nobody left to wait for"
    entry = rig.records()[0]
    assert [c.paused_s for c in entry.cameras] == [9.0, 7.0]


def test_a_user_pause_and_unpause_during_a_dither_change_nothing(make, pick):
    rig = make((("cam-1", 10.0), ("cam-2", 10.0)), ditherevery=1, waitfornextframe=True)
    rig.cameras["cam-2"].acks = False
    rig.advance_until(m.SendPause)
    assert rig.phase is m.Phase.PAUSING
    rig.feed(m.CameraPaused(camera="cam-2", paused=True, by="user"))
    rig.feed(m.CameraPaused(camera="cam-2", paused=False, by="user"))
    assert rig.phase is m.Phase.PAUSING, "a user pause is not our pause confirmed"
    rig.cameras["cam-2"].acks = True
    assert pick(m.StartDither, rig.ack("cam-2"))
    rig.finish(K.SETTLED)
    assert rig.phase is m.Phase.RESUMING
    rig.feed(m.CameraPaused(camera="cam-2", paused=False, by="user"))
    rig.feed(m.CameraPaused(camera="cam-1", paused=False, by="user"))
    assert rig.phase is m.Phase.RESUMING, "a user unpause is not our resume carried out"
    end_of_cycle(rig)


def test_inputs_about_unknown_cameras_are_ignored(make):
    rig = make(ditherevery=1)
    for event in (
        m.CameraFrame(camera="ghost", exposure_s=1.0, saved=True),
        m.CameraCapture(camera="ghost", capturing=True),
        m.CameraPaused(camera="ghost", paused=True),
        m.CameraAck(camera="ghost", command_id=1),
        m.CameraGone(camera="ghost"),
    ):
        assert rig.feed(event) == []
    assert rig.phase is m.Phase.IDLE


def test_guider_connection_changes_are_announced(rig_class, notes):
    rig = rig_class()
    assert notes(rig.guider(S.GUIDING)) == ["connected to PHD2"]
    assert notes(rig.guider(S.LOST_LOCK)) == []
    assert notes(rig.guider(S.UNKNOWN, connected=False)) == ["lost the connection to PHD2"]


def test_a_tick_when_idle_does_nothing(make):
    rig = make()
    assert rig.feed(m.Tick(), at=T0 + 5000) == []


# ------------------------------------------------------------------ random interleavings

CAMS = ["cam-1", "cam-2", "cam-3"]
NAMES = {"cam-1": "Main", "cam-2": "Side", "cam-3": "Third"}

OUTCOMES = st.builds(
    DitherOutcome,
    kind=st.sampled_from(list(OutcomeKind)),
    message=st.sampled_from(["", "timed-out waiting for guider to settle"]),
    settle_s=st.one_of(st.none(), st.floats(0, 100)),
)
SETTINGS = st.builds(
    DitherSettings,
    enabled=st.sampled_from([True, True, True, False]),
    ditherevery=st.sampled_from([1, 1, 2, 3]),
    ditherminutes=st.sampled_from([0.0, 0.1]),
    waitfornextframe=st.booleans(),
    multicamera=st.sampled_from(["all", "primary"]),
    primarycamera=st.sampled_from(["", "cam-2", "Third", "nobody"]),
    settlemax=st.integers(1, 60),
)
cam = st.sampled_from(CAMS)


def weighted(*choices: tuple[int, object]) -> st.SearchStrategy:
    return st.sampled_from([value for weight, value in choices for _ in range(weight)])


# Weighted towards what makes cycles happen (saved frames, confirmations, guiding), so
# that about half the sequences go round the cycle, with odd inputs thrown in.
INPUTS = st.one_of(
    st.builds(lambda c: m.CameraHello(camera=c, name=NAMES[c]), cam),
    st.builds(lambda c: m.CameraGone(camera=c), cam),
    st.builds(lambda c, b: m.CameraCapture(camera=c, capturing=b), cam, st.booleans()),
    *[
        st.builds(
            lambda c, e: m.CameraFrame(camera=c, exposure_s=e, saved=True),
            cam,
            st.sampled_from([0.0, 1.0, 30.0]),
        )
    ]
    * 4,
    st.builds(lambda c: m.CameraFrame(camera=c, exposure_s=10.0, saved=False), cam),
    st.builds(
        lambda c, p, by: m.CameraPaused(camera=c, paused=p, by=by, reason="r"),
        cam,
        st.booleans(),
        st.sampled_from(["app", "user", "watchdog"]),
    ),
    *[st.builds(lambda c: ("confirm", c), cam)] * 3,  # an ack of the camera's latest command
    st.builds(lambda c: ("mute", c), cam),  # a fake camera stops or starts answering
    *[st.builds(lambda t: ("advance", t), st.sampled_from([1.0, 10.0, 45.0, 200.0]))] * 4,
    *[st.builds(lambda c: m.CameraPaused(camera=c, paused=False, by="app"), cam)] * 2,
    st.builds(lambda c, i: m.CameraAck(camera=c, command_id=i), cam, st.integers(0, 30)),
    st.builds(
        lambda c, s, st_: m.GuiderUpdate(connected=c, state=s, settling=st_),
        weighted((4, True), (1, False)),
        weighted((6, Phd2State.GUIDING), *((1, s) for s in Phd2State)),
        weighted((4, False), (1, True)),
    ),
    *[st.just(m.SettleStarted())] * 2,
    *[st.builds(lambda o: m.DitherFinished(outcome=o), OUTCOMES)] * 2,
    st.builds(lambda s: m.SettingsChanged(settings=s), SETTINGS),
    st.just(m.DitherNow()),
    st.just(m.Tick()),
    *[st.just("timer")] * 2,  # time jumps to the armed timer and it fires
)


def note_commands(actions, last_command) -> None:
    for action in actions:
        if isinstance(action, m.SendPause | m.SendResume):
            last_command[action.camera] = action.command_id


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(INPUTS, st.sampled_from([0.0, 0.5, 3.0, 10.0, 60.0, 400.0])),
        min_size=10,
        max_size=100,
    ),
    start=SETTINGS,
)
def test_random_interleavings_never_raise_and_never_leave_a_camera_paused(rig_class, steps, start):
    rig = rig_class(settings=start)
    last_command: dict[str, int] = {}
    # Two cameras that answer like the hook (until muted); raw inputs do the rest.
    rig.guider(Phd2State.GUIDING)
    rig.connect("cam-1", name=NAMES["cam-1"], exposure_s=10.0)
    rig.connect("cam-2", name=NAMES["cam-2"], exposure_s=30.0)
    for item, dt in steps:
        rig.now += dt
        if item == "timer":
            if rig.timer is None:
                continue
            rig.now = max(rig.now, rig.timer)
            event: m.Input = m.Tick()
        elif isinstance(item, tuple) and item[0] == "advance":
            # The fake cameras' frames and the machine's timers, in time order.
            actions = rig.advance(rig.now + item[1])
            note_commands(actions, last_command)
            continue
        elif isinstance(item, tuple) and item[0] == "mute":
            if item[1] in rig.cameras:
                rig.cameras[item[1]].acks = not rig.cameras[item[1]].acks
            continue
        elif isinstance(item, tuple):
            cid = item[1]
            if cid not in last_command:
                continue
            event = m.CameraAck(camera=cid, command_id=last_command[cid])
        else:
            event = item
        actions = rig.feed(event)
        note_commands(actions, last_command)

    # However it got here, the cycle ends by its own timers, with every camera resumed
    # (a frame guard holding saving lets go by itself after guardmax).
    for _ in range(40):
        if rig.phase is m.Phase.IDLE:
            break
        assert rig.timer is not None
        rig.now = max(rig.now, rig.timer) + 1
        note_commands(rig.feed(m.Tick()), last_command)
    assert rig.phase is m.Phase.IDLE
    assert rig.left_paused() == []
    totals = rig.machine.totals
    assert totals.dithers + totals.failures >= len(rig.records()), "every cycle is counted"


# ------------------------------------------------------------------ a night's details


def _guiding(machine: m.DitherMachine, now: float = 0.0, state=None) -> None:
    from ditherapp.core.phd2.appstate import Phd2State

    machine.handle(
        m.GuiderUpdate(connected=True, state=state or Phd2State.GUIDING, settling=False), now
    )


def test_a_skip_is_announced_again_after_phd2_was_fine_in_between():
    from ditherapp.core.phd2.appstate import Phd2State
    from ditherapp.core.settings import DitherSettings

    machine = m.DitherMachine(DitherSettings(ditherevery=1, guard=False))
    machine.handle(m.CameraHello(camera="cam-1", name="Main"), 0.0)
    _guiding(machine, state=Phd2State.LOOPING)

    def skipped(now: float) -> list[str]:
        actions = machine.handle(m.CameraFrame(camera="cam-1", exposure_s=1, saved=True), now)
        return [a.message for a in actions if isinstance(a, m.Notify) and "skipped" in a.message]

    assert skipped(1.0) == ["dither due but skipped: PHD2 is not guiding (state Looping)"]
    assert skipped(2.0) == [], "said once, not at every frame"
    _guiding(machine, 2.5)  # guiding again ...
    _guiding(machine, 2.6, state=Phd2State.LOOPING)  # ... and lost again later in the night
    assert skipped(3.0) == ["dither due but skipped: PHD2 is not guiding (state Looping)"]


def test_a_camera_joining_a_session_under_way_does_not_hold_the_others_back():
    from ditherapp.core.settings import DitherSettings

    machine = m.DitherMachine(DitherSettings(ditherevery=3))
    _guiding(machine)
    machine.handle(m.CameraHello(camera="cam-1", name="Main"), 0.0)
    for t in (1.0, 2.0):
        machine.handle(m.CameraFrame(camera="cam-1", exposure_s=1, saved=True), t)
    machine.handle(m.CameraHello(camera="cam-2", name="Late"), 2.5)
    machine.handle(m.CameraCapture(camera="cam-2", capturing=True), 2.5)
    actions = machine.handle(m.CameraFrame(camera="cam-1", exposure_s=1, saved=True), 3.0)
    assert [a.camera for a in actions if isinstance(a, m.SendPause)] == ["cam-1", "cam-2"]


def _one_cycle_to_resume(machine: m.DitherMachine, exposure_s: float | None) -> list[m.Action]:
    from ditherapp.core.dither import DitherOutcome, OutcomeKind

    _guiding(machine)
    machine.handle(m.CameraHello(camera="cam-1", name="Main"), 0.0)
    if exposure_s is not None:
        machine.handle(m.CameraFrame(camera="cam-1", exposure_s=exposure_s, saved=False), 0.5)
    (pause,) = [a for a in machine.handle(m.DitherNow(), 1.0) if isinstance(a, m.SendPause)]
    machine.handle(m.CameraAck(camera="cam-1", command_id=pause.command_id), 1.1)
    return machine.handle(
        m.DitherFinished(outcome=DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=5.0)), 6.0
    )


def test_resume_waits_long_enough_when_the_exposure_is_not_known_yet():
    """Giving up on the frame boundary too early would save the frame that overlapped
    the settle; before the first frame the exposure is unknown, so assume a long one."""
    from ditherapp.core.settings import DitherSettings

    actions = _one_cycle_to_resume(m.DitherMachine(DitherSettings()), exposure_s=None)
    (resume,) = [a for a in actions if isinstance(a, m.SendResume)]
    assert resume.max_wait_s >= 600
    actions = _one_cycle_to_resume(m.DitherMachine(DitherSettings()), exposure_s=120.0)
    (resume,) = [a for a in actions if isinstance(a, m.SendResume)]
    assert resume.max_wait_s == 120.0 + m.RESUME_GRACE_S


def test_a_camera_the_user_paused_does_not_hold_up_the_end_of_the_cycle():
    from ditherapp.core.settings import DitherSettings

    machine = m.DitherMachine(DitherSettings())
    _guiding(machine)
    machine.handle(m.CameraHello(camera="cam-1", name="Main"), 0.0)
    machine.handle(m.CameraPaused(camera="cam-1", paused=True, by="user"), 0.2)
    (pause,) = [a for a in machine.handle(m.DitherNow(), 1.0) if isinstance(a, m.SendPause)]
    machine.handle(m.CameraAck(camera="cam-1", command_id=pause.command_id), 1.1)
    from ditherapp.core.dither import DitherOutcome, OutcomeKind

    actions = machine.handle(
        m.DitherFinished(outcome=DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=5.0)), 6.0
    )
    assert any(isinstance(a, m.Record) for a in actions), "cycle over at once"
    assert machine.phase is m.Phase.IDLE
