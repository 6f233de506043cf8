"""What a dither cost, from the frames around it, and how the machine records it."""

from __future__ import annotations

import math

import pytest

from ditherapp.core import machine as m
from ditherapp.core.dither import OutcomeKind
from ditherapp.core.dither_cost import CostMeter, DitherCost
from ditherapp.core.guiding_stats import GuideHistory, GuideSample, error_stats
from ditherapp.core.phd2.appstate import Phd2State


@pytest.fixture
def make(rig_class):
    def make(cameras=(("cam-1", 10.0),), **values):
        rig = rig_class.with_settings(**values)
        rig.guider(Phd2State.GUIDING)
        for cid, exposure in cameras:
            rig.connect(cid, exposure_s=exposure)
        return rig

    return make


def history(*samples: tuple[float, float]) -> GuideHistory:
    h = GuideHistory()
    for t, d in samples:
        h.add(GuideSample(t=t, ra=d, dec=0.0))
    return h


def meter(cameras: tuple[str, ...] = ("a",), **kw: float) -> CostMeter:
    values = {"trigger_end": 100.0, "settle_end": 120.0, "deadline": 300.0, "settle_s": 15.0}
    values.update(kw)
    baseline = error_stats(GuideSample(t=float(t), ra=0.3, dec=0.0) for t in range(5))
    return CostMeter.start(cameras=cameras, baseline=baseline, **values)


def test_lost_time_runs_to_the_start_of_the_next_saved_frame() -> None:
    h = history((125.0, 0.3), (130.0, 0.6), (135.0, 0.3), (150.0, 5.0))
    cost_meter = meter()
    cost_meter.frame("a", end=121.0, exposure_s=30.0, saved=False, history=h)  # skipped one
    assert not cost_meter.complete(200.0)
    cost_meter.frame("a", end=140.0, exposure_s=20.0, saved=True, history=h)
    assert cost_meter.complete(200.0)
    cost = cost_meter.result()
    assert cost.lost_imaging_s == pytest.approx(20.0)  # 120 - 100
    assert cost.settle_s == 15.0
    assert cost.first_frame_rms == pytest.approx(math.sqrt((0.09 + 0.36 + 0.09) / 3))
    assert cost.baseline_rms == pytest.approx(0.3)
    assert cost.first_frame_ratio == pytest.approx(cost.first_frame_rms / 0.3)


def test_a_frame_saved_before_the_settle_ended_is_not_the_first_after_it() -> None:
    cost_meter = meter()
    cost_meter.frame("a", end=119.0, exposure_s=5.0, saved=True, history=history())
    assert not cost_meter.complete(200.0)


def test_the_slowest_camera_sets_the_cost_and_a_camera_that_left_is_not_waited_for() -> None:
    h = history((130.0, 0.2))
    cost_meter = meter(("a", "b", "c"))
    cost_meter.frame("a", end=135.0, exposure_s=10.0, saved=True, history=h)
    cost_meter.frame("b", end=170.0, exposure_s=10.0, saved=True, history=h)
    assert not cost_meter.complete(200.0)
    cost_meter.camera_left("c")
    assert cost_meter.complete(200.0)
    assert cost_meter.result().lost_imaging_s == pytest.approx(60.0)


def test_past_its_deadline_the_cost_is_what_is_known() -> None:
    cost_meter = meter()
    assert cost_meter.complete(300.0)
    assert cost_meter.result() == DitherCost(settle_s=15.0, baseline_rms=pytest.approx(0.3))


def test_no_baseline_no_ratio() -> None:
    assert DitherCost(first_frame_rms=0.5).first_frame_ratio is None
    assert DitherCost(first_frame_rms=0.5, baseline_rms=0.0).first_frame_ratio is None


def test_the_machine_writes_the_cost_with_the_ledger_line(make, pick) -> None:
    rig = make((("cam-1", 10.0),), ditherevery=2, waitfornextframe=True)
    # a minute of guiding before the dither: the baseline
    for i in range(60):
        rig.machine.history.add(GuideSample(t=rig.now - 60 + i, ra=0.2, dec=0.1))
    actions = rig.advance_until(m.StartDither)
    (start,) = pick(m.StartDither, actions)
    assert start.request.baseline is not None
    assert start.request.baseline.distance_rms == pytest.approx(math.hypot(0.2, 0.1))
    trigger_end = rig.machine.cycle.started
    rig.settle_started()
    finished_at = rig.now + 12
    rig.finish(OutcomeKind.SETTLED, settle_s=11.0, at=finished_at)
    for i in range(40):  # guiding after the settle, worse than before
        rig.machine.history.add(GuideSample(t=finished_at + i, ra=0.4, dec=0.0))
    rig.run_until_idle()
    assert not pick(m.Record, rig.log), "the line waits for the next saved frame"
    (entry,) = rig.records()
    cost = entry.cost
    # the frame in progress at the resume is not saved; the next one starts at its end
    assert cost.lost_imaging_s is not None
    assert cost.lost_imaging_s > finished_at - trigger_end
    assert cost.lost_imaging_s == pytest.approx(
        math.ceil((finished_at - trigger_end) / 10.0) * 10.0
    )
    assert cost.first_frame_rms == pytest.approx(0.4)
    line = entry.as_dict()
    assert line["lost_imaging_s"] == pytest.approx(cost.lost_imaging_s)
    assert line["first_frame_rms"] == pytest.approx(0.4)
    assert line["baseline_rms"] == pytest.approx(math.hypot(0.2, 0.1), abs=1e-3)
    assert line["settle_s"] == 11.0
    assert line["settle_mode"] == "phd2"
    assert rig.machine.totals.mean_lost_imaging_s == pytest.approx(cost.lost_imaging_s)


def test_stopping_writes_the_line_still_waiting_for_its_cost(make) -> None:
    rig = make((("cam-1", 10.0),), ditherevery=2)
    rig.advance_until(m.StartDither)
    rig.settle_started()
    rig.finish(OutcomeKind.SETTLED, settle_s=3.0, at=rig.now + 3)
    while rig.phase is not m.Phase.IDLE:
        rig.advance(rig.now + 0.5)
    assert rig.machine.cost is not None
    (record,) = [a for a in rig.machine.flush(rig.now) if isinstance(a, m.Record)]
    assert record.entry.cost.lost_imaging_s is None
    assert rig.machine.cost is None
