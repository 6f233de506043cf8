"""The frame guard: which frames saw bad guiding, and whether saving should pause now.

A frame is *guarded* when, at any time during its exposure, PHD2 was not connected, was
not guiding, had lost the star, was settling outside one of our dithers, or (optional,
``guardrms``) the guiding error over the exposure exceeded a limit. The guard keeps the
stretches of time each condition held, so a frame can be judged once it ends, and says
whether a condition holds now, so the machine can pause saving while it lasts.

It is armed only once PHD2 has been seen guiding in this session: a user who does not
guide is never guarded. ``guardmax`` bounds how long it may keep saving paused: after
that it lets go (frames are saved anyway) until the condition clears.

The guard decides nothing about cameras: the dither machine asks it and does the pausing
(one owner of pause and resume). No I/O: time is the caller's clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from ditherapp.core.guiding_stats import GuideHistory
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings

MAX_SPANS = 1000
"""Condition stretches kept for judging frames (far more than one night produces)."""
RMS_MIN_SAMPLES = 3
"""Guide steps needed before the error over a stretch is believed."""


class GuardReason(StrEnum):
    DISCONNECTED = "disconnected"
    NOT_GUIDING = "not_guiding"
    STAR_LOST = "star_lost"
    SETTLING = "settling"
    GUIDING_ERROR = "guiding_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardConfig:
    enabled: bool = True
    """Guard on PHD2's state (not connected, not guiding, star lost, settling)."""
    rms_px: float = 0.0
    """Guard when the RMS distance from the lock position over the exposure exceeds this
    many guide pixels; 0 turns it off."""
    max_s: float = 900.0
    """The longest the guard keeps saving paused before it lets go."""
    retake: bool = False
    """Sequence mode: take a guarded frame again (the count does not advance)."""

    @classmethod
    def from_settings(cls, settings: DitherSettings) -> GuardConfig:
        return cls(
            enabled=settings.guard,
            rms_px=settings.guardrms,
            max_s=settings.guardmax * 60.0,
            retake=settings.guardretake,
        )

    @property
    def active(self) -> bool:
        return self.enabled or self.rms_px > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardCondition:
    reason: GuardReason
    text: str
    """What the user reads: "PHD2 is not connected"."""


@dataclass(slots=True)
class _Span:
    condition: GuardCondition
    start: float
    end: float | None = None


def guider_condition(
    *, connected: bool, state: Phd2State, settling: bool, our_dither: bool
) -> GuardCondition | None:
    """The condition PHD2's state amounts to, if any (the first that applies)."""
    if not connected:
        return GuardCondition(reason=GuardReason.DISCONNECTED, text="PHD2 is not connected")
    if state is Phd2State.LOST_LOCK:
        return GuardCondition(reason=GuardReason.STAR_LOST, text="PHD2 has lost the guide star")
    if state is not Phd2State.GUIDING:
        shown = {
            Phd2State.PAUSED: "PHD2 is paused",
            Phd2State.LOOPING: "PHD2 stopped guiding (looping)",
            Phd2State.STOPPED: "PHD2 stopped guiding",
            Phd2State.CALIBRATING: "PHD2 is calibrating",
        }.get(state, f"PHD2 is not guiding ({state.value})")
        return GuardCondition(reason=GuardReason.NOT_GUIDING, text=shown)
    if settling and not our_dither:
        return GuardCondition(reason=GuardReason.SETTLING, text="PHD2 is settling (not our dither)")
    return None


class FrameGuard:
    def __init__(
        self, config: GuardConfig | None = None, history: GuideHistory | None = None
    ) -> None:
        self.config = config or GuardConfig()
        self.history = history if history is not None else GuideHistory()
        self.guiding_seen = False
        self._spans: deque[_Span] = deque(maxlen=MAX_SPANS)
        self._open: dict[GuardReason, _Span] = {}
        self._hold_since: float | None = None
        self._let_go = False

    # ------------------------------------------------------------ what happens

    def configure(self, config: GuardConfig) -> None:
        self.config = config

    def guider(
        self, t: float, *, connected: bool, state: Phd2State, settling: bool, our_dither: bool
    ) -> None:
        """PHD2's state now (and whether a dither of ours is running)."""
        if connected and state is Phd2State.GUIDING:
            self.guiding_seen = True
        if not self.guiding_seen:
            return  # before the first guiding nothing is bad guiding: no stretch to keep
        condition = guider_condition(
            connected=connected, state=state, settling=settling, our_dither=our_dither
        )
        reasons = {GuardReason.DISCONNECTED, GuardReason.STAR_LOST, GuardReason.NOT_GUIDING}
        reasons.add(GuardReason.SETTLING)
        for reason in reasons:
            wanted = condition if condition is not None and condition.reason is reason else None
            self._set(reason, wanted, t)

    def guiding_error(self, t: float, window_s: float) -> None:
        """Re-judge the live guiding-error condition over the last ``window_s`` (an
        exposure): call after each guide step."""
        limit = self.config.rms_px
        condition = None
        if limit > 0 and window_s > 0:
            stats = self.history.stats(t - window_s, t)
            if stats is not None and stats.count >= RMS_MIN_SAMPLES and stats.distance_rms > limit:
                condition = GuardCondition(
                    reason=GuardReason.GUIDING_ERROR,
                    text=f"guiding error {stats.distance_rms:.2f} px RMS over the last "
                    f"{window_s:g} s (limit {limit:g} px)",
                )
        self._set(GuardReason.GUIDING_ERROR, condition, t)

    def _set(self, reason: GuardReason, condition: GuardCondition | None, t: float) -> None:
        span = self._open.get(reason)
        if condition is None:
            if span is not None:
                span.end = t
                del self._open[reason]
            return
        if span is not None and span.condition == condition:
            return
        if span is not None:
            span.end = t
        new = _Span(condition=condition, start=t)
        self._open[reason] = new
        self._spans.append(new)

    # ------------------------------------------------------------ questions

    @property
    def armed(self) -> bool:
        """Guarding at all: enabled and guiding seen in this session."""
        return self.config.active and self.guiding_seen

    def _counts(self, reason: GuardReason) -> bool:
        if reason is GuardReason.GUIDING_ERROR:
            return self.config.rms_px > 0
        return self.config.enabled

    def condition(self) -> GuardCondition | None:
        """The condition that holds now (the most serious first), or None."""
        if not self.armed:
            return None
        for reason in GuardReason:
            span = self._open.get(reason)
            if span is not None and self._counts(reason):
                return span.condition
        return None

    def judge_frame(self, start: float, end: float) -> tuple[GuardCondition, ...]:
        """Every condition that held at some time in ``[start, end]``, plus the guiding
        error over the whole exposure when ``guardrms`` is set; empty when the frame is
        good (or the guard is not armed)."""
        if not self.armed:
            return ()
        found: list[GuardCondition] = []
        for span in self._spans:
            if not self._counts(span.condition.reason):
                continue
            overlaps = span.start <= end and (span.end is None or span.end > start)
            if overlaps and span.condition not in found:
                found.append(span.condition)
        limit = self.config.rms_px
        if limit > 0 and not any(c.reason is GuardReason.GUIDING_ERROR for c in found):
            stats = self.history.stats(start, end)
            if stats is not None and stats.count >= RMS_MIN_SAMPLES and stats.distance_rms > limit:
                found.append(
                    GuardCondition(
                        reason=GuardReason.GUIDING_ERROR,
                        text=f"guiding error {stats.distance_rms:.2f} px RMS over the exposure "
                        f"(limit {limit:g} px)",
                    )
                )
        return tuple(found)

    # ------------------------------------------------------------ holding saving

    @property
    def let_go(self) -> bool:
        """The guard gave up after ``guardmax``; it holds again once the condition clears."""
        return self._let_go

    @property
    def hold_since(self) -> float | None:
        return self._hold_since

    def should_hold(self) -> bool:
        """Saving should be paused now."""
        if self.condition() is None:
            self._let_go = False
            return False
        return not self._let_go

    def hold_started(self, t: float) -> None:
        self._hold_since = t

    def hold_ended(self) -> None:
        self._hold_since = None

    def let_go_at(self) -> float | None:
        """When the hold in force reaches ``guardmax``."""
        if self._hold_since is None:
            return None
        return self._hold_since + self.config.max_s

    def check_max(self, t: float) -> bool:
        """True (once) when the hold in force has lasted ``guardmax``: let go now."""
        due = self.let_go_at()
        if due is None or t < due:
            return False
        self._let_go = True
        return True


def retake(config: GuardConfig, conditions: tuple[GuardCondition, ...]) -> bool:
    """Sequence mode: whether a frame that saw ``conditions`` is to be taken again."""
    return config.retake and bool(conditions)
