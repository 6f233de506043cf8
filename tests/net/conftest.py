"""Shared doubles for the net tests: a guider whose answers the test decides."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings
from ditherapp.net.control_server import ControlServer
from ditherapp.net.phd2_client import LinkStatus
from ditherapp.net.service import DitherService


class FakeGuider:
    """Guiding, connected; each dither waits for the test to release an outcome."""

    backend = "event"

    def __init__(self) -> None:
        self.status = LinkStatus(
            host="127.0.0.1", port=4400, connected=True, state=Phd2State.GUIDING
        )
        self._events: list[Callable[[ev.Phd2Event], None]] = []
        self._links: list[Callable[[LinkStatus], None]] = []
        self.requests: list[DitherRequest] = []
        self.outcomes: asyncio.Queue[DitherOutcome] = asyncio.Queue()
        self.auto_settle = True
        self.prepared = 0

    def add_event_listener(self, cb: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        self._events.append(cb)
        return lambda: self._events.remove(cb)

    def add_link_listener(self, cb: Callable[[LinkStatus], None]) -> Callable[[], None]:
        self._links.append(cb)
        return lambda: self._links.remove(cb)

    def set_status(self, **changes: Any) -> None:
        from dataclasses import replace

        self.status = replace(self.status, **changes)
        for cb in list(self._links):
            cb(self.status)

    def emit(self, event: ev.Phd2Event) -> None:
        for cb in list(self._events):
            cb(event)

    async def run(self) -> None:
        await asyncio.Event().wait()

    def reconnect_now(self) -> None:
        pass

    def prepare(self) -> None:
        self.prepared += 1

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome:
        self.requests.append(request)
        on_settle_started()
        if self.auto_settle:
            return DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=0.01)
        return await self.outcomes.get()


@pytest.fixture
async def app_parts() -> AsyncIterator[tuple[DitherService, ControlServer, FakeGuider]]:
    guider = FakeGuider()
    service = DitherService(settings=DitherSettings(), guider=guider)
    server = ControlServer(service, host="127.0.0.1", port=0, first_message_timeout_s=2.0)
    await server.start()
    service._on_link(guider.status)  # the fake is connected from the start
    try:
        yield service, server, guider
    finally:
        await server.close()
        service.shutdown()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, obj: dict[str, Any]) -> None:
        self.writer.write((json.dumps(obj) + "\n").encode())
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            line = await self.reader.readline()
        if not line:
            raise EOFError("server closed the connection")
        obj = json.loads(line)
        assert isinstance(obj, dict)
        return obj

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.recv(timeout)
                if msg.get("type") == kind:
                    return msg

    async def call(self, obj: dict[str, Any]) -> dict[str, Any]:
        await self.send(obj)
        return await self.recv()

    async def closed(self, timeout: float = 5.0) -> bool:
        async with asyncio.timeout(timeout):
            data = await self.reader.read()
        return data == b"" or data.endswith(b"\n")

    async def close(self) -> None:
        self.writer.close()


@pytest.fixture
def client_factory(app_parts: tuple[DitherService, ControlServer, FakeGuider]):
    _, server, _ = app_parts
    opened: list[Client] = []

    async def make() -> Client:
        c = await Client.open(server.port)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.writer.close()


async def legacy_call(port: int, obj: dict[str, Any]) -> str:
    """What SimpleDither's client.py does: one object, no newline, read until CRLF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(json.dumps(obj).encode())
    await writer.drain()
    async with asyncio.timeout(5):
        data = await reader.read()
    writer.close()
    return data.decode()


@pytest.fixture
def legacy(app_parts: tuple[DitherService, ControlServer, FakeGuider]):
    _, server, _ = app_parts

    async def call(obj: dict[str, Any]) -> str:
        return await legacy_call(server.port, obj)

    return call
