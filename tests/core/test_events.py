"""PHD2 event objects into typed events: every field of every event type is read,
checked and converted as the annotations say, by the generated per-type parsers.

The parsers only convert a value whose type is not exactly the annotated one; these
tests give every field values of each other type, so a mistake in that fast path (a
bool taken for an int, an int kept where a float belongs) shows. A property test
compares ``parse_event`` with ``reference_parse``, the plain field-by-field parser
ditherapp used before, kept here as the definition of what is accepted."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ditherapp.core.errors import RemoteProtocolError
from ditherapp.core.phd2 import events as ev

# ------------------------------------------------------------------ the reference


def reference_convert(value: Any, kind: str) -> Any:
    if value is None:
        if "None" in kind:
            return None
        raise ValueError("null")
    base = kind.replace(" | None", "")
    if base == "Any":
        return value
    if base == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError("expected a boolean")
    if base == "str":
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")
    if isinstance(value, bool):
        raise TypeError("expected a number")
    if base == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError("expected an integer")
    if base == "float":
        if isinstance(value, int | float):
            return float(value)
        raise TypeError("expected a number")
    if base == "tuple[float, ...]":
        if isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return tuple(float(v) for v in value)
        raise ValueError("expected a list of numbers")
    raise AssertionError(f"unsupported kind {kind}")


def fits_float(value: int) -> bool:
    # The largest finite float, rounded as float() rounds: ints up to half an ulp above
    # it still convert (2**1023 was too strict: 1.79e308 is a float).
    limit = (2**53 - 1) * 2**971 + 2**970
    return abs(value) < limit


def reference_parse(obj: dict[str, Any]) -> ev.Phd2Event:
    name = obj.get("Event")
    if not isinstance(name, str):
        raise RemoteProtocolError("event without an Event name")
    cls = ev.EVENT_TYPES.get(name)
    if cls is None:
        timestamp, host = obj.get("Timestamp"), obj.get("Host")
        return ev.UnknownEvent(
            name=name,
            raw=obj,
            timestamp=float(timestamp)
            if isinstance(timestamp, float) or (type(timestamp) is int and fits_float(timestamp))
            else None,
            host=host if isinstance(host, str) else None,
        )
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f.metadata["key"]
        if key not in obj:
            if f.default is dataclasses.MISSING:
                raise RemoteProtocolError(f"{name} event without {key}")
            continue
        try:
            kwargs[f.name] = reference_convert(obj[key], str(f.type))
        except (ValueError, TypeError, OverflowError) as exc:
            raise RemoteProtocolError(f"{name}.{key}: {exc} (got {obj[key]!r})") from exc
    return cls(**kwargs)


def outcome(parse: Any, obj: dict[str, Any]) -> tuple[Any, ...]:
    """What ``parse`` makes of ``obj``, with each field's exact type (1 == 1.0 in Python,
    and nan != nan) and the error message when it refuses."""
    try:
        event = parse(obj)
    except RemoteProtocolError as exc:
        return ("refused", str(exc))
    values = [getattr(event, f.name) for f in dataclasses.fields(event)]
    return (type(event), [(type(v), repr(v)) for v in values])


# ------------------------------------------------------------------ the fields

KNOWN = list(ev.EVENT_TYPES.values())


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    cls: type[ev.Phd2Event]
    attr: str
    key: str
    base: str
    nullable: bool
    required: bool

    def __str__(self) -> str:
        return f"{self.cls.NAME}.{self.key}"


def fields_of(cls: type[ev.Phd2Event]) -> list[FieldInfo]:
    out = []
    for f in dataclasses.fields(cls):
        kind = str(f.type)
        out.append(
            FieldInfo(
                cls=cls,
                attr=f.name,
                key=f.metadata["key"],
                base=kind.removesuffix(" | None"),
                nullable=kind.endswith(" | None"),
                required=f.default is dataclasses.MISSING,
            )
        )
    return out


ALL_FIELDS = [f for cls in KNOWN for f in fields_of(cls)]

# A value of each kind as PHD2 sends it, and what the event holds for it.
GOOD: dict[str, tuple[Any, Any]] = {
    "float": (1.5, 1.5),
    "int": (3, 3),
    "str": ("text", "text"),
    "bool": (True, True),
    "tuple[float, ...]": ([1.5, -2.25], (1.5, -2.25)),
    "Any": ({"a": [1, None]}, {"a": [1, None]}),
}


def sample(cls: type[ev.Phd2Event], *, optional: bool = True) -> dict[str, Any]:
    obj: dict[str, Any] = {"Event": cls.NAME}
    for f in fields_of(cls):
        if f.required or optional:
            obj[f.key] = GOOD[f.base][0]
    return obj


def with_value(f: FieldInfo, value: Any) -> dict[str, Any]:
    obj = sample(f.cls)
    obj[f.key] = value
    return obj


def test_the_fields_cover_every_kind_the_parser_knows():
    assert {f.base for f in ALL_FIELDS} == set(GOOD)
    assert any(f.required for f in ALL_FIELDS)
    assert any(not f.required and not f.nullable for f in ALL_FIELDS)


# ------------------------------------------------------------------ good objects


@pytest.mark.parametrize("cls", KNOWN, ids=lambda c: c.NAME)
def test_a_full_event_is_the_event_its_constructor_builds(cls):
    event = ev.parse_event(sample(cls))
    expected = cls(**{f.attr: GOOD[f.base][1] for f in fields_of(cls)})
    assert type(event) is cls
    assert event == expected
    assert repr(event) == repr(expected)
    assert dataclasses.astuple(event) == dataclasses.astuple(expected)
    if cls is not ev.GuideParamChange:  # its Value here is a dict, unhashable
        assert hash(event) == hash(expected)
    assert outcome(ev.parse_event, sample(cls)) == outcome(reference_parse, sample(cls))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.timestamp = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("cls", KNOWN, ids=lambda c: c.NAME)
def test_an_event_with_only_its_required_fields_has_the_defaults(cls):
    event = ev.parse_event(sample(cls, optional=False))
    required = {f.attr: GOOD[f.base][1] for f in fields_of(cls) if f.required}
    assert event == cls(**required)
    assert repr(event) == repr(cls(**required))


@pytest.mark.parametrize("cls", KNOWN, ids=lambda c: c.NAME)
def test_keys_an_event_does_not_have_are_ignored(cls):
    obj = sample(cls) | {"NewField": [1, 2], "timestamp": "lower case", "": None}
    assert ev.parse_event(obj) == ev.parse_event(sample(cls))


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if f.base == "float"], ids=str)
@pytest.mark.parametrize("value", [0, 7, -(2**53), 10**300])
def test_an_int_where_a_float_is_expected_becomes_a_float(f, value):
    got = getattr(ev.parse_event(with_value(f, value)), f.attr)
    assert type(got) is float
    assert got == float(value)


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if f.base == "float"], ids=str)
@pytest.mark.parametrize("value", [math.inf, -0.0, 1e-300])
def test_any_float_is_kept_as_sent(f, value):
    assert getattr(ev.parse_event(with_value(f, value)), f.attr) is value


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if f.base == "int"], ids=str)
def test_an_integral_float_where_an_int_is_expected_becomes_an_int(f):
    got = getattr(ev.parse_event(with_value(f, 42.0)), f.attr)
    assert type(got) is int
    assert got == 42


@pytest.mark.parametrize("f", [f for f in ALL_FIELDS if f.base == "tuple[float, ...]"], ids=str)
def test_a_list_of_numbers_becomes_a_tuple_of_floats(f):
    got = getattr(ev.parse_event(with_value(f, [1, 2.5, -3])), f.attr)
    assert got == (1.0, 2.5, -3.0)
    assert [type(x) for x in got] == [float, float, float]
    assert getattr(ev.parse_event(with_value(f, [])), f.attr) == ()


@pytest.mark.parametrize("f", ALL_FIELDS, ids=str)
def test_null_is_none_where_the_annotation_allows_it_and_refused_elsewhere(f):
    obj = with_value(f, None)
    if f.nullable:
        assert getattr(ev.parse_event(obj), f.attr) is None
    else:
        with pytest.raises(RemoteProtocolError) as caught:
            ev.parse_event(obj)
        assert str(caught.value) == f"{f}: null (got None)"


@pytest.mark.parametrize("f", ALL_FIELDS, ids=str)
def test_a_missing_field_is_refused_if_required_and_its_default_otherwise(f):
    obj = sample(f.cls)
    del obj[f.key]
    if f.required:
        with pytest.raises(RemoteProtocolError) as caught:
            ev.parse_event(obj)
        assert str(caught.value) == f"{f.cls.NAME} event without {f.key}"
    else:
        default = next(x for x in dataclasses.fields(f.cls) if x.name == f.attr).default
        assert getattr(ev.parse_event(obj), f.attr) is default


# ------------------------------------------------------------------ bad values

# What each kind refuses, with the reason the message gives.
BAD: dict[str, list[tuple[Any, str]]] = {
    "float": [
        ("1.5", "expected a number"),
        (True, "expected a number"),
        (False, "expected a number"),
        ([1.5], "expected a number"),
        ({"v": 1}, "expected a number"),
        (10**400, "int too large to convert to float"),
    ],
    "int": [
        ("3", "expected an integer"),
        (True, "expected a number"),
        (3.5, "expected an integer"),
        (math.inf, "expected an integer"),
        (math.nan, "expected an integer"),
        ([3], "expected an integer"),
    ],
    "str": [
        (1, "expected a string"),
        (1.5, "expected a string"),
        (True, "expected a string"),
        (["text"], "expected a string"),
        ({}, "expected a string"),
    ],
    "bool": [
        (1, "expected a boolean"),
        (0.0, "expected a boolean"),
        ("true", "expected a boolean"),
        ([True], "expected a boolean"),
    ],
    "tuple[float, ...]": [
        ("1,2", "expected a list of numbers"),
        (1.5, "expected a list of numbers"),
        (True, "expected a number"),
        ([1, "2"], "expected a list of numbers"),
        ([1, True], "expected a list of numbers"),
        ([1, None], "expected a list of numbers"),
        ([[1, 2]], "expected a list of numbers"),
        ((1.0, 2.0), "expected a list of numbers"),
        ([1, 10**400], "int too large to convert to float"),
    ],
    "Any": [],
}
BAD_CASES = [(f, value, reason) for f in ALL_FIELDS for value, reason in BAD[f.base]]


@pytest.mark.parametrize(
    ("f", "value", "reason"), BAD_CASES, ids=lambda x: str(x) if isinstance(x, FieldInfo) else ""
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_event_and_key(f, value, reason):
    with pytest.raises(RemoteProtocolError) as caught:
        ev.parse_event(with_value(f, value))
    assert str(caught.value) == f"{f}: {reason} (got {value!r})"


def test_any_value_is_kept_as_sent_where_the_annotation_is_any():
    for value in (1, 1.5, True, "text", [1, "a"], {"a": None}, None):
        event = ev.parse_event({"Event": "GuideParamChange", "Name": "x", "Value": value})
        assert isinstance(event, ev.GuideParamChange)
        assert event.value is value
    assert ev.parse_event({"Event": "GuideParamChange"}) == ev.GuideParamChange()


def test_the_first_bad_field_in_declaration_order_is_the_one_reported():
    obj = {"Event": "GuideStep", "Frame": "one", "Time": None}  # and no dx, dy, ...
    with pytest.raises(RemoteProtocolError, match=r"^GuideStep\.Frame: expected an integer"):
        ev.parse_event(obj)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize("obj", [{}, {"Event": None}, {"Event": 1}, {"Event": ["GuideStep"]}])
def test_an_object_without_an_event_name_is_refused(obj):
    with pytest.raises(RemoteProtocolError, match="event without an Event name"):
        ev.parse_event(obj)


def test_an_unknown_event_keeps_the_raw_object_and_only_well_typed_common_fields():
    obj = {"Event": "MultiStarReport", "Timestamp": 1.25, "Host": "vm", "Inst": 1, "X": [1]}
    event = ev.parse_event(obj)
    assert event == ev.UnknownEvent(name="MultiStarReport", timestamp=1.25, host="vm")
    assert isinstance(event, ev.UnknownEvent)
    assert event.raw is obj
    assert event.inst is None
    odd = ev.parse_event({"Event": "guidestep", "Timestamp": True, "Host": 5})
    assert odd == ev.UnknownEvent(name="guidestep")
    # PHD2 writes a whole-second timestamp without decimals, as known events accept.
    whole = ev.parse_event({"Event": "MultiStarReport", "Timestamp": 1795300796})
    assert whole.timestamp == 1795300796.0
    huge = ev.parse_event({"Event": "MultiStarReport", "Timestamp": 10**400})
    assert huge.timestamp is None, "a number no float holds is no timestamp"


# ------------------------------------------------------------------ against the reference

huge_ints = st.sampled_from([2**53 + 1, 10**308, 10**400, -(10**400)])
numbers = st.integers() | huge_ints | st.floats() | st.integers(-5, 5).map(float)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)
GOOD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "float": st.floats() | st.integers(),
    "int": st.integers() | st.integers(-5, 5).map(float),
    "str": st.text(max_size=8),
    "bool": st.booleans(),
    "tuple[float, ...]": st.lists(st.floats() | st.integers(), max_size=3),
    "Any": json_values,
}
KEYS = sorted({f.key for f in ALL_FIELDS} | {"Event"})


@st.composite
def event_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed event of any type (or an unknown one with any common fields), then
    up to three keys replaced by any JSON value or removed."""
    cls = draw(st.sampled_from([*KNOWN, None]))
    name = cls.NAME if cls else draw(st.sampled_from(["Unknown", "guidestep", ""]))
    obj: dict[str, Any] = {"Event": name}
    fields = fields_of(cls or ev.Phd2Event)
    for f in fields:
        if f.required or draw(st.booleans()):
            good = GOOD_VALUES[f.base]
            obj[f.key] = draw(good | st.none() if f.nullable else good)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from([f.key for f in fields]) | st.sampled_from(KEYS))
        if draw(st.booleans()):
            obj[key] = draw(json_values)
        else:
            obj.pop(key, None)
    return obj


@settings(max_examples=2000, deadline=None)
@given(event_objects())
def test_parse_event_does_what_the_reference_parser_does(obj):
    assert outcome(ev.parse_event, obj) == outcome(reference_parse, obj)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(KNOWN), st.dictionaries(st.sampled_from(KEYS), json_values))
def test_any_values_under_an_events_keys_give_what_the_reference_gives(cls, fields):
    obj = fields | {"Event": cls.NAME}
    assert outcome(ev.parse_event, obj) == outcome(reference_parse, obj)
