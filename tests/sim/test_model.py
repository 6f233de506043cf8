"""The PHD2 model on a hand-driven clock: settle algorithm, states, pause, lost star."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from ditherapp.sim.phd2_model import Err, Ok, Pause

STEADY = 6


def steady(rig, **kwargs):
    r = rig(**kwargs)
    for _ in range(STEADY):
        r.frame()
    return r


def settle(pixels=1.5, time=3, timeout=60):
    return {"pixels": pixels, "time": time, "timeout": timeout}


def test_settle_needs_whole_seconds_in_range_and_reports_time_in_range(rig):
    r = steady(rig)
    mark = r.mark()
    assert r.call("guide", {"settle": settle(pixels=99, time=3)}) == Ok(result="0")
    assert r.names(mark) == ["SettleBegin"]
    done = r.frames_until("SettleDone")
    settling = r.events("Settling", mark)
    times = [e["Time"] for e in settling]
    assert times[0] == 0.0  # the first in-range frame starts the stopwatch
    assert times == sorted(times)
    assert times[-1] < 3.0 <= times[-1] + r.model.frame_interval_s + 0.5
    assert {e["SettleTime"] for e in settling} == {3.0}
    assert done["Status"] == 0
    assert done["TotalFrames"] == len(settling) + 1  # the last frame sends SettleDone only
    assert "Error" not in done


def test_settle_time_and_timeout_are_floored_to_whole_seconds(rig):
    r = steady(rig)
    r.call("guide", {"settle": settle(pixels=99, time=1.9)})
    r.frame()
    done = r.frames_until("SettleDone")
    assert done["TotalFrames"] == 2  # 1.07 s in range counts as the 1 s asked for

    r.faults.never_settle = True
    mark = r.mark()
    r.call("guide", {"settle": settle(pixels=1.0, time=1, timeout=2.9)})
    r.clock += 1.5
    r.frame()  # 2.57 s after SettleBegin: floor(2.57) >= floor(2.9)
    assert r.events("SettleDone", mark)[0]["Status"] == 1


def test_timeout_is_noticed_only_at_a_frame(rig):
    r = steady(rig)
    r.faults.never_settle = True
    r.call("dither", {"amount": 2, "raOnly": False, "settle": settle(pixels=1.0, timeout=3)})
    r.clock += 30.0  # no frames: PHD2 cannot notice anything
    assert r.events("SettleDone") == []
    assert r.model.settling
    r.frame()
    done = r.events("SettleDone")[-1]
    assert done == done | {"Status": 1, "Error": "timed-out waiting for guider to settle"}
    assert done["TotalFrames"] == 1
    assert list(done) == [
        "Event", "Timestamp", "Host", "Inst", "Status", "Error", "TotalFrames", "DroppedFrames"
    ]  # fmt: skip


def test_an_out_of_range_frame_restarts_the_in_range_stopwatch(rig):
    r = steady(rig)
    mark = r.mark()
    r.call("guide", {"settle": settle(pixels=1.5, time=3)})
    r.frame()
    r.frame()
    r.faults.never_settle = True
    r.frame()
    r.faults.never_settle = False
    done = r.frames_until("SettleDone")
    settling = r.events("Settling", mark)
    times = [e["Time"] for e in settling]
    assert times[0] == 0.0
    assert times[1] > 0
    assert times[2] == 0.0  # out of range
    assert settling[2]["Distance"] > 1.5
    assert times[3] == 0.0  # in range again: the stopwatch starts over
    assert times[4] > 0
    assert done["Status"] == 0
    assert done["TotalFrames"] == len(settling) + 1


def test_frames_without_the_star_are_dropped_and_the_settle_carries_on(rig):
    r = steady(rig)
    mark = r.mark()
    r.call("guide", {"settle": settle(pixels=1.5, time=2)})
    r.faults.lost_frames = 2
    r.frame()
    assert r.model.app_state() == "LostLock"
    r.frame()
    done = r.frames_until("SettleDone")
    settling = r.events("Settling", mark)
    assert [e["StarLocked"] for e in settling[:3]] == [False, False, True]
    assert done["Status"] == 0
    assert done["DroppedFrames"] == 2
    lost = r.events("StarLost", mark)
    assert len(lost) == 2
    assert lost[0]["ErrorCode"] > 0
    assert r.model.app_state() == "Guiding"


def test_dither_bumps_the_smoothed_distance_then_restarts_it_from_the_raw_one(rig):
    r = steady(rig)
    mark = r.mark()
    r.call("dither", {"amount": 4, "raOnly": False, "settle": settle()})
    dithered = r.events("GuidingDithered", mark)[0]
    size = math.hypot(dithered["dx"], dithered["dy"])
    r.frame()
    r.frame()
    settling = r.events("Settling", mark)
    steps = r.events("GuideStep", mark)
    assert settling[0]["Distance"] >= 0.7 * size
    # the first frame after a dither moves the whole way (PHD2's recenter)
    assert steps[0]["RADistanceGuide"] == steps[0]["RADistanceRaw"]
    raw = math.hypot(steps[1]["RADistanceRaw"], steps[1]["DECDistanceRaw"])
    assert settling[1]["Distance"] == pytest.approx(raw, abs=0.011)
    assert [s["AvgDist"] for s in steps] == [s["Distance"] for s in settling[:2]]


def _settle_frames(rig, amount, seed):
    r = steady(rig, seed=seed)
    r.call("dither", {"amount": amount, "raOnly": False, "settle": settle(pixels=1.0, time=2)})
    return r.frames_until("SettleDone")["TotalFrames"]


def test_settle_length_grows_with_the_dither_amount(rig):
    small = statistics.mean(_settle_frames(rig, 0.5, seed) for seed in range(12))
    large = statistics.mean(_settle_frames(rig, 15, seed) for seed in range(12))
    assert large > small + 1


def test_ra_only_dither_moves_ra_only(rig):
    r = steady(rig)
    mark = r.mark()
    r.call("dither", {"amount": 5, "raOnly": True, "settle": settle()})
    line = next(line for line in r.lines[mark:] if '"GuidingDithered"' in line)
    assert line.endswith('"dy":0.000}')
    assert json.loads(line)["dx"] != 0


def test_dither_wire_order_and_record(rig):
    r = steady(rig)
    mark = r.mark()
    assert r.call("dither", [3, False, settle()]) == Ok(result="0")
    assert r.names(mark) == ["LockPositionSet", "GuidingDithered", "SettleBegin"]
    assert r.windows[-1].end is None
    assert r.windows[-1].source == "rpc"
    r.frames_until("SettleDone")
    window = r.windows[-1]
    assert window.end is not None
    assert window.end > window.start
    assert (window.status, window.error) == (0, None)


def test_dither_refusals(rig):
    r = steady(rig)
    r.call("dither", {"amount": 3, "raOnly": False, "settle": settle()})
    busy = r.call("dither", {"amount": 3, "raOnly": False, "settle": settle()})
    assert busy == Err(code=1, message="Cannot initiate dither while dither is in progress")
    assert r.call("guide", {"settle": settle()}) == Err(
        code=1, message="Cannot initiate guide while dither is in progress"
    )
    looping = rig(start="looping")
    assert looping.call("dither", {"amount": 3, "settle": settle()}) == Err(
        code=1, message="Dither error"
    )


def test_guide_from_looping_selects_calibrates_guides_and_settles(rig):
    r = rig(start="looping")
    r.frame()
    assert r.model.app_state() == "Looping"
    mark = r.mark()
    assert r.call("guide", {"settle": settle(time=2)}) == Ok(result="0")
    assert r.names(mark) == [
        "ConfigurationChange", "LockPositionSet", "LoopingExposures", "StarSelected"
    ]  # fmt: skip
    r.frames_until("StartCalibration")
    assert r.model.app_state() == "Calibrating"
    busy = r.call("dither", {"amount": 3, "settle": settle()})
    assert busy == Err(code=1, message="Cannot initiate dither while guide is in progress")
    assert r.model.settling is False
    r.frames_until("StartGuiding")
    names = r.names(mark)
    calibration_end = names.index("CalibrationComplete")
    assert names[calibration_end - 1 : calibration_end + 3] == [
        "ConfigurationChange", "CalibrationComplete", "StartGuiding", "SettleBegin"
    ]  # fmt: skip
    assert names.count("Calibrating") >= 8
    assert r.model.settling
    assert r.frames_until("SettleDone")["Status"] == 0
    assert r.model.calibrated
    assert r.model.app_state() == "Guiding"


def test_app_state_precedence(rig):
    r = steady(rig)
    assert r.model.app_state() == "Guiding"
    r.model.set_paused(Pause.GUIDING)
    assert r.model.app_state() == "Paused"
    r.model.request_stop(keep_looping=False)
    r.model.finish_stop()
    assert r.model.app_state() == "Stopped"  # stopping clears the pause
    r.model.set_paused(Pause.FULL)
    assert r.model.app_state() == "Paused"  # Paused wins even over Stopped
    assert rig(start="disconnected").model.app_state() == "Stopped"
    assert rig(start="looping").model.app_state() == "Looping"


def test_guide_pause_keeps_frames_and_settling_but_sends_no_guide_step(rig):
    r = steady(rig)
    r.call("set_paused", [True])
    mark = r.mark()
    r.call("dither", {"amount": 5, "raOnly": False, "settle": settle()})
    r.frame()
    r.frame()
    names = r.names(mark)
    assert names.count("Settling") == 2
    assert "GuideStep" not in names
    assert r.model.exposing


def test_full_pause_takes_no_frames(rig):
    r = steady(rig)
    assert r.call("set_paused", [True, "full"]) == Ok(result="0")
    assert r.model.exposing is False
    frame = r.model.frame
    mark = r.mark()
    assert r.model.complete_frame().guide_step is None
    assert r.model.frame == frame
    assert r.names(mark) == []


def test_stop_during_a_settle_ends_it_in_transcript_order(rig):
    r = steady(rig)
    r.call("dither", {"amount": 5, "raOnly": False, "settle": settle()})
    r.frame()
    mark = r.mark()
    assert r.call("stop_capture") == Ok(result="0")
    assert r.names(mark) == []  # PHD2 stops once the pending move is done
    r.model.finish_stop()
    assert r.names(mark) == [
        "GuidingStopped", "SettleDone", "LoopingExposuresStopped", "LockPositionLost"
    ]  # fmt: skip
    done = r.events("SettleDone", mark)[0]
    assert (done["Status"], done["Error"], done["TotalFrames"]) == (1, "Guiding stopped", 1)
    assert r.windows[-1].status == 1


def test_legacy_dither_settles_for_ten_frames(rig):
    r = steady(rig)
    mark = r.mark()
    assert r.model.legacy_command(3) == 1
    assert r.windows[-1].source == "legacy"
    done = r.frames_until("SettleDone")
    settling = r.events("Settling", mark)
    assert len(settling) == 9
    assert {e["SettleTime"] for e in settling} == {9999.0}
    assert (done["Status"], done["TotalFrames"]) == (0, 10)


def test_legacy_dither_aborts_an_rpc_settle(rig):
    r = steady(rig)
    r.call("dither", {"amount": 3, "raOnly": False, "settle": settle()})
    mark = r.mark()
    assert r.model.legacy_command(13) == 1
    assert r.names(mark) == ["SettleDone", "LockPositionSet", "GuidingDithered", "SettleBegin"]
    aborted = r.events("SettleDone", mark)[0]
    assert (aborted["Status"], aborted["Error"]) == (1, "manual or phd1-style dither")
    assert [(w.source, w.status, w.error) for w in r.windows] == [
        ("rpc", 1, "manual or phd1-style dither"),
        ("legacy", None, None),
    ]


def test_settle_quickly_ends_every_settle_on_its_first_frame(rig):
    r = steady(rig)
    r.faults.settle_quickly = True
    r.call("dither", {"amount": 10, "raOnly": False, "settle": settle(pixels=0.1, time=30)})
    r.frame()
    assert r.events("SettleDone")[-1]["TotalFrames"] == 1


def test_never_settle_keeps_the_distance_out_of_range(rig):
    r = steady(rig)
    r.faults.never_settle = True
    r.call(
        "dither", {"amount": 1, "raOnly": False, "settle": settle(pixels=2.0, time=1, timeout=5)}
    )
    done = r.frames_until("SettleDone")
    assert done["Status"] == 1
    assert all(e["Distance"] > 2.0 for e in r.events("Settling"))
