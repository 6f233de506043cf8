"""Dither settings: one table of names, defaults and ranges, and messages a user can act on."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ditherapp.core.settings import (
    READ_ONLY,
    SEED_NAMES,
    SPEC_BY_NAME,
    SPECS,
    DitherSettings,
    Kind,
    SettingError,
)


def test_every_spec_default_equals_the_dataclass_default():
    defaults = DitherSettings()
    fields = {f.name for f in dataclasses.fields(DitherSettings)}
    assert fields == set(SPEC_BY_NAME), "every setting has exactly one spec"
    for spec in SPECS:
        assert getattr(defaults, spec.name) == spec.default, spec.name
        assert type(getattr(defaults, spec.name)) is type(spec.default), spec.name


def test_every_default_passes_its_own_check():
    for spec in SPECS:
        assert spec.parse(spec.default) == spec.default, spec.name


def test_the_seeds_socket_names_are_all_settings():
    for name in SEED_NAMES:
        assert name in SPEC_BY_NAME
    assert DitherSettings().as_dict().keys() == SPEC_BY_NAME.keys()


def test_specs_are_well_formed():
    for spec in SPECS:
        assert spec.label
        assert spec.help
        if spec.kind in (Kind.INT, Kind.FLOAT):
            assert spec.minimum is not None
            assert spec.maximum is not None
            assert spec.minimum <= spec.default <= spec.maximum, spec.name
        if spec.kind is Kind.CHOICE:
            assert spec.default in spec.choices


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("ditherevery", "20", 20),
        ("ditherevery", " 20 ", 20),
        ("ditherevery", 20, 20),
        ("ditherevery", 20.0, 20),
        ("ditherevery", "20.0", 20),
        ("ditherevery", "1", 1),
        ("ditherevery", 1000, 1000),
        ("waitfornextframe", "false", False),
        ("waitfornextframe", "False", False),
        ("waitfornextframe", "True", True),
        ("waitfornextframe", "true", True),
        ("waitfornextframe", "0", False),
        ("waitfornextframe", "1", True),
        ("waitfornextframe", "yes", True),
        ("waitfornextframe", "off", False),
        ("waitfornextframe", True, True),
        ("waitfornextframe", 0, False),
        ("raonly", "TRUE", True),
        ("settletarget", "1.5", 1.5),
        ("settletarget", 1.5, 1.5),
        ("settletarget", 2, 2.0),
        ("settletarget", "0.1", 0.1),
        ("maxpixels", "0", 0.0),
        ("settledelay", "0", 0),
        ("settlemax", "600", 600),
        ("ditherminutes", "2.5", 2.5),
        ("multicamera", "Primary", "primary"),
        ("multicamera", " all ", "all"),
        ("primarycamera", " ZWO ASI294MC ", "ZWO ASI294MC"),
        ("phd2instance", "2", 2),
    ],
)
def test_values_from_the_socket_the_ini_file_and_the_command_line(name, raw, value):
    parsed = SPEC_BY_NAME[name].parse(raw)
    assert parsed == value
    assert type(parsed) is type(value)
    assert DitherSettings().with_value(name, raw).get(name) == value


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("ditherevery", "0", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", 1001, "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "1.5", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "ten", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", True, "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", [10], "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "nan", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "inf", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", 10**400, "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", None, "ditherevery needs a value: a whole number from 1 to 1000"),
        ("settletarget", "0", "settletarget must be a number from 0.1 to 50"),
        ("settletarget", 10**400, "settletarget must be a number from 0.1 to 50"),
        ("settletarget", None, "settletarget needs a value: a number from 0.1 to 50"),
        ("settlemax", "0", "settlemax must be a whole number from 1 to 600"),
        ("maxpixels", "-1", "maxpixels must be a number from 0 to 100"),
        ("waitfornextframe", "maybe", "waitfornextframe must be true or false"),
        ("waitfornextframe", 2, "waitfornextframe must be true or false"),
        ("waitfornextframe", None, "waitfornextframe needs a value: true or false"),
        ("multicamera", "some", "multicamera must be one of all, primary"),
        ("primarycamera", "two\nlines", "primarycamera must be one line of at most 256"),
        ("primarycamera", "x" * 257, "primarycamera must be one line of at most 256"),
        ("primarycamera", ["x"], "primarycamera must be text"),
    ],
    ids=lambda v: "huge" if isinstance(v, int) and v > 2**64 else None,
)
def test_refused_values_say_what_is_allowed(name, raw, message):
    with pytest.raises(SettingError) as info:
        SPEC_BY_NAME[name].parse(raw)
    assert str(info.value).startswith(message)
    with pytest.raises(SettingError):
        DitherSettings().with_value(name, raw)


def test_with_value_returns_a_copy_and_leaves_the_original_alone():
    before = DitherSettings()
    after = before.with_value("ditherevery", "20")
    assert after.ditherevery == 20
    assert before.ditherevery == 10
    assert after.as_dict() == {**before.as_dict(), "ditherevery": 20}


def test_ditherstring_is_read_only():
    assert "ditherstring" in READ_ONLY
    with pytest.raises(SettingError, match="ditherstring is read-only"):
        DitherSettings().with_value("ditherstring", '{"method":"dither"}')


def test_unknown_names_are_refused_by_name():
    with pytest.raises(SettingError, match="unknown setting 'ditherEvery'"):
        DitherSettings().with_value("ditherEvery", 10)
    with pytest.raises(SettingError, match="unknown setting 'nope'"):
        DitherSettings().get("nope")


def test_an_unknown_name_is_answered_with_the_names_there_are():
    with pytest.raises(SettingError) as refused:
        DitherSettings().with_value("setlemax", 10)
    text = str(refused.value)
    assert text.startswith(
        "unknown setting 'setlemax' (did you mean settlemax?); the settings are "
    )
    assert text.split("; the settings are ")[1].split(", ") == [spec.name for spec in SPECS]
    with pytest.raises(SettingError) as refused:
        DitherSettings().get("zzz")
    assert "did you mean" not in str(refused.value)


def test_from_mapping_reads_good_values_and_reports_bad_ones_with_the_default_used():
    settings, problems = DitherSettings.from_mapping(
        {
            "ditherevery": "20",
            "waitfornextframe": "false",
            "settletarget": "banana",
            "settlemax": "0",
            "colour": "blue",
            "ditherstring": "x",
        }
    )
    assert settings.ditherevery == 20
    assert settings.waitfornextframe is False
    assert settings.settletarget == 2.0
    assert settings.settlemax == 60
    assert problems == [
        "settletarget must be a number from 0.1 to 50; using the default 2.0",
        "settlemax must be a whole number from 1 to 600; using the default 60",
        "ignored unknown setting 'colour'",
        "ignored unknown setting 'ditherstring'",
    ]


def test_from_mapping_of_nothing_is_the_defaults():
    assert DitherSettings.from_mapping({}) == (DitherSettings(), [])


def test_from_mapping_round_trips_as_text():
    custom = DitherSettings(ditherevery=7, raonly=True, settletarget=0.75, multicamera="primary")
    text = {name: str(value) for name, value in custom.as_dict().items()}
    assert DitherSettings.from_mapping(text) == (custom, [])


@given(
    name=st.sampled_from([s.name for s in SPECS]),
    raw=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_parse_either_accepts_within_range_or_raises_a_setting_error(name, raw):
    spec = SPEC_BY_NAME[name]
    try:
        value = spec.parse(raw)
    except SettingError as exc:
        problem: str | None = str(exc)
    else:
        problem = None
    if problem is not None:
        assert problem.startswith(name), "the message names the setting"
        return
    if spec.kind in (Kind.INT, Kind.FLOAT):
        assert spec.minimum is not None
        assert spec.maximum is not None
        assert spec.minimum <= value <= spec.maximum
    assert spec.parse(value) == value


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("127.0.0.1", "127.0.0.1"),
        (" observatory.local ", "observatory.local"),
        ("MINI-PC", "MINI-PC"),
        ("imaging_pc.lan.", "imaging_pc.lan"),
        ("[::1]", "::1"),
        ("fe80::1", "fe80::1"),
    ],
)
def test_a_host_is_a_name_or_address_a_socket_can_use(raw, kept):
    for name in ("phd2host", "controlhost"):
        assert DitherSettings().with_value(name, raw).get(name) == kept


@pytest.mark.parametrize(
    "raw", ["", "not a host", "a..b", "-pc", "pc-", "x" * 64, "999.1.1.1", "host:4400", "[::1"]
)
def test_a_host_no_socket_can_use_is_refused_at_once(raw):
    """Not at connect time, as a traceback in the log at every retry all night."""
    with pytest.raises(SettingError, match=r"phd2host: .* is not a"):
        DitherSettings().with_value("phd2host", raw)


# ------------------------------------------------------------------ round 2 fixes


@pytest.mark.parametrize("raw", [-0.0, "-0.0", "-0", "  -0.000 "])
def test_minus_zero_is_stored_as_zero(raw):
    value = DitherSettings().with_value("maxpixels", raw).maxpixels
    assert value == 0.0
    assert math.copysign(1.0, value) == 1.0, "shown and sent as 0, not -0"


def test_a_settle_time_longer_than_the_settle_timeout_is_refused_and_explained():
    with pytest.raises(SettingError) as caught:
        DitherSettings(settlemax=1).with_value("settledelay", 600)
    message = str(caught.value)
    assert "settle time of 600 s can never be met within a settle timeout of 1 s" in message
    assert "Raise settlemax to at least 600 s first" in message
    with pytest.raises(SettingError):
        DitherSettings(settledelay=30).with_value("settlemax", 10)


def test_a_settle_time_equal_to_the_timeout_is_allowed():
    assert DitherSettings(settlemax=20).with_value("settledelay", 20).settledelay == 20


def test_several_values_are_checked_together_whatever_their_order():
    both = DitherSettings().with_values({"settledelay": 120, "settlemax": 300})
    assert (both.settledelay, both.settlemax) == (120, 300)


def test_an_impossible_pair_in_the_settings_file_falls_back_to_the_defaults_with_a_warning():
    settings, problems = DitherSettings.from_mapping({"settledelay": "600", "settlemax": "1"})
    assert (settings.settledelay, settings.settlemax) == (10, 60)
    assert len(problems) == 1
    assert "can never be met" in problems[0]
    assert "using the defaults for both" in problems[0]


def test_the_settings_that_decide_who_may_connect_are_not_for_the_control_socket():
    # ... nor the one that decides where ditherapp sends data (the alert webhook)
    locked = {spec.name for spec in SPECS if not spec.remote}
    assert locked == {"controlhost", "controlport", "controltoken", "alerturl"}
    for name in locked:
        assert "control socket" in SPEC_BY_NAME[name].help
