"""Settings written off the event loop, a burst of changes as one write.

Saving the settings file costs two fsyncs and a rename (about a millisecond, far more on
a slow disk). Done on the event loop for each change, a flood of ``set`` requests froze
every socket for tens of seconds: cameras paused in a settle heard nothing and gave up.
Here a change only records the newest settings; a worker thread writes them at most
``delay_s`` later, and whatever came meanwhile is in that one write (the last value
wins). ``flush`` writes what is still pending, for a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from ditherapp.core.settings import DitherSettings

log = logging.getLogger(__name__)

COALESCE_S = 0.25
"""How long a change waits for the ones after it: well inside the promised second."""


class SettingsSaver:
    def __init__(
        self,
        write: Callable[[DitherSettings], None],
        *,
        delay_s: float = COALESCE_S,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self._write = write
        self.delay_s = delay_s
        self.on_error = on_error
        self._pending: DitherSettings | None = None
        self._task: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._closed = False
        self.writes = 0
        """How many times the file was written (a burst counts once)."""

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def submit(self, settings: DitherSettings) -> None:
        """Save ``settings`` soon; never blocks, never raises."""
        self._pending = settings
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="settings-saver")

    async def _run(self) -> None:
        try:
            while self._pending is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.delay_s):
                        await self._hurry.wait()  # let the rest of a burst come
                await self._write_pending()
        finally:
            self._task = None

    async def _write_pending(self) -> None:
        settings, self._pending = self._pending, None
        if settings is None:
            return
        try:
            await asyncio.to_thread(self._write, settings)
        except OSError as exc:
            self._failed(f"could not save settings: {exc}")
        except Exception as exc:  # the file's adapter must not stop later saves
            log.exception("saving settings failed")
            self._failed(f"could not save settings: {exc}")
        else:
            self.writes += 1

    def _failed(self, message: str) -> None:
        if self.on_error is not None:
            self.on_error(message)
        else:
            log.warning("%s", message)

    async def flush(self) -> None:
        """Write what is pending now and stop taking changes (a clean stop)."""
        self._closed = True
        self._hurry.set()
        task = self._task
        if task is not None:
            # Not cancelled: a write running in its thread would go on behind a newer
            # one and could land last, putting older values back.
            await asyncio.shield(task)
        await self._write_pending()
