"""Is a connected PHD2 still alive? The timing rule, sans-IO.

A PHD2 that hangs with its socket open closes nothing: without a rule the link stays
"connected, Guiding" for ever, every due dither waits out a request's time limit, and a
settle in progress waits out its own deadline. What PHD2 does while healthy is known:

* while guiding it sends a GuideStep (or StarLost) for every guide frame, so silence
  for several frames' worth of time is a dead link. The frame cadence is learnt from
  the frames themselves (exposure, download, PHD2's time lapse all included; the guide
  exposure PHD2 reported stands in until two frames have come), never
  below ``SILENCE_FLOOR_S`` and never above ``NOTICE_WITHIN_S``, the promise;
* when not guiding it may be silent for hours (stopped): after ``PROBE_AFTER_S`` of
  silence the client asks it something (``probe_due``);
* a request it does not answer in time, with nothing else heard from it since the
  request went out, is a dead link too (``request_timed_out``). A PHD2 that answers
  slowly but keeps sending events is busy, not dead.

Times are the caller's monotonic seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SILENCE_FLOOR_S = 10.0
"""Silence while guiding is never judged dead sooner than this (short exposures)."""
NOTICE_WITHIN_S = 30.0
"""Silence while guiding is always judged dead by this (long exposures)."""
FRAMES_OF_SILENCE = 3.0
"""How many guide frames' worth of silence, plus a margin, mean a dead link."""
SILENCE_MARGIN_S = 2.0
PROBE_AFTER_S = 10.0
"""Silence when not guiding after which the client asks PHD2 whether it is there."""
CADENCE_FRAMES = 8
"""Guide frame intervals the cadence is taken from (the longest of them)."""


@dataclass(slots=True)
class LinkWatchdog:
    started_at: float
    floor_s: float = SILENCE_FLOOR_S
    ceiling_s: float = NOTICE_WITHIN_S
    probe_after_s: float = PROBE_AFTER_S
    last_heard: float = field(init=False)
    guiding: bool = False
    _last_frame: float | None = None
    _intervals: deque[float] = field(default_factory=lambda: deque(maxlen=CADENCE_FRAMES))
    _probe_sent_at: float | None = None
    exposure_s: float | None = None
    """PHD2's guide exposure as it answered get_exposure: the cadence until frames tell."""

    def __post_init__(self) -> None:
        self.last_heard = self.started_at

    # ---------------------------------------------------------------- what is heard

    def heard(self, now: float) -> None:
        """PHD2 sent something (any bytes)."""
        self.last_heard = now
        self._probe_sent_at = None

    def guide_frame(self, now: float) -> None:
        """A GuideStep or StarLost: one guide frame."""
        self.heard(now)
        if self.guiding and self._last_frame is not None:
            self._intervals.append(now - self._last_frame)
        self._last_frame = now

    def set_guiding(self, guiding: bool, now: float) -> None:
        """PHD2's state is (or is no longer) Guiding."""
        if guiding == self.guiding:
            return
        self.guiding = guiding
        self._last_frame = now if guiding else None
        if guiding:
            self.last_heard = max(self.last_heard, now)  # the first frame is yet to come

    # ---------------------------------------------------------------- the rule

    def exposure_hint(self, exposure_s: float) -> None:
        """PHD2 said its guide exposure (an answer to get_exposure)."""
        if exposure_s > 0:
            self.exposure_s = exposure_s

    @property
    def cadence_s(self) -> float | None:
        """The longest recent interval between guide frames, once two have come; until
        then the guide exposure, if PHD2 said it."""
        if self._intervals:
            return max(self._intervals)
        return self.exposure_s

    def silence_limit_s(self) -> float:
        """How much silence while guiding means a dead link."""
        cadence = self.cadence_s
        if cadence is None:
            return self.ceiling_s  # not known yet: the promise is all we can hold to
        wanted = FRAMES_OF_SILENCE * cadence + SILENCE_MARGIN_S
        return min(self.ceiling_s, max(self.floor_s, wanted))

    def deadline(self) -> float | None:
        """When silence will mean a dead link (while guiding), or None."""
        if not self.guiding:
            return None
        return self.last_heard + self.silence_limit_s()

    def dead(self, now: float) -> str | None:
        """Why the link is dead, or None while it may be alive."""
        deadline = self.deadline()
        if deadline is not None and now >= deadline:
            return (
                f"PHD2 stopped answering: nothing heard for {now - self.last_heard:.0f} s "
                "while guiding (it sends every guide frame)"
            )
        return None

    def probe_due(self, now: float) -> bool:
        """Ask PHD2 something now? (Not guiding, silent a while, none already asked.)"""
        if self.guiding or self._probe_sent_at is not None:
            return False
        return now - self.last_heard >= self.probe_after_s

    def probe_sent(self, now: float) -> None:
        self._probe_sent_at = now

    def next_check(self, now: float) -> float:
        """The latest time the caller should look again (``dead``/``probe_due``)."""
        deadline = self.deadline()
        if deadline is not None:
            return deadline
        if self._probe_sent_at is not None:
            return now + self.probe_after_s  # the probe's own time limit decides
        return self.last_heard + self.probe_after_s

    def request_timed_out(self, sent_at: float, now: float, method: str) -> str | None:
        """A request sent at ``sent_at`` got no answer in time: dead if nothing at all
        was heard from PHD2 since."""
        if self.last_heard > sent_at:
            return None
        return (
            f"PHD2 stopped answering: no reply to {method} and nothing else "
            f"for {now - sent_at:.0f} s"
        )
