"""What a dither asks of the guider and what comes back, whichever backend runs it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from ditherapp.core.guiding_stats import ErrorStats
from ditherapp.core.phd2.rpc import dither_params, phd2_number


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherRequest:
    amount: float
    ra_only: bool
    settle_pixels: float
    settle_time: float
    settle_timeout: float
    settle_mode: str = "phd2"
    """"phd2" or "calm": the rule our settle judge applies (PHD2 is asked for its own)."""
    settle_exposure_s: float = 0.0
    """Guide at PHD2's shortest exposure of at least this while settling; 0 = off."""
    baseline: ErrorStats | None = None
    """The guiding error over the minute before the dither (set as it starts): what the
    calm rule settles back to; None with too little guiding to go on."""

    def rpc_params(self) -> dict[str, object]:
        return dither_params(
            amount=self.amount,
            ra_only=self.ra_only,
            pixels=self.settle_pixels,
            time=self.settle_time,
            timeout=self.settle_timeout,
        )

    def rpc_line(self, request_id: int) -> str:
        """The exact JSON-RPC line the event-server backend sends (``ditherstring``)."""
        params = {
            "amount": phd2_number(self.amount),
            "raOnly": self.ra_only,
            "settle": {
                "pixels": phd2_number(self.settle_pixels),
                "time": int(self.settle_time),
                "timeout": int(self.settle_timeout),
            },
        }
        obj = {"method": "dither", "params": params, "id": request_id}
        return json.dumps(obj, separators=(",", ":"))


class OutcomeKind(StrEnum):
    SETTLED = "settled"
    """PHD2 reported the settle done."""
    SETTLE_FAILED = "settle_failed"
    """PHD2 dithered but reported a failed settle (timeout, guiding stopped, ...)."""
    REFUSED = "refused"
    """The dither was not started (PHD2 not guiding, already settling, an error reply)."""
    TIMED_OUT = "timed_out"
    """No settle report within our own deadline; the mount may or may not have settled."""
    LOST = "lost"
    """The link to PHD2 dropped mid-dither; the outcome is unknown."""

    @property
    def moved(self) -> bool:
        """Whether the mount may have moved (so frames counted so far are spent)."""
        return self is not OutcomeKind.REFUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class DitherOutcome:
    kind: OutcomeKind
    message: str = ""
    settle_s: float | None = None
    total_frames: int | None = None
    dropped_frames: int | None = None
    rule: str | None = None
    """Which rule ended the settle (``settle_judge.EndRule``): phd2, calm, timeout or
    failed; None when no settle was judged (refused, lost, our own deadline)."""
    in_range_after_s: float | None = None
    """Settled: how long after the settle began the star came into range for good."""
    broken_run_s: float | None = None
    """The longest stretch in range that did not last (the star went out again)."""
    profile: str | None = None
    """PHD2's equipment profile (suggestions compare settles of one profile only)."""

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.SETTLED
