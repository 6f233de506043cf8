"""Short guide exposures while settling, carried out on PHD2's event server.

``ExposureKeeper`` switches PHD2 to the settle exposure chosen by
``core.settle_exposure`` and back. The exposure to put back is on disk (written and
flushed before PHD2's exposure changes) until it is back, so a crash, a kill, PHD2's
link dropping or ditherapp quitting mid-settle never leaves PHD2 at the short exposure:
the keeper puts it back at every (re)connection, including the first after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ditherapp.core.errors import ConnectionLost
from ditherapp.core.phd2 import events as ev
from ditherapp.core.settle_exposure import ExposureRestore, SettleExposure, restore_to
from ditherapp.net.phd2_client import LinkStatus, Phd2Client, Phd2RpcError

log = logging.getLogger(__name__)

RESTORE_TIME_LIMIT_S = 5.0
"""How long one get/set_exposure may take when putting the exposure back."""
QUIT_RESTORE_S = 3.0
"""How long a quitting ditherapp waits for PHD2 to take the exposure back."""


class RestoreFile:
    """The exposure to put back, on disk (or only in memory when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: ExposureRestore | None = None

    def save(self, record: ExposureRestore) -> None:
        """Write ``record`` durably: a temporary file, flushed and fsynced, renamed over
        the old one. Raises OSError (the caller then leaves PHD2's exposure alone)."""
        self._memory = record
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    def load(self) -> ExposureRestore | None:
        if self.path is None:
            return self._memory
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("could not read the settle exposure to restore (%s): %s", self.path, exc)
            return self._memory
        try:
            return ExposureRestore.from_json(text)
        except ValueError as exc:
            log.warning("ignoring %s: %s", self.path, exc)
            self.clear()
            return None

    def clear(self) -> None:
        self._memory = None
        if self.path is not None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s", self.path, exc)


class ExposureKeeper:
    """Sets the settle exposure for a dither and puts the user's back."""

    def __init__(self, client: Phd2Client, store: RestoreFile) -> None:
        self.client = client
        self.store = store
        self._lock = asyncio.Lock()
        self._active: SettleExposure | None = None
        self._durations: list[object] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = False
        self.restored: Callable[[int], None] = lambda _ms: None
        """Told the exposure it put back (for the event log)."""
        client.add_event_listener(self._on_event)
        client.add_link_listener(self._on_link)

    def _on_event(self, event: ev.Phd2Event) -> None:
        if (
            isinstance(event, ev.GuideParamChange)
            and self._active is not None
            and str(event.name).lower() == "exposure"
        ):
            self._active.param_changed(str(event.value))

    def _on_link(self, status: LinkStatus) -> None:
        came_up = status.connected and not self._connected
        self._connected = status.connected
        if not status.connected:
            self._durations = None  # another PHD2 (or camera) may answer next time
            return
        if came_up and self._active is None and self.store.load() is not None:
            task = asyncio.get_running_loop().create_task(
                self._restore_left_over(), name="phd2-restore-exposure"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _restore_left_over(self) -> None:
        with contextlib.suppress(ConnectionLost, TimeoutError, Phd2RpcError):
            async with self._lock:
                if self._active is None:
                    await self._put_back_stored()

    async def _put_back_stored(self) -> None:
        """A record from a settle that did not end here (crash, kill, lost link)."""
        record = self.store.load()
        if record is None:
            return
        current = await self._current_ms()
        target = restore_to(record, current)
        if target is not None:
            await self._set(target)
            log.warning(
                "PHD2's guide exposure was left at %d ms by an unfinished settle: put back %d ms",
                record.short_ms,
                target,
            )
            self.restored(target)
        self.store.clear()

    async def shorten(self, current_ms: int, wanted_s: float) -> int:
        """Before the dither: switch to the settle exposure. Returns the user's exposure
        (the one PHD2 had before any settle of ours), whatever happens here."""
        if wanted_s <= 0:
            return current_ms
        async with self._lock:
            if self.store.load() is not None:
                await self._put_back_stored()
                current_ms = await self._current_ms() or current_ms
            if self._durations is None:
                answer = await self.client.request("get_exposure_durations")
                self._durations = list(answer) if isinstance(answer, list) else []
            switch = SettleExposure.begin(self._durations, wanted_s, current_ms)
            if switch is None:
                return current_ms
            try:
                self.store.save(switch.record)
            except OSError as exc:
                log.warning("not shortening the guide exposure: cannot write %s", exc)
                return current_ms
            self._active = switch
            try:
                await self._set(switch.record.short_ms)
            except Phd2RpcError as exc:
                log.warning("PHD2 refused the settle exposure: %s", exc)
                self._active = None
                self.store.clear()
            return current_ms

    async def restore(self) -> None:
        """The settle is over: the user's exposure back, unless they chose another.
        On a lost link the record stays on disk for the next connection."""
        switch = self._active
        if switch is None:
            return
        async with self._lock:
            try:
                try:
                    current = await self._current_ms()
                except Phd2RpcError:
                    current = None
                target = switch.restore(current)
                if target is not None:
                    try:
                        await self._set(target)
                    except Phd2RpcError as exc:
                        log.warning("PHD2 refused the exposure to put back: %s", exc)
            except BaseException:
                # Not put back (the link dropped, we are cancelled): the record stays on
                # disk, for the next connection (or the next start) to put it back.
                if switch.user_changed:
                    self.store.clear()
                raise
            finally:
                self._active = None
            self.store.clear()

    async def restore_on_quit(self) -> None:
        """Restore within QUIT_RESTORE_S, for a dither being cancelled; never raises."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(QUIT_RESTORE_S):
                await self.restore()
        except (ConnectionLost, TimeoutError, Phd2RpcError) as exc:
            log.warning(
                "could not put PHD2's exposure back before quitting (%s, %.1f s): it is put "
                "back at the next start",
                exc,
                time.monotonic() - started,
            )

    async def _current_ms(self) -> int | None:
        value = await self.client.request("get_exposure", time_limit=RESTORE_TIME_LIMIT_S)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return None

    async def _set(self, exposure_ms: int) -> None:
        await self.client.request(
            "set_exposure", [int(exposure_ms)], time_limit=RESTORE_TIME_LIMIT_S
        )
