"""The hung-PHD2 rule: silence well beyond the guide cadence while guiding, or a request
unanswered with nothing else heard, is a dead link, noticed within 30 s at the latest."""

from __future__ import annotations

import pytest

from ditherapp.core.phd2.watchdog import (
    NOTICE_WITHIN_S,
    PROBE_AFTER_S,
    SILENCE_FLOOR_S,
    LinkWatchdog,
)

T0 = 1000.0


def guiding_every(cadence_s: float, frames: int = 10) -> tuple[LinkWatchdog, float]:
    """A watchdog that has seen ``frames`` guide frames ``cadence_s`` apart; the last
    frame's time."""
    dog = LinkWatchdog(started_at=T0)
    dog.set_guiding(True, T0)
    t = T0
    for _ in range(frames):
        t += cadence_s
        dog.guide_frame(t)
    return dog, t


def first_dead(dog: LinkWatchdog, since: float, step: float = 0.1) -> float:
    t = since
    while dog.dead(t) is None:
        t += step
        assert t < since + 120, "never judged dead"
    return t - since


@pytest.mark.parametrize(
    ("cadence", "expected"),
    [
        (1.0, SILENCE_FLOOR_S),  # short exposures: the floor
        (2.0, SILENCE_FLOOR_S),
        (5.0, 17.0),  # three frames and a margin
        (15.0, NOTICE_WITHIN_S),  # long exposures: the promise caps it
        (60.0, NOTICE_WITHIN_S),
    ],
)
def test_silence_while_guiding_is_dead_after_a_few_frames_and_within_30_s(cadence, expected):
    dog, last = guiding_every(cadence)
    assert first_dead(dog, last) == pytest.approx(expected, abs=0.11)
    assert "PHD2 stopped answering" in (dog.dead(last + expected + 1) or "")


def test_frames_that_keep_coming_keep_the_link_alive():
    dog, t = guiding_every(2.0)
    for _ in range(1000):
        t += 2.0
        dog.guide_frame(t)
        assert dog.dead(t + 1.9) is None


def test_any_bytes_count_as_heard_but_only_guide_frames_set_the_cadence():
    dog, t = guiding_every(2.0)
    dog.heard(t + 9)
    assert dog.dead(t + 15) is None
    assert dog.dead(t + 9 + SILENCE_FLOOR_S) is not None


def test_before_the_cadence_is_known_the_promise_holds():
    dog = LinkWatchdog(started_at=T0)
    dog.set_guiding(True, T0)
    assert first_dead(dog, T0) == pytest.approx(NOTICE_WITHIN_S, abs=0.11)


def test_a_phd2_that_is_not_guiding_may_be_silent_but_is_asked():
    dog = LinkWatchdog(started_at=T0)
    assert dog.dead(T0 + 3600) is None  # stopped: silence for an hour is normal
    assert not dog.probe_due(T0 + PROBE_AFTER_S - 0.1)
    assert dog.probe_due(T0 + PROBE_AFTER_S)
    dog.probe_sent(T0 + PROBE_AFTER_S)
    assert not dog.probe_due(T0 + PROBE_AFTER_S + 1), "one question at a time"
    dog.heard(T0 + PROBE_AFTER_S + 0.01)  # it answered
    assert not dog.probe_due(T0 + PROBE_AFTER_S + 1)
    assert dog.probe_due(T0 + 2 * PROBE_AFTER_S + 0.01)


def test_leaving_guiding_stops_the_silence_rule():
    dog, t = guiding_every(1.0)
    dog.set_guiding(False, t)
    assert dog.dead(t + 60) is None
    dog.set_guiding(True, t + 60)  # guiding again: the first frame is yet to come
    assert dog.dead(t + 60 + SILENCE_FLOOR_S - 0.1) is None


def test_an_unanswered_request_is_dead_only_if_nothing_else_was_heard():
    dog = LinkWatchdog(started_at=T0)
    dog.heard(T0 + 1)
    assert "no reply to get_app_state" in (
        dog.request_timed_out(sent_at=T0 + 2, now=T0 + 12, method="get_app_state") or ""
    )
    dog.heard(T0 + 5)  # events kept coming: busy, not dead
    assert dog.request_timed_out(sent_at=T0 + 2, now=T0 + 12, method="get_app_state") is None


def test_next_check_is_never_later_than_the_deadline():
    dog, t = guiding_every(1.0)
    assert dog.next_check(t) == dog.deadline() == t + SILENCE_FLOOR_S
    idle = LinkWatchdog(started_at=T0)
    assert idle.next_check(T0) == T0 + PROBE_AFTER_S


def test_the_guide_exposure_stands_in_for_the_cadence_until_frames_come():
    dog = LinkWatchdog(started_at=T0)
    dog.set_guiding(True, T0)
    dog.exposure_hint(5.0)
    assert first_dead(dog, T0) == pytest.approx(17.0, abs=0.11)
    dog.guide_frame(T0 + 1)
    dog.guide_frame(T0 + 2)  # frames tell better: 1 s apart
    assert dog.silence_limit_s() == SILENCE_FLOOR_S
