"""What a dither cost and what it bought, measured from the camera frames around it.

* **Imaging time lost**: from the end of the frame that made the dither due to the
  start of the next frame that was saved (per camera; the dither's figure is the
  longest). It is what the night pays: the pause, the dither, the settle, the frame
  skipped after it, the time to put the exposure back.
* **Settle time**: from the start of the settle to its end (the guider's figure).
* **First saved frame's guiding error** against the **baseline**: the RMS distance from
  the lock position over the first saved frame's exposure, from the GuideStep history,
  beside the same figure over the minute before the dither. A settle that ended too
  early shows here as a first frame guided worse than the baseline.

The machine makes one :class:`CostMeter` per dither when the cycle ends, feeds it the
frames that follow, and writes the ledger line once it is complete (every camera saved
a frame, left, or ran past its deadline).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ditherapp.core.guiding_stats import ErrorStats, GuideHistory


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherCost:
    lost_imaging_s: float | None = None
    """End of the trigger frame to the start of the next saved frame (longest camera)."""
    settle_s: float | None = None
    first_frame_rms: float | None = None
    """RMS distance from the lock position during the first saved frame (guide px)."""
    baseline_rms: float | None = None
    """The same over the minute before the dither (guide px)."""

    @property
    def first_frame_ratio(self) -> float | None:
        """First frame's error over the baseline's (1.0 = guided as well as before)."""
        if self.first_frame_rms is None or not self.baseline_rms:
            return None
        return self.first_frame_rms / self.baseline_rms

    def as_dict(self) -> dict[str, float | None]:
        def r(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "lost_imaging_s": r(self.lost_imaging_s, 3),
            "settle_s": r(self.settle_s, 3),
            "first_frame_rms": r(self.first_frame_rms, 3),
            "baseline_rms": r(self.baseline_rms, 3),
        }


@dataclass(slots=True)
class _CameraCost:
    lost_s: float | None = None
    first_frame: ErrorStats | None = None
    done: bool = False


@dataclass(slots=True)
class CostMeter:
    """One dither's cost, completed by the frames the cameras report after it."""

    trigger_end: float
    """When the frame that made the dither due ended (the cycle's start)."""
    settle_end: float
    """When the dither's outcome came: a saved frame reported after it counts."""
    deadline: float
    """After this the cost is what it is: a camera that saved nothing is left out."""
    settle_s: float | None
    baseline: ErrorStats | None
    cameras: dict[str, _CameraCost] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        *,
        cameras: Iterable[str],
        trigger_end: float,
        settle_end: float,
        deadline: float,
        settle_s: float | None,
        baseline: ErrorStats | None,
    ) -> CostMeter:
        meter = cls(
            trigger_end=trigger_end,
            settle_end=settle_end,
            deadline=deadline,
            settle_s=settle_s,
            baseline=baseline,
        )
        for camera in cameras:
            meter.cameras[camera] = _CameraCost()
        return meter

    def frame(
        self,
        camera: str,
        *,
        end: float,
        exposure_s: float,
        saved: bool,
        history: GuideHistory,
    ) -> None:
        """A frame ``camera`` reported at ``end`` (its exposure ended then)."""
        cost = self.cameras.get(camera)
        if cost is None or cost.done or not saved or end < self.settle_end:
            return
        start = end - max(0.0, exposure_s)
        cost.lost_s = max(0.0, start - self.trigger_end)
        cost.first_frame = history.stats(start, end)
        cost.done = True

    def camera_left(self, camera: str) -> None:
        """It will not report the frame (gone, or paused by the user)."""
        cost = self.cameras.get(camera)
        if cost is not None:
            cost.done = True

    def complete(self, now: float) -> bool:
        return now >= self.deadline or all(c.done for c in self.cameras.values())

    def result(self) -> DitherCost:
        measured = [c for c in self.cameras.values() if c.lost_s is not None]
        lost = max((c.lost_s for c in measured if c.lost_s is not None), default=None)
        frames = [c.first_frame for c in measured if c.first_frame is not None]
        # The worst-guided first frame: the one a settle that ended too soon spoils.
        worst = max(frames, key=lambda s: s.distance_rms, default=None)
        return DitherCost(
            lost_imaging_s=lost,
            settle_s=self.settle_s,
            first_frame_rms=None if worst is None else worst.distance_rms,
            baseline_rms=None if self.baseline is None else self.baseline.distance_rms,
        )
