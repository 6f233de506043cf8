"""A model of PHD2: camera, guider, calibration, settle controller, and its replies.

It is sans-IO: the simulator hands it requests (`call`, `legacy_command`) and tells it
when a guide frame completes (`complete_frame`); events go out through the ``emit``
callback as finished lines of PHD2 wire text. Time comes from an injected monotonic
clock, scaled by ``time_scale`` into simulated seconds, so tests can drive it by hand.

What it reproduces, from the recorded transcripts and PHD2's source:

- AppState derivation (Paused wins, then Stopped, then the guider state).
- The guide controller (select a star, calibrate, start guiding, settle) and its error
  texts, including re-entrancy ("Cannot initiate dither while guide is in progress").
- The settle algorithm, evaluated once per completed frame: a smoothed distance (EMA,
  alpha 0.3) bumped by the dither size, whole seconds for time and timeout, timeout
  noticed only at a frame, the in-range stopwatch restarted by any out-of-range frame,
  frames without a locked star counted as dropped. ``Settling`` goes out at the frame,
  ``GuideStep`` only when the guide pulse has finished (so a ``stop_capture`` during the
  pulse is answered before that frame's GuideStep, as in transcript e).
- A guide-paused PHD2 keeps exposing and settling but sends no GuideStep and corrects
  nothing; a fully paused one takes no frames at all.
- The legacy one-byte server's commands and replies.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

from ditherapp.sim import phd2_wire as w
from ditherapp.sim.phd2_wire import Field, JsonValue

StartState = Literal["disconnected", "stopped", "looping", "guiding"]
DitherSource = Literal["rpc", "legacy"]

PHD_VERSION: Final = "2.6.13"
PHD_SUBVER: Final = "dev8"
CAMERA_NAME: Final = "Simulator"
MOUNT_NAME: Final = "On Camera"
PROFILE_NAME: Final = "Simulator"
PIXEL_SCALE: Final = 1.93373
# fmt: off
EXPOSURE_DURATIONS_MS: Final = (
    10, 20, 50, 100, 200, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
    6000, 7000, 8000, 9000, 10000, 15000, 30000,
)
# fmt: on

DOWNLOAD_S: Final = 0.07
"""Time between the end of an exposure and the frame being processed (simulated s)."""
CONNECT_S: Final = 0.25
"""How long ``set_connected true`` takes (simulated s)."""
CALIBRATION_PULSE_S: Final = 0.75
SETTLE_DISABLED: Final = 9999
"""PHD2's value for "no settle time / no timeout" (legacy dithers)."""
LEGACY_SETTLE_FRAMES: Final = 10
DITHER_SCALE: Final = 1.0
LEGACY_DITHER_PX: Final = {3: 0.5, 4: 1.0, 5: 2.0, 12: 3.0, 13: 5.0}
"""Legacy MOVE1..MOVE5 command bytes and their dither amounts (before DitherScale)."""

EMA_ALPHA: Final = 0.3
LOST_STAR_FORCED_DISTANCE: Final = 100.0
LOST_STAR_FORCED_AFTER_S: Final = 20.0
STAR_LOST_CODE: Final = 4
STAR_LOST_STATUS: Final = "Star lost - low HFD"
NO_STAR_CODE: Final = 8
NO_STAR_STATUS: Final = "No star selected"
SATURATED_CODE: Final = 1

_CAMERA_ANGLE: Final = math.radians(13.4)
_RA_RATE_PX_PER_MS: Final = 0.00695
_DEC_RATE_PX_PER_MS: Final = 0.0077
_MAX_PULSE_MS: Final = 2500
_SEEING_SIGMA: Final = 0.12
_PE_AMPLITUDE: Final = 0.25
_PE_PERIOD_S: Final = 480.0

AUTO_EXPOSURE_MS: Final = 1000
"""What the simulated auto exposure settles on (its minimum, as in transcript h)."""
AUTO_EXPOSURE_TEXT: Final = "Auto (min = 1000 ms, max = 5000 ms, SNR = 6.00)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Noise:
    """The guiding noise: seeing, and a mount that now and then overshoots.

    ``steady()`` is the simulator's old constant seeing (the default, which tests pace
    themselves by). ``night()`` is a fair test of a settle rule: seeing that wanders
    (a mean-reverting random walk of its log, so good and bad spells last minutes),
    centroid jitter that grows as the guide exposure shortens (less time to average the
    seeing out), a dither's recentring move that overshoots in some dithers, and the
    occasional overshooting guide pulse or gust."""

    seeing_px: float = _SEEING_SIGMA
    """Centroid jitter per axis at a 1 s exposure, guide pixels."""
    seeing_wander: float = 0.0
    """Standard deviation of log(seeing) about its mean (0: seeing never changes)."""
    seeing_period_s: float = 300.0
    """How long a spell of good or bad seeing lasts (its random walk's time constant)."""
    exposure_power: float = 0.0
    """Jitter scales as (1 s / exposure) ** this (0: not with the exposure)."""
    dither_overshoot_chance: float = 0.0
    """Chance that a dither's recentring move overshoots."""
    dither_overshoot: tuple[float, float] = (1.0, 1.0)
    """How far the overshooting move goes, as a multiple of the move asked for."""
    pulse_overshoot_chance: float = 0.0
    """Chance per guide pulse that the mount overshoots it (backlash, a gust)."""
    pulse_overshoot: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def steady(cls) -> Noise:
        return cls()

    @classmethod
    def night(cls) -> Noise:
        return cls(
            seeing_px=0.16,
            seeing_wander=0.35,
            seeing_period_s=300.0,
            exposure_power=0.25,
            dither_overshoot_chance=0.25,
            dither_overshoot=(1.25, 1.6),
            pulse_overshoot_chance=0.03,
            pulse_overshoot=(1.5, 2.5),
        )


ALGORITHMS: Final = {"ra": "GuideAlgorithmHysteresis", "dec": "GuideAlgorithmResistSwitch"}
DEFAULT_ALGO_PARAMS: Final = {
    "ra": {"minMove": 0.15, "hysteresis": 0.1, "aggression": 0.7},
    "dec": {"minMove": 0.2, "aggression": 1.0, "fastSwitch": 1.0},
}
"""PHD2's default guide algorithms and their parameters, per mount axis."""
DEC_GUIDE_MODES: Final = ("Off", "Auto", "North", "South")


class Guider(enum.Enum):
    UNINITIALIZED = "uninitialized"  # no star selected (stopped or looping)
    SELECTED = "selected"
    CALIBRATING = "calibrating"
    CALIBRATED = "calibrated"  # guiding starts at the next frame
    GUIDING = "guiding"


class Pause(enum.Enum):
    NONE = "none"
    GUIDING = "guiding"  # frames continue, no corrections, no GuideStep
    FULL = "full"  # no frames at all


class _Ctl(enum.Enum):
    IDLE = "idle"
    ATTEMPT_START = "attempt_start"
    SELECT_STAR = "select_star"
    WAIT_SELECTED = "wait_selected"
    CALIBRATE = "calibrate"
    CALIBRATION_WAIT = "calibration_wait"
    GUIDE = "guide"
    SETTLE_BEGIN = "settle_begin"
    SETTLE_WAIT = "settle_wait"
    FINISH = "finish"


APP_STATE_CODES: Final = {
    "Stopped": 0,
    "Selected": 1,
    "Calibrating": 2,
    "Guiding": 3,
    "LostLock": 4,
    "Paused": 100,
    "Looping": 101,
}
"""Legacy GETSTATUS reply for each AppState."""

LEGACY_NAMES: Final = {
    1: "PAUSE",
    ord("p"): "PAUSE",
    2: "RESUME",
    ord("r"): "RESUME",
    3: "MOVE1",
    4: "MOVE2",
    5: "MOVE3",
    12: "MOVE4",
    13: "MOVE5",
    10: "REQDIST",
    14: "AUTOFINDSTAR",
    15: "SETLOCKPOSITION",
    16: "FLIPRACAL",
    17: "GETSTATUS",
    18: "STOP",
    19: "LOOP",
    20: "STARTGUIDING",
    21: "LOOPFRAMECOUNT",
    22: "CLEARCAL",
    23: "FLIP_SIM_CAMERA",
    24: "DESELECT",
}


def legacy_name(command: int) -> str:
    return LEGACY_NAMES.get(command, f"UNKNOWN({command})")


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherWindow:
    """One dither as the simulator saw it; times are ``time.monotonic()`` seconds.

    ``start`` is when the dither was accepted, ``end`` when its SettleDone went out
    (``None`` while settling). ``status`` and ``error`` are the SettleDone's.
    """

    start: float
    end: float | None = None
    status: int | None = None
    error: str | None = None
    source: DitherSource = "rpc"


@dataclass(slots=True, kw_only=True)
class Faults:
    """Misbehaviour switched on by tests; shared by the simulator and the model."""

    never_settle: bool = False
    settle_quickly: bool = False
    star_saturated: bool = False
    """Report ErrorCode 1 (saturated) with every star, as PHD2's own simulator camera does."""
    lost_frames: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok:
    """A method's result, as JSON text."""

    result: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Err:
    code: int
    message: str


Outcome = Ok | Err


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameOutcome:
    """What a completed frame leaves pending: a guide pulse, then its GuideStep line."""

    pulse_s: float = 0.0
    guide_step: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleParams:
    pixels: float
    time_s: int
    timeout_s: int
    frames: int = 99999


@dataclass(slots=True)
class _Controller:
    state: _Ctl = _Ctl.IDLE
    op: Literal["dither", "guide"] = "guide"
    settle: SettleParams | None = None
    attempts_left: int = 3
    wait_selected_left: int = 3
    prior_in_range: bool = False
    settle_started: float = 0.0
    in_range_since: float = 0.0
    frames: int = 0
    dropped: int = 0
    succeeded: bool = False
    error: str = ""
    window: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _CalStep:
    direction: str
    step: int
    dist: float
    dx: float
    dy: float
    state: str


_MISSING: Final = object()


class _Params:
    """Request params by name, positional or named, as PHD2 reads them.

    Unknown named keys are ignored; extra positional values are ignored.
    """

    def __init__(self, params: JsonValue, *names: str) -> None:
        self._values: dict[str, JsonValue] = {}
        if isinstance(params, list):
            self._values = dict(zip(names, params, strict=False))
        elif isinstance(params, dict):
            self._values = dict(params)

    def get(self, name: str) -> object:
        """The value, or ``_MISSING`` (JSON ``null`` is a value)."""
        return self._values.get(name, _MISSING)


def _number(value: object) -> float | None:
    """An int or float param (PHD2's ``float_param``); booleans are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _flag(value: object) -> bool | None:
    """A bool or int param (PHD2's ``bool_param``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return None


def _exact_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _parse_settle(value: object) -> SettleParams | str:
    if not isinstance(value, dict):
        return "expected settle object param"
    pixels = _number(value.get("pixels", _MISSING))
    time_s = _number(value.get("time", _MISSING))
    timeout_s = _number(value.get("timeout", _MISSING))
    if pixels is None or time_s is None or timeout_s is None:
        return "invalid settle params"
    return SettleParams(pixels=pixels, time_s=math.floor(time_s), timeout_s=math.floor(timeout_s))


class Phd2Model:
    """PHD2's state and behaviour. Not thread-safe; one event loop drives it."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        rng: random.Random,
        emit: Callable[[str], None],
        wake: Callable[[], None],
        faults: Faults,
        windows: list[DitherWindow],
        start: StartState = "stopped",
        exposure_ms: int = 1000,
        time_scale: float = 1.0,
        instance: int = 1,
        host_name: str = "localhost",
        noise: Noise | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._clock = clock
        self._wall = wall
        self._rng = rng
        self._emit = emit
        self._wake = wake
        self.faults = faults
        self._windows = windows
        self.time_scale = time_scale
        self._t0 = clock()
        self._instance = instance
        self._host = host_name
        self.exposure_ms = exposure_ms
        self.auto_exposure = False
        self.noise = noise or Noise.steady()
        self._log_seeing = 0.0

        self.connected = False
        self.capturing = False
        self.pause = Pause.NONE
        self.guider = Guider.UNINITIALIZED
        self.locked = False
        self.calibrated = False
        self.star_known = False
        self.star_x = 0.0
        self.star_y = 0.0
        self.lock: tuple[float, float] | None = None
        self.frame = 0
        self.have_frame = False
        self.stop_pending = False
        self._stop_keeps_looping = False
        self._selected_since_connect = False
        self._guide_started = 0.0
        self._capture_started = 0.0
        self._last_star_seen = 0.0
        # guiding physics, mount axes (RA, Dec), star minus lock, in pixels
        self._err_ra = 0.0
        self._err_dec = 0.0
        self._pe_phase = 0.0
        self._ema = 0.0
        self._ema_reset_in = 0
        self._recenter = False
        self._algo = {axis: dict(values) for axis, values in DEFAULT_ALGO_PARAMS.items()}
        self._dec_guide_mode = "Auto"
        self._guide_output = True
        self._cal_steps: list[_CalStep] = []
        self._cal_index = 0
        self._ctl = _Controller()
        self._setup(start)

    # ------------------------------------------------------------------ time

    def now(self) -> float:
        """Simulated seconds since the model was made."""
        return (self._clock() - self._t0) * self.time_scale

    @property
    def exposure_s(self) -> float:
        return self.exposure_ms / 1000.0

    @property
    def frame_interval_s(self) -> float:
        """Simulated seconds from the start of an exposure to its frame being processed."""
        return self.exposure_s + DOWNLOAD_S

    @property
    def exposing(self) -> bool:
        """True while frames are being taken (full pause drops them all)."""
        return self.connected and self.capturing and self.pause is not Pause.FULL

    # ------------------------------------------------------------------ state

    def _setup(self, start: StartState) -> None:
        if start == "disconnected":
            return
        self.connected = True
        self._selected_since_connect = start == "guiding"
        if start in ("looping", "guiding"):
            self.capturing = True
            self.have_frame = True
        if start == "guiding":
            self.calibrated = True
            self.star_known = True
            self.lock = (self._rng.uniform(600, 680), self._rng.uniform(340, 410))
            self._err_ra = self._rng.gauss(0, 0.1)
            self._err_dec = self._rng.gauss(0, 0.1)
            self._place_star(self._err_ra, self._err_dec)
            self.guider = Guider.GUIDING
            self.locked = True
            self._guide_started = self.now()
            self._last_star_seen = self._guide_started
            self._ema = 0.2

    def app_state(self) -> str:
        """``get_app_state`` as PHD2 derives it: Paused wins, then Stopped, then the guider."""
        if self.pause is not Pause.NONE:
            return "Paused"
        if not self.capturing:
            return "Stopped"
        if self.guider is Guider.UNINITIALIZED:
            return "Looping"
        if self.guider in (Guider.SELECTED, Guider.CALIBRATED):
            return "Selected"
        if self.guider is Guider.CALIBRATING:
            return "Calibrating"
        return "Guiding" if self.locked else "LostLock"

    @property
    def guiding(self) -> bool:
        """PHD2's ``IsGuiding``: true in LostLock and while paused too."""
        return self.guider is Guider.GUIDING

    @property
    def settling(self) -> bool:
        return self._ctl.state in (_Ctl.SETTLE_BEGIN, _Ctl.SETTLE_WAIT)

    def guide_distance(self) -> float:
        """PHD2's ``CurrentGuideError``: the smoothed distance the settle check uses."""
        if self.now() - self._last_star_seen >= LOST_STAR_FORCED_AFTER_S:
            return LOST_STAR_FORCED_DISTANCE
        distance = self._ema
        if self.faults.never_settle:
            settle = self._ctl.settle
            tolerance = settle.pixels if settle is not None and settle.pixels < 99 else 1.5
            distance = max(distance, tolerance * 1.3 + 0.3)
        return distance

    # ------------------------------------------------------------------ events

    def _event(self, name: str, *fields: Field) -> str:
        head: list[Field] = [
            ("Event", w.escape(name)),
            ("Timestamp", w.fixed(self._wall(), 3)),
            ("Host", w.escape(self._host)),
            ("Inst", w.integer(self._instance)),
        ]
        return w.obj(head + list(fields))

    def _send(self, name: str, *fields: Field) -> None:
        self._emit(self._event(name, *fields))

    def _xy(self, x: float, y: float) -> tuple[Field, Field]:
        return ("X", w.fixed(x, 3)), ("Y", w.fixed(y, 3))

    def catch_up(self) -> list[str]:
        """What PHD2 sends a new client before it joins the broadcast, in PHD2's order."""
        lines = [
            self._event(
                "Version",
                ("PHDVersion", w.escape(PHD_VERSION)),
                ("PHDSubver", w.escape(PHD_SUBVER)),
                ("OverlapSupport", "true"),
                ("MsgVersion", "1"),
            )
        ]
        if self.lock is not None:
            lines.append(self._event("LockPositionSet", *self._xy(*self.lock)))
        if self.star_known:
            lines.append(self._event("StarSelected", *self._xy(self.star_x, self.star_y)))
        if self.calibrated:
            lines.append(self._event("CalibrationComplete", ("Mount", w.escape(MOUNT_NAME))))
        state = self.app_state()
        if state == "Guiding":
            lines.append(self._event("StartGuiding"))
        elif state == "Calibrating":
            lines.append(self._event("StartCalibration", ("Mount", w.escape(MOUNT_NAME))))
        elif state == "Paused":
            lines.append(self._event("Paused"))
        lines.append(self._event("AppState", ("State", w.escape(state))))
        return lines

    def _star_measures(self) -> list[Field]:
        return [
            ("StarMass", w.fixed(max(self._rng.gauss(630000, 40000), 1000), 0)),
            ("SNR", w.fixed(max(self._rng.gauss(90, 5), 5), 2)),
            ("HFD", w.fixed(max(self._rng.gauss(2.6, 0.25), 1.0), 2)),
        ]

    def _star_error(self) -> list[Field]:
        """ErrorCode, which PHD2 leaves out when it is zero."""
        return [("ErrorCode", w.integer(SATURATED_CODE))] if self.faults.star_saturated else []

    def _looping_with_star(self) -> str:
        return self._event(
            "LoopingExposures",
            ("Frame", w.integer(self.frame)),
            *self._star_measures(),
            *self._star_error(),
        )

    def _send_star_lost(self) -> None:
        guiding = self.guider is Guider.GUIDING
        elapsed = self.now() - (self._guide_started if guiding else self._capture_started)
        self._send(
            "StarLost",
            ("Frame", w.integer(self.frame)),
            ("Time", w.fixed(elapsed, 3)),
            ("StarMass", "0"),
            ("SNR", w.fixed(0, 2)),
            ("HFD", w.fixed(0, 2)),
            ("AvgDist", w.fixed(self.guide_distance() if guiding else 0.0, 2)),
            ("ErrorCode", w.integer(STAR_LOST_CODE)),
            ("Status", w.escape(STAR_LOST_STATUS)),
        )

    def _config_changed(self) -> None:
        self._send("ConfigurationChange")

    # ------------------------------------------------------------------ geometry

    def _camera(self, ra: float, dec: float) -> tuple[float, float]:
        """Mount-axis offset to camera offset (the camera is rotated and flipped)."""
        cos, sin = math.cos(_CAMERA_ANGLE), math.sin(_CAMERA_ANGLE)
        return -(ra * cos - dec * sin), -(ra * sin + dec * cos)

    def _place_star(self, ra: float, dec: float) -> None:
        if self.lock is None:
            return
        dx, dy = self._camera(ra, dec)
        self.star_x, self.star_y = self.lock[0] + dx, self.lock[1] + dy

    def _set_lock(self, x: float, y: float) -> None:
        self.lock = (x, y)
        self._send("LockPositionSet", *self._xy(x, y))

    def _lose_lock(self) -> None:
        if self.lock is not None:
            self.lock = None
            self._send("LockPositionLost")

    # ------------------------------------------------------------------ capture

    def _start_capturing(self) -> None:
        self.capturing = True
        self._capture_started = self.now()
        self.frame = 0
        self._wake()

    def request_stop(self, *, keep_looping: bool) -> None:
        """Stop guiding (and capture, unless ``keep_looping``) once the current move is done.

        The camera loop calls `finish_stop` when the pending guide pulse has completed,
        which is why PHD2's GuidingStopped follows the stop request's reply.
        """
        if not self.capturing:
            return
        if self.stop_pending and not self._stop_keeps_looping:
            return
        self.stop_pending = True
        self._stop_keeps_looping = keep_looping
        self._wake()

    def finish_stop(self) -> None:
        """Stop as PHD2 does once moves are done.

        GuidingStopped, the aborted settle's SettleDone, LoopingExposuresStopped, then
        LockPositionLost (transcript e).
        """
        keep_looping = self._stop_keeps_looping
        self.stop_pending = False
        self._stop_keeps_looping = False
        was_guiding = self.guider in (Guider.CALIBRATING, Guider.CALIBRATED, Guider.GUIDING)
        if was_guiding:
            self.guider = Guider.SELECTED if self.star_known else Guider.UNINITIALIZED
            self.locked = False
            self._send("GuidingStopped")
        if self._ctl.state is not _Ctl.IDLE:
            self._fail("Guiding stopped" if was_guiding else "Stopped capturing")
        if keep_looping or not self.capturing:
            return
        self.capturing = False
        self.pause = Pause.NONE
        self._send("LoopingExposuresStopped")
        self._lose_lock()
        self.guider = Guider.UNINITIALIZED
        self._wake()

    def _start_looping(self) -> bool:
        """PHD2's StartLooping; looping while guiding stops guiding. False when it can't."""
        if not self.connected:
            return False
        if self.capturing:
            if self.guider in (Guider.CALIBRATING, Guider.CALIBRATED, Guider.GUIDING):
                self.request_stop(keep_looping=True)
            return True
        self._start_capturing()
        return True

    def _deselect(self) -> None:
        """PHD2's guider Reset: forget the star (and stop guiding)."""
        if self.guider in (Guider.CALIBRATING, Guider.CALIBRATED, Guider.GUIDING):
            self._send("GuidingStopped")
            if self._ctl.state is not _Ctl.IDLE:
                self._fail("Guiding stopped")
        self.guider = Guider.UNINITIALIZED
        self.locked = False
        self.star_known = False
        self._lose_lock()

    def _auto_select(self) -> bool:
        """PHD2's AutoSelectStar on the last frame.

        Sends LockPositionSet, the frame's LoopingExposures again (now with the star), and
        StarSelected; the first selection after connecting also writes the profile.
        """
        if not self.connected or not self.have_frame:
            return False
        if self.guider in (Guider.CALIBRATING, Guider.CALIBRATED, Guider.GUIDING):
            return False
        if not self._selected_since_connect:
            self._selected_since_connect = True
            self._config_changed()
        x = self._rng.uniform(600, 680)
        y = self._rng.uniform(340, 410)
        self._set_lock(x, y)
        self.star_x, self.star_y = x, y
        self._err_ra = self._err_dec = 0.0
        self.star_known = True
        self.guider = Guider.SELECTED
        self._emit(self._looping_with_star())
        self._send("StarSelected", *self._xy(x, y))
        return True

    def _start_guiding(self) -> bool:
        """PHD2's StartGuiding: calibrate first if needed. False when no star is selected."""
        if not self.capturing or self.guider is not Guider.SELECTED:
            return False
        if self.calibrated:
            self.guider = Guider.CALIBRATED
            return True
        self._start_calibration()
        return True

    def _start_calibration(self) -> None:
        self.guider = Guider.CALIBRATING
        self._cal_steps = self._calibration_plan()
        self._cal_index = 0
        self._send("StartCalibration", ("Mount", w.escape(MOUNT_NAME)))

    def _calibration_plan(self) -> list[_CalStep]:
        """A short calibration: West out, East back, clear backlash, North out, South back."""
        plan: list[_CalStep] = []
        step_px = self._rng.uniform(5.0, 5.6)
        tilt = self._rng.uniform(0.2, 0.26)

        def add(direction: str, step: int, dist: float, state: str, *, ra_axis: bool) -> None:
            jitter = self._rng.gauss(0, 0.05) if dist > 0 else 0.0
            along, across = dist * math.cos(tilt), dist * math.sin(tilt)
            dx, dy = (-along, -across + jitter) if ra_axis else (across + jitter, -along)
            dx, dy = dx + 0.0, dy + 0.0  # no "-0" in %g output
            plan.append(
                _CalStep(direction=direction, step=step, dist=dist, dx=dx, dy=dy, state=state)
            )

        for step in range(4):
            dist = step * step_px
            add("West", step, dist, f"West step {step + 1:3d}, dist={dist:4.1f}", ra_axis=True)
        for step in (2, 1):
            dist = step * step_px * 1.05
            add("East", step, dist, f"East step {step:3d}, dist={dist:4.1f}", ra_axis=True)
        add("Backlash", 0, 0.0, "Clearing backlash step 1", ra_axis=False)
        add("Backlash", 1, step_px * 0.55, "Clearing backlash step   2", ra_axis=False)
        for step in (1, 2, 3):
            dist = step * step_px * 1.08
            add("North", step, dist, f"North step {step + 1:3d}, dist={dist:4.1f}", ra_axis=False)
        for step in (2, 1):
            dist = step * step_px * 1.1
            add("South", step, dist, f"South step {step:3d}, dist={dist:4.1f}", ra_axis=False)
        return plan

    def _begin_guiding(self) -> None:
        self.guider = Guider.GUIDING
        self.locked = True
        self.frame = 0
        self._guide_started = self.now()
        self._last_star_seen = self._guide_started
        self._ema_reset_in = 1
        self._recenter = False
        self._send("StartGuiding")

    # ------------------------------------------------------------------ frames

    def complete_frame(self) -> FrameOutcome:
        """Process the frame that just finished exposing; return the pending guide pulse."""
        if not self.exposing:
            return FrameOutcome()
        self.frame += 1
        self.have_frame = True
        outcome = FrameOutcome()
        if self.guider is Guider.GUIDING:
            outcome = self._guide_frame()
        elif self.guider is Guider.CALIBRATING:
            outcome = self._calibration_frame()
        elif self.guider is Guider.CALIBRATED:
            self._place_star(self._err_ra, self._err_dec)
            self._set_lock(self.star_x, self.star_y)
            self._err_ra = self._err_dec = 0.0
            self._begin_guiding()
        else:
            self._looping_frame()
        self._advance(frame=True)
        return outcome

    def _take_lost_frame(self) -> bool:
        if self.faults.lost_frames > 0:
            self.faults.lost_frames -= 1
            return True
        return False

    def _looping_frame(self) -> None:
        if self.guider is Guider.UNINITIALIZED:
            if self.star_known:
                # capture restarted with a star remembered: PHD2 finds it again
                self._emit(self._looping_with_star())
                self._set_lock(self.star_x, self.star_y)
                self._err_ra = self._err_dec = 0.0
                self.guider = Guider.SELECTED
                self._send("StarSelected", *self._xy(self.star_x, self.star_y))
            else:
                self._send(
                    "LoopingExposures",
                    ("Frame", w.integer(self.frame)),
                    ("ErrorCode", w.integer(NO_STAR_CODE)),
                    ("Status", w.escape(NO_STAR_STATUS)),
                )
            return
        if self._take_lost_frame():
            self._send(
                "LoopingExposures",
                ("Frame", w.integer(self.frame)),
                ("ErrorCode", w.integer(STAR_LOST_CODE)),
                ("Status", w.escape(STAR_LOST_STATUS)),
            )
            self._lose_lock()
            self._send_star_lost()
            self.guider = Guider.UNINITIALIZED
            self.star_known = False
            return
        self.star_x += self._rng.gauss(0, 0.1)
        self.star_y += self._rng.gauss(0, 0.1)
        self._emit(self._looping_with_star())

    def _calibration_frame(self) -> FrameOutcome:
        if self._take_lost_frame():
            self._send_star_lost()  # PHD2 blunders on; the step is repeated
            return FrameOutcome(pulse_s=CALIBRATION_PULSE_S)
        step = self._cal_steps[self._cal_index]
        self._cal_index += 1
        lock_x, lock_y = self.lock if self.lock is not None else (self.star_x, self.star_y)
        pos = w.point(lock_x - step.dx, lock_y - step.dy)
        self._send(
            "Calibrating",
            ("Mount", w.escape(MOUNT_NAME)),
            ("dir", w.escape(step.direction)),
            ("dist", w.general(step.dist)),
            ("dx", w.general(step.dx)),
            ("dy", w.general(step.dy)),
            ("pos", pos),
            ("step", w.integer(step.step)),
            ("State", w.escape(step.state)),
        )
        if self._cal_index < len(self._cal_steps):
            return FrameOutcome(pulse_s=CALIBRATION_PULSE_S)
        self.calibrated = True
        self._err_ra = self._rng.gauss(0, 0.8)
        self._err_dec = self._rng.gauss(0, 0.8)
        self._config_changed()
        self._send("CalibrationComplete", ("Mount", w.escape(MOUNT_NAME)))
        self._begin_guiding()
        return FrameOutcome()

    def _drift(self) -> None:
        step = self.frame_interval_s
        previous = math.sin(self._pe_phase)
        self._pe_phase += 2 * math.pi * step / _PE_PERIOD_S
        self._err_ra += _PE_AMPLITUDE * (math.sin(self._pe_phase) - previous)
        # The mount's own wander per frame, scaled to the time a frame takes (the old
        # per-frame figures are those of a 1 s exposure).
        scale = math.sqrt(step / (1.0 + DOWNLOAD_S)) if self.noise.exposure_power else 1.0
        self._err_ra += self._rng.gauss(0, 0.06 * scale)
        self._err_dec += self._rng.gauss(0.004 * scale * scale, 0.05 * scale)
        noise = self.noise
        if noise.seeing_wander > 0:
            # Ornstein-Uhlenbeck on log(seeing): spells of good and bad seeing.
            k = min(1.0, step / noise.seeing_period_s)
            self._log_seeing += -k * self._log_seeing + noise.seeing_wander * math.sqrt(
                2 * k
            ) * self._rng.gauss(0, 1)

    @property
    def seeing_px(self) -> float:
        """The centroid jitter per axis of a frame at the current exposure and seeing."""
        noise = self.noise
        sigma = noise.seeing_px * math.exp(self._log_seeing)
        if noise.exposure_power:
            sigma *= max(self.exposure_s, 0.01) ** -noise.exposure_power
        return sigma

    def _overshoot(self, chance: float, span: tuple[float, float]) -> float:
        if chance > 0 and self._rng.random() < chance:
            return self._rng.uniform(*span)
        return 1.0

    def _guide_frame(self) -> FrameOutcome:
        now = self.now()
        elapsed = now - self._guide_started
        self._drift()
        if self._take_lost_frame():
            self.locked = False
            self._send_star_lost()
            return FrameOutcome()
        self.locked = True
        self._last_star_seen = now
        seeing = self.seeing_px
        m_ra = self._err_ra + self._rng.gauss(0, seeing)
        m_dec = self._err_dec + self._rng.gauss(0, seeing)
        self._place_star(m_ra, m_dec)
        raw = math.hypot(m_ra, m_dec)
        paused = self.pause is not Pause.NONE
        if paused:
            self._ema += EMA_ALPHA * (raw - self._ema)
            return FrameOutcome()
        if self._ema_reset_in > 0:
            # PHD2 restarts the average from the raw distance on the first guided frame,
            # and on the second frame after a dither (the first still shows the bump)
            self._ema_reset_in -= 1
            if self._ema_reset_in == 0:
                self._ema = raw
            else:
                self._ema += EMA_ALPHA * (raw - self._ema)
        else:
            self._ema += EMA_ALPHA * (raw - self._ema)

        overshoot = 1.0
        if self._recenter:
            # PHD2 moves the whole dither distance on the first frame after a dither
            self._recenter = False
            g_ra, g_dec = m_ra, m_dec
            overshoot = self._overshoot(
                self.noise.dither_overshoot_chance, self.noise.dither_overshoot
            )
        else:
            overshoot = self._overshoot(
                self.noise.pulse_overshoot_chance, self.noise.pulse_overshoot
            )
            ra, dec = self._algo["ra"], self._algo["dec"]
            g_ra = ra["aggression"] * m_ra if abs(m_ra) >= ra["minMove"] else 0.0
            g_dec = dec["aggression"] * m_dec if abs(m_dec) >= dec["minMove"] else 0.0
            if self._dec_guide_mode == "Off":
                g_dec = 0.0
        if not self._guide_output:
            g_ra = g_dec = 0.0
        ra_ms = min(round(abs(g_ra) / _RA_RATE_PX_PER_MS), _MAX_PULSE_MS)
        dec_ms = min(round(abs(g_dec) / _DEC_RATE_PX_PER_MS), _MAX_PULSE_MS)
        ra_moved = math.copysign(ra_ms * _RA_RATE_PX_PER_MS, g_ra)
        dec_moved = math.copysign(dec_ms * _DEC_RATE_PX_PER_MS, g_dec)
        self._err_ra -= ra_moved * self._rng.uniform(0.9, 1.05) * overshoot
        self._err_dec -= dec_moved * self._rng.uniform(0.6, 1.0) * overshoot

        r_ra, r_dec = m_ra, m_dec
        if self.faults.never_settle and self.settling:
            # The star stays out of range in the raw distances too (a judge of its own
            # must not call it settled either): reported at the never-settled distance.
            wanted = self.guide_distance()
            raw_now = math.hypot(m_ra, m_dec)
            if raw_now < wanted:
                k = wanted / raw_now if raw_now > 1e-6 else 0.0
                r_ra, r_dec = (m_ra * k, m_dec * k) if k else (wanted, 0.0)
        cam_dx, cam_dy = self._camera(r_ra, r_dec)
        fields: list[Field] = [
            ("Frame", w.integer(self.frame)),
            ("Time", w.fixed(elapsed, 3)),
            ("Mount", w.escape(MOUNT_NAME)),
            ("dx", w.fixed(cam_dx, 3)),
            ("dy", w.fixed(cam_dy, 3)),
            ("RADistanceRaw", w.fixed(r_ra, 3)),
            ("DECDistanceRaw", w.fixed(r_dec, 3)),
            ("RADistanceGuide", w.fixed(g_ra if ra_ms else 0.0, 3)),
            ("DECDistanceGuide", w.fixed(g_dec if dec_ms else 0.0, 3)),
        ]
        if ra_ms > 0:
            fields.append(("RADuration", w.integer(ra_ms)))
            fields.append(("RADirection", w.escape("West" if g_ra > 0 else "East")))
        if dec_ms > 0:
            fields.append(("DECDuration", w.integer(dec_ms)))
            fields.append(("DECDirection", w.escape("South" if g_dec > 0 else "North")))
        fields.extend(self._star_measures())
        fields.append(("AvgDist", w.fixed(self.guide_distance(), 2)))
        fields.extend(self._star_error())
        return FrameOutcome(
            pulse_s=(ra_ms + dec_ms) / 1000.0, guide_step=self._event("GuideStep", *fields)
        )

    # ------------------------------------------------------------------ controller

    def _reentrancy_error(self, op: str) -> Err:
        busy = "dither" if self._ctl.op == "dither" else "guide"
        return Err(code=1, message=f"Cannot initiate {op} while {busy} is in progress")

    def _fail(self, message: str) -> None:
        self._ctl.succeeded = False
        self._ctl.error = message
        self._ctl.state = _Ctl.FINISH
        self._advance(frame=False)

    def _advance(self, *, frame: bool) -> None:
        """Run the controller until it waits for the next frame (PHD2's UpdateControllerState)."""
        ctl = self._ctl
        while True:
            state = ctl.state
            if state is _Ctl.IDLE:
                return
            if state is _Ctl.ATTEMPT_START:
                if not self.connected:
                    self._set_failed("all equipment must be connected first")
                elif self.guider in (Guider.CALIBRATED, Guider.GUIDING):
                    ctl.state = _Ctl.SETTLE_BEGIN
                elif self.guider is Guider.CALIBRATING:
                    ctl.state = _Ctl.CALIBRATION_WAIT
                    return
                elif not self.capturing:
                    self._deselect()
                    self._start_capturing()
                    ctl.state = _Ctl.SELECT_STAR
                    return
                elif self.guider is Guider.SELECTED:
                    ctl.state = _Ctl.CALIBRATE
                else:
                    ctl.state = _Ctl.SELECT_STAR
            elif state is _Ctl.SELECT_STAR:
                if self._auto_select():
                    ctl.state = _Ctl.WAIT_SELECTED
                    ctl.wait_selected_left = 3
                    return
                ctl.attempts_left -= 1
                if ctl.attempts_left <= 0:
                    self._set_failed("failed to find a suitable guide star")
                else:
                    ctl.state = _Ctl.ATTEMPT_START
                    return
            elif state is _Ctl.WAIT_SELECTED:
                if self.guider is Guider.SELECTED:
                    ctl.state = _Ctl.CALIBRATE
                else:
                    ctl.wait_selected_left -= 1
                    if ctl.wait_selected_left <= 0:
                        ctl.state = _Ctl.ATTEMPT_START
                    return
            elif state is _Ctl.CALIBRATE:
                if self.calibrated:
                    ctl.state = _Ctl.GUIDE
                elif self._start_guiding():
                    ctl.state = _Ctl.CALIBRATION_WAIT
                    return
                else:
                    self._set_failed("could not start calibration")
            elif state is _Ctl.CALIBRATION_WAIT:
                if not self.calibrated:
                    return
                ctl.state = _Ctl.SETTLE_BEGIN
            elif state is _Ctl.GUIDE:
                if self._start_guiding():
                    ctl.state = _Ctl.SETTLE_BEGIN
                    return
                self._set_failed("could not start guiding")
            elif state is _Ctl.SETTLE_BEGIN:
                self._send("SettleBegin")
                ctl.prior_in_range = False
                ctl.frames = ctl.dropped = 0
                ctl.settle_started = self.now()
                ctl.state = _Ctl.SETTLE_WAIT
                return
            elif state is _Ctl.SETTLE_WAIT:
                if not frame:
                    return
                frame = False
                if not self._settle_step():
                    return
            else:  # FINISH
                self._finish()
                return

    def _set_failed(self, message: str) -> None:
        self._ctl.succeeded = False
        self._ctl.error = message
        self._ctl.state = _Ctl.FINISH

    def _settle_step(self) -> bool:
        """One frame of PHD2's settle check; True when the settle has finished."""
        ctl = self._ctl
        settle = ctl.settle
        if settle is None:  # pragma: no cover - a settle always has params
            self._set_failed("internal error")
            return True
        now = self.now()
        locked = self.guiding and self.locked
        distance = self.guide_distance()
        in_range = locked and distance <= settle.pixels
        ctl.frames += 1
        if not locked:
            ctl.dropped += 1
        if ctl.frames >= settle.frames or self.faults.settle_quickly:
            ctl.succeeded = True
            ctl.state = _Ctl.FINISH
            return True
        time_in_range = 0.0
        if in_range:
            if not ctl.prior_in_range:
                if settle.time_s <= 0:
                    ctl.succeeded = True
                    ctl.state = _Ctl.FINISH
                    return True
                ctl.in_range_since = now
            else:
                time_in_range = now - ctl.in_range_since
                if math.floor(time_in_range) >= settle.time_s:
                    ctl.succeeded = True
                    ctl.state = _Ctl.FINISH
                    return True
        if math.floor(now - ctl.settle_started) >= settle.timeout_s:
            self._set_failed("timed-out waiting for guider to settle")
            return True
        self._send(
            "Settling",
            ("Distance", w.fixed(distance, 2)),
            ("Time", w.fixed(time_in_range, 1)),
            ("SettleTime", w.fixed(settle.time_s, 1)),
            ("StarLocked", w.boolean(locked)),
        )
        ctl.prior_in_range = in_range
        return False

    def _finish(self) -> None:
        ctl = self._ctl
        fields: list[Field] = [("Status", "0" if ctl.succeeded else "1")]
        if not ctl.succeeded:
            fields.append(("Error", w.escape(ctl.error)))
        fields.append(("TotalFrames", w.integer(ctl.frames)))
        fields.append(("DroppedFrames", w.integer(ctl.dropped)))
        self._send("SettleDone", *fields)
        if ctl.window is not None:
            index = ctl.window
            self._windows[index] = replace(
                self._windows[index],
                end=self._clock(),
                status=0 if ctl.succeeded else 1,
                error=None if ctl.succeeded else ctl.error,
            )
        self._ctl = _Controller()

    def _dither(
        self, amount: float, ra_only: bool, settle: SettleParams, source: DitherSource
    ) -> Err | None:
        """PhdController::Dither. None when accepted (events already sent)."""
        if self._ctl.state is not _Ctl.IDLE:
            return self._reentrancy_error("dither")
        if not self.guiding:
            return Err(code=1, message="Dither error")
        size = abs(amount) * DITHER_SCALE
        d_ra = self._rng.uniform(-size, size)
        d_dec = 0.0 if ra_only else self._rng.uniform(-size, size)
        if size > 0 and self.lock is not None:
            shift_x, shift_y = self._camera(d_ra, d_dec)
            self._set_lock(self.lock[0] + shift_x, self.lock[1] + shift_y)
        self._err_ra -= d_ra
        self._err_dec -= d_dec
        self._ema += math.hypot(d_ra, d_dec)
        self._ema_reset_in = 2
        self._recenter = True
        self._send("GuidingDithered", ("dx", w.fixed(d_ra, 3)), ("dy", w.fixed(d_dec, 3)))
        self._windows.append(DitherWindow(start=self._clock(), source=source))
        self._ctl = _Controller(
            state=_Ctl.SETTLE_BEGIN, op="dither", settle=settle, window=len(self._windows) - 1
        )
        self._advance(frame=False)
        return None

    def abort_settle(self, reason: str) -> None:
        """PhdController::AbortController: end any guide/dither operation with an error."""
        if self._ctl.state is not _Ctl.IDLE:
            self._fail(reason)

    # ------------------------------------------------------------------ JSON-RPC

    def call(self, method: str, params: JsonValue) -> Outcome | None:
        """Run one JSON-RPC method; None when PHD2 has no such method."""
        handler = self._methods().get(method)
        if handler is None:
            return None
        return handler(params)

    def _methods(self) -> dict[str, Callable[[JsonValue], Outcome]]:
        return {
            "get_app_state": lambda _: Ok(result=w.escape(self.app_state())),
            "get_connected": lambda _: Ok(result=w.boolean(self.connected)),
            "set_connected": self._rpc_set_connected,
            "get_profile": lambda _: Ok(
                result=w.obj([("id", "1"), ("name", w.escape(PROFILE_NAME))])
            ),
            "get_profiles": lambda _: Ok(
                result="["
                + w.obj([("id", "1"), ("name", w.escape(PROFILE_NAME)), ("selected", "true")])
                + "]"
            ),
            "get_current_equipment": self._rpc_current_equipment,
            "get_exposure": lambda _: Ok(result=w.integer(self.exposure_ms)),
            "set_exposure": self._rpc_set_exposure,
            "get_exposure_durations": lambda _: Ok(result=w.int_array(list(EXPOSURE_DURATIONS_MS))),
            "get_pixel_scale": lambda _: Ok(result=w.general(PIXEL_SCALE)),
            "get_paused": lambda _: Ok(result=w.boolean(self.pause is not Pause.NONE)),
            "set_paused": self._rpc_set_paused,
            "get_lock_position": lambda _: Ok(
                result="null" if self.lock is None else w.point(*self.lock)
            ),
            "set_lock_position": self._rpc_set_lock_position,
            "get_calibrated": lambda _: Ok(result=w.boolean(self.calibrated)),
            "clear_calibration": self._rpc_clear_calibration,
            "loop": self._rpc_loop,
            "stop_capture": self._rpc_stop_capture,
            "find_star": self._rpc_find_star,
            "deselect_star": self._rpc_deselect_star,
            "guide": self._rpc_guide,
            "dither": self._rpc_dither,
            "get_settling": lambda _: Ok(result=w.boolean(self.settling)),
            "get_algo_param_names": self._rpc_algo_param_names,
            "get_algo_param": self._rpc_get_algo_param,
            "set_algo_param": self._rpc_set_algo_param,
            "get_dec_guide_mode": lambda _: Ok(result=w.escape(self._dec_guide_mode)),
            "set_dec_guide_mode": self._rpc_set_dec_guide_mode,
            "set_profile": self._rpc_set_profile,
            "get_search_region": lambda _: Ok(result="15"),
            "flip_calibration": self._rpc_flip_calibration,
            "get_calibration_data": self._rpc_calibration_data,
            "set_guide_output_enabled": self._rpc_set_guide_output,
            "get_lock_shift_enabled": lambda _: Ok(result="false"),
            "get_use_subframes": lambda _: Ok(result="false"),
            "get_guide_output_enabled": lambda _: Ok(result=w.boolean(self._guide_output)),
            "get_camera_binning": self._rpc_camera_binning,
            "get_camera_frame_size": self._rpc_camera_frame_size,
            "get_variable_delay_settings": lambda _: Ok(
                result=w.obj(
                    [("Enabled", "false"), ("ShortDelaySeconds", "0"), ("LongDelaySeconds", "0")]
                )
            ),
            "shutdown": lambda _: Ok(result="0"),
        }

    def _rpc_current_equipment(self, _: JsonValue) -> Outcome:
        connected = w.boolean(self.connected)
        camera = w.obj([("name", w.escape(CAMERA_NAME)), ("connected", connected)])
        mount = w.obj([("name", w.escape(MOUNT_NAME)), ("connected", connected)])
        return Ok(result=w.obj([("camera", camera), ("mount", mount)]))

    def _rpc_set_connected(self, params: JsonValue) -> Outcome:
        value = _Params(params, "connected").get("connected")
        if not isinstance(value, bool):
            return Err(code=w.INVALID_PARAMS, message="expected connected boolean param")
        if value == self.connected:
            return Ok(result="0")
        if not value and self.capturing:
            return Err(code=1, message="cannot disconnect equipment while capture active")
        self.set_connected(value)
        return Ok(result="0")

    def set_connected(self, value: bool) -> None:
        """Connect or disconnect all equipment (the caller has stopped capture first)."""
        if value == self.connected:
            return
        if value:
            self.connected = True
            self._selected_since_connect = False
            self._config_changed()
            return
        self.abort_settle("Stopped capturing")
        self.connected = False
        self.capturing = False
        self.have_frame = False
        self.star_known = False
        self.guider = Guider.UNINITIALIZED
        self._wake()

    def _rpc_set_exposure(self, params: JsonValue) -> Outcome:
        value = _exact_int(_Params(params, "exposure").get("exposure"))
        if value is None:
            return Err(code=w.INVALID_PARAMS, message="expected exposure param")
        if not self.set_exposure(value):
            return Err(code=1, message="could not set exposure duration")
        return Ok(result="0")

    def set_exposure(self, value: int) -> bool:
        """PHD2's exposure drop-down (``set_exposure`` and the user alike): one of the
        listed durations, or -1 for auto exposure. False for anything else (as PHD2,
        which keeps the exposure it had)."""
        if value == -1:
            self.auto_exposure = True
            self.exposure_ms = AUTO_EXPOSURE_MS
            text = AUTO_EXPOSURE_TEXT
        elif value in EXPOSURE_DURATIONS_MS:
            self.auto_exposure = False
            self.exposure_ms = value
            text = f"{value} ms"
        else:
            return False
        self._send("GuideParamChange", ("Name", w.escape("Exposure")), ("Value", w.escape(text)))
        self._config_changed()
        self._wake()
        return True

    def _rpc_set_paused(self, params: JsonValue) -> Outcome:
        p = _Params(params, "paused", "type")
        paused = _flag(p.get("paused"))
        if paused is None:
            return Err(code=w.INVALID_PARAMS, message="expected bool param at index 0")
        kind = Pause.NONE
        if paused:
            kind = Pause.GUIDING
            pause_type = p.get("type")
            if pause_type is not _MISSING:
                if not isinstance(pause_type, str):
                    return Err(code=w.INVALID_PARAMS, message="expected string param at index 1")
                if pause_type == "full":
                    kind = Pause.FULL
        self.set_paused(kind)
        return Ok(result="0")

    def set_paused(self, kind: Pause) -> None:
        """MyFrame::SetPaused: Paused/Resumed only when the paused state flips."""
        was_paused = self.pause is not Pause.NONE
        self.pause = kind
        if kind is not Pause.NONE and not was_paused:
            self._send("Paused")
        elif kind is Pause.NONE and was_paused:
            self._send("Resumed")
        self._wake()

    def _rpc_set_lock_position(self, params: JsonValue) -> Outcome:
        p = _Params(params, "x", "y", "exact")
        x, y = _number(p.get("x")), _number(p.get("y"))
        if x is None or y is None:
            return Err(code=w.INVALID_PARAMS, message="expected lock position x, y params")
        if not self.connected or not self.have_frame:
            return Err(code=w.INVALID_REQUEST, message="could not set lock position")
        self._set_lock(x, y)
        return Ok(result="0")

    def _rpc_clear_calibration(self, _: JsonValue) -> Outcome:
        self.calibrated = False
        return Ok(result="0")

    def _rpc_loop(self, _: JsonValue) -> Outcome:
        if not self._start_looping():
            return Err(code=1, message="could not start looping")
        return Ok(result="0")

    def _rpc_stop_capture(self, _: JsonValue) -> Outcome:
        self.request_stop(keep_looping=False)
        return Ok(result="0")

    def _rpc_find_star(self, params: JsonValue) -> Outcome:
        roi = _Params(params, "roi").get("roi")
        if roi is not _MISSING and not (
            isinstance(roi, list) and len(roi) == 4 and all(_exact_int(v) is not None for v in roi)
        ):
            return Err(code=w.INVALID_PARAMS, message="invalid ROI param")
        if self._auto_select() and self.lock is not None:
            return Ok(result=w.point(*self.lock))
        return Err(code=1, message="could not find star")

    def _rpc_deselect_star(self, _: JsonValue) -> Outcome:
        self._deselect()
        return Ok(result="0")

    def _rpc_guide(self, params: JsonValue) -> Outcome:
        p = _Params(params, "settle", "recalibrate", "roi")
        settle = _parse_settle(p.get("settle"))
        if isinstance(settle, str):
            return Err(code=w.INVALID_PARAMS, message=settle)
        recalibrate = p.get("recalibrate")
        if recalibrate is not _MISSING and _flag(recalibrate) is None:
            return Err(code=w.INVALID_PARAMS, message="expected bool value for recalibrate")
        if not self.connected:
            return Err(code=1, message="all equipment must be connected first")
        if self._ctl.state is not _Ctl.IDLE:
            return self._reentrancy_error("guide")
        if recalibrate is True and self.guider is not Guider.GUIDING:
            self.calibrated = False
        self._ctl = _Controller(state=_Ctl.ATTEMPT_START, op="guide", settle=settle)
        self._advance(frame=False)
        return Ok(result="0")

    def _rpc_dither(self, params: JsonValue) -> Outcome:
        p = _Params(params, "amount", "raOnly", "settle")
        amount = _number(p.get("amount"))
        if amount is None:
            return Err(code=w.INVALID_PARAMS, message="expected dither amount param")
        ra_only_value = p.get("raOnly")
        ra_only = False
        if ra_only_value is not _MISSING:
            flag = _flag(ra_only_value)
            if flag is None:
                return Err(code=w.INVALID_PARAMS, message="expected dither raOnly param")
            ra_only = flag
        settle = _parse_settle(p.get("settle"))
        if isinstance(settle, str):
            return Err(code=w.INVALID_PARAMS, message=settle)
        error = self._dither(amount, ra_only, settle, "rpc")
        return error if error is not None else Ok(result="0")

    @staticmethod
    def _axis(value: object) -> str | None:
        """``ra`` or ``dec`` from PHD2's axis names (ra/x, dec/y, any case)."""
        if not isinstance(value, str):
            return None
        return {"ra": "ra", "x": "ra", "dec": "dec", "y": "dec"}.get(value.lower())

    def _rpc_algo_param_names(self, params: JsonValue) -> Outcome:
        axis = self._axis(_Params(params, "axis").get("axis"))
        if axis is None:
            return Err(code=1, message="expected axis name param")
        return Ok(result=w.string_array(["algorithmName", *self._algo[axis]]))

    def _rpc_get_algo_param(self, params: JsonValue) -> Outcome:
        p = _Params(params, "axis", "name")
        axis = self._axis(p.get("axis"))
        if axis is None:
            return Err(code=1, message="expected axis name param")
        name = p.get("name")
        if not isinstance(name, str):
            return Err(code=1, message="expected param name param")
        if name == "algorithmName":
            return Ok(result=w.escape(ALGORITHMS[axis]))
        if name not in self._algo[axis]:
            return Err(code=1, message="could not get param")
        return Ok(result=w.general(self._algo[axis][name]))

    def _rpc_set_algo_param(self, params: JsonValue) -> Outcome:
        p = _Params(params, "axis", "name", "value")
        axis = self._axis(p.get("axis"))
        if axis is None:
            return Err(code=1, message="expected axis name param")
        name = p.get("name")
        if not isinstance(name, str):
            return Err(code=1, message="expected param name param")
        value = _number(p.get("value"))
        if value is None:
            return Err(code=1, message="expected param value param")
        if name not in self._algo[axis] or value < 0:
            return Err(code=1, message="could not set param")
        self._algo[axis][name] = value
        return Ok(result="0")

    def _rpc_set_dec_guide_mode(self, params: JsonValue) -> Outcome:
        mode = _Params(params, "mode").get("mode")
        if not isinstance(mode, str):
            return Err(code=1, message="expected mode param")
        known = {m.lower(): m for m in DEC_GUIDE_MODES}
        if mode.lower() not in known:
            return Err(code=1, message="invalid dec guide mode param")
        self._dec_guide_mode = known[mode.lower()]
        return Ok(result="0")

    def _rpc_set_profile(self, params: JsonValue) -> Outcome:
        profile = _exact_int(_Params(params, "id").get("id"))
        if profile is None:
            return Err(code=w.INVALID_PARAMS, message="expected profile id param")
        if profile == 1:
            return Ok(result="0")  # already the current profile
        if self.connected:
            return Err(code=1, message="cannot set profile when equipment is connected")
        return Err(code=1, message="invalid profile id")

    def _rpc_flip_calibration(self, _: JsonValue) -> Outcome:
        if not self.calibrated:
            return Err(code=1, message="could not flip calibration")
        self._send("CalibrationDataFlipped", ("Mount", w.escape(MOUNT_NAME)))
        return Ok(result="0")

    def _rpc_calibration_data(self, params: JsonValue) -> Outcome:
        which = _Params(params, "which").get("which")
        if which is not _MISSING and (not isinstance(which, str) or which.lower() != "mount"):
            if isinstance(which, str) and which.lower() == "ao":
                return Err(code=1, message="device not connected")
            return Err(code=1, message="invalid 'which' param")
        if not self.connected:
            return Err(code=1, message="device not connected")
        fields: list[Field] = [("calibrated", w.boolean(self.calibrated))]
        if self.calibrated:
            angle = math.degrees(_CAMERA_ANGLE)
            fields += [
                ("xAngle", w.fixed(angle, 1)),
                ("xRate", w.fixed(_RA_RATE_PX_PER_MS * 1000, 3)),
                ("xParity", w.escape("+")),
                ("yAngle", w.fixed(angle + 90, 1)),
                ("yRate", w.fixed(_DEC_RATE_PX_PER_MS * 1000, 3)),
                ("yParity", w.escape("+")),
                ("declination", w.general(0.0)),
            ]
        return Ok(result=w.obj(fields))

    def _rpc_set_guide_output(self, params: JsonValue) -> Outcome:
        enabled = _flag(_Params(params, "enabled").get("enabled"))
        if enabled is None:
            return Err(code=w.INVALID_PARAMS, message="expected enabled boolean param")
        self._guide_output = enabled
        return Ok(result="0")

    def _rpc_camera_binning(self, _: JsonValue) -> Outcome:
        if not self.connected:
            return Err(code=1, message="camera not connected")
        return Ok(result="1")

    def _rpc_camera_frame_size(self, _: JsonValue) -> Outcome:
        if not self.connected:
            return Err(code=1, message="camera not connected")
        return Ok(result="[1280,1024]")

    # ------------------------------------------------------------------ legacy

    def legacy_command(self, command: int, payload: bytes = b"") -> int:
        """One legacy socket-server command; returns the reply byte."""
        name = legacy_name(command)
        if name == "PAUSE":
            self.set_paused(Pause.GUIDING)
            return 0
        if name == "RESUME":
            self.set_paused(Pause.NONE)
            return 0
        if command in LEGACY_DITHER_PX:
            # DitherCompat: abort whatever the controller is doing, then a 10-frame settle
            self.abort_settle("manual or phd1-style dither")
            settle = SettleParams(
                pixels=99.0,
                time_s=SETTLE_DISABLED,
                timeout_s=SETTLE_DISABLED,
                frames=LEGACY_SETTLE_FRAMES,
            )
            if self._dither(LEGACY_DITHER_PX[command], False, settle, "legacy") is not None:
                return 0
            return max(1, min(255, self.exposure_ms // 1000))
        if name == "REQDIST":
            if not self.guiding:
                return 0
            distance = self.guide_distance()
            return 255 if distance > 2.55 else int(distance * 100)
        if name == "AUTOFINDSTAR":
            if not self._auto_select():
                return 0
            self._start_looping()
            return 1
        if name == "SETLOCKPOSITION":
            if len(payload) == 4 and self.connected and self.have_frame:
                x = int.from_bytes(payload[0:2], "little")
                y = int.from_bytes(payload[2:4], "little")
                self.star_x, self.star_y = float(x), float(y)
                self.star_known = True
                self._set_lock(float(x), float(y))
            return 0
        if name == "FLIPRACAL":
            if not self.calibrated:
                return 0
            self._send("CalibrationDataFlipped", ("Mount", w.escape(MOUNT_NAME)))
            return 1
        if name == "GETSTATUS":
            return APP_STATE_CODES[self.app_state()]
        if name == "STOP":
            self.request_stop(keep_looping=False)
            return 0
        if name == "LOOP":
            self._start_looping()
            return 0
        if name == "STARTGUIDING":
            self._start_guiding()
            return 0
        if name == "LOOPFRAMECOUNT":
            return min(self.frame, 255) if self.capturing else 0
        if name == "CLEARCAL":
            self.calibrated = False
            return 0
        if name == "FLIP_SIM_CAMERA":
            return 0
        if name == "DESELECT":
            self._deselect()
            return 0
        return 1
