"""The guider the ``phd2backend`` setting names, replaceable while ditherapp runs.

The service holds one ``GuiderSwitch`` for the whole session; when the user picks
another PHD2 protocol, the runtime builds the new backend and hands it to ``use``. The
old one stops (its connection closes), the service is told the link as the new one sees
it, so a dither in progress ends as lost and the cameras resume at once, as on any
dropped link.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ditherapp.core.dither import DitherOutcome, DitherRequest
from ditherapp.core.phd2 import events as ev
from ditherapp.net.guider import Guider
from ditherapp.net.listeners import Listeners
from ditherapp.net.phd2_client import LinkStatus

log = logging.getLogger(__name__)


class GuiderSwitch:
    def __init__(self, guider: Guider) -> None:
        self._guider = guider
        self._events: Listeners[ev.Phd2Event] = Listeners("PHD2 event")
        self._links: Listeners[LinkStatus] = Listeners("PHD2 link")
        self._unhook = self._hook(guider)
        self._switched = asyncio.Event()

    @property
    def guider(self) -> Guider:
        """The backend in use now."""
        return self._guider

    def use(self, guider: Guider) -> None:
        """Talk to PHD2 through ``guider`` from now on; the old backend stops."""
        if guider is self._guider:
            return
        self._unhook()
        self._guider = guider
        self._unhook = self._hook(guider)
        self._switched.set()
        self._links(guider.status)

    def _hook(self, guider: Guider) -> Callable[[], None]:
        removers = (
            guider.add_event_listener(self._events),
            guider.add_link_listener(self._links),
        )

        def unhook() -> None:
            for remove in removers:
                remove()

        return unhook

    # ---------------------------------------------------------------- the Guider protocol

    @property
    def backend(self) -> str:
        return self._guider.backend

    @property
    def status(self) -> LinkStatus:
        return self._guider.status

    @property
    def profile(self) -> str | None:
        """PHD2's equipment profile, where the backend can tell (the legacy port cannot)."""
        profile = getattr(self._guider, "profile", None)
        return profile if isinstance(profile, str) else None

    @property
    def poll_s(self) -> float | None:
        return getattr(self._guider, "poll_s", None)

    @poll_s.setter
    def poll_s(self, value: float) -> None:
        if hasattr(self._guider, "poll_s"):
            self._guider.poll_s = value

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        return self._events.add(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        return self._links.add(callback)

    async def run(self) -> None:
        """Run the backend in use; when ``use`` names another, stop it and run that."""
        while True:
            self._switched.clear()
            running = asyncio.ensure_future(self._guider.run())
            switched = asyncio.ensure_future(self._switched.wait())
            try:
                done, _ = await asyncio.wait(
                    {running, switched}, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                switched.cancel()
                if not running.done():
                    running.cancel()
                    # Wait for it without taking its CancelledError for ours: a stop
                    # that comes now must still stop this loop.
                    await asyncio.wait({running})
            if switched not in done:
                running.result()  # the backend ended by itself: say why, as it would
                return
            failure = None if running.cancelled() else running.exception()
            if failure is not None:
                log.warning("the PHD2 backend switched away from had failed: %s", failure)

    def reconnect_now(self) -> None:
        self._guider.reconnect_now()

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:
        self._guider.retarget(host, event_port, legacy_port)

    def prepare(self) -> None:
        self._guider.prepare()

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome:
        return await self._guider.dither(request, on_settle_started)
