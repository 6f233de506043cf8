"""Numbers as a user reads them: durations, counts, pixel distances."""

from __future__ import annotations

import math

NONE = "\u2013"
"""Shown for a value not known yet (an en dash)."""


def duration(seconds: float | None) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}".replace(",", "\u2009")


def pixels(value: float | None, decimals: int = 2) -> str:
    return NONE if value is None else f"{value:.{decimals}f} px"


RULE_WORDS = {
    "phd2": "PHD2's rule",
    "calm": "calm: guiding back to the baseline",
    "timeout": "settle timeout",
    "failed": "PHD2 reported a failure",
}
"""How the settle graph and the last-dither line name the rule that ended a settle."""
