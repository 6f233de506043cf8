"""The graphs get their data from the bridge, keep it bounded, and redraw from their
timer rather than on every PHD2 message."""

from __future__ import annotations

from typing import Any

import pytest

from ditherapp.core.phd2 import events as ev
from ditherapp.ui import plots
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.plots import GuideGraph, SettleGraph


def step(ra: float, dec: float) -> ev.GuideStep:
    return ev.GuideStep(frame=1, time=1.0, dx=0, dy=0, ra_distance_raw=ra, dec_distance_raw=dec)


@pytest.fixture
def clock() -> list[float]:
    return [10_000.0]


@pytest.fixture
def guide(qtbot: Any, rig: Any, clock: list[float]) -> GuideGraph:
    bridge = ServiceBridge(rig.service, wall_clock=lambda: clock[0])
    graph = GuideGraph(bridge, window_s=300.0, wall_clock=lambda: clock[0])
    qtbot.addWidget(graph)
    return graph


@pytest.fixture
def settle(qtbot: Any, bridge: ServiceBridge) -> SettleGraph:
    graph = SettleGraph(bridge)
    qtbot.addWidget(graph)
    return graph


def test_guide_steps_reach_the_curves(guide: GuideGraph, rig: Any, clock: list[float]) -> None:
    for i in range(5):
        clock[0] += 2.0
        rig.guider.emit(step(0.1 * i, -0.2 * i))
    guide.refresh()
    x, ra = guide.ra.getData()
    _, dec = guide.dec.getData()
    assert list(x) == [10_002.0, 10_004.0, 10_006.0, 10_008.0, 10_010.0]
    assert list(ra) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert list(dec) == pytest.approx([0.0, -0.2, -0.4, -0.6, -0.8])
    _, high = guide.getPlotItem().viewRange()[0]
    assert high == pytest.approx(clock[0])


def test_redraws_wait_for_the_timer(guide: GuideGraph, rig: Any, qtbot: Any) -> None:
    guide.show()
    rig.guider.emit(step(0.5, 0.5))
    assert guide.points() == 0, "no redraw per message"
    qtbot.waitUntil(lambda: guide.points() == 1, timeout=2000)


def test_the_guide_buffer_is_bounded(guide: GuideGraph, rig: Any, clock: list[float]) -> None:
    for i in range(plots.MAX_GUIDE_STEPS + 50):
        clock[0] += 0.05
        rig.guider.emit(step(float(i), 0.0))
    guide.refresh()
    assert len(guide.steps) == plots.MAX_GUIDE_STEPS
    assert len(guide.ra.yData) == plots.MAX_GUIDE_STEPS
    assert guide.ra.yData[-1] == plots.MAX_GUIDE_STEPS + 49


def test_dithers_are_marked_and_forgotten_when_they_scroll_out(
    guide: GuideGraph, rig: Any, clock: list[float], bridge: ServiceBridge
) -> None:
    rig.guider.emit(ev.GuidingDithered(dx=2.0, dy=1.0))
    guide.pause_began(clock[0])
    guide.pause_ended(clock[0] + 12.0, "settled", "")
    guide.refresh()
    assert [m.value() for m in guide.markers] == [clock[0]]
    assert [(start, end) for _, start, end in guide.pauses] == [(clock[0], clock[0] + 12.0)]
    clock[0] += 400.0
    guide.refresh()
    assert not guide.markers
    assert not guide.pauses


def test_a_settle_is_drawn_with_its_target_and_time_in_range(
    settle: SettleGraph, bridge: ServiceBridge
) -> None:
    bridge.settleBegun.emit(1.5, 5.0, 60.0)
    for t, d, in_range in ((1.0, 6.0, 0.0), (2.0, 2.5, 0.0), (3.0, 1.2, 0.4), (4.0, 0.8, 1.4)):
        bridge.settleSample.emit(t, d, in_range)
    settle.refresh()
    x, y = settle.curve.getData()
    assert list(x) == [1.0, 2.0, 3.0, 4.0]
    assert list(y) == [6.0, 2.5, 1.2, 0.8]
    assert settle.target_line.value() == 1.5
    assert settle.box.isVisible(), "in range since 2.6 s: stay under 1.5 px until 7.6 s"
    box = settle.box.rect()
    assert (box.left(), box.right()) == pytest.approx((2.6, 7.6))
    assert (box.top(), box.bottom()) == (0.0, 1.5)
    assert settle.getPlotItem().viewRange()[0][1] >= 7.6, "the whole window is in view"


def test_earlier_settles_stay_behind_the_current_one(
    settle: SettleGraph, bridge: ServiceBridge
) -> None:
    for n in range(plots.PAST_SETTLES + 2):
        bridge.settleBegun.emit(2.0, 3.0, 60.0)
        bridge.settleSample.emit(1.0, float(n), 0.0)
        bridge.settleEnded.emit(True, "")
    settle.refresh()
    drawn = [c.getData()[1] for c in settle.past_curves]
    assert [list(y) for y in drawn] == [[4.0], [3.0], [2.0], [1.0]]
    assert list(settle.curve.getData()[1]) == [5.0]
    assert not settle.box.isVisible()


def test_the_target_follows_the_setting_between_dithers(settle: SettleGraph, rig: Any) -> None:
    rig.service.set_setting("settletarget", 0.75)
    settle.refresh()
    assert settle.target_line.value() == 0.75
