"""Dither settings: one typed source of names, defaults, ranges, units and help texts.

The window's spin boxes, the control socket (``get``/``set``, including the seed's
``client.py``), the INI file and the command line all read this table, so a range or a
default is written once. Names are the seed's socket names (SimpleDither's client.py).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ditherapp.core.errors import DitherAppError


class SettingError(DitherAppError):
    """A value that cannot be used for a setting; the message says why, for the user."""


class Kind(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TEXT = "text"
    CHOICE = "choice"


class Group(StrEnum):
    DITHER = "Dither"
    PHD2 = "PHD2"
    CONTROL = "Control socket"


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingSpec:
    name: str
    label: str
    kind: Kind
    default: Any
    help: str
    group: Group = Group.DITHER
    minimum: float | None = None
    maximum: float | None = None
    step: float = 1.0
    decimals: int = 0
    unit: str = ""
    choices: tuple[str, ...] = ()
    live: bool = True
    """Takes effect for the next dither without reconnecting anything."""
    check: Callable[[str], str] | None = None
    """For text: returns the value to keep, or raises ValueError saying what is wrong."""

    def range_text(self) -> str:
        if self.kind is Kind.INT:
            return f"a whole number from {self.minimum:g} to {self.maximum:g}"
        if self.kind is Kind.FLOAT:
            return f"a number from {self.minimum:g} to {self.maximum:g}"
        if self.kind is Kind.BOOL:
            return "true or false"
        if self.kind is Kind.CHOICE:
            return "one of " + ", ".join(self.choices)
        return "text"

    def parse(self, raw: object) -> Any:
        """Check ``raw`` (from JSON, INI text or the command line) and convert it."""
        if raw is None:
            raise SettingError(f"{self.name} needs a value: {self.range_text()}")
        match self.kind:
            case Kind.BOOL:
                return _parse_bool(self, raw)
            case Kind.INT | Kind.FLOAT:
                return _parse_number(self, raw)
            case Kind.CHOICE:
                text = str(raw).strip().lower()
                if text not in self.choices:
                    raise SettingError(f"{self.name} must be {self.range_text()}")
                return text
            case Kind.TEXT:
                if not isinstance(raw, str | int | float) or isinstance(raw, bool):
                    raise SettingError(f"{self.name} must be text")
                text = str(raw).strip()
                if len(text) > 256 or any(ord(c) < 32 or 0xD800 <= ord(c) < 0xE000 for c in text):
                    raise SettingError(f"{self.name} must be one line of at most 256 characters")
                if self.check is not None:
                    try:
                        text = self.check(text)
                    except ValueError as exc:
                        raise SettingError(f"{self.name}: {exc}") from None
                return text


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def host_name(text: str) -> str:
    """A computer's name or IP address as a socket can use it ("[::1]" becomes "::1")."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.removesuffix(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"{text!r} is not a host name or IP address")
    if all(x.isdigit() for x in labels):
        raise ValueError(f"{text!r} is not an IP address")
    return name


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _parse_bool(spec: SettingSpec, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise SettingError(f"{spec.name} must be {spec.range_text()}")


def _parse_number(spec: SettingSpec, raw: object) -> int | float:
    error = SettingError(f"{spec.name} must be {spec.range_text()}")
    if isinstance(raw, bool):
        raise error
    if isinstance(raw, str):
        try:
            value: float = float(raw.strip())
        except ValueError:
            raise error from None
    elif isinstance(raw, int | float):
        value = raw
    else:
        raise error
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise error
    if spec.kind is Kind.INT:
        if not float(value).is_integer():
            raise error
        value = int(value)
    else:
        value = float(value)
    low = -math.inf if spec.minimum is None else spec.minimum
    high = math.inf if spec.maximum is None else spec.maximum
    if not low <= value <= high:
        raise error
    return value


SPECS: tuple[SettingSpec, ...] = (
    SettingSpec(
        name="enabled",
        label="Dithering enabled",
        kind=Kind.BOOL,
        default=True,
        help="When off, frames are counted but no dither is started.",
    ),
    SettingSpec(
        name="ditherevery",
        label="Dither every",
        kind=Kind.INT,
        default=10,
        minimum=1,
        maximum=1000,
        unit="frames",
        help="Trigger a dither every this many saved frames (SimpleDither's ditherEvery).",
    ),
    SettingSpec(
        name="ditherminutes",
        label="Or every",
        kind=Kind.FLOAT,
        default=0.0,
        minimum=0,
        maximum=600,
        step=1,
        decimals=1,
        unit="min",
        help="Also dither when this many minutes of frames have been saved since the last "
        "dither, whichever comes first. 0 turns the time cadence off.",
    ),
    SettingSpec(
        name="raonly",
        label="RA only",
        kind=Kind.BOOL,
        default=False,
        help="When set, PHD2 dithers only in the RA axis (SimpleDither's RAOnly).",
    ),
    SettingSpec(
        name="maxpixels",
        label="Dither amount",
        kind=Kind.FLOAT,
        default=10.0,
        minimum=0,
        maximum=100,
        step=0.5,
        decimals=1,
        unit="px",
        help="PHD2 dithers by a random amount of up to this many guide-camera pixels, times "
        "PHD2's dither scale (SimpleDither's MaxPixels; PHD2's dither 'amount').",
    ),
    SettingSpec(
        name="settletarget",
        label="Settle within",
        kind=Kind.FLOAT,
        default=2.0,
        minimum=0.1,
        maximum=50,
        step=0.1,
        decimals=2,
        unit="px",
        help="Guiding must stay within this many pixels for the settle time before PHD2 "
        "reports the dither settled (SimpleDither's SettleTarget).",
    ),
    SettingSpec(
        name="settledelay",
        label="Settle time",
        kind=Kind.INT,
        default=10,
        minimum=0,
        maximum=600,
        unit="s",
        help="How many seconds guiding must stay within the settle target "
        "(SimpleDither's SettleDelay).",
    ),
    SettingSpec(
        name="settlemax",
        label="Settle timeout",
        kind=Kind.INT,
        default=60,
        minimum=1,
        maximum=600,
        unit="s",
        help="The longest PHD2 may take to settle. Once this limit is reached the dither ends "
        "as failed and saving resumes anyway (SimpleDither's SettleMaximum).",
    ),
    SettingSpec(
        name="waitfornextframe",
        label="Skip the frame in progress",
        kind=Kind.BOOL,
        default=True,
        help="After the settle, do not save the frame that was exposing while the mount moved: "
        "saving starts again from the next frame (SimpleDither's waitForNextFrame).",
    ),
    SettingSpec(
        name="multicamera",
        label="Several cameras",
        kind=Kind.CHOICE,
        default="all",
        choices=("all", "primary"),
        help="With several SharpCap instances on one mount: 'all' dithers when every "
        "capturing camera is due; 'primary' lets the primary camera set the pace.",
    ),
    SettingSpec(
        name="primarycamera",
        label="Primary camera",
        kind=Kind.TEXT,
        default="",
        help="The camera name (or id such as cam-1) that sets the pace under the 'primary' "
        "rule. Empty means the first camera that connected.",
    ),
    SettingSpec(
        name="phd2host",
        label="PHD2 host",
        kind=Kind.TEXT,
        default="127.0.0.1",
        group=Group.PHD2,
        check=host_name,
        help="The computer PHD2 runs on. A change reconnects at once.",
    ),
    SettingSpec(
        name="phd2instance",
        label="PHD2 instance",
        kind=Kind.INT,
        default=1,
        minimum=1,
        maximum=32,
        group=Group.PHD2,
        help="PHD2's instance number: the event server listens on 4400 + instance - 1, "
        "the legacy server on 4300 + instance - 1. A change reconnects at once.",
    ),
    SettingSpec(
        name="phd2backend",
        label="PHD2 protocol",
        kind=Kind.CHOICE,
        default="auto",
        choices=("auto", "event", "legacy"),
        group=Group.PHD2,
        help="'event': PHD2's event server (JSON-RPC). 'legacy': the old one-byte socket "
        "server. 'auto': the event server, falling back to the legacy port when only it answers. "
        "A change reconnects at once.",
    ),
    SettingSpec(
        name="legacypoll",
        label="Legacy poll interval",
        kind=Kind.FLOAT,
        default=1.0,
        minimum=0.2,
        maximum=10,
        step=0.1,
        decimals=1,
        unit="s",
        group=Group.PHD2,
        help="How often the settle is checked (MSG_REQDIST) on the legacy protocol.",
    ),
    SettingSpec(
        name="controlhost",
        label="Listen on",
        kind=Kind.TEXT,
        default="127.0.0.1",
        group=Group.CONTROL,
        live=False,
        check=host_name,
        help="Address of the control socket used by the SharpCap hook and ditherctl. "
        "Anything but loopback requires a token. Takes effect at the next start.",
    ),
    SettingSpec(
        name="controlport",
        label="Port",
        kind=Kind.INT,
        default=5322,
        minimum=1,
        maximum=65535,
        group=Group.CONTROL,
        live=False,
        help="TCP port of the control socket (SimpleDither's 5322). Takes effect at the next "
        "start.",
    ),
    SettingSpec(
        name="controltoken",
        label="Token",
        kind=Kind.TEXT,
        default="",
        group=Group.CONTROL,
        live=False,
        help="Shared secret every client must send first when the control socket listens "
        "on a non-loopback address.",
    ),
)

SPEC_BY_NAME: Mapping[str, SettingSpec] = {spec.name: spec for spec in SPECS}

READ_ONLY = frozenset({"ditherstring"})
"""Names that ``get`` answers but ``set`` refuses."""

SEED_NAMES = (
    "ditherevery",
    "waitfornextframe",
    "raonly",
    "settletarget",
    "settledelay",
    "settlemax",
    "maxpixels",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherSettings:
    enabled: bool = True
    ditherevery: int = 10
    ditherminutes: float = 0.0
    raonly: bool = False
    maxpixels: float = 10.0
    settletarget: float = 2.0
    settledelay: int = 10
    settlemax: int = 60
    waitfornextframe: bool = True
    multicamera: str = "all"
    primarycamera: str = ""
    phd2host: str = "127.0.0.1"
    phd2instance: int = 1
    phd2backend: str = "auto"
    legacypoll: float = 1.0
    controlhost: str = "127.0.0.1"
    controlport: int = 5322
    controltoken: str = ""

    def get(self, name: str) -> Any:
        if name not in SPEC_BY_NAME:
            raise SettingError(f"unknown setting {name!r}")
        return getattr(self, name)

    def with_value(self, name: str, raw: object) -> DitherSettings:
        """A copy with one setting changed; raises SettingError with the reason."""
        if name in READ_ONLY:
            raise SettingError(f"{name} is read-only")
        spec = SPEC_BY_NAME.get(name)
        if spec is None:
            raise SettingError(f"unknown setting {name!r}")
        return dataclasses.replace(self, **{name: spec.parse(raw)})

    def as_dict(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in SPECS}

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> tuple[DitherSettings, list[str]]:
        """Settings from stored text values; bad or unknown entries fall back to the
        default and are reported, never raised (a corrupt file must not stop the app)."""
        settings = cls()
        problems: list[str] = []
        for name, raw in values.items():
            if name not in SPEC_BY_NAME:
                problems.append(f"ignored unknown setting {name!r}")
                continue
            try:
                settings = settings.with_value(name, raw)
            except SettingError as exc:
                problems.append(f"{exc}; using the default {SPEC_BY_NAME[name].default!r}")
        return settings, problems


def _check_defaults() -> None:
    defaults = DitherSettings()
    for spec in SPECS:
        if getattr(defaults, spec.name) != spec.default:  # pragma: no cover - caught by tests
            raise AssertionError(f"default of {spec.name} differs between table and dataclass")


_check_defaults()
