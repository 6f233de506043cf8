"""Every event current PHD2 emits, as frozen dataclasses with PHD2's real field names.

Field names follow what PHD2 2.6.13+ sends (``DECDistanceRaw``, not the 2018 wiki's
``DecDistanceRaw``); the JSON key of each attribute is kept in the field metadata.
Optional fields are ``None`` when PHD2 leaves them out (it omits RADuration when no
pulse was sent, ErrorCode when zero, Limit unless an AO is in use, ...).

An event name we do not know becomes an ``UnknownEvent`` that keeps the raw object:
PHD2 adds events over time (``ConfigurationChange``, ``SingleFrameComplete``) and a
client must never break on one. A known event whose fields have the wrong type raises
``RemoteProtocolError``: the caller counts it as a bad line and carries on.
"""

from __future__ import annotations

import dataclasses
import linecache
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ditherapp.core.errors import RemoteProtocolError

JsonObject = dict[str, Any]


def _key(json_key: str, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field read from ``json_key`` (PHD2's spelling)."""
    if default is dataclasses.MISSING:
        return field(metadata={"key": json_key})
    return field(default=default, metadata={"key": json_key})


@dataclass(frozen=True, slots=True, kw_only=True)
class Phd2Event:
    """Fields every PHD2 event carries."""

    NAME: ClassVar[str] = ""
    timestamp: float | None = _key("Timestamp", None)
    host: str | None = _key("Host", None)
    inst: int | None = _key("Inst", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Version(Phd2Event):
    NAME: ClassVar[str] = "Version"
    phd_version: str = _key("PHDVersion", "")
    phd_subver: str = _key("PHDSubver", "")
    overlap_support: bool = _key("OverlapSupport", False)
    msg_version: int | None = _key("MsgVersion", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class AppState(Phd2Event):
    NAME: ClassVar[str] = "AppState"
    state: str = _key("State")


@dataclass(frozen=True, slots=True, kw_only=True)
class LockPositionSet(Phd2Event):
    NAME: ClassVar[str] = "LockPositionSet"
    x: float = _key("X")
    y: float = _key("Y")


@dataclass(frozen=True, slots=True, kw_only=True)
class LockPositionLost(Phd2Event):
    NAME: ClassVar[str] = "LockPositionLost"


@dataclass(frozen=True, slots=True, kw_only=True)
class LockPositionShiftLimitReached(Phd2Event):
    NAME: ClassVar[str] = "LockPositionShiftLimitReached"


@dataclass(frozen=True, slots=True, kw_only=True)
class StarSelected(Phd2Event):
    NAME: ClassVar[str] = "StarSelected"
    x: float = _key("X")
    y: float = _key("Y")


@dataclass(frozen=True, slots=True, kw_only=True)
class StartCalibration(Phd2Event):
    NAME: ClassVar[str] = "StartCalibration"
    mount: str | None = _key("Mount", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibrating(Phd2Event):
    NAME: ClassVar[str] = "Calibrating"
    mount: str | None = _key("Mount", None)
    direction: str | None = _key("dir", None)
    dist: float | None = _key("dist", None)
    dx: float | None = _key("dx", None)
    dy: float | None = _key("dy", None)
    pos: tuple[float, ...] | None = _key("pos", None)
    step: int | None = _key("step", None)
    state: str | None = _key("State", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationComplete(Phd2Event):
    NAME: ClassVar[str] = "CalibrationComplete"
    mount: str | None = _key("Mount", None)
    limit: float | None = _key("Limit", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationFailed(Phd2Event):
    NAME: ClassVar[str] = "CalibrationFailed"
    reason: str = _key("Reason", "")
    mount: str | None = _key("Mount", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CalibrationDataFlipped(Phd2Event):
    NAME: ClassVar[str] = "CalibrationDataFlipped"
    mount: str | None = _key("Mount", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class StartGuiding(Phd2Event):
    NAME: ClassVar[str] = "StartGuiding"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideStep(Phd2Event):
    NAME: ClassVar[str] = "GuideStep"
    frame: int = _key("Frame")
    time: float = _key("Time")
    mount: str | None = _key("Mount", None)
    dx: float = _key("dx")
    dy: float = _key("dy")
    ra_distance_raw: float = _key("RADistanceRaw")
    dec_distance_raw: float = _key("DECDistanceRaw")
    ra_distance_guide: float | None = _key("RADistanceGuide", None)
    dec_distance_guide: float | None = _key("DECDistanceGuide", None)
    ra_duration: int | None = _key("RADuration", None)
    ra_direction: str | None = _key("RADirection", None)
    dec_duration: int | None = _key("DECDuration", None)
    dec_direction: str | None = _key("DECDirection", None)
    pos: tuple[float, ...] | None = _key("Pos", None)
    star_mass: float | None = _key("StarMass", None)
    snr: float | None = _key("SNR", None)
    hfd: float | None = _key("HFD", None)
    avg_dist: float | None = _key("AvgDist", None)
    error_code: int | None = _key("ErrorCode", None)
    ra_limited: bool | None = _key("RALimited", None)
    dec_limited: bool | None = _key("DecLimited", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuidingDithered(Phd2Event):
    """``dx``/``dy`` are the requested RA/Dec offsets in pixels (not camera X/Y)."""

    NAME: ClassVar[str] = "GuidingDithered"
    dx: float = _key("dx")
    dy: float = _key("dy")


@dataclass(frozen=True, slots=True, kw_only=True)
class StarLost(Phd2Event):
    NAME: ClassVar[str] = "StarLost"
    frame: int | None = _key("Frame", None)
    time: float | None = _key("Time", None)
    star_mass: float | None = _key("StarMass", None)
    snr: float | None = _key("SNR", None)
    hfd: float | None = _key("HFD", None)
    avg_dist: float | None = _key("AvgDist", None)
    error_code: int | None = _key("ErrorCode", None)
    status: str | None = _key("Status", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopingExposures(Phd2Event):
    NAME: ClassVar[str] = "LoopingExposures"
    frame: int | None = _key("Frame", None)
    star_mass: float | None = _key("StarMass", None)
    snr: float | None = _key("SNR", None)
    hfd: float | None = _key("HFD", None)
    error_code: int | None = _key("ErrorCode", None)
    status: str | None = _key("Status", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopingExposuresStopped(Phd2Event):
    NAME: ClassVar[str] = "LoopingExposuresStopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuidingStopped(Phd2Event):
    NAME: ClassVar[str] = "GuidingStopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class Paused(Phd2Event):
    NAME: ClassVar[str] = "Paused"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resumed(Phd2Event):
    NAME: ClassVar[str] = "Resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleBegin(Phd2Event):
    NAME: ClassVar[str] = "SettleBegin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settling(Phd2Event):
    """``time`` is the time in range so far, not the time since the dither."""

    NAME: ClassVar[str] = "Settling"
    distance: float = _key("Distance")
    time: float = _key("Time")
    settle_time: float = _key("SettleTime")
    star_locked: bool | None = _key("StarLocked", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleDone(Phd2Event):
    NAME: ClassVar[str] = "SettleDone"
    status: int = _key("Status")
    error: str | None = _key("Error", None)
    total_frames: int | None = _key("TotalFrames", None)
    dropped_frames: int | None = _key("DroppedFrames", None)

    @property
    def succeeded(self) -> bool:
        return self.status == 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Phd2Event):
    NAME: ClassVar[str] = "Alert"
    msg: str = _key("Msg", "")
    type: str | None = _key("Type", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideParamChange(Phd2Event):
    NAME: ClassVar[str] = "GuideParamChange"
    name: str = _key("Name", "")
    value: Any | None = _key("Value", None)  # noqa: RUF009 - _key is a field() specifier


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigurationChange(Phd2Event):
    NAME: ClassVar[str] = "ConfigurationChange"


@dataclass(frozen=True, slots=True, kw_only=True)
class SingleFrameComplete(Phd2Event):
    NAME: ClassVar[str] = "SingleFrameComplete"
    success: bool = _key("Success", False)
    error: str | None = _key("Error", None)
    path: str | None = _key("Path", None)


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Phd2Event):
    """An event this version of ditherapp does not know; kept, never fatal."""

    name: str
    raw: JsonObject = field(default_factory=dict, compare=False)


EVENT_TYPES: dict[str, type[Phd2Event]] = {
    cls.NAME: cls
    for cls in (
        Version,
        AppState,
        LockPositionSet,
        LockPositionLost,
        LockPositionShiftLimitReached,
        StarSelected,
        StartCalibration,
        Calibrating,
        CalibrationComplete,
        CalibrationFailed,
        CalibrationDataFlipped,
        StartGuiding,
        GuideStep,
        GuidingDithered,
        StarLost,
        LoopingExposures,
        LoopingExposuresStopped,
        GuidingStopped,
        Paused,
        Resumed,
        SettleBegin,
        Settling,
        SettleDone,
        Alert,
        GuideParamChange,
        ConfigurationChange,
        SingleFrameComplete,
    )
}


# ------------------------------------------------------------------ parsing
#
# parse_event runs for every line PHD2 sends (GuideStep alone can come 50 times a
# second), so each event type gets its own parse function, generated once at import
# time as dataclasses generates __init__: per field one dict lookup by PHD2's key and
# an exact-type test. A value of any other type (an int where a float is expected, a
# null, a string where a number is) goes through _convert, the strict general
# converter, which decides whether it is acceptable.

_MISSING = object()


def _to_any(value: Any) -> Any:
    return value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError("expected a boolean")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ValueError("expected a string")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("expected an integer")


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)  # OverflowError for an int beyond a float's range


def _to_floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, bool):
        raise TypeError("expected a number")
    if isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    ):
        return tuple(float(v) for v in value)
    raise ValueError("expected a list of numbers")


# Annotation (without "| None") -> (converter, the one type a value may have to skip it).
_KINDS: dict[str, tuple[Callable[[Any], Any], type | None]] = {
    "Any": (_to_any, None),
    "bool": (_to_bool, bool),
    "str": (_to_str, str),
    "int": (_to_int, int),
    "float": (_to_float, float),
    "tuple[float, ...]": (_to_floats, None),
}


@dataclass(frozen=True, slots=True)
class _Field:
    """How one attribute is read from PHD2's object."""

    attr: str
    key: str
    where: str  # "GuideStep.dx", for messages
    nullable: bool
    convert: Callable[[Any], Any]
    exact: type | None
    required: bool
    default: Any


def _fields(cls: type[Phd2Event]) -> tuple[_Field, ...]:
    specs = []
    for f in dataclasses.fields(cls):
        if "key" not in f.metadata:
            continue
        # With postponed annotations, f.type is the annotation's source text.
        kind = str(f.type)
        base = kind.removesuffix(" | None")
        if base not in _KINDS:
            raise TypeError(f"{cls.__name__}.{f.name}: no converter for {kind}")
        convert, exact = _KINDS[base]
        specs.append(
            _Field(
                attr=f.name,
                key=f.metadata["key"],
                where=f"{cls.NAME}.{f.metadata['key']}",
                nullable=base != kind,
                convert=convert,
                exact=exact,
                required=f.default is dataclasses.MISSING,
                default=f.default,
            )
        )
    return tuple(specs)


def _convert(value: Any, spec: _Field) -> Any:
    """Check and convert one JSON value for ``spec``, or raise RemoteProtocolError."""
    if value is None:
        if spec.nullable:
            return None
    else:
        try:
            return spec.convert(value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise RemoteProtocolError(f"{spec.where}: {exc} (got {value!r})") from exc
    raise RemoteProtocolError(f"{spec.where}: null (got None)")


def _field_source(cls: type[Phd2Event], spec: _Field) -> list[str]:
    """The generated lines that read ``spec`` from ``obj`` into ``event``."""
    lines = [f"    v = get({spec.key!r}, MISSING)", "    if v is MISSING:"]
    if spec.required:
        missing = f"{cls.NAME} event without {spec.key}"
        lines.append(f"        raise RemoteProtocolError({missing!r})")
        test = "if"
    else:
        lines.append(f"        v = default_{spec.attr}")
        test = "elif"
    convert = f"v = convert(v, spec_{spec.attr})"
    if spec.exact is not None:
        lines += [f"    {test} type(v) is not {spec.exact.__name__}:", f"        {convert}"]
    elif spec.required:
        lines.append(f"    {convert}")
    else:
        lines += ["    else:", f"        {convert}"]
    lines.append(f"    set_{spec.attr}(event, v)")
    return lines


def _parser(cls: type[Phd2Event]) -> Callable[[JsonObject], Phd2Event]:
    """Generate the parse function of ``cls``. For GuideStep's ``dx`` it reads::

        v = get('dx', MISSING)
        if v is MISSING:
            raise RemoteProtocolError('GuideStep event without dx')
        if type(v) is not float:
            v = convert(v, spec_dx)
        set_dx(event, v)

    The event is built as its dataclass __init__ builds it (a frozen dataclass sets each
    field with object.__setattr__), but each slot is written through its descriptor:
    that halves the cost of a GuideStep. It is only done for a class whose __init__
    does nothing else: every field read from PHD2's object, no __post_init__.
    """
    specs = _fields(cls)
    if hasattr(cls, "__post_init__") or len(specs) != len(dataclasses.fields(cls)):
        raise TypeError(f"{cls.__name__}: a generated parser would skip part of __init__")
    namespace: dict[str, Any] = {
        "MISSING": _MISSING,
        "RemoteProtocolError": RemoteProtocolError,
        "convert": _convert,
        "new": object.__new__,
        "cls": cls,
    }
    name = f"parse_{cls.NAME}"
    lines = [f"def {name}(obj):", "    get = obj.get", "    event = new(cls)"]
    for spec in specs:
        namespace[f"spec_{spec.attr}"] = spec
        namespace[f"set_{spec.attr}"] = getattr(cls, spec.attr).__set__
        if not spec.required:
            namespace[f"default_{spec.attr}"] = spec.default
        if spec.exact is not None:
            namespace[spec.exact.__name__] = spec.exact
        lines += _field_source(cls, spec)
    lines.append("    return event")
    source = "\n".join(lines) + "\n"
    filename = f"<generated {__name__}.{name}>"
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own code, as in dataclasses
    # Tracebacks through a generated parser show its lines, as attrs does for its methods.
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    parser: Callable[[JsonObject], Phd2Event] = namespace[name]
    return parser


_PARSERS = {name: _parser(cls) for name, cls in EVENT_TYPES.items()}


def _timestamp(value: Any) -> float | None:
    """An unknown event's Timestamp, if it is a number a float can hold."""
    try:
        return _to_float(value)
    except (TypeError, OverflowError):
        return None


def parse_event(obj: JsonObject) -> Phd2Event:
    """Turn one decoded PHD2 event object into its dataclass.

    Raises RemoteProtocolError when the object has no Event name, or when it names a
    known event and a field is missing or of the wrong type. Unknown keys are ignored.
    """
    name = obj.get("Event")
    if not isinstance(name, str):
        raise RemoteProtocolError("event without an Event name")
    parser = _PARSERS.get(name)
    if parser is not None:
        return parser(obj)
    timestamp, host = obj.get("Timestamp"), obj.get("Host")
    return UnknownEvent(
        name=name,
        raw=obj,
        timestamp=_timestamp(timestamp),
        host=host if isinstance(host, str) else None,
    )
