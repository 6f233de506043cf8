"""Dither settings: one typed source of names, defaults, ranges, units and help texts.

The window's spin boxes, the control socket (``get``/``set``, including the seed's
``client.py``), the INI file and the command line all read this table, so a range or a
default is written once. Names are the seed's socket names (SimpleDither's client.py).
"""

from __future__ import annotations

import dataclasses
import difflib
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


class SettingLocked(SettingError):  # noqa: N818 - a refusal, like its parent
    """A setting that the control socket may read but not change."""


class Kind(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    TEXT = "text"
    CHOICE = "choice"


class Group(StrEnum):
    DITHER = "Dither"
    GUARD = "Frame guard and alerts"
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
    remote: bool = True
    """May be changed over the control socket. Settings that decide who may connect are
    not: any local client could otherwise open the next start to the network, or shut
    the hook out."""

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


def web_address(text: str) -> str:
    """An http:// or https:// address (or nothing): where alerts are posted."""
    if not text:
        return text
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError("must start with http:// or https:// (or be empty for no webhook)")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    if not host or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} has no host name")
    return text


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
        value = float(value) + 0.0  # -0.0 is stored, shown and sent as 0
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
        name="settlemode",
        label="Settle rule",
        kind=Kind.CHOICE,
        default="phd2",
        choices=("phd2", "calm"),
        help="'phd2': settled once the star stayed within the settle target for the settle "
        "time (PHD2's rule). 'calm': also settled as soon as the star is within the target "
        "and the last few guide frames are back to the guiding error of the minute before "
        "the dither; PHD2's rule and the settle timeout still apply.",
    ),
    SettingSpec(
        name="settleexposure",
        label="Settle exposure",
        kind=Kind.FLOAT,
        default=0.0,
        minimum=0,
        maximum=10,
        step=0.1,
        decimals=1,
        unit="s",
        help="While settling, guide with PHD2's shortest exposure of at least this many "
        "seconds, so the settle is judged from more frames; your exposure is put back the "
        "moment the settle ends (and after a crash, at the next start). 0 turns it off. "
        "Only with PHD2's event server.",
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
        name="guard",
        label="Guard frames",
        kind=Kind.BOOL,
        default=True,
        group=Group.GUARD,
        help="Once PHD2 has guided in this session, pause saving while PHD2 is not connected, "
        "not guiding, has lost the star or is settling outside a dither, and resume from the "
        "next frame boundary after it recovers. Every guarded frame goes in the ledger.",
    ),
    SettingSpec(
        name="guardrms",
        label="Guard above",
        kind=Kind.FLOAT,
        default=0.0,
        minimum=0,
        maximum=20,
        step=0.1,
        decimals=2,
        unit="px RMS",
        group=Group.GUARD,
        help="Also guard when the guiding error (RMS distance from the lock position, guide "
        "pixels) over the last exposure exceeds this. 0 turns it off.",
    ),
    SettingSpec(
        name="guardretake",
        label="Retake guarded frames",
        kind=Kind.BOOL,
        default=False,
        group=Group.GUARD,
        help="Sequence mode: take a frame that saw bad guiding again; the frame count does "
        "not advance.",
    ),
    SettingSpec(
        name="guardmax",
        label="Guard at most",
        kind=Kind.FLOAT,
        default=15.0,
        minimum=1,
        maximum=240,
        step=1,
        decimals=0,
        unit="min",
        group=Group.GUARD,
        help="The longest the frame guard keeps saving paused. After that it saves anyway "
        "and raises an alert, until guiding recovers.",
    ),
    SettingSpec(
        name="alertsound",
        label="Alert sound",
        kind=Kind.BOOL,
        default=False,
        group=Group.GUARD,
        help="Play a sound with every alert (besides the tray message).",
    ),
    SettingSpec(
        name="alerturl",
        label="Alert webhook",
        kind=Kind.TEXT,
        default="",
        group=Group.GUARD,
        check=web_address,
        remote=False,
        help="Post every alert to this http:// or https:// address as a small JSON body "
        "(ntfy-style services, home automation). Empty: no webhook. It decides where "
        "ditherapp sends data, so it is set from the window, the command line or the "
        "settings file, never over the control socket.",
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
        remote=False,
        check=host_name,
        help="Address of the control socket used by the SharpCap hook and ditherctl. "
        "Anything but loopback requires a token. Takes effect at the next start. Set here, "
        "on the command line or in the settings file, never over the control socket.",
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
        remote=False,
        help="TCP port of the control socket (SimpleDither's 5322). Takes effect at the next "
        "start. Not changeable over the control socket.",
    ),
    SettingSpec(
        name="controltoken",
        label="Token",
        kind=Kind.TEXT,
        default="",
        group=Group.CONTROL,
        live=False,
        remote=False,
        help="Shared secret every client must send first when the control socket listens "
        "on a non-loopback address. Not changeable over the control socket.",
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


def unknown_setting(name: str) -> SettingError:
    """The refusal of a name that is not a setting, with the names that are (a typo
    should cost one look, not a trip to the manual)."""
    names = [spec.name for spec in SPECS]
    close = difflib.get_close_matches(name.strip().lower(), names, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return SettingError(f"unknown setting {name!r}{hint}; the settings are {', '.join(names)}")


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
    settlemode: str = "phd2"
    settleexposure: float = 0.0
    waitfornextframe: bool = True
    multicamera: str = "all"
    primarycamera: str = ""
    guard: bool = True
    guardrms: float = 0.0
    guardretake: bool = False
    guardmax: float = 15.0
    alertsound: bool = False
    alerturl: str = ""
    phd2host: str = "127.0.0.1"
    phd2instance: int = 1
    phd2backend: str = "auto"
    legacypoll: float = 1.0
    controlhost: str = "127.0.0.1"
    controlport: int = 5322
    controltoken: str = ""

    def get(self, name: str) -> Any:
        if name not in SPEC_BY_NAME:
            raise unknown_setting(name)
        return getattr(self, name)

    def with_value(self, name: str, raw: object) -> DitherSettings:
        """A copy with one setting changed; raises SettingError with the reason."""
        return self.with_values({name: raw})

    def with_values(self, values: Mapping[str, object]) -> DitherSettings:
        """A copy with several settings changed at once (the combination is checked
        once all are in, so their order does not matter)."""
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            if name in READ_ONLY:
                raise SettingError(f"{name} is read-only")
            spec = SPEC_BY_NAME.get(name)
            if spec is None:
                raise unknown_setting(name)
            parsed[name] = spec.parse(raw)
        new = dataclasses.replace(self, **parsed)
        new.check_combination()
        return new

    def check_combination(self) -> None:
        """Raise SettingError for values that are each fine but cannot work together."""
        if self.settledelay > self.settlemax:
            raise SettingError(
                f"a settle time of {self.settledelay} s can never be met within a settle "
                f"timeout of {self.settlemax} s: every dither would fail. Raise settlemax "
                f"to at least {self.settledelay} s first, or lower settledelay"
            )

    def as_dict(self) -> dict[str, Any]:
        return {spec.name: getattr(self, spec.name) for spec in SPECS}

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> tuple[DitherSettings, list[str]]:
        """Settings from stored text values; bad or unknown entries fall back to the
        default and are reported, never raised (a corrupt file must not stop the app)."""
        problems: list[str] = []
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            spec = SPEC_BY_NAME.get(name)
            if spec is None:
                problems.append(f"ignored unknown setting {name!r}")
                continue
            try:
                parsed[name] = spec.parse(raw)
            except SettingError as exc:
                problems.append(f"{exc}; using the default {spec.default!r}")
        settings = dataclasses.replace(cls(), **parsed)
        try:
            settings.check_combination()
        except SettingError as exc:
            defaults = cls()
            settings = dataclasses.replace(
                settings, settledelay=defaults.settledelay, settlemax=defaults.settlemax
            )
            problems.append(f"{exc}; using the defaults for both")
        return settings, problems


def _check_defaults() -> None:
    defaults = DitherSettings()
    for spec in SPECS:
        if getattr(defaults, spec.name) != spec.default:  # pragma: no cover - caught by tests
            raise AssertionError(f"default of {spec.name} differs between table and dataclass")


_check_defaults()
