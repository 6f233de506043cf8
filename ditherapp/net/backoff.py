"""Capped, jittered exponential delays between reconnection attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


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


async def reconnect_forever(
    session: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff,
    wake: asyncio.Event,
    errors: tuple[type[BaseException], ...],
    on_error: Callable[[str], None],
    on_wait: Callable[[float], None],
) -> None:
    """Run ``session`` again and again (until cancelled), waiting out the backoff between
    attempts; ``wake`` cuts a wait short (a user's "reconnect now")."""
    while True:
        wake.clear()  # a "reconnect now" from here on cuts the next wait short
        try:
            await session()
        except errors as exc:
            on_error(str(exc) or type(exc).__name__)
        except Exception as exc:
            # Whatever went wrong, the link must come back: one odd failure (an old
            # PHD2's reply, a host name that does not encode) may not end it for good.
            log.exception("unexpected failure of the connection")
            on_error(f"{type(exc).__name__}: {exc}")
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # On 3.11 a task group can report a child's error and drop the cancel that
            # came with it: a stop must still stop us.
            raise asyncio.CancelledError
        delay = backoff.next_delay()
        on_wait(delay)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()
