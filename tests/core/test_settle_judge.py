"""The one settle judge: PHD2's rule, the calm rule, PHD2's SettleDone as a second signal."""

from __future__ import annotations

import math
import random

import pytest

from ditherapp.core.guiding_stats import ErrorStats, GuideSample, error_stats
from ditherapp.core.settle_judge import (
    CALM_QUANTILE,
    TIMEOUT_REASON,
    EndRule,
    SettleCriteria,
    SettleJudge,
    calm_limit,
    chi2_quantile,
)


def criteria(**kw: object) -> SettleCriteria:
    base: dict[str, object] = {"target_px": 1.5, "time_s": 10.0, "timeout_s": 60.0}
    base.update(kw)
    return SettleCriteria(**base)


def calm_baseline(sigma: float = 0.3, n: int = 60, seed: int = 1) -> ErrorStats:
    rng = random.Random(seed)
    samples = [
        GuideSample(t=float(i), ra=rng.gauss(0, sigma), dec=rng.gauss(0, sigma)) for i in range(n)
    ]
    stats = error_stats(samples)
    assert stats is not None
    return stats


def test_phd2_rule_settles_after_the_time_in_range() -> None:
    judge = SettleJudge(criteria(time_s=4.0), started_at=0.0)
    assert judge.feed(1.0, 5.0) is None
    assert judge.feed(2.0, 1.0) is None  # in range from here
    assert judge.feed(4.0, 1.2) is None
    verdict = judge.feed(6.0, 0.9)
    assert verdict is not None
    assert verdict.settled
    assert verdict.rule is EndRule.PHD2
    assert verdict.elapsed_s == 6.0


def test_a_frame_out_of_range_restarts_the_stopwatch() -> None:
    judge = SettleJudge(criteria(time_s=4.0), started_at=0.0)
    judge.feed(1.0, 1.0)
    judge.feed(4.0, 1.6)  # out: the run from t=1 does not count
    assert judge.in_range_since is None
    judge.feed(5.0, 1.0)
    assert judge.feed(8.0, 1.0) is None
    verdict = judge.feed(9.0, 1.0)
    assert verdict is not None
    assert verdict.settled
    assert verdict.at == 9.0


def test_time_zero_settles_on_the_first_frame_in_range() -> None:
    judge = SettleJudge(criteria(time_s=0.0), started_at=0.0)
    assert judge.feed(1.0, 3.0) is None
    verdict = judge.feed(2.0, 1.5)  # the target itself is in range, as in PHD2
    assert verdict is not None
    assert verdict.rule is EndRule.PHD2


def test_an_early_settle_done_from_phd2_does_not_settle_a_star_still_away() -> None:
    # The transcript case: PHD2's smoothed distance said 1.99 px while the star was 5 px
    # from the moved lock position, and PHD2 could call it settled.
    judge = SettleJudge(criteria(time_s=2.0), started_at=0.0)
    judge.feed(1.0, 5.0)
    assert judge.phd2_done(1.5, ok=True) is None
    assert judge.verdict is None
    assert judge.phd2_settled_at == 1.5
    judge.feed(2.0, 4.0)
    judge.feed(3.0, 1.0)
    assert judge.verdict is None
    verdict = judge.feed(5.0, 0.8)
    assert verdict is not None
    assert verdict.settled
    assert verdict.at == 5.0


def test_a_failed_settle_done_ends_the_settle() -> None:
    judge = SettleJudge(criteria(), started_at=0.0)
    judge.feed(1.0, 5.0)
    verdict = judge.phd2_done(2.0, ok=False, error="star lost")
    assert verdict is not None
    assert not verdict.settled
    assert verdict.rule is EndRule.FAILED
    assert verdict.error == "star lost"
    # decided once: later frames do not change it
    assert judge.feed(3.0, 0.1) is verdict


def test_settlemax_times_out_even_when_frames_stop() -> None:
    judge = SettleJudge(criteria(timeout_s=30.0), started_at=100.0)
    judge.feed(101.0, 5.0)
    assert judge.check(129.9) is None
    verdict = judge.check(130.0)
    assert verdict is not None
    assert not verdict.settled
    assert verdict.rule is EndRule.TIMEOUT
    assert verdict.error == TIMEOUT_REASON
    assert judge.deadline() == 130.0


def test_a_lost_star_restarts_the_run_in_range() -> None:
    judge = SettleJudge(criteria(time_s=3.0), started_at=0.0)
    judge.feed(1.0, 0.5)
    judge.star_lost(2.0)
    assert judge.feed(3.0, 0.5) is None  # 2 s since t=1 would have been 2 s anyway; restarts at 3
    assert judge.feed(5.0, 0.5) is None
    assert judge.feed(6.0, 0.5) is not None


def test_bad_distances_are_ignored_but_the_timeout_still_applies() -> None:
    judge = SettleJudge(criteria(time_s=0.0, timeout_s=5.0), started_at=0.0)
    assert judge.feed(1.0, math.nan) is None
    assert judge.feed(2.0, -1.0) is None
    assert judge.frames == 0
    assert judge.check(5.0) is not None  # the timer ran out before the next frame
    verdict = judge.feed(6.0, 0.5)
    assert verdict is not None
    assert verdict.rule is EndRule.TIMEOUT


def test_an_unknown_large_distance_is_out_of_range() -> None:
    judge = SettleJudge(criteria(time_s=2.0, timeout_s=5.0), started_at=0.0)
    judge.feed(1.0, 0.5)
    assert judge.feed(2.0, math.inf) is None
    assert judge.in_range_since is None
    verdict = judge.feed(6.0, math.inf)
    assert verdict is not None
    assert verdict.rule is EndRule.TIMEOUT


def test_calm_settles_a_star_guiding_as_before_well_before_phd2s_time() -> None:
    baseline = calm_baseline()
    judge = SettleJudge(criteria(mode="calm", time_s=10.0), started_at=0.0, baseline=baseline)
    assert judge.calm_available
    # converging from a 5 px dither, then guiding at the baseline's level
    for t, d in [(2.0, 5.0), (4.0, 1.4), (6.0, 0.3), (8.0, 0.25), (10.0, 0.4)]:
        verdict = judge.feed(t, d)
    assert verdict is not None
    assert verdict.settled
    assert verdict.rule is EndRule.CALM
    assert verdict.at == 10.0  # in range since 4 s: PHD2's rule would wait until 14 s


def test_calm_waits_while_the_star_is_still_coming_in() -> None:
    baseline = calm_baseline(sigma=0.2)
    judge = SettleJudge(criteria(mode="calm", time_s=10.0), started_at=0.0, baseline=baseline)
    # in range, but each frame nearer than the last: far more error than the baseline
    for t, d in [(1.0, 1.4), (2.0, 1.2), (3.0, 1.0), (4.0, 0.9)]:
        assert judge.feed(t, d) is None


def test_calm_without_a_baseline_is_phd2s_rule() -> None:
    judge = SettleJudge(criteria(mode="calm", time_s=4.0), started_at=0.0, baseline=None)
    assert not judge.calm_available
    for t in (1.0, 2.0, 3.0, 4.0):
        assert judge.feed(t, 0.1) is None
    verdict = judge.feed(5.0, 0.1)
    assert verdict is not None
    assert verdict.rule is EndRule.PHD2


def test_phd2_mode_never_uses_the_calm_rule() -> None:
    judge = SettleJudge(criteria(time_s=10.0), started_at=0.0, baseline=calm_baseline())
    assert not judge.calm_available
    for t in range(1, 10):
        assert judge.feed(float(t), 0.1) is None


def test_a_window_guided_like_the_baseline_passes_about_as_often_as_designed() -> None:
    sigma = 0.3
    baseline = calm_baseline(sigma=sigma, n=2000, seed=7)
    limit = calm_limit(baseline, 3)
    rng = random.Random(11)
    trials = 4000
    passed = 0
    for _ in range(trials):
        window = [math.hypot(rng.gauss(0, sigma), rng.gauss(0, sigma)) for _ in range(3)]
        passed += sum(d * d for d in window) / 3 <= limit
    assert abs(passed / trials - CALM_QUANTILE) < 0.02


def test_chi2_quantiles_match_the_tables() -> None:
    assert chi2_quantile(0.95, 2) == pytest.approx(5.991, abs=1e-3)
    assert chi2_quantile(0.95, 6) == pytest.approx(12.592, abs=1e-3)
    assert chi2_quantile(0.5, 4) == pytest.approx(3.357, abs=1e-3)
    with pytest.raises(ValueError):
        chi2_quantile(0.95, 3)


@pytest.mark.parametrize(
    "bad",
    [
        {"target_px": 0.0},
        {"target_px": math.nan},
        {"time_s": -1.0},
        {"timeout_s": 0.0},
        {"timeout_s": math.inf},
        {"mode": "fast"},
        {"calm_frames": 1},
    ],
)
def test_impossible_criteria_are_refused_with_a_reason(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"settle|calm"):
        criteria(**bad)


def test_after_phd2s_own_dither_the_raw_distances_do_not_end_phd2s_rule_before_phd2() -> None:
    # PHD2's smoothed distance comes in later than the raw one: saving must not resume
    # while PHD2 still settles.
    judge = SettleJudge(criteria(time_s=4.0, phd2_decides=True), started_at=0.0)
    for t in (1.0, 3.0, 5.0, 7.0):
        assert judge.feed(t, 0.5) is None  # in range for 6 s by the raw distance
    verdict = judge.phd2_done(8.0, ok=True)
    assert verdict is not None
    assert verdict.settled
    assert verdict.rule is EndRule.PHD2
    assert verdict.elapsed_s == 8.0
    assert judge.in_range_after_s == 1.0


def test_after_phd2s_own_dither_a_noisy_raw_distance_does_not_outlast_phd2s_success() -> None:
    judge = SettleJudge(criteria(time_s=4.0, phd2_decides=True), started_at=0.0)
    for t, d in ((1.0, 1.0), (2.0, 1.7), (3.0, 1.0), (4.0, 1.8)):
        assert judge.feed(t, d) is None
    verdict = judge.phd2_done(5.0, ok=True)
    assert verdict is not None
    assert verdict.settled


def test_after_phd2s_own_dither_calm_still_ends_the_settle_first() -> None:
    judge = SettleJudge(criteria(time_s=10.0, mode="calm", phd2_decides=True), 0.0, calm_baseline())
    verdicts = [judge.feed(float(t), 0.2) for t in range(1, 4)]
    assert verdicts[-1] is not None
    assert verdicts[-1].rule is EndRule.CALM


def test_after_phd2s_own_dither_the_hard_limit_and_failures_still_end_it() -> None:
    judge = SettleJudge(criteria(time_s=4.0, timeout_s=20.0, phd2_decides=True), 0.0)
    judge.feed(1.0, 0.5)
    verdict = judge.feed(21.0, 0.5)
    assert verdict is not None
    assert verdict.rule is EndRule.TIMEOUT
    failed = SettleJudge(criteria(phd2_decides=True), 0.0)
    verdict = failed.phd2_done(3.0, ok=False, error="star lost")
    assert verdict is not None
    assert verdict.rule is EndRule.FAILED
