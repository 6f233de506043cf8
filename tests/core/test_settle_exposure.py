"""The settleexposure policy: which exposure to settle at, and what to put back."""

from __future__ import annotations

import pytest

from ditherapp.core.settle_exposure import (
    BadRestoreRecord,
    ExposureRestore,
    SettleExposure,
    choose_settle_exposure,
    parse_exposure_value,
    restore_to,
)

PHD2_LIST = [10, 20, 50, 100, 200, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000]


@pytest.mark.parametrize(
    ("wanted", "current", "chosen"),
    [
        (0.5, 2000, 500),
        (0.4, 2000, 500),  # the shortest listed one of at least 0.4 s
        (0.6, 2000, 1000),
        (0.01, 2000, 10),
        (0.0, 2000, None),  # off
        (-1.0, 2000, None),
        (float("nan"), 2000, None),
        (2.0, 2000, None),  # not shorter: nothing to gain
        (3.0, 2000, None),
        (60.0, 2000, None),  # longer than anything PHD2 offers
        (0.5, 500, None),
    ],
)
def test_choose_settle_exposure(wanted: float, current: int, chosen: int | None) -> None:
    assert choose_settle_exposure(PHD2_LIST, wanted, current) == chosen


def test_choose_ignores_what_is_not_a_duration() -> None:
    junk: list[object] = ["500", None, True, -5, 0, float("inf"), 750.0]
    assert choose_settle_exposure(junk, 0.5, 2000) == 750
    assert choose_settle_exposure([], 0.5, 2000) is None


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500 ms", 500),
        ("2000 ms", 2000),
        ("Auto (min = 1000 ms, max = 5000 ms, SNR = 6.00)", None),
        ("", None),
        ("fast", None),
    ],
)
def test_parse_exposure_value(text: str, ms: int | None) -> None:
    assert parse_exposure_value(text) == ms


def test_our_own_echo_is_not_a_user_change_and_the_exposure_goes_back() -> None:
    switch = SettleExposure.begin(PHD2_LIST, 0.5, 2000)
    assert switch is not None
    assert switch.record == ExposureRestore(restore_ms=2000, short_ms=500)
    switch.param_changed("500 ms")  # PHD2 announcing our own set_exposure
    assert switch.restore(500) == 2000


@pytest.mark.parametrize("users", ["1000 ms", "2000 ms", "Auto (min = 1000 ms, max = 5000 ms)"])
def test_the_users_change_wins(users: str) -> None:
    switch = SettleExposure.begin(PHD2_LIST, 0.5, 2000)
    assert switch is not None
    switch.param_changed(users)
    assert switch.restore(500) is None
    assert switch.restore(None) is None


def test_a_change_we_did_not_hear_of_wins_too() -> None:
    switch = SettleExposure.begin(PHD2_LIST, 0.5, 2000)
    assert switch is not None
    assert switch.restore(1500) is None, "PHD2 is not at ours: someone else set it"


def test_restore_to_a_record_from_disk() -> None:
    record = ExposureRestore(restore_ms=2000, short_ms=500)
    assert restore_to(record, 500) == 2000
    assert restore_to(record, None) == 2000
    assert restore_to(record, 2000) is None
    assert restore_to(record, 3000) is None


def test_record_round_trip_and_bad_files() -> None:
    record = ExposureRestore(restore_ms=2000, short_ms=500)
    assert ExposureRestore.from_json(record.to_json()) == record
    for bad in (
        "",
        "{",
        "[1, 2]",
        '{"restore_ms": 2000}',
        '{"restore_ms": true, "short_ms": 500}',
        '{"restore_ms": 2000.5, "short_ms": 500}',
        '{"restore_ms": -1, "short_ms": 500}',
        '{"restore_ms": 99999999999, "short_ms": 500}',
    ):
        with pytest.raises(BadRestoreRecord):
            ExposureRestore.from_json(bad)
