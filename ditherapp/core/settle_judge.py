"""The settle judge: when has the star settled after a dither? One answer for every
backend and mode.

PHD2's own verdict (``SettleDone``) comes from a *smoothed* distance. After its own
dither PHD2 inflates that average first, but after a lock move by ``set_lock_position``
it does not, so PHD2 may call the star "in range" while it is still pixels away (the
real-PHD2 transcript ``h-lock-position-and-exposure`` reads 1.99 px right after a 5 px
move). The legacy socket server has no settle events at all. So ditherapp judges the
settle itself, from the best distance each backend has: the raw GuideStep distance to
the (new) lock position on the event server, PHD2's REQDIST on the legacy one. PHD2's
``SettleDone`` is a second signal: a failure ends the settle, a success alone does not.

The exception is PHD2's own ``dither`` (``phd2_decides``): there PHD2 inflates its
smoothed distance first, so its ``SettleDone`` is sound, and its smoothing makes it
later than the same rule read from the raw distances. Ending on the raw reading would
resume saving a frame or more before PHD2 has settled, and a noisy raw distance that
crosses the target now and then would keep a settle going that PHD2 calls done. So in
that case PHD2's success ends the settle under PHD2's rule, and our own reading of
that rule does not end it first; the calm rule, PHD2's failures and the hard limit
(``settlemax``, the user's "never hold saving longer than this") still do.

Two rules can end a settle successfully:

* ``EndRule.PHD2``: PHD2's rule. The distance stays within ``target_px`` for ``time_s``
  seconds in a row (any frame outside, or a lost star, restarts the stopwatch).
* ``EndRule.CALM`` (``mode="calm"``): the guiding is back to what it was before the
  dither. The last ``calm_frames`` distances are all within the target *and* their
  mean square is no more than the baseline's would be in 19 windows out of 20: the
  95th percentile of a chi-square with ``2 * calm_frames`` degrees of freedom, scaled
  to the baseline's mean square distance. A star still on its way in (or overshooting)
  carries an excess that fails that test; one guiding as well as before passes it at
  once, without waiting out PHD2's fixed time. Without a baseline (too little guiding
  before the dither) calm mode falls back to PHD2's rule.

It fails on PHD2's failed ``SettleDone`` and on the hard limit ``timeout_s``
(``settlemax``), whichever comes first. Time is the caller's clock (seconds); nothing
here does I/O. The feeder must hand over only distances measured against the new lock
position: GuideSteps that arrive after the dither was accepted (SettleBegin) or, for a
lock move, after PHD2 reported the new lock position.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from ditherapp.core.guiding_stats import ErrorStats

TIMEOUT_REASON = "timed-out waiting for guider to settle"
"""PHD2's own wording for a settle that ran out of time."""

CALM_QUANTILE = 0.95
"""How often a window of frames guided exactly as well as the baseline passes the calm
test. Higher settles calm stars sooner and lets more unsettled ones through."""

CALM_FLOOR_PX = 0.05
"""The smallest baseline RMS the calm test works from: a baseline of noiseless frames
(a simulator, a bright star in perfect seeing) must not make the test unpassable."""

MIN_CALM_FRAMES = 2


class SettleMode(StrEnum):
    PHD2 = "phd2"
    CALM = "calm"


class EndRule(StrEnum):
    """Which rule ended the settle: shown in the settle graph and the ledger."""

    PHD2 = "phd2"
    """In range for the settle time: PHD2's rule, judged on the distances fed."""
    CALM = "calm"
    """In range, and the last few frames guided as well as before the dither."""
    TIMEOUT = "timeout"
    """``settlemax`` passed first."""
    FAILED = "failed"
    """PHD2 said the settle failed (its timeout, star lost, guiding stopped)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleCriteria:
    target_px: float
    """Settle distance, guide pixels."""
    time_s: float
    """Seconds the distance must stay in range (PHD2's ``time``)."""
    timeout_s: float
    """The hard limit (``settlemax``)."""
    mode: str = SettleMode.PHD2
    calm_frames: int = 3
    """Frames in the calm window."""
    phd2_decides: bool = False
    """PHD2's ``SettleDone`` is sound (after its own dither): its success ends the
    settle under PHD2's rule, and the raw distances do not end that rule first."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_px) and self.target_px > 0):
            raise ValueError(
                f"settle target must be a positive number of pixels, not {self.target_px}"
            )
        if not (math.isfinite(self.time_s) and self.time_s >= 0):
            raise ValueError(f"settle time must be zero or more seconds, not {self.time_s}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(
                f"settle timeout must be a positive number of seconds, not {self.timeout_s}"
            )
        if self.mode not in tuple(SettleMode):
            raise ValueError(f"settle mode must be phd2 or calm, not {self.mode!r}")
        if self.calm_frames < MIN_CALM_FRAMES:
            raise ValueError(f"the calm window needs at least {MIN_CALM_FRAMES} frames")


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleVerdict:
    settled: bool
    rule: EndRule
    at: float
    """When it was decided, on the caller's clock."""
    elapsed_s: float
    """Since the judge started."""
    error: str | None = None


def chi2_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of a chi-square with an even number ``dof`` of degrees of
    freedom, whose CDF has a closed form: 1 - exp(-x/2) * sum((x/2)^k / k!, k < dof/2)."""
    if dof <= 0 or dof % 2:
        raise ValueError("dof must be a positive even number")
    if not 0.0 < p < 1.0:
        raise ValueError("p must be between 0 and 1")
    half = dof // 2

    def cdf(x: float) -> float:
        y = x / 2.0
        term = 1.0
        total = 1.0
        for k in range(1, half):
            term *= y / k
            total += term
        return 1.0 - math.exp(-y) * total

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        hi *= 2.0
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if cdf(mid) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def calm_limit(baseline: ErrorStats, frames: int, quantile: float = CALM_QUANTILE) -> float:
    """The largest mean square distance (px²) over ``frames`` frames that still counts as
    guiding as well as ``baseline``."""
    rms = max(baseline.distance_rms, CALM_FLOOR_PX)
    dof = 2 * frames
    return rms * rms * chi2_quantile(quantile, dof) / dof


class SettleJudge:
    """Judges one settle. Feed it every guide frame's distance; it answers once."""

    def __init__(
        self, criteria: SettleCriteria, started_at: float, baseline: ErrorStats | None = None
    ) -> None:
        self.criteria = criteria
        self.started_at = started_at
        self.baseline = baseline
        self._calm_limit = (
            calm_limit(baseline, criteria.calm_frames)
            if baseline is not None and criteria.mode == SettleMode.CALM
            else None
        )
        self._window: deque[float] = deque(maxlen=criteria.calm_frames)
        self._in_range_since: float | None = None
        self._last_t: float | None = None
        self._verdict: SettleVerdict | None = None
        self.frames = 0
        """Distances fed so far."""
        self.phd2_settled_at: float | None = None
        """When PHD2 said it had settled (its SettleDone with status 0), if it has."""
        self.longest_broken_run_s = 0.0
        """The longest time in range that ended out of range (or with the star lost):
        a settle time longer than this would not have called any of them settled."""

    @property
    def verdict(self) -> SettleVerdict | None:
        return self._verdict

    @property
    def calm_available(self) -> bool:
        """Whether the calm rule can end this settle (calm mode, with a baseline)."""
        return self._calm_limit is not None

    @property
    def calm_limit_px2(self) -> float | None:
        return self._calm_limit

    @property
    def in_range_since(self) -> float | None:
        return self._in_range_since

    def in_range_s(self, t: float) -> float:
        """How long the star has been in range at ``t`` (0 when it is not)."""
        if self._in_range_since is None:
            return 0.0
        return max(0.0, t - self._in_range_since)

    def feed(self, t: float, distance_px: float) -> SettleVerdict | None:
        """One guide frame's distance to the lock position, at ``t``. Returns the verdict
        once there is one (and the same verdict on every later call). As in PHD2, a
        frame that meets a rule on the deadline settles rather than times out (call
        ``check`` on a timer so the deadline is not met late). ``math.inf`` says
        "out of range, by an unknown amount" (a capped REQDIST); NaN or a negative
        distance is ignored."""
        if self._verdict is not None:
            return self._verdict
        if not math.isfinite(t):
            return None
        if math.isnan(distance_px) or distance_px < 0:
            return self.check(t)
        if self._last_t is not None and t < self._last_t:
            t = self._last_t  # a clock that went backwards does not rewind the stopwatch
        self._last_t = t
        self.frames += 1
        self._window.append(distance_px)
        if distance_px <= self.criteria.target_px:
            if self._in_range_since is None:
                self._in_range_since = t
            if self.in_range_s(t) >= self.criteria.time_s and not self.criteria.phd2_decides:
                return self._decide(True, EndRule.PHD2, t)
            if self._is_calm():
                return self._decide(True, EndRule.CALM, t)
        else:
            self._break_run(t)
        return self.check(t)

    def star_lost(self, t: float) -> SettleVerdict | None:
        """PHD2 lost the star: the run in range (and the calm window) start again."""
        if self._verdict is None:
            self._break_run(t)
            self._window.clear()
        return self.check(t)

    def phd2_done(self, t: float, ok: bool, error: str | None = None) -> SettleVerdict | None:
        """PHD2's own SettleDone. A failure ends the settle; a success is noted but does
        not end it while the distances say the star is not there yet (unless
        ``phd2_decides``: then it ends it)."""
        if self._verdict is not None:
            return self._verdict
        if not ok:
            return self._decide(
                False, EndRule.FAILED, t, error or "PHD2 reported the settle failed"
            )
        if self.phd2_settled_at is None:
            self.phd2_settled_at = t
        if self.criteria.phd2_decides:
            return self._decide(True, EndRule.PHD2, t)
        return self.check(t)

    def check(self, t: float) -> SettleVerdict | None:
        """Whether ``settlemax`` has passed at ``t``; call it on a timer as well as per
        frame, since frames may stop coming."""
        if self._verdict is not None:
            return self._verdict
        if t - self.started_at >= self.criteria.timeout_s:
            return self._decide(False, EndRule.TIMEOUT, t, TIMEOUT_REASON)
        return None

    @property
    def in_range_after_s(self) -> float | None:
        """Once settled: how long after the start the star came into range for good."""
        verdict = self._verdict
        if verdict is None or not verdict.settled or self._in_range_since is None:
            return None
        return max(0.0, self._in_range_since - self.started_at)

    def _break_run(self, t: float) -> None:
        if self._in_range_since is not None:
            self.longest_broken_run_s = max(self.longest_broken_run_s, t - self._in_range_since)
        self._in_range_since = None

    def deadline(self) -> float:
        """When ``check`` will time the settle out."""
        return self.started_at + self.criteria.timeout_s

    def _is_calm(self) -> bool:
        limit = self._calm_limit
        window = self._window
        if limit is None or len(window) < self.criteria.calm_frames:
            return False
        if any(d > self.criteria.target_px for d in window):
            return False
        return math.fsum(d * d for d in window) / len(window) <= limit

    def _decide(
        self, settled: bool, rule: EndRule, t: float, error: str | None = None
    ) -> SettleVerdict:
        self._verdict = SettleVerdict(
            settled=settled,
            rule=rule,
            at=t,
            elapsed_s=max(0.0, t - self.started_at),
            error=error,
        )
        return self._verdict
