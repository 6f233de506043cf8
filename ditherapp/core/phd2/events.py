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
    value: Any = _key("Value", None)  # noqa: RUF009 - _key is a field() specifier


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


def _convert(value: Any, kind: str) -> Any:
    """Check and convert one JSON value to the annotated kind, or raise ValueError."""
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
    raise ValueError(f"unsupported kind {kind}")  # pragma: no cover - a bug in this module


def _plan(cls: type[Phd2Event]) -> tuple[tuple[str, str, str, bool], ...]:
    """(attribute, JSON key, annotated kind, required) for every field of ``cls``."""
    plan = []
    for f in dataclasses.fields(cls):
        if "key" not in f.metadata:
            continue
        # With postponed annotations, f.type is the annotation's source text.
        kind = str(f.type)
        required = f.default is dataclasses.MISSING
        plan.append((f.name, f.metadata["key"], kind, required))
    return tuple(plan)


def parse_event(obj: JsonObject) -> Phd2Event:
    """Turn one decoded PHD2 event object into its dataclass."""
    name = obj.get("Event")
    if not isinstance(name, str):
        raise RemoteProtocolError("event without an Event name")
    cls = EVENT_TYPES.get(name)
    if cls is None:
        common = {k: obj.get(j) for k, j in (("timestamp", "Timestamp"), ("host", "Host"))}
        return UnknownEvent(
            name=name,
            raw=obj,
            timestamp=common["timestamp"] if isinstance(common["timestamp"], float) else None,
            host=common["host"] if isinstance(common["host"], str) else None,
        )
    kwargs: dict[str, Any] = {}
    for attr, key, kind, required in _PLANS[name]:
        if key not in obj:
            if required:
                raise RemoteProtocolError(f"{name} event without {key}")
            continue
        try:
            kwargs[attr] = _convert(obj[key], kind)
        except (ValueError, TypeError, OverflowError) as exc:
            raise RemoteProtocolError(f"{name}.{key}: {exc} (got {obj[key]!r})") from exc
    return cls(**kwargs)


_PLANS = {name: _plan(cls) for name, cls in EVENT_TYPES.items()}
