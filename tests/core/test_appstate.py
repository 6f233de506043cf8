"""The app-state tracker shows what PHD2 would answer to get_app_state (research §4)."""

from __future__ import annotations

import json

import pytest

from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import AppStateTracker, Phd2State
from ditherapp.core.phd2.connection import Phd2Connection
from ditherapp.core.phd2.rpc import RpcResult

S = Phd2State

STEP = ev.GuideStep(frame=1, time=1.0, dx=0, dy=0, ra_distance_raw=0, dec_distance_raw=0)
LOOP_STAR = ev.LoopingExposures(frame=3, star_mass=5000.0, snr=30.0)
LOOP_NO_STAR = ev.LoopingExposures(frame=3)
LOOP_LOST_STAR = ev.LoopingExposures(frame=3, star_mass=5000.0, status="star lost")

# (state before, event, state after, whether a query is needed to be sure)
TABLE = [
    (S.UNKNOWN, ev.AppState(state="Guiding"), S.GUIDING, False),
    (S.GUIDING, ev.AppState(state="Stopped"), S.STOPPED, False),
    (S.GUIDING, ev.AppState(state="SomethingNew"), S.UNKNOWN, False),
    (S.SELECTED, ev.StartCalibration(mount="Mount"), S.CALIBRATING, False),
    (S.CALIBRATING, ev.Calibrating(step=3), S.CALIBRATING, False),
    (S.CALIBRATING, ev.CalibrationFailed(reason="no movement"), S.LOOPING, True),
    (S.CALIBRATING, ev.StartGuiding(), S.GUIDING, False),
    (S.SELECTED, ev.StartGuiding(), S.GUIDING, False),
    (S.GUIDING, STEP, S.GUIDING, False),
    (S.LOST_LOCK, STEP, S.GUIDING, False),
    (S.PAUSED, STEP, S.PAUSED, False),  # dead-reckoning steps while paused
    (S.STOPPED, STEP, S.STOPPED, False),  # a late step after stop_capture
    (S.GUIDING, ev.StarLost(frame=9), S.LOST_LOCK, False),
    (S.LOST_LOCK, ev.StarLost(frame=10), S.LOST_LOCK, False),
    (S.CALIBRATING, ev.StarLost(frame=9), S.CALIBRATING, False),
    (S.SELECTED, ev.StarLost(frame=9), S.LOOPING, False),
    (S.PAUSED, ev.StarLost(frame=9), S.PAUSED, False),
    (S.STOPPED, LOOP_NO_STAR, S.LOOPING, False),
    (S.STOPPED, LOOP_STAR, S.SELECTED, False),
    (S.SELECTED, LOOP_LOST_STAR, S.LOOPING, False),
    (S.GUIDING, LOOP_STAR, S.GUIDING, False),
    (S.CALIBRATING, LOOP_STAR, S.CALIBRATING, False),
    (S.PAUSED, LOOP_STAR, S.PAUSED, False),  # PHD2 reports looping frames while paused
    (S.LOOPING, ev.StarSelected(x=1, y=2), S.SELECTED, False),
    (S.LOOPING, ev.LockPositionSet(x=1, y=2), S.SELECTED, False),
    (S.GUIDING, ev.LockPositionSet(x=1, y=2), S.GUIDING, False),  # fires on every dither
    (S.LOST_LOCK, ev.LockPositionSet(x=1, y=2), S.LOST_LOCK, False),
    (S.PAUSED, ev.LockPositionSet(x=1, y=2), S.PAUSED, False),
    (S.CALIBRATING, ev.StarSelected(x=1, y=2), S.CALIBRATING, False),
    (S.SELECTED, ev.LockPositionLost(), S.LOOPING, False),
    (S.GUIDING, ev.LockPositionLost(), S.GUIDING, False),
    (S.STOPPED, ev.LockPositionLost(), S.STOPPED, False),  # follows LoopingExposuresStopped
    (S.PAUSED, ev.LockPositionLost(), S.PAUSED, False),
    (S.GUIDING, ev.GuidingStopped(), S.LOOPING, True),
    (S.LOOPING, ev.LoopingExposuresStopped(), S.STOPPED, False),
    (S.GUIDING, ev.Paused(), S.PAUSED, False),
    (S.GUIDING, ev.SettleBegin(), S.GUIDING, False),  # no Settling state in PHD2
    (S.GUIDING, ev.Settling(distance=1.0, time=0.0, settle_time=5.0), S.GUIDING, False),
    (S.GUIDING, ev.SettleDone(status=1, error="timed out"), S.GUIDING, False),
    (S.GUIDING, ev.Alert(msg="hello"), S.GUIDING, False),
    (S.GUIDING, ev.ConfigurationChange(), S.GUIDING, False),
    (S.GUIDING, ev.UnknownEvent(name="MultiStarReport"), S.GUIDING, False),
]


@pytest.mark.parametrize(
    ("before", "event", "after", "query"),
    TABLE,
    ids=[f"{b.value}-{type(e).__name__}" for b, e, _, _ in TABLE],
)
def test_tracker_table(before, event, after, query):
    tracker = AppStateTracker()
    tracker.set(before)
    assert tracker.apply(event) is after
    assert tracker.state is after
    assert tracker.needs_query is query


@pytest.mark.parametrize("before", [S.GUIDING, S.LOOPING, S.SELECTED])
def test_resumed_returns_to_the_state_before_the_pause_and_asks_for_a_query(before):
    tracker = AppStateTracker()
    tracker.set(before)
    tracker.apply(ev.Paused())
    tracker.apply(LOOP_STAR)
    assert tracker.apply(ev.Resumed()) is before
    assert tracker.needs_query


def test_after_resuming_guide_steps_show_guiding_again():
    tracker = AppStateTracker()
    tracker.set(S.GUIDING)
    tracker.apply(ev.Paused())
    tracker.apply(STEP)
    assert tracker.state is S.PAUSED
    tracker.apply(ev.Resumed())
    assert tracker.apply(STEP) is S.GUIDING


def test_a_pause_reported_by_a_query_also_resumes_to_the_earlier_state():
    tracker = AppStateTracker()
    tracker.set(S.GUIDING)
    tracker.set(S.PAUSED)
    assert tracker.apply(ev.Resumed()) is S.GUIDING


def test_a_fresh_tracker_knows_nothing_and_wants_a_query():
    tracker = AppStateTracker()
    assert tracker.state is S.UNKNOWN
    assert tracker.needs_query
    tracker.apply(ev.Version(phd_version="2.6.13"))
    assert tracker.state is S.UNKNOWN
    assert tracker.apply(ev.AppState(state="Looping")) is S.LOOPING
    assert not tracker.needs_query


@pytest.mark.parametrize("text", [s.value for s in S if s is not S.UNKNOWN])
def test_every_state_phd2_names_parses(text):
    assert Phd2State.parse(text).value == text


def test_the_tracker_agrees_with_phd2_in_the_transcripts(transcripts):
    """Replay every recorded connection; at each get_app_state reply the tracker (fed
    only events since the last reply) must say what PHD2 said."""
    compared = 0
    streams: dict[tuple[str, str], list] = {}
    for rec in transcripts:
        if rec.direction in ("S->C", "C->S"):
            streams.setdefault((rec.file, rec.conn), []).append(rec)
    for (file, label), records in streams.items():
        conn = Phd2Connection()
        tracker = AppStateTracker()
        asked: set[int] = set()
        blind = False
        for rec in records:
            if rec.direction == "C->S":
                try:
                    req = json.loads(rec.raw)
                except ValueError:
                    continue
                for item in req if isinstance(req, list) else [req]:
                    if type(item.get("id")) is int:
                        conn._pending.add(item["id"])
                        if item.get("method") == "get_app_state":
                            asked.add(item["id"])
                    # Disconnecting the equipment stops capture without any event.
                    blind |= item.get("method") == "set_connected"
                continue
            for msg in conn.receive_data(rec.raw.encode()):
                if isinstance(msg, ev.Phd2Event):
                    tracker.apply(msg)
                elif isinstance(msg, RpcResult) and msg.id in asked:
                    if not blind:
                        assert tracker.state.value == msg.result, (file, label, msg.id)
                        compared += 1
                    tracker.set(Phd2State.parse(msg.result))
                    blind = False
    assert compared >= 15
