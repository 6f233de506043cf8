"""Settle suggestions from ledger history."""

from __future__ import annotations

from typing import Any

import pytest

from ditherapp.core.settle_advice import MIN_DITHERS, advise, percentile


def line(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "outcome": "settled",
        "amount": 3.0,
        "ra_only": False,
        "settle": {"pixels": 1.5, "time": 10, "timeout": 60},
        "settle_s": 13.0,
        "in_range_after_s": 3.0,
        "broken_run_s": 1.2,
        "phd2_profile": "Rig A",
    }
    base.update(values)
    return base


def test_percentile() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([0.0, 10.0], 0.9) == pytest.approx(9.0)


def test_nothing_until_enough_dithers() -> None:
    lines = [line() for _ in range(MIN_DITHERS - 1)]
    assert advise(lines, profile="Rig A", settle_time=10, settle_timeout=60) == []


def test_a_shorter_settle_time_that_would_have_settled_every_dither() -> None:
    lines = [line(in_range_after_s=2.0 + i * 0.1, broken_run_s=1.0 + i * 0.2) for i in range(12)]
    (group,) = advise(lines, profile="Rig A", settle_time=10, settle_timeout=60)
    assert group.dithers == 12
    assert group.failures == 0
    assert group.median_settle_s == 13.0
    by_name = {s.setting: s for s in group.suggestions}
    # longest stretch in range that did not last: 1.0 + 11 * 0.2 = 3.2 s, plus 1 s
    assert by_name["settledelay"].value == 5
    assert "instead of 10 s" in by_name["settledelay"].text
    assert by_name["settlemax"].value == 26
    assert "random dithers of 3 px (12)" in group.summary


def test_no_settle_time_suggestion_when_it_would_not_be_shorter() -> None:
    lines = [line(broken_run_s=9.5) for _ in range(12)]
    (group,) = advise(lines, profile="Rig A", settle_time=10, settle_timeout=60)
    assert [s.setting for s in group.suggestions] == ["settlemax"]


def test_failures_are_counted_and_keep_the_timeout() -> None:
    lines = [line() for _ in range(11)] + [line(outcome="settle_failed", settle_s=60.0)]
    (group,) = advise(lines, profile="Rig A", settle_time=10, settle_timeout=60)
    assert group.failures == 1
    assert "1 failed" in group.summary
    assert "settlemax" not in [s.setting for s in group.suggestions]


def test_only_the_current_profile_and_one_group_per_pattern_and_amount() -> None:
    lines = (
        [line() for _ in range(12)]
        + [line(phd2_profile="Rig B") for _ in range(12)]
        + [line(amount=5.0) for _ in range(12)]
        + [line(ra_only=True) for _ in range(3)]
        + [line(outcome="refused"), {"junk": 1}, line(amount="x"), line(settle_s=float("nan"))]
    )
    groups = advise(lines, profile="Rig A", settle_time=10, settle_timeout=60)
    assert [(g.pattern, g.amount, g.dithers) for g in groups] == [
        ("random", 3.0, 13),
        ("random", 5.0, 12),
    ]
    assert advise(lines, profile="Nobody", settle_time=10, settle_timeout=60) == []
