"""A tiny asyncio fake app (the app side of the camera protocol) for SimCamera tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ditherapp.core.lines import LineBuffer
from ditherapp.sim.camera_agent import SimCamera

Message = dict[str, Any]
WAIT_S = 5.0


class AppConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.messages: list[Message] = []
        self.changed = asyncio.Condition()
        self.closed = asyncio.Event()

    async def serve(self, app: FakeApp) -> None:
        lines = LineBuffer()
        try:
            while data := await self._reader.read(65536):
                for line in lines.feed(data):
                    message = json.loads(line)
                    async with self.changed:
                        self.messages.append(message)
                        self.changed.notify_all()
                    if message.get("type") == "hello":
                        if app.token is not None and message.get("token") != app.token:
                            self.send({"type": "error", "code": "unauthorized"})
                            self.close()
                        else:
                            self.send({"type": "welcome", "proto": 1, "camera": "cam-1"})
        except OSError:
            pass
        finally:
            self.closed.set()
            async with self.changed:
                self.changed.notify_all()

    def send(self, message: Message) -> None:
        self._writer.write(json.dumps(message).encode() + b"\n")

    def close(self) -> None:
        self._writer.close()

    def of_type(self, kind: str) -> list[Message]:
        return [m for m in self.messages if m.get("type") == kind]

    def mark(self) -> int:
        return len(self.messages)

    async def wait_for(
        self, predicate: Callable[[Message], bool], start: int = 0, timeout: float = WAIT_S
    ) -> Message:
        def first() -> Message | None:
            return next((m for m in self.messages[start:] if predicate(m)), None)

        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: first() is not None)
        found = first()
        assert found is not None
        return found

    async def wait_type(self, kind: str, start: int = 0, **fields: object) -> Message:
        return await self.wait_for(
            lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()),
            start,
        )


class FakeApp:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.connections: list[AppConnection] = []
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = AppConnection(reader, writer)
        async with self._arrived:
            self.connections.append(connection)
            self._arrived.notify_all()
        await connection.serve(self)

    async def connection(self, number: int = 1, timeout: float = WAIT_S) -> AppConnection:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.connections) >= number)
        return self.connections[number - 1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in self.connections:
                connection.close()
            await self._server.wait_closed()


class Running:
    """A SimCamera running in a task; stopped and awaited at teardown."""

    def __init__(self) -> None:
        self.items: list[tuple[SimCamera, asyncio.Task[None]]] = []

    def start(self, camera: SimCamera) -> SimCamera:
        self.items.append((camera, asyncio.create_task(camera.run(), name="sim-camera")))
        return camera

    async def stop_all(self) -> None:
        for camera, task in self.items:
            camera.stop()
            async with asyncio.timeout(WAIT_S):
                await task


@pytest.fixture
async def app() -> AsyncIterator[FakeApp]:
    app = FakeApp()
    await app.start()
    yield app
    await app.close()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    running = Running()
    yield running
    await running.stop_all()


@pytest.fixture
def camera(app: FakeApp, running: Running) -> Callable[..., SimCamera]:
    """Start a SimCamera against the fake app, with quick test timings."""

    def start(**options: Any) -> SimCamera:
        settings: dict[str, Any] = {
            "name": "Sim 294",
            "exposure_s": 0.1,
            "port": app.port,
            "reconnect_s": 0.05,
        }
        settings.update(options)
        return running.start(SimCamera(**settings))

    return start
