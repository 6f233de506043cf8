"""The frame guard on its own: which conditions it sees, which frames they touch, and
how long it may hold saving."""

from __future__ import annotations

import pytest

from ditherapp.core.frame_guard import (
    FrameGuard,
    GuardConfig,
    GuardReason,
    guider_condition,
    retake,
)
from ditherapp.core.guiding_stats import GuideSample
from ditherapp.core.phd2.appstate import Phd2State as S
from ditherapp.core.settings import DitherSettings


def guiding(guard: FrameGuard, t: float, state: S = S.GUIDING, **kw: bool) -> None:
    guard.guider(
        t,
        connected=kw.get("connected", True),
        state=state,
        settling=kw.get("settling", False),
        our_dither=kw.get("our_dither", False),
    )


@pytest.mark.parametrize(
    ("connected", "state", "settling", "ours", "reason"),
    [
        (False, S.GUIDING, False, False, GuardReason.DISCONNECTED),
        (True, S.LOST_LOCK, False, False, GuardReason.STAR_LOST),
        (True, S.LOOPING, False, False, GuardReason.NOT_GUIDING),
        (True, S.STOPPED, False, False, GuardReason.NOT_GUIDING),
        (True, S.PAUSED, False, False, GuardReason.NOT_GUIDING),
        (True, S.GUIDING, True, False, GuardReason.SETTLING),
        (True, S.GUIDING, True, True, None),
        (True, S.GUIDING, False, False, None),
    ],
)
def test_phd2_states_map_to_one_condition(connected, state, settling, ours, reason) -> None:
    condition = guider_condition(
        connected=connected, state=state, settling=settling, our_dither=ours
    )
    assert (condition.reason if condition else None) == reason
    if condition is not None:
        assert "PHD2" in condition.text


def test_a_user_who_never_guides_is_never_guarded() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0, S.LOOPING)
    guiding(guard, 10.0, connected=False, state=S.UNKNOWN)
    assert not guard.armed
    assert guard.condition() is None
    assert not guard.should_hold()
    assert guard.judge_frame(0.0, 20.0) == ()


def test_the_time_before_guiding_was_first_seen_guards_no_frame() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0, connected=False, state=S.UNKNOWN)
    guiding(guard, 5.0)  # PHD2 connects and guides during the first frame
    assert guard.armed
    assert guard.judge_frame(0.0, 10.0) == ()


def test_once_guiding_was_seen_a_lost_star_is_a_condition_until_it_clears() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0)
    assert guard.armed
    assert guard.condition() is None
    guiding(guard, 50.0, S.LOST_LOCK)
    condition = guard.condition()
    assert condition is not None
    assert condition.reason is GuardReason.STAR_LOST
    assert guard.should_hold()
    guiding(guard, 70.0)
    assert guard.condition() is None
    # Frames are judged by overlap with the stretch 50..70.
    assert guard.judge_frame(0.0, 49.0) == ()
    assert [c.reason for c in guard.judge_frame(40.0, 55.0)] == [GuardReason.STAR_LOST]
    assert [c.reason for c in guard.judge_frame(69.0, 80.0)] == [GuardReason.STAR_LOST]
    assert guard.judge_frame(70.5, 90.0) == ()


def test_a_frame_that_saw_several_conditions_names_each_once() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0)
    guiding(guard, 10.0, S.LOST_LOCK)
    guiding(guard, 12.0, connected=False, state=S.UNKNOWN)
    guiding(guard, 20.0)
    guiding(guard, 22.0, S.LOST_LOCK)
    guiding(guard, 25.0)
    reasons = [c.reason for c in guard.judge_frame(5.0, 30.0)]
    assert reasons == [GuardReason.STAR_LOST, GuardReason.DISCONNECTED]


def test_turning_the_guard_off_stops_it_at_once() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0)
    guiding(guard, 5.0, S.LOOPING)
    assert guard.should_hold()
    guard.configure(GuardConfig(enabled=False))
    assert not guard.should_hold()
    assert guard.judge_frame(0.0, 10.0) == ()


def test_guardmax_lets_go_once_and_rearms_when_guiding_is_back() -> None:
    guard = FrameGuard(GuardConfig(max_s=600.0))
    guiding(guard, 0.0)
    guiding(guard, 10.0, connected=False, state=S.UNKNOWN)
    assert guard.should_hold()
    guard.hold_started(10.0)
    assert guard.let_go_at() == 610.0
    assert not guard.check_max(609.0)
    assert guard.check_max(610.0)
    assert guard.let_go
    assert not guard.should_hold()
    guard.hold_ended()
    assert not guard.check_max(2000.0), "lets go once"
    # Frames saved meanwhile still saw the condition.
    assert guard.judge_frame(700.0, 800.0)
    guiding(guard, 900.0)
    assert not guard.should_hold()
    assert not guard.let_go
    guiding(guard, 950.0, S.LOST_LOCK)
    assert guard.should_hold(), "a new stretch of bad guiding is held again"


def test_guiding_error_over_the_exposure_is_off_by_default_and_judged_when_set() -> None:
    guard = FrameGuard()
    guiding(guard, 0.0)
    for i in range(20):
        guard.history.add(GuideSample(t=1.0 + i, ra=3.0, dec=0.0))
        guard.guiding_error(1.0 + i, 10.0)
    assert guard.condition() is None
    assert guard.judge_frame(0.0, 20.0) == ()
    guard.configure(GuardConfig(rms_px=1.5))
    guard.guiding_error(20.0, 10.0)
    condition = guard.condition()
    assert condition is not None
    assert condition.reason is GuardReason.GUIDING_ERROR
    assert "3.00 px RMS" in condition.text
    for i in range(20):
        guard.history.add(GuideSample(t=21.0 + i, ra=0.2, dec=0.1))
        guard.guiding_error(21.0 + i, 10.0)
    assert guard.condition() is None
    assert guard.judge_frame(31.0, 40.0) == ()


def test_the_error_over_a_whole_exposure_is_judged_even_without_a_live_condition() -> None:
    guard = FrameGuard(GuardConfig(rms_px=1.0))
    guiding(guard, 0.0)
    for i in range(10):
        guard.history.add(GuideSample(t=1.0 + i, ra=2.0 if i % 2 else 0.0, dec=0.0))
    (condition,) = guard.judge_frame(0.0, 11.0)
    assert condition.reason is GuardReason.GUIDING_ERROR
    assert "over the exposure" in condition.text


def test_the_settings_table_feeds_the_guard_config() -> None:
    settings = DitherSettings().with_value("guardmax", "20").with_value("guardrms", 1.2)
    config = GuardConfig.from_settings(settings.with_value("guardretake", True))
    assert config.max_s == 1200.0
    assert config.rms_px == 1.2
    assert retake(config, guider_and_lost()) is True
    assert retake(GuardConfig(), guider_and_lost()) is False


def guider_and_lost() -> tuple:
    condition = guider_condition(
        connected=True, state=S.LOST_LOCK, settling=False, our_dither=False
    )
    assert condition is not None
    return (condition,)
