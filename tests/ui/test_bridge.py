"""The bridge turns what the service says into typed Qt signals, and the window's
commands into service calls."""

from __future__ import annotations

from typing import Any

from ditherapp.core.dither import OutcomeKind
from ditherapp.core.phd2 import events as ev
from ditherapp.ui.bridge import ServiceBridge


class Recorder:
    def __init__(self, bridge: ServiceBridge) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        for name in (
            "settingChanged",
            "guideStep",
            "settleBegun",
            "settleSample",
            "settleEnded",
            "ditherBegun",
            "ditherMoved",
            "ditherEnded",
            "ditherRecorded",
            "notice",
            "alert",
            "commandFailed",
        ):
            getattr(bridge, name).connect(lambda *args, n=name: self.calls.append((n, args)))

    def of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    def names(self) -> list[str]:
        return [n for n, _ in self.calls]


def step(ra: float, dec: float, frame: int = 1) -> ev.GuideStep:
    return ev.GuideStep(
        frame=frame, time=1.0, dx=0.1, dy=0.1, ra_distance_raw=ra, dec_distance_raw=dec
    )


def test_status_follows_the_service(qtbot: Any, bridge: ServiceBridge, rig: Any) -> None:
    with qtbot.waitSignal(bridge.statusChanged, check_params_cb=lambda s: s["phd2"]["connected"]):
        rig.guider.connect()
    with qtbot.waitSignal(
        bridge.statusChanged, check_params_cb=lambda s: not s["phd2"]["connected"]
    ) as status:
        rig.guider.drop(retry_in=4.0)
    assert 0 < status.args[0]["phd2"]["retry_in_s"] <= 4.0


def test_guide_steps_carry_ra_and_dec_raw(qapp: Any, rig: Any) -> None:
    bridge = ServiceBridge(rig.service, wall_clock=lambda: 1000.0)
    seen = Recorder(bridge)
    rig.guider.emit(step(0.42, -0.17))
    assert seen.of("guideStep") == [(1000.0, 0.42, -0.17)]
    bridge.detach()


def test_a_settle_is_reported_from_begin_to_done(qapp: Any, rig: Any) -> None:
    now = [50.0]
    bridge = ServiceBridge(rig.service, clock=lambda: now[0])
    seen = Recorder(bridge)
    rig.guider.emit(ev.SettleBegin())
    for distance, in_range in ((4.5, 0.0), (1.2, 1.0), (0.8, 2.0)):
        now[0] += 1.0
        rig.guider.emit(ev.Settling(distance=distance, time=in_range, settle_time=3.0))
    rig.guider.emit(ev.SettleDone(status=0))
    s = rig.service.settings
    assert seen.of("settleBegun") == [(s.settletarget, float(s.settledelay), float(s.settlemax))]
    assert seen.of("settleSample") == [(1.0, 4.5, 0.0), (2.0, 1.2, 1.0), (3.0, 0.8, 2.0)]
    assert seen.of("settleEnded") == [(True, "")]
    bridge.detach()


def test_a_failed_settle_says_why(qapp: Any, rig: Any, bridge: ServiceBridge) -> None:
    seen = Recorder(bridge)
    rig.guider.emit(ev.SettleBegin())
    rig.guider.emit(ev.SettleDone(status=1, error="timed-out waiting for guider to settle"))
    assert seen.of("settleEnded") == [(False, "timed-out waiting for guider to settle")]


def test_losing_phd2_is_an_alert(bridge: ServiceBridge, rig: Any) -> None:
    seen = Recorder(bridge)
    rig.guider.connect()
    rig.guider.drop()
    assert ("alert", ("lost the connection to PHD2",)) in seen.calls
    levels = {args[1]: args[0] for args in seen.of("notice")}
    assert levels["connected to PHD2"] == "info"
    assert levels["lost the connection to PHD2"] == "alert"


def test_commands_reach_the_service(bridge: ServiceBridge, rig: Any) -> None:
    seen = Recorder(bridge)
    bridge.ditherNow()
    assert seen.of("commandFailed") == [("Cannot dither now: PHD2 is not connected",)]
    bridge.setEnabled(False)
    assert rig.service.settings.enabled is False
    assert ("enabled", False) in seen.of("settingChanged")
    bridge.reconnectPhd2()
    assert rig.guider.reconnects == 1


def test_a_refused_setting_puts_the_old_value_back(bridge: ServiceBridge, rig: Any) -> None:
    seen = Recorder(bridge)
    assert bridge.setSetting("ditherevery", 0) is False
    assert seen.of("settingChanged") == [("ditherevery", rig.service.settings.ditherevery)]
    assert "ditherevery must be a whole number from 1 to 1000" in seen.of("commandFailed")[0][0]


async def test_a_dither_cycle_from_pause_to_resume(
    bridge: ServiceBridge, rig: Any, until: Any
) -> None:
    seen = Recorder(bridge)
    rig.guider.connect()
    camera = rig.camera()
    for _ in range(rig.service.settings.ditherevery):
        camera.frame()
    await until(lambda: rig.guider.outcome is not None, what="the dither to start")
    assert seen.of("ditherBegun"), "saving paused as the cycle began"
    assert camera.paused
    rig.guider.settle(3.0, 1.5, 1.0, 0.9)
    rig.guider.finish()
    await until(lambda: seen.of("ditherEnded"), what="the cycle to end")
    order = [
        n
        for n in seen.names()
        if n in ("ditherBegun", "ditherMoved", "settleBegun", "settleEnded", "ditherEnded")
    ]
    assert order == ["ditherBegun", "ditherMoved", "settleBegun", "settleEnded", "ditherEnded"]
    assert len(seen.of("settleSample")) == 4
    assert seen.of("ditherEnded")[0][1:] == ("settled", "")
    assert not camera.paused
    assert not seen.of("ditherRecorded"), "the line waits for the next saved frame's cost"
    camera.frame()
    await until(lambda: seen.of("ditherRecorded"), what="the ledger record")
    assert seen.of("ditherRecorded")[0][0]["outcome"] == "settled"


async def test_a_failed_dither_ends_with_its_outcome(
    bridge: ServiceBridge, rig: Any, until: Any
) -> None:
    seen = Recorder(bridge)
    rig.guider.connect()
    rig.camera()
    bridge.ditherNow()
    await until(lambda: rig.guider.outcome is not None, what="the dither to start")
    rig.guider.finish(OutcomeKind.SETTLE_FAILED, "timed-out waiting for guider to settle")
    await until(lambda: seen.of("ditherEnded"), what="the cycle to end")
    assert seen.of("ditherEnded")[0][1:] == (
        "settle_failed",
        "timed-out waiting for guider to settle",
    )
    assert any("settle_failed" in args[0] for args in seen.of("alert"))


def test_after_detach_nothing_is_emitted(qapp: Any, rig: Any) -> None:
    bridge = ServiceBridge(rig.service)
    seen = Recorder(bridge)
    bridge.detach()
    rig.guider.connect()
    rig.guider.emit(step(1.0, 1.0))
    rig.service.set_setting("ditherevery", 7)
    assert seen.calls == []
