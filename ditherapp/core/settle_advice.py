"""Settle suggestions from the dither ledger: what the recorded settles say the settle
settings could be. Nothing here changes a setting; the window offers each suggestion
and a click applies it.

The ledger lines of this session and earlier ones are grouped by PHD2 profile (only
the current profile's dithers count: another rig settles differently), then by dither
pattern and amount. Per group: how many dithers, the median and 90th-percentile time to
settle, and the failures. Two suggestions can come of a group with enough settled
dithers (``MIN_DITHERS``):

* **settle time** (``settledelay``). Each judged settle records when the star came into
  range for good (``in_range_after_s``) and the longest stretch in range that did *not*
  last (``broken_run_s``: the star went out again). Any settle time longer than every
  such stretch would have ended each recorded settle at the same final entry into
  range, only sooner: it is offered when it is shorter than the current one.
* **settle timeout** (``settlemax``): when no dither failed, the longest settle with a
  margin (``TIMEOUT_MARGIN``), if well under the current limit: a stuck settle then
  costs less.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_DITHERS = 10
"""Settled dithers a group needs before anything is suggested from it."""
SETTLE_TIME_MARGIN_S = 1.0
"""Added to the longest stretch in range that did not last."""
TIMEOUT_MARGIN = 2.0
"""A suggested settle timeout is this many times the longest recorded settle..."""
TIMEOUT_MIN_S = 20
"""...and never less than this."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleRecord:
    """The part of one ledger line that suggestions read."""

    pattern: str
    amount: float
    settled: bool
    failed: bool
    settle_s: float | None
    in_range_after_s: float | None
    broken_run_s: float | None
    settle_time: float | None
    profile: str | None

    @classmethod
    def from_ledger(cls, line: Mapping[str, Any]) -> SettleRecord | None:
        """None for a line that is not a dither that moved the mount (refused, lost,
        torn or from another program)."""
        outcome = line.get("outcome")
        if outcome not in ("settled", "settle_failed", "timed_out"):
            return None
        amount = _number(line.get("amount"))
        if amount is None:
            return None
        pattern = line.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            pattern = "RA only" if line.get("ra_only") is True else "random"
        settle = line.get("settle")
        settle_time = _number(settle.get("time")) if isinstance(settle, Mapping) else None
        profile = line.get("phd2_profile")
        return cls(
            pattern=pattern,
            amount=amount,
            settled=outcome == "settled",
            failed=outcome != "settled",
            settle_s=_number(line.get("settle_s")),
            in_range_after_s=_number(line.get("in_range_after_s")),
            broken_run_s=_number(line.get("broken_run_s")),
            settle_time=settle_time,
            profile=profile if isinstance(profile, str) else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Suggestion:
    setting: str
    value: int
    text: str
    """What it is based on and what it would change, for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GroupAdvice:
    pattern: str
    amount: float
    dithers: int
    failures: int
    median_settle_s: float | None
    p90_settle_s: float | None
    summary: str
    suggestions: tuple[Suggestion, ...]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..1) percentile, linear between the closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def advise(
    lines: Iterable[Mapping[str, Any]],
    *,
    profile: str | None,
    settle_time: float,
    settle_timeout: float,
    min_dithers: int = MIN_DITHERS,
) -> list[GroupAdvice]:
    """Advice per dither pattern and amount, from ledger ``lines`` of ``profile``;
    groups with fewer than ``min_dithers`` dithers are left out."""
    groups: dict[tuple[str, float], list[SettleRecord]] = {}
    for line in lines:
        record = SettleRecord.from_ledger(line)
        if record is None or record.profile != profile:
            continue
        groups.setdefault((record.pattern, record.amount), []).append(record)
    advice = []
    for (pattern, amount), records in sorted(groups.items()):
        if len(records) < min_dithers:
            continue
        advice.append(_group(pattern, amount, records, settle_time, settle_timeout, min_dithers))
    return advice


def _group(  # noqa: PLR0917 - one private call site
    pattern: str,
    amount: float,
    records: list[SettleRecord],
    settle_time: float,
    settle_timeout: float,
    min_dithers: int,
) -> GroupAdvice:
    settled = [r for r in records if r.settled and r.settle_s is not None]
    failures = sum(r.failed for r in records)
    times = [r.settle_s for r in settled if r.settle_s is not None]
    median = percentile(times, 0.5) if times else None
    p90 = percentile(times, 0.9) if times else None
    name = f"{pattern} dithers of {amount:g} px"
    summary = f"{name} ({len(records)}): "
    if median is not None and p90 is not None:
        summary += f"settled in {median:.1f} s median, {p90:.1f} s at the 90th percentile"
    else:
        summary += "none settled"
    summary += f", {failures} failed" if failures else ", none failed"
    suggestions: list[Suggestion] = []
    judged = [r for r in settled if r.in_range_after_s is not None and r.broken_run_s is not None]
    if len(judged) >= min_dithers:
        longest_broken = max(r.broken_run_s or 0.0 for r in judged)
        wanted = max(1, math.ceil(longest_broken + SETTLE_TIME_MARGIN_S))
        entered = [r.in_range_after_s or 0.0 for r in judged]
        if wanted < settle_time:
            suggestions.append(
                Suggestion(
                    setting="settledelay",
                    value=wanted,
                    text=f"The star was in range for good after {percentile(entered, 0.95):.1f}"
                    f" s in 95 % of {name}, and never left it again after {longest_broken:.1f} s"
                    f" in range: a settle time of {wanted} s instead of {settle_time:g} s would"
                    f" have been enough for all {len(judged)}.",
                )
            )
    if not failures and times:
        limit = max(TIMEOUT_MIN_S, math.ceil(max(times) * TIMEOUT_MARGIN))
        if limit < settle_timeout * 0.75:
            suggestions.append(
                Suggestion(
                    setting="settlemax",
                    value=limit,
                    text=f"No {name} failed and the longest took {max(times):.1f} s: a settle "
                    f"timeout of {limit} s instead of {settle_timeout:g} s would lose less time "
                    "when a settle gets stuck.",
                )
            )
    return GroupAdvice(
        pattern=pattern,
        amount=amount,
        dithers=len(records),
        failures=failures,
        median_settle_s=median,
        p90_settle_s=p90,
        summary=summary,
        suggestions=tuple(suggestions),
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None
