"""Loopback clients for the PHD2 simulator: a JSON line client and a legacy byte client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ditherapp.sim.phd2_model import DitherWindow, Faults, Outcome, Phd2Model, StartState
from ditherapp.sim.phd2_sim import Phd2Simulator

FAST = 50.0
"""Simulated seconds per wall second in these tests."""
DEADLINE = 10.0
"""Wall seconds any single wait may take before the test fails."""


class EventConn:
    """A client of the event server that keeps every line it receives, in order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.lines: list[str] = []
        self.messages: list[Any] = []
        self.closed = False
        self._arrived = asyncio.Event()
        self._ids = itertools.count(1000)
        self._task = asyncio.create_task(self._read(), name="test-event-reader")

    async def _read(self) -> None:
        try:
            while line := await self.reader.readline():
                text = line.decode().removesuffix("\n").removesuffix("\r")
                self.lines.append(text)
                try:
                    self.messages.append(json.loads(text, strict=False))
                except json.JSONDecodeError:
                    self.messages.append({"_unparsable": text})
                self._arrived.set()
        except OSError:
            pass
        finally:
            self.closed = True
            self._arrived.set()

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, request: dict[str, Any]) -> None:
        self.writer.write(json.dumps(request, separators=(",", ":")).encode() + b"\r\n")

    async def wait_for(
        self, predicate: Callable[[Any], bool], *, start: int = 0, timeout: float = DEADLINE
    ) -> int:
        """Index of the first message at or after ``start`` that satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            while True:
                for index in range(start, len(self.messages)):
                    if predicate(self.messages[index]):
                        return index
                if self.closed:
                    raise ConnectionError("connection closed while waiting")
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_until(self, condition: Callable[[], bool], *, timeout: float = DEADLINE) -> None:
        """Wait until ``condition()`` holds, re-checking as each line arrives."""
        async with asyncio.timeout(timeout):
            while not condition():
                if self.closed:
                    raise ConnectionError("connection closed while waiting")
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_event(self, name: str, *, start: int = 0, timeout: float = DEADLINE) -> int:
        return await self.wait_for(
            lambda m: isinstance(m, dict) and m.get("Event") == name, start=start, timeout=timeout
        )

    async def call(
        self, method: str, params: Any = None, *, timeout: float = DEADLINE
    ) -> dict[str, Any]:
        """Send a request and return its reply object."""
        request_id = next(self._ids)
        request: dict[str, Any] = {"method": method, "id": request_id}
        if params is not None:
            request["params"] = params
        start = len(self.messages)
        self.send(request)
        index = await self.wait_for(
            lambda m: isinstance(m, dict) and "jsonrpc" in m and m.get("id") == request_id,
            start=start,
            timeout=timeout,
        )
        reply: dict[str, Any] = self.messages[index]
        return reply

    async def result(self, method: str, params: Any = None) -> Any:
        reply = await self.call(method, params)
        assert "result" in reply, reply
        return reply["result"]

    def events(self, name: str, start: int = 0) -> list[dict[str, Any]]:
        return [m for m in self.messages[start:] if isinstance(m, dict) and m.get("Event") == name]

    def names(self, start: int = 0) -> list[str]:
        """Event names and ``reply``/``batch`` markers, in arrival order."""
        out = []
        for m in self.messages[start:]:
            if isinstance(m, list):
                out.append("batch")
            elif "Event" in m:
                out.append(m["Event"])
            else:
                out.append("reply")
        return out

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class LegacyConn:
    """A client of the legacy socket server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def command(self, byte: int, payload: bytes = b"", *, timeout: float = DEADLINE) -> int:
        self.writer.write(bytes([byte]) + payload)
        async with asyncio.timeout(timeout):
            reply = await self.reader.readexactly(1)
        return reply[0]

    async def closed_by_server(self, *, timeout: float = DEADLINE) -> bool:
        """True once the server has closed this connection (EOF or reset)."""
        async with asyncio.timeout(timeout):
            try:
                return await self.reader.read(1) == b""
            except OSError:
                return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


SimFactory = Callable[..., Awaitable[Phd2Simulator]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    """Start simulators (fast, seeded by default); all are stopped at the end of the test."""
    sims: list[Phd2Simulator] = []

    async def make(**kwargs: Any) -> Phd2Simulator:
        kwargs.setdefault("time_scale", FAST)
        kwargs.setdefault("seed", 7)
        sim = Phd2Simulator(**kwargs)
        await sim.start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.stop()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Awaitable[EventConn]]]:
    """Open event-server clients; all are closed at the end of the test."""
    conns: list[EventConn] = []

    async def open_conn(sim: Phd2Simulator, *, catch_up: bool = True) -> EventConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.event_port)
        conn = EventConn(reader, writer)
        conns.append(conn)
        if catch_up:
            await conn.wait_event("AppState")
        return conn

    yield open_conn
    for conn in conns:
        await conn.close()


@pytest.fixture
async def connect_legacy() -> AsyncIterator[Callable[[Phd2Simulator], Awaitable[LegacyConn]]]:
    conns: list[LegacyConn] = []

    async def open_conn(sim: Phd2Simulator) -> LegacyConn:
        assert sim.legacy_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.legacy_port)
        conn = LegacyConn(reader, writer)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        await conn.close()


class ModelRig:
    """A `Phd2Model` on a hand-driven clock (simulated seconds = clock seconds)."""

    def __init__(self, *, start: StartState = "guiding", seed: int = 3) -> None:
        self.clock = 1000.0
        self.lines: list[str] = []
        self.windows: list[DitherWindow] = []
        self.faults = Faults()
        self.model = Phd2Model(
            clock=lambda: self.clock,
            wall=lambda: 1.0,
            rng=random.Random(seed),
            emit=self.lines.append,
            wake=lambda: None,
            faults=self.faults,
            windows=self.windows,
            start=start,
            host_name="test",
        )

    def frame(self) -> None:
        """One turn of the camera loop: expose, process, pulse, GuideStep, pending stop."""
        self.clock += self.model.frame_interval_s
        outcome = self.model.complete_frame()
        self.clock += outcome.pulse_s
        if outcome.guide_step is not None:
            self.lines.append(outcome.guide_step)
        if self.model.stop_pending:
            self.model.finish_stop()

    def frames_until(self, name: str, *, limit: int = 200) -> dict[str, Any]:
        """Run frames until an event called ``name`` is emitted; return it."""
        start = len(self.lines)
        for _ in range(limit):
            self.frame()
            found = self.events(name, start)
            if found:
                return found[0]
        raise AssertionError(f"no {name} in {limit} frames")

    def call(self, method: str, params: Any = None) -> Outcome | None:
        return self.model.call(method, params)

    def events(self, name: str | None = None, start: int = 0) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines[start:]]
        return [e for e in parsed if name is None or e["Event"] == name]

    def names(self, start: int = 0) -> list[str]:
        return [e["Event"] for e in self.events(start=start)]

    def mark(self) -> int:
        return len(self.lines)


@pytest.fixture
def rig() -> Callable[..., ModelRig]:
    return ModelRig
