"""Helpers for the window's tests, handed out as fixtures (test modules are imported
with importlib and cannot import one another).

Most tests drive the real ``DitherService`` through a ``FakeGuider`` (PHD2 as a test
plays it: connect, drop, send events, answer a dither when told) and ``FakeCamera``
links that behave like the SharpCap hook. Async tests run on pytest-asyncio's loop and
let Qt run by polling ``processEvents`` while they wait on a condition (``until``);
nothing here needs qasync's loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from PySide6.QtWidgets import QApplication

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings
from ditherapp.net.phd2_client import LinkStatus
from ditherapp.net.service import DitherService, ServiceEvent, SettingChanged
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.main_window import MainWindow
from ditherapp.ui.settings_store import SettingsStore

WAIT_S = 10.0


class FakeGuider:
    """PHD2 as the service sees it, played by the test."""

    backend = "event"

    def __init__(self) -> None:
        self._status = LinkStatus(host="127.0.0.1", port=4400)
        self._events: list[Callable[[ev.Phd2Event], None]] = []
        self._links: list[Callable[[LinkStatus], None]] = []
        self.reconnects = 0
        self.prepared = 0
        self.requests: list[DitherRequest] = []
        self.outcome: asyncio.Future[DitherOutcome] | None = None
        self._stop = asyncio.Event()

    @property
    def status(self) -> LinkStatus:
        return self._status

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        self._events.append(callback)
        return lambda: self._events.remove(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        self._links.append(callback)
        return lambda: self._links.remove(callback)

    async def run(self) -> None:
        await self._stop.wait()

    def reconnect_now(self) -> None:
        self.reconnects += 1

    def prepare(self) -> None:
        self.prepared += 1

    def connect(self, state: Phd2State = Phd2State.GUIDING) -> None:
        self._set(connected=True, state=state, retry_at=None, version="2.6.13", last_error="")

    def drop(self, *, retry_in: float = 4.0) -> None:
        self._set(
            connected=False,
            state=Phd2State.UNKNOWN,
            retry_at=time.monotonic() + retry_in,
            last_error="connection refused",
        )

    def _set(self, **changes: Any) -> None:
        self._status = dataclasses.replace(self._status, **changes)
        for callback in list(self._links):
            callback(self._status)

    def emit(self, event: ev.Phd2Event) -> None:
        for callback in list(self._events):
            callback(event)

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome:
        """Like PHD2: GuidingDithered, SettleBegin, then whatever the test says."""
        self.requests.append(request)
        self.outcome = asyncio.get_running_loop().create_future()
        self.emit(ev.GuidingDithered(dx=1.5, dy=-0.5))
        self.emit(ev.SettleBegin())
        on_settle_started()
        return await self.outcome

    def settle(self, *distances: float, settle_time: float = 3.0) -> None:
        """Settling events for the distances given, one per guide frame."""
        in_range = 0.0
        for d in distances:
            in_range = in_range + 1.0 if d <= 2.0 else 0.0
            self.emit(ev.Settling(distance=d, time=in_range, settle_time=settle_time))

    def finish(self, kind: OutcomeKind = OutcomeKind.SETTLED, message: str = "") -> None:
        assert self.outcome is not None, "no dither in progress"
        ok = kind is OutcomeKind.SETTLED
        self.emit(ev.SettleDone(status=0 if ok else 1, error=None if ok else message))
        self.outcome.set_result(DitherOutcome(kind=kind, message=message, settle_s=4.0))


class FakeCamera:
    """A camera agent as the hook behaves: confirms a pause, reports its paused state,
    saves frames only while not paused."""

    def __init__(self, service: DitherService, name: str) -> None:
        self.service = service
        self.sent: list[dict[str, Any]] = []
        self.paused = False
        self.id = service.attach_camera(name, self)
        service.camera_message(self.id, {"type": "capture", "capturing": True})

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        loop = asyncio.get_running_loop()
        if message["type"] == "pause":
            loop.call_soon(self._pause, message["id"])
        elif message["type"] == "resume":
            loop.call_soon(self._resume, message["id"])

    def _pause(self, command_id: int) -> None:
        self.paused = True
        self.service.camera_message(self.id, {"type": "paused", "paused": True, "by": "app"})
        self.service.camera_message(self.id, {"type": "ack", "id": command_id})

    def _resume(self, command_id: int) -> None:
        self.paused = False
        self.service.camera_message(self.id, {"type": "ack", "id": command_id})
        self.service.camera_message(self.id, {"type": "paused", "paused": False, "by": "app"})

    def frame(self, exposure_s: float = 2.0) -> None:
        self.service.camera_message(
            self.id, {"type": "frame", "exposure_s": exposure_s, "saved": not self.paused}
        )

    def leave(self) -> None:
        self.service.detach_camera(self.id)


class Rig:
    """A real service on a fake guider, with a record of what it told observers."""

    def __init__(self, settings: DitherSettings) -> None:
        self.guider = FakeGuider()
        self.saved: list[DitherSettings] = []
        self.service = DitherService(
            settings=settings, guider=self.guider, save_settings=self.saved.append
        )
        self.events: list[ServiceEvent] = []
        self.service.subscribe(self.events.append)
        self.set_calls: list[tuple[str, object]] = []
        real_set = self.service.set_setting

        def counting_set(name: str, raw: object) -> Any:
            self.set_calls.append((name, raw))
            return real_set(name, raw)

        self.service.set_setting = counting_set  # type: ignore[method-assign]

    def changes(self, name: str) -> list[object]:
        """Every value the service announced for ``name``."""
        return [e.value for e in self.events if isinstance(e, SettingChanged) and e.name == name]

    def camera(self, name: str = "ZWO ASI294MC Pro") -> FakeCamera:
        return FakeCamera(self.service, name)


@pytest.fixture
def settings() -> DitherSettings:
    return DitherSettings(ditherevery=3, settledelay=3, settlemax=30)


@pytest.fixture
def rig(settings: DitherSettings) -> Rig:
    return Rig(settings)


@pytest.fixture
def bridge(qapp: QApplication, rig: Rig) -> Iterator[ServiceBridge]:
    del qapp
    b = ServiceBridge(rig.service)
    yield b
    b.detach()


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(tmp_path / "ditherapp.ini")


@pytest.fixture
def window(qtbot: Any, bridge: ServiceBridge, store: SettingsStore) -> MainWindow:
    w = MainWindow(bridge, store, theme="dark", tray=False)
    qtbot.addWidget(w)
    w.resize(1366, 768)
    w.show()
    return w


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Until = Callable[..., Awaitable[None]]


@pytest.fixture
def until(qapp: QApplication) -> Until:
    """Wait (in an async test) until ``condition()`` is true, letting Qt and asyncio
    both run; fail at the deadline."""

    async def wait(
        condition: Callable[[], object], timeout: float = WAIT_S, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while True:
            qapp.processEvents()
            if condition():
                return
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
            await asyncio.sleep(0.01)

    return wait
