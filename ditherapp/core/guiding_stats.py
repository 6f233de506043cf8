"""Guiding error over time, from PHD2's GuideStep distances: one place for the arithmetic.

Several policies ask the same question of the guide history: how well was the mount
guiding over some stretch of time? The settle judge wants the baseline before a dither,
the cost measurement wants the error during the first saved frame after it, the frame
guard wants the error over an exposure, and the window shows PHD2-style RMS figures. All
of them read a :class:`GuideHistory`, fed with one :class:`GuideSample` per GuideStep.

Distances are PHD2's raw ones (``RADistanceRaw``/``DECDistanceRaw``, guide pixels, from
the lock position), not the smoothed ``AvgDist`` or settle ``Distance``. Time is the
caller's clock (monotonic seconds), so the module stays free of I/O.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ditherapp.core.phd2.events import GuideStep

DEFAULT_KEEP_S = 900.0
"""How much history a GuideHistory keeps: enough for a baseline and a long exposure."""
BASELINE_WINDOW_S = 60.0
"""The stretch before a dither whose guiding is the baseline to settle back to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GuideSample:
    t: float
    """When the GuideStep arrived, on the caller's clock (seconds)."""
    ra: float
    """Raw RA distance from the lock position, guide pixels."""
    dec: float
    """Raw Dec distance from the lock position, guide pixels."""

    @property
    def distance(self) -> float:
        return math.hypot(self.ra, self.dec)

    @classmethod
    def from_step(cls, step: GuideStep, t: float) -> GuideSample:
        return cls(t=t, ra=step.ra_distance_raw, dec=step.dec_distance_raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorStats:
    """Guiding error over some samples, in guide pixels."""

    count: int
    ra_rms: float
    """RA error about its mean, as PHD2's graph shows it."""
    dec_rms: float
    dec_mean: float
    ra_mean: float
    total_rms: float
    """``hypot(ra_rms, dec_rms)``: PHD2's "Tot" RMS."""
    distance_rms: float
    """RMS distance from the lock position (mean not removed): how far the star was from
    where it should be, which is what a settle or a frame's sharpness depends on."""
    peak: float
    """The largest single distance from the lock position."""

    def scaled(self, arcsec_per_px: float) -> ErrorStats:
        """The same figures in arc-seconds (or any unit per guide pixel)."""
        k = arcsec_per_px
        return ErrorStats(
            count=self.count,
            ra_rms=self.ra_rms * k,
            dec_rms=self.dec_rms * k,
            ra_mean=self.ra_mean * k,
            dec_mean=self.dec_mean * k,
            total_rms=self.total_rms * k,
            distance_rms=self.distance_rms * k,
            peak=self.peak * k,
        )


def error_stats(samples: Iterable[GuideSample]) -> ErrorStats | None:
    """The error over ``samples``, or None when there are none."""
    ras: list[float] = []
    decs: list[float] = []
    for s in samples:
        ras.append(s.ra)
        decs.append(s.dec)
    n = len(ras)
    if n == 0:
        return None
    ra_mean = math.fsum(ras) / n
    dec_mean = math.fsum(decs) / n
    ra_rms = math.sqrt(math.fsum((r - ra_mean) ** 2 for r in ras) / n)
    dec_rms = math.sqrt(math.fsum((d - dec_mean) ** 2 for d in decs) / n)
    squares = [r * r + d * d for r, d in zip(ras, decs, strict=True)]
    return ErrorStats(
        count=n,
        ra_rms=ra_rms,
        dec_rms=dec_rms,
        ra_mean=ra_mean,
        dec_mean=dec_mean,
        total_rms=math.hypot(ra_rms, dec_rms),
        distance_rms=math.sqrt(math.fsum(squares) / n),
        peak=math.sqrt(max(squares)),
    )


class GuideHistory:
    """The GuideSteps of the last ``keep_s`` seconds, in arrival order.

    Samples are expected in time order; one older than the newest is dropped (a clock
    that went backwards must not reorder history). ``break_at`` marks that guiding was
    interrupted (star lost, guiding stopped, PHD2 gone): a baseline never spans one.
    """

    def __init__(self, keep_s: float = DEFAULT_KEEP_S) -> None:
        if not keep_s > 0:
            raise ValueError("keep_s must be positive")
        self.keep_s = keep_s
        self._samples: deque[GuideSample] = deque()
        self._times: deque[float] = deque()
        self._breaks: deque[float] = deque()

    def __len__(self) -> int:
        return len(self._samples)

    @property
    def newest(self) -> GuideSample | None:
        return self._samples[-1] if self._samples else None

    def add(self, sample: GuideSample) -> bool:
        """Keep ``sample``; False (and ignored) if it is older than the newest or not a
        finite number."""
        if not (math.isfinite(sample.t) and math.isfinite(sample.ra) and math.isfinite(sample.dec)):
            return False
        if self._times and sample.t < self._times[-1]:
            return False
        self._samples.append(sample)
        self._times.append(sample.t)
        self._trim(sample.t)
        return True

    def add_step(self, step: GuideStep, t: float) -> bool:
        return self.add(GuideSample.from_step(step, t))

    def break_at(self, t: float) -> None:
        """Guiding was interrupted at ``t``: stretches that span it are not one baseline."""
        if math.isfinite(t) and (not self._breaks or t >= self._breaks[-1]):
            self._breaks.append(t)

    def clear(self) -> None:
        self._samples.clear()
        self._times.clear()
        self._breaks.clear()

    def between(self, start: float, end: float) -> Sequence[GuideSample]:
        """Samples with ``start <= t <= end``."""
        lo = bisect.bisect_left(self._times, start)
        hi = bisect.bisect_right(self._times, end)
        return [self._samples[i] for i in range(lo, hi)]

    def last(self, n: int) -> Sequence[GuideSample]:
        if n <= 0:
            return []
        return list(self._samples)[-n:]

    def stats(self, start: float, end: float) -> ErrorStats | None:
        return error_stats(self.between(start, end))

    def baseline(
        self, before: float, window_s: float = BASELINE_WINDOW_S, *, min_samples: int = 5
    ) -> ErrorStats | None:
        """The guiding error over the ``window_s`` before ``before``, cut at the last
        interruption; None with fewer than ``min_samples`` GuideSteps to go on."""
        start = before - window_s
        for b in reversed(self._breaks):
            if b < before:
                start = max(start, b)
                break
        samples = [s for s in self.between(start, before) if s.t < before]
        if len(samples) < min_samples:
            return None
        return error_stats(samples)

    def _trim(self, now: float) -> None:
        cutoff = now - self.keep_s
        while self._times and self._times[0] < cutoff:
            self._times.popleft()
            self._samples.popleft()
        while self._breaks and self._breaks[0] < cutoff:
            self._breaks.popleft()
