"""Capped, jittered exponential delays between reconnection attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    first_s: float = 1.0
    cap_s: float = 30.0
    attempts: int = 0
    _random: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        """The wait before the next attempt: doubles up to the cap, jittered by up to
        a quarter so that several clients do not reconnect in step."""
        base = min(self.cap_s, self.first_s * float(1 << min(self.attempts, 16)))
        self.attempts += 1
        return max(self.first_s, base * (1.0 - 0.25 * self._random.random()))

    def reset(self) -> None:
        self.attempts = 0
