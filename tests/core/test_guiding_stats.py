import math

import pytest

from ditherapp.core.guiding_stats import GuideHistory, GuideSample, error_stats
from ditherapp.core.phd2.events import GuideStep


def sample(t: float, ra: float, dec: float) -> GuideSample:
    return GuideSample(t=t, ra=ra, dec=dec)


def test_no_samples_no_stats():
    assert error_stats([]) is None
    assert GuideHistory().stats(0, 100) is None


def test_rms_about_mean_and_distance_from_lock():
    # RA alternates +-1 around an offset of 2: PHD2's RMS removes the offset, the
    # distance from the lock position does not.
    stats = error_stats([sample(i, 2 + (1 if i % 2 else -1), 0.0) for i in range(10)])
    assert stats is not None
    assert stats.count == 10
    assert stats.ra_rms == pytest.approx(1.0)
    assert stats.dec_rms == pytest.approx(0.0)
    assert stats.ra_mean == pytest.approx(2.0)
    assert stats.total_rms == pytest.approx(1.0)
    assert stats.distance_rms == pytest.approx(math.sqrt((9 + 1) / 2))
    assert stats.peak == pytest.approx(3.0)


def test_scaled_to_arcsec():
    stats = error_stats([sample(0, 3.0, 4.0)])
    assert stats is not None
    assert stats.scaled(1.5).peak == pytest.approx(7.5)
    assert stats.scaled(1.5).count == 1


def test_from_guide_step_uses_raw_distances():
    step = GuideStep(frame=1, time=1.0, dx=9.0, dy=9.0, ra_distance_raw=0.3, dec_distance_raw=-0.4)
    s = GuideSample.from_step(step, t=5.0)
    assert (s.t, s.ra, s.dec) == (5.0, 0.3, -0.4)
    assert s.distance == pytest.approx(0.5)


def test_window_selection_is_inclusive():
    h = GuideHistory()
    for i in range(10):
        h.add(sample(float(i), float(i), 0.0))
    assert [s.t for s in h.between(2.0, 4.0)] == [2.0, 3.0, 4.0]
    assert [s.t for s in h.last(2)] == [8.0, 9.0]
    assert h.last(0) == []


def test_old_samples_are_forgotten():
    h = GuideHistory(keep_s=10.0)
    for i in range(30):
        h.add(sample(float(i), 0.1, 0.1))
    assert len(h) == 11
    assert h.between(0, 18.5) == []


def test_out_of_order_and_non_finite_samples_are_ignored():
    h = GuideHistory()
    assert h.add(sample(5.0, 0.1, 0.1))
    assert not h.add(sample(4.0, 0.1, 0.1))
    assert not h.add(sample(6.0, math.nan, 0.1))
    assert not h.add(sample(math.inf, 0.1, 0.1))
    assert len(h) == 1


def test_baseline_is_the_minute_before_and_needs_enough_samples():
    h = GuideHistory()
    for i in range(120):
        # Poor guiding until t=60, good after.
        err = 2.0 if i < 60 else 0.5
        h.add(sample(float(i), err if i % 2 else -err, 0.0))
    base = h.baseline(before=120.0)
    assert base is not None
    assert base.distance_rms == pytest.approx(0.5)
    assert h.baseline(before=2.0) is None  # two samples only


def test_baseline_stops_at_an_interruption():
    h = GuideHistory()
    for i in range(60):
        h.add(sample(float(i), 3.0, 0.0))
    h.break_at(60.0)
    for i in range(60, 70):
        h.add(sample(float(i), 0.2, 0.0))
    base = h.baseline(before=70.0)
    assert base is not None
    assert base.count == 10
    assert base.distance_rms == pytest.approx(0.2)
    h.clear()
    assert len(h) == 0
    assert h.newest is None


def test_keep_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        GuideHistory(keep_s=0)
