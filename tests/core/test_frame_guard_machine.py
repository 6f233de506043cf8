"""The frame guard inside the dither machine: bad guiding holds saving within the frame
in progress, guiding back resumes it from the next frame boundary, and every frame that
saw it is in the ledger."""

from __future__ import annotations

import pytest

from ditherapp.core import machine as m
from ditherapp.core.phd2.appstate import Phd2State as S

EXPOSURE = 10.0


@pytest.fixture
def guarded(rig_class):
    def make(**values):
        rig = rig_class.with_settings(**{"ditherevery": 100, **values})
        rig.guider(S.GUIDING)
        rig.connect("cam-1", name="Main", exposure_s=EXPOSURE)
        rig.frames("cam-1", 2)
        return rig

    return make


def guarded_frames(rig) -> list[m.FrameEntry]:
    return [
        a.entry
        for a in rig.log
        if isinstance(a, m.FrameRecord) and a.entry.kind is m.FrameKind.GUARDED
    ]


BAD = [
    pytest.param({"connected": False, "state": S.UNKNOWN}, "PHD2 is not connected", id="killed"),
    pytest.param({"state": S.LOST_LOCK}, "PHD2 has lost the guide star", id="star-lost"),
    pytest.param({"state": S.LOOPING}, "PHD2 stopped guiding (looping)", id="stopped"),
]


@pytest.mark.parametrize(("bad", "reason"), BAD)
def test_bad_guiding_pauses_saving_at_once_and_resumes_from_the_next_boundary(
    guarded, pick, notes, bad, reason
):
    rig = guarded()
    cam = rig.cameras["cam-1"]
    rig.advance(rig.now + 4.0)  # the frame in progress is 4 s in
    actions = rig.guider(**bad)
    assert [p.camera for p in pick(m.SendPause, actions)] == ["cam-1"]
    assert rig.phase is m.Phase.GUARDING
    assert notes(actions, m.Level.WARNING)[-1] == f"GUARDING: {reason}, saving paused"
    saved_before = cam.saved
    rig.frames("cam-1", 3)  # the one in progress and two more: none saved
    assert cam.saved == saved_before
    entries = guarded_frames(rig)
    assert [e.seq for e in entries] == [3, 4, 5]
    assert all(e.reasons == (reason,) and not e.saved and e.camera == "Main" for e in entries)
    assert rig.machine.totals.guarded_frames == 3
    assert "frame guard" in (rig.machine.refusal() or "")

    rig.advance(rig.now + 3.0)
    actions = rig.guider(S.GUIDING)
    (resume,) = pick(m.SendResume, actions)
    assert resume.after_next_frame, "the frame in progress saw the bad guiding"
    assert rig.phase is m.Phase.IDLE
    rig.frame("cam-1")  # overlapped the bad stretch: not saved, in the ledger
    assert cam.saved == saved_before
    assert guarded_frames(rig)[-1].seq == 6
    rig.frames("cam-1", 2)
    assert cam.saved == saved_before + 2
    assert len(guarded_frames(rig)) == 4


def test_a_user_who_never_guides_is_not_guarded(rig_class, pick):
    rig = rig_class.with_settings(ditherevery=100)
    rig.guider(S.LOOPING)
    rig.connect("cam-1", exposure_s=EXPOSURE)
    rig.frames("cam-1", 3)
    actions = rig.guider(connected=False, state=S.UNKNOWN)
    actions += rig.frames("cam-1", 3)
    assert pick(m.SendPause, actions) == []
    assert rig.cameras["cam-1"].saved == 6
    assert guarded_frames(rig) == []


def test_with_the_guard_off_frames_keep_saving(guarded, pick):
    rig = guarded(guard=False)
    actions = rig.guider(S.LOST_LOCK) + rig.frames("cam-1", 3)
    assert pick(m.SendPause, actions) == []
    assert guarded_frames(rig) == []


def test_guardmax_lets_go_alerts_and_the_frames_saved_are_named(guarded, pick, notes):
    rig = guarded(guardmax=5)
    rig.guider(connected=False, state=S.UNKNOWN)
    started = rig.now
    actions = rig.advance(started + 5 * 60 - 1)
    assert pick(m.SendResume, actions) == []
    assert pick(m.SendPause, actions), "the guard's pause is renewed while it holds"
    actions = rig.advance(started + 5 * 60 + 1)
    (resume,) = pick(m.SendResume, actions)
    assert resume.after_next_frame is False
    (alert,) = notes(actions, m.Level.ALERT)
    assert "let go after 5 min" in alert
    assert "PHD2 is not connected" in alert
    assert rig.phase is m.Phase.IDLE
    rig.frames("cam-1", 2)
    saved_anyway = [e for e in guarded_frames(rig) if e.saved]
    assert len(saved_anyway) == 2
    assert rig.machine.totals.unguarded_saved == 2
    # It does not hold again while the same stretch lasts...
    assert pick(m.SendPause, rig.frames("cam-1", 2)) == []
    # ... but guards the next one, once guiding was back.
    rig.guider(S.GUIDING)
    assert pick(m.SendPause, rig.guider(S.LOST_LOCK))


def test_settling_outside_our_dither_is_guarded_but_our_own_settle_is_not(guarded, pick):
    rig = guarded(ditherevery=3)
    actions = rig.guider(S.GUIDING, settling=True)  # someone else's dither
    assert rig.phase is m.Phase.GUARDING
    rig.frame("cam-1")
    assert guarded_frames(rig)[-1].reasons == ("PHD2 is settling (not our dither)",)
    rig.guider(S.GUIDING)
    assert rig.phase is m.Phase.IDLE
    rig.frames("cam-1", 4)
    count = len(guarded_frames(rig))
    # Our own dither: PHD2 settles, nothing is guarded.
    actions = rig.advance_until(m.StartDither)
    rig.settle_started()
    rig.guider(S.GUIDING, settling=True)
    actions = rig.finish(settle_s=5.0)
    rig.guider(S.GUIDING)
    rig.run_until_idle()
    assert rig.phase is m.Phase.IDLE
    assert pick(m.SendResume, actions)
    assert len(guarded_frames(rig)) == count


def test_a_camera_that_joins_while_guarding_is_held_too(guarded, pick):
    rig = guarded()
    rig.guider(S.LOST_LOCK)
    actions = rig.connect("cam-2", name="Second", exposure_s=5.0)
    assert [p.camera for p in pick(m.SendPause, actions)] == ["cam-2"]
    actions = rig.guider(S.GUIDING)
    assert sorted(r.camera for r in pick(m.SendResume, actions)) == ["cam-1", "cam-2"]


def test_phd2_lost_mid_dither_hands_the_paused_cameras_to_the_guard(guarded, pick):
    rig = guarded(ditherevery=3, waitfornextframe=False)
    rig.advance_until(m.StartDither)
    rig.settle_started()
    actions = rig.guider(connected=False, state=S.UNKNOWN)
    assert pick(m.CancelDither, actions)
    # No resume in between: it would let the frame in progress be saved unguided.
    assert not pick(m.SendResume, actions)
    assert pick(m.SendPause, actions)
    assert rig.records()[-1].outcome.kind.value == "lost"
    assert rig.phase is m.Phase.GUARDING
    # PHD2 back and guiding: the guard lets go from the next frame.
    actions = rig.guider(S.GUIDING)
    resume = pick(m.SendResume, actions)
    assert resume
    assert resume[0].after_next_frame
    assert rig.phase is m.Phase.IDLE


def test_guiding_error_above_guardrms_holds_saving_until_it_is_back(guarded, pick, notes):
    rig = guarded(guardrms=1.0)
    for _ in range(6):
        rig.now += 1.0
        actions = rig.feed(m.GuideStepSeen(ra=2.5, dec=0.5))
    assert rig.phase is m.Phase.GUARDING
    assert "px RMS" in notes(rig.log, m.Level.WARNING)[-1]
    for _ in range(EXPOSURE.__int__() + 2):
        rig.now += 1.0
        actions = rig.feed(m.GuideStepSeen(ra=0.1, dec=0.1))
        if pick(m.SendResume, actions):
            break
    assert rig.phase is m.Phase.IDLE


def test_suspect_frames_are_recorded_and_alerted_once_then_logged(guarded, notes):
    rig = guarded()
    actions = rig.feed(m.CameraSuspect(camera="cam-1", count=41, seq=7, agent_t=1.5e9))
    (alert,) = notes(actions, m.Level.ALERT)
    assert "frame 41" in alert
    actions = rig.feed(m.CameraSuspect(camera="cam-1", count=42, seq=8))
    assert notes(actions, m.Level.ALERT) == []
    assert notes(actions, m.Level.WARNING)
    entries = [a.entry for a in rig.log if isinstance(a, m.FrameRecord)]
    assert [(e.kind, e.count) for e in entries] == [
        (m.FrameKind.SUSPECT, 41),
        (m.FrameKind.SUSPECT, 42),
    ]
    assert entries[0].as_dict()["kind"] == "suspect_frame"
    assert rig.machine.totals.suspect_frames == 2
