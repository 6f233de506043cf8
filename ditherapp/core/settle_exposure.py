"""Short guide exposures while settling (``settleexposure``): the policy, without I/O.

PHD2 judges a settle once per guide frame, so a 2 s exposure needs many seconds just to
see the star back in range. For the settle, PHD2 is switched to the shortest exposure
it offers (``get_exposure_durations``) of at least ``settleexposure``; the user's own
exposure goes back the moment the settle ends, however it ends.

What the adapter must do with the answers here:

* write the :class:`ExposureRestore` to disk (and flush it) **before** it changes PHD2's
  exposure, so that a crash, a kill or a lost link never leaves PHD2 at the short
  exposure: whoever connects next puts it back (:func:`restore_to`);
* put the exposure back only if PHD2 is still at the short one we set: a user who chose
  another exposure meanwhile (PHD2 says so with a ``GuideParamChange``) wins.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_MS = re.compile(r"\s*(\d+)\s*ms\s*$")

MAX_EXPOSURE_MS = 3_600_000
"""An hour: anything longer in a restore file is not an exposure PHD2 had."""


def parse_exposure_value(text: str) -> int | None:
    """The exposure a ``GuideParamChange`` named "Exposure" reports: "500 ms" is 500;
    PHD2's auto exposure ("Auto (min = ...)") and anything else is None."""
    match = _MS.match(text)
    return int(match.group(1)) if match else None


def choose_settle_exposure(
    durations_ms: Iterable[object], wanted_s: float, current_ms: int
) -> int | None:
    """The exposure to settle at: PHD2's shortest of at least ``wanted_s``, or None when
    ``settleexposure`` is off, PHD2 offers none that long, or it would not be shorter
    than the exposure PHD2 already uses (nothing to gain, nothing to restore)."""
    if not (math.isfinite(wanted_s) and wanted_s > 0):
        return None
    wanted_ms = wanted_s * 1000.0
    offered = sorted(
        {
            int(d)
            for d in durations_ms
            if isinstance(d, int | float) and not isinstance(d, bool) and math.isfinite(d) and d > 0
        }
    )
    for duration in offered:
        if duration >= wanted_ms - 1e-6:
            return duration if duration < current_ms else None
    return None


class BadRestoreRecord(ValueError):  # noqa: N818 - it says what the file is
    """A restore file that is not one we wrote (torn, edited, another program's)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposureRestore:
    """What to put back, kept on disk while PHD2 guides at the short exposure."""

    restore_ms: int
    """The user's exposure, to put back."""
    short_ms: int
    """The exposure we set; PHD2 at any other one means someone else changed it."""

    def to_json(self) -> str:
        return json.dumps({"restore_ms": self.restore_ms, "short_ms": self.short_ms})

    @classmethod
    def from_json(cls, text: str) -> ExposureRestore:
        """Raises BadRestoreRecord, saying what is wrong, for anything but a record we
        wrote."""
        try:
            obj: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BadRestoreRecord(f"not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise BadRestoreRecord("not a JSON object")
        values = []
        for key in ("restore_ms", "short_ms"):
            value = obj.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BadRestoreRecord(f"{key} must be a whole number of milliseconds")
            if not 0 < value <= MAX_EXPOSURE_MS:
                raise BadRestoreRecord(f"{key} {value} is not an exposure")
            values.append(value)
        return cls(restore_ms=values[0], short_ms=values[1])


def restore_to(record: ExposureRestore, current_ms: int | None) -> int | None:
    """The exposure to set now that the settle is over, or None to leave PHD2 alone.

    ``current_ms`` is PHD2's exposure as asked just now (None if it could not be asked:
    then only the short one can be there, unless the user changed it, which the caller
    knows from ``GuideParamChange``)."""
    if current_ms is not None and current_ms != record.short_ms:
        return None  # the user's choice (or already put back): theirs wins
    return record.restore_ms


class SettleExposure:
    """One settle's switch to the short exposure and back.

    ``begin`` says what to write to disk and what to set; ``param_changed`` is fed every
    ``GuideParamChange`` for "Exposure" while it runs; ``restore`` says what to set at the
    end (None: leave PHD2 as it is)."""

    def __init__(self, record: ExposureRestore) -> None:
        self.record = record
        self.user_changed = False
        self.ended = False

    @classmethod
    def begin(
        cls, durations_ms: Iterable[object], wanted_s: float, current_ms: int
    ) -> SettleExposure | None:
        short = choose_settle_exposure(durations_ms, wanted_s, current_ms)
        if short is None:
            return None
        return cls(ExposureRestore(restore_ms=current_ms, short_ms=short))

    def param_changed(self, value_text: str) -> None:
        """PHD2 reports its exposure changed: ours is the short one (PHD2 echoes our own
        set_exposure); anything else, auto exposure included, is the user's."""
        if self.ended:
            return
        if parse_exposure_value(value_text) != self.record.short_ms:
            self.user_changed = True

    def restore(self, current_ms: int | None) -> int | None:
        self.ended = True
        if self.user_changed:
            return None
        return restore_to(self.record, current_ms)
