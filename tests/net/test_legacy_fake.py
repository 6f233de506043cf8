"""The legacy backend and ``auto`` against tiny fake servers on loopback, where a test
needs exact control of every reply byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from ditherapp.core.dither import DitherRequest, OutcomeKind
from ditherapp.core.errors import ConnectionLost, LocalProtocolError
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.phd2.legacy import UNKNOWN_COMMAND_REPLY, Command
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.legacy import AutoGuider, LegacyGuider, make_guider
from ditherapp.net.phd2_client import LinkStatus, Phd2Client

WAIT_S = 5.0
FAST = {"first_s": 0.02, "cap_s": 0.1}


async def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def closed_port() -> int:
    """A loopback port nobody listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(**changes: Any) -> DitherRequest:
    values: dict[str, Any] = {
        "amount": 2.0,
        "ra_only": False,
        "settle_pixels": 1.0,
        "settle_time": 0.1,
        "settle_timeout": 5.0,
    }
    values.update(changes)
    return DitherRequest(**values)


# ------------------------------------------------------------------ fake legacy server


class FakeLegacyServer:
    """PHD2's legacy server reduced to a table the test edits: ``status`` for GETSTATUS,
    ``distances`` consumed one per REQDIST (the last one repeats), ``replies`` for the
    rest. ``silent`` commands get no reply; ``after`` hooks run after a command is
    answered."""

    def __init__(self) -> None:
        self.status = 3
        self.distances: list[int] = [20]
        self.replies: dict[int, int] = {
            Command.MSG_PAUSE: 0,
            Command.MSG_RESUME: 0,
            Command.MSG_MOVE1: 1,
            Command.MSG_MOVE2: 1,
            Command.MSG_MOVE3: 1,
            Command.MSG_MOVE4: 1,
            Command.MSG_MOVE5: 1,
            Command.MSG_AUTOFINDSTAR: 1,
            Command.MSG_SETLOCKPOSITION: 0,
            Command.MSG_FLIPRACAL: 1,
            Command.MSG_STOP: 0,
            Command.MSG_LOOP: 0,
            Command.MSG_STARTGUIDING: 0,
            Command.MSG_LOOPFRAMECOUNT: 73,
            Command.MSG_CLEARCAL: 0,
            Command.MSG_FLIP_SIM_CAMERA: 0,
            Command.MSG_DESELECT: 0,
        }
        self.silent: set[int] = set()
        self.delay_s: dict[int, float] = {}
        self.after: dict[int, Callable[[], None]] = {}
        self.received: list[int] = []
        self.lock_positions: list[tuple[int, int]] = []
        self.connections = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def commands(self) -> list[int]:
        """What the client sent, polls (GETSTATUS/REQDIST) left out."""
        polls = (Command.MSG_GETSTATUS, Command.MSG_REQDIST)
        return [c for c in self.received if c not in polls]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_clients(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    def reply(self, command: int) -> int:
        if command == Command.MSG_GETSTATUS:
            return self.status
        if command == Command.MSG_REQDIST:
            if self.status not in (3, 4):
                return 0
            return self.distances.pop(0) if len(self.distances) > 1 else self.distances[0]
        return self.replies.get(command, UNKNOWN_COMMAND_REPLY)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.add(writer)
        try:
            while data := await reader.read(1):
                command = data[0]
                self.received.append(command)
                if command == Command.MSG_SETLOCKPOSITION:
                    payload = await reader.readexactly(4)
                    x, y = (
                        int.from_bytes(payload[:2], "little"),
                        int.from_bytes(payload[2:], "little"),
                    )
                    self.lock_positions.append((x, y))
                if command in self.silent:
                    continue
                if command in self.delay_s:
                    await asyncio.sleep(self.delay_s[command])
                writer.write(bytes([self.reply(command)]))
                hook = self.after.get(command)
                if hook is not None:
                    hook()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


# ------------------------------------------------------------------ fake event server


class FakeEventServer:
    """Just enough of PHD2's event server for the client's resync. With ``answer``
    False it accepts and closes at once, as a port that is up but not serving."""

    def __init__(self) -> None:
        self.answer = True
        self.connections = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        self.drop_clients()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_clients(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self.answer:
            writer.transport.abort()
            return
        self.writers.add(writer)
        results = {"get_app_state": "Guiding", "get_settling": False, "get_exposure": 1000}
        try:
            while line := await reader.readline():
                req = json.loads(line)
                result = results.get(req["method"], 0)
                reply = {"jsonrpc": "2.0", "result": result, "id": req["id"]}
                writer.write(json.dumps(reply).encode() + b"\r\n")
        except OSError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


# ------------------------------------------------------------------ fixtures


@contextlib.asynccontextmanager
async def running(guider: Any) -> Any:
    task = asyncio.get_running_loop().create_task(guider.run(), name="guider-under-test")
    try:
        yield guider
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
async def fake() -> Any:
    server = FakeLegacyServer()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def event_server() -> Any:
    server = FakeEventServer()
    await server.start()
    yield server
    await server.stop()


def legacy_guider(port: int, **kwargs: Any) -> LegacyGuider:
    kwargs.setdefault("poll_s", 0.02)
    kwargs.setdefault("backoff", Backoff(**FAST))
    kwargs.setdefault("command_timeout_s", 1.0)
    return LegacyGuider("127.0.0.1", port, **kwargs)


@pytest.fixture
async def guider(fake: FakeLegacyServer) -> Any:
    g = legacy_guider(fake.port)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        yield g


class Recorder:
    """Every event and link status a guider hands its listeners, in order."""

    def __init__(self, guider: Any) -> None:
        self.events: list[ev.Phd2Event] = []
        self.links: list[LinkStatus] = []
        guider.add_event_listener(self.events.append)
        guider.add_link_listener(self.links.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def settle_started_counter() -> tuple[Callable[[], None], list[float]]:
    calls: list[float] = []
    return lambda: calls.append(time.monotonic()), calls


async def within(awaitable: Awaitable[Any], timeout: float = WAIT_S) -> Any:
    async with asyncio.timeout(timeout):
        return await awaitable


# ------------------------------------------------------------------ commands and replies


async def test_connects_and_reports_the_state_as_legacy(fake):
    fake.status = 101
    g = legacy_guider(fake.port)
    rec = Recorder(g)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        assert g.backend == "legacy"
        assert g.status.backend == "legacy"
        assert g.status.port == fake.port
        assert g.status.state is Phd2State.LOOPING
        assert rec.links[-1].connected
        # the poll follows PHD2's state
        fake.status = 100
        await wait_until(lambda: g.status.state is Phd2State.PAUSED, "the paused state")
        fake.status = 3
        await wait_until(lambda: g.status.state is Phd2State.GUIDING, "the guiding state")
    assert not g.status.connected
    assert not rec.events  # the legacy port sends no events of its own


@pytest.mark.parametrize("command", [c for c in Command if c is not Command.MSG_SETLOCKPOSITION])
async def test_every_command_gets_its_reply(fake, guider, command):
    fake.received.clear()
    assert await guider.command(command) == fake.reply(command)
    assert command in fake.received


async def test_unknown_byte_replies_one(fake, guider):
    # Not a Command: the wire path still carries it.
    assert await guider._exchange(bytes([99]), "99", 1.0) == UNKNOWN_COMMAND_REPLY


async def test_lock_position_sends_four_more_bytes(fake, guider):
    await guider.set_lock_position(640, 377)
    await guider.set_lock_position(0x0102, 0xFFFF)
    assert fake.lock_positions == [(640, 377), (0x0102, 0xFFFF)]
    # and the stream is still in step
    assert await guider.command(Command.MSG_LOOPFRAMECOUNT) == 73


async def test_pause_resume_and_state(fake, guider):
    await guider.pause()
    await guider.resume()
    assert fake.commands() == [Command.MSG_PAUSE, Command.MSG_RESUME]
    for code, state in [(0, Phd2State.STOPPED), (4, Phd2State.LOST_LOCK), (1, Phd2State.SELECTED)]:
        fake.status = code
        assert await guider.state() is state
        assert guider.status.state is state


async def test_commands_are_serialised(fake, guider):
    fake.delay_s[Command.MSG_LOOPFRAMECOUNT] = 0.05
    results = await asyncio.gather(
        guider.command(Command.MSG_LOOPFRAMECOUNT),
        guider.command(Command.MSG_GETSTATUS),
        guider.command(Command.MSG_FLIPRACAL),
    )
    assert results == [73, 3, 1]


async def test_a_cancelled_commands_late_reply_is_not_taken_for_the_next(fake, guider):
    fake.delay_s[Command.MSG_LOOPFRAMECOUNT] = 0.1
    slow = asyncio.get_running_loop().create_task(guider.command(Command.MSG_LOOPFRAMECOUNT))
    await wait_until(lambda: Command.MSG_LOOPFRAMECOUNT in fake.received, "the slow command")
    slow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await slow
    assert await guider.command(Command.MSG_FLIPRACAL) == 1
    fake.status = 101
    assert await guider.command(Command.MSG_GETSTATUS) == 101
    assert guider.status.connected


async def test_command_time_limit_drops_the_out_of_step_connection(fake):
    g = legacy_guider(fake.port, command_timeout_s=0.2)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        fake.silent.add(Command.MSG_LOOPFRAMECOUNT)
        with pytest.raises(TimeoutError, match="did not answer MSG_LOOPFRAMECOUNT"):
            await g.command(Command.MSG_LOOPFRAMECOUNT)
        await wait_until(lambda: fake.connections == 2, "a fresh connection")
        await wait_until(lambda: g.status.connected, "the reconnection")
        assert await g.command(Command.MSG_GETSTATUS) == 3


async def test_not_connected_is_connection_lost():
    g = legacy_guider(closed_port())
    with pytest.raises(ConnectionLost):
        await g.command(Command.MSG_GETSTATUS)


async def test_a_byte_nobody_asked_for_drops_the_connection(fake):
    g = legacy_guider(fake.port, poll_s=10.0)
    rec = Recorder(g)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        next(iter(fake.writers)).write(b"{")  # e.g. the event server's JSON
        await wait_until(lambda: fake.connections == 2, "a fresh connection")
        assert any("answers no command" in s.last_error for s in rec.links)


async def test_reconnects_after_the_server_drops_it(fake):
    g = legacy_guider(fake.port)
    rec = Recorder(g)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        fake.drop_clients()
        await wait_until(lambda: not g.status.connected, "the drop")
        await wait_until(lambda: g.status.connected, "the reconnection")
    assert fake.connections >= 2
    downs = [s for s in rec.links if not s.connected and s.retry_at is not None]
    assert downs, "a retry time is shown while down"


async def test_refused_port_keeps_retrying_with_backoff():
    g = legacy_guider(closed_port())
    rec = Recorder(g)
    async with running(g):
        await wait_until(
            lambda: len({s.retry_at for s in rec.links if s.retry_at}) >= 3, "three retries"
        )
    assert not g.status.connected
    assert g.status.last_error


# ------------------------------------------------------------------ dithers


async def test_dither_settles_with_synthesised_events(fake, guider):
    rec = Recorder(guider)
    fake.distances = [250, 180, 90, 60, 40]
    on_started, started = settle_started_counter()
    outcome = await within(guider.dither(request(amount=2.0, settle_time=0.1), on_started))
    assert outcome.kind is OutcomeKind.SETTLED, outcome
    assert outcome.settle_s is not None
    assert outcome.settle_s >= 0.1
    assert fake.commands() == [Command.MSG_MOVE3]
    assert len(started) == 1
    kinds = [type(e) for e in rec.events]
    assert kinds[0] is ev.SettleBegin
    assert kinds[-1] is ev.SettleDone
    assert set(kinds[1:-1]) == {ev.Settling}
    settling = rec.of(ev.Settling)
    assert settling[0].distance == 2.5
    assert settling[0].settle_time == 0.1
    assert all(s.star_locked for s in settling)
    assert rec.of(ev.SettleDone)[0].succeeded
    assert all(e.timestamp is None for e in rec.events)  # synthesised, not PHD2's
    # the link status says "settling" only while the dither runs
    flags = [s.settling for s in rec.links]
    assert True in flags
    assert not guider.status.settling


@pytest.mark.parametrize(
    ("amount", "byte"),
    [(0.5, Command.MSG_MOVE1), (1.2, Command.MSG_MOVE2), (3.0, Command.MSG_MOVE4), (10, 13)],
)
async def test_dither_sends_the_nearest_move(fake, guider, amount, byte):
    outcome = await within(guider.dither(request(amount=amount, settle_time=0), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLED
    assert fake.commands() == [byte]


async def test_out_of_range_restarts_the_settle_clock(fake, guider):
    rec = Recorder(guider)
    fake.distances = [40, 40, 40, 40, 200, 40]
    outcome = await within(guider.dither(request(settle_time=0.15), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLED
    times = [s.time for s in rec.of(ev.Settling)]
    distances = [s.distance for s in rec.of(ev.Settling)]
    spike = distances.index(2.0)
    assert times[spike] == 0.0
    assert max(times[:spike]) > 0.0
    assert outcome.settle_s is not None
    assert outcome.settle_s >= 0.15 + 4 * 0.02


async def test_settle_timeout_fails_like_phd2(fake, guider):
    rec = Recorder(guider)
    fake.distances = [200]
    outcome = await within(guider.dither(request(settle_timeout=0.3), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert outcome.message == "timed-out waiting for guider to settle"
    assert outcome.settle_s is not None
    assert outcome.settle_s >= 0.3
    done = rec.of(ev.SettleDone)
    assert done == [ev.SettleDone(status=1, error="timed-out waiting for guider to settle")]


async def test_lost_lock_keeps_waiting_then_settles(fake, guider):
    rec = Recorder(guider)

    def star_returns() -> None:
        fake.status = 3

    fake.after[Command.MSG_MOVE3] = lambda: setattr(fake, "status", 4)
    fake.distances = [30]
    task = asyncio.get_running_loop().create_task(guider.dither(request(), lambda: None))
    await wait_until(lambda: len(rec.of(ev.Settling)) >= 3, "settling polls while LostLock")
    assert not any(s.star_locked for s in rec.of(ev.Settling))
    assert not task.done()
    star_returns()
    outcome = await within(task)
    assert outcome.kind is OutcomeKind.SETTLED


async def test_phd2_stopping_mid_settle_fails_it(fake, guider):
    fake.distances = [200, 200, 200]
    fake.after[Command.MSG_MOVE3] = lambda: None

    def stop_after_two_polls() -> None:
        if fake.received.count(Command.MSG_REQDIST) >= 2:
            fake.status = 101

    fake.after[Command.MSG_REQDIST] = stop_after_two_polls
    outcome = await within(guider.dither(request(), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert outcome.message == "PHD2 stopped guiding (Looping)"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (100, "PHD2 is paused"),
        (4, "PHD2 has lost the guide star"),
        (101, "PHD2 is not guiding (state Looping)"),
        (0, "PHD2 is not guiding (state Stopped)"),
        (2, "PHD2 is not guiding (state Calibrating)"),
    ],
)
async def test_dither_refused_unless_guiding(fake, guider, status, reason):
    fake.status = status
    rec = Recorder(guider)
    on_started, started = settle_started_counter()
    outcome = await within(guider.dither(request(), on_started))
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == reason
    assert fake.commands() == []  # no MOVE was sent
    assert not started
    assert not rec.events


async def test_move_reply_zero_is_refused(fake, guider):
    fake.replies[Command.MSG_MOVE3] = 0
    rec = Recorder(guider)
    on_started, started = settle_started_counter()
    outcome = await within(guider.dither(request(), on_started))
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == "PHD2 refused the dither (not guiding?)"
    assert not started
    assert not rec.events
    assert not outcome.kind.moved


async def test_connection_lost_mid_settle_is_lost_at_once(fake):
    g = legacy_guider(fake.port, poll_s=30.0)  # no poll would notice for 30 s
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        rec = Recorder(g)
        task = asyncio.get_running_loop().create_task(g.dither(request(), lambda: None))
        await wait_until(lambda: rec.of(ev.SettleBegin), "the settle")
        fake.drop_clients()
        outcome = await within(task, timeout=2.0)
    assert outcome.kind is OutcomeKind.LOST
    assert outcome.kind.moved
    assert not rec.of(ev.SettleDone)


async def test_connection_lost_during_a_poll_is_lost(fake, guider):
    fake.distances = [200]
    fake.after[Command.MSG_REQDIST] = fake.drop_clients
    outcome = await within(guider.dither(request(), lambda: None))
    assert outcome.kind is OutcomeKind.LOST


async def test_no_answer_to_a_settle_poll_is_timed_out(fake):
    g = legacy_guider(fake.port, command_timeout_s=0.2)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        fake.after[Command.MSG_MOVE3] = lambda: fake.silent.add(Command.MSG_GETSTATUS)
        outcome = await within(g.dither(request(), lambda: None))
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert "did not answer MSG_GETSTATUS" in outcome.message


async def test_dither_while_not_connected_is_refused():
    g = legacy_guider(closed_port())
    outcome = await g.dither(request(), lambda: None)
    assert outcome.kind is OutcomeKind.REFUSED
    assert "not connected" in outcome.message


async def test_one_dither_at_a_time(fake, guider):
    fake.distances = [200]
    first = asyncio.get_running_loop().create_task(guider.dither(request(), lambda: None))
    await wait_until(lambda: guider.dithering and guider.status.settling, "the first dither")
    second = await guider.dither(request(), lambda: None)
    assert second.kind is OutcomeKind.REFUSED
    fake.distances = [10]
    assert (await within(first)).kind is OutcomeKind.SETTLED


async def test_a_cancelled_dither_leaves_the_link_usable(fake, guider):
    fake.distances = [200]
    task = asyncio.get_running_loop().create_task(guider.dither(request(), lambda: None))
    await wait_until(lambda: guider.status.settling, "the settle")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not guider.status.settling
    assert not guider.dithering
    assert await guider.command(Command.MSG_LOOPFRAMECOUNT) == 73


async def test_settle_started_callback_errors_do_not_break_the_dither(fake, guider):
    def broken() -> None:
        raise RuntimeError("listener bug")

    outcome = await within(guider.dither(request(settle_time=0), broken))
    assert outcome.kind is OutcomeKind.SETTLED


# ------------------------------------------------------------------ make_guider


def test_make_guider_builds_each_backend():
    kw = {"host": "127.0.0.1", "event_port": 4400, "legacy_port": 4300}
    event = make_guider("event", **kw)
    legacy = make_guider("legacy", poll_s=0.5, **kw)
    auto = make_guider("auto", poll_s=0.5, **kw)
    assert isinstance(event, EventGuider)
    assert event.backend == "event"
    assert isinstance(legacy, LegacyGuider)
    assert legacy.backend == "legacy"
    assert legacy.poll_s == 0.5
    assert legacy.status.port == 4300
    assert isinstance(auto, AutoGuider)
    assert auto.backend == "event"
    assert auto.status.port == 4400
    assert auto.poll_s == 0.5
    with pytest.raises(LocalProtocolError):
        make_guider("phd1", **kw)


# ------------------------------------------------------------------ auto


def auto_guider(event_port: int, legacy_port: int) -> AutoGuider:
    client = Phd2Client("127.0.0.1", event_port, backoff=Backoff(**FAST))
    return AutoGuider(EventGuider(client), legacy_guider(legacy_port))


@contextlib.contextmanager
def backends_seen(auto: AutoGuider) -> Iterator[list[str]]:
    seen: list[str] = []
    remove = auto.add_link_listener(lambda s: seen.append(s.backend))
    try:
        yield seen
    finally:
        remove()


async def test_auto_falls_back_to_legacy_when_the_event_port_is_closed(fake):
    auto = auto_guider(closed_port(), fake.port)
    rec = Recorder(auto)
    async with running(auto):
        await wait_until(lambda: auto.backend == "legacy", "the fallback")
        await wait_until(lambda: auto.status.connected, "the legacy link")
        assert auto.status.backend == "legacy"
        assert auto.status.port == fake.port
        assert rec.links[-1].backend == "legacy"
        outcome = await within(auto.dither(request(settle_time=0), lambda: None))
        assert outcome.kind is OutcomeKind.SETTLED
        assert fake.commands() == [Command.MSG_MOVE3]
        assert rec.of(ev.SettleDone)  # the legacy backend's synthesised events reach us


async def test_auto_uses_the_event_server_when_it_is_up(fake, event_server):
    auto = auto_guider(event_server.port, fake.port)
    async with running(auto):
        await wait_until(lambda: auto.status.connected, "the event link")
        assert auto.backend == "event"
        assert auto.status.backend == "event"
        assert auto.status.port == event_server.port
    assert fake.connections == 0


async def test_auto_prefers_an_event_server_that_answers_after_a_fresh_try(fake, event_server):
    """Up but not serving counts as not answering; once it serves, auto goes back."""
    event_server.answer = False
    auto = auto_guider(event_server.port, fake.port)
    async with running(auto):
        with backends_seen(auto) as seen:
            await wait_until(lambda: auto.backend == "legacy", "the fallback")
            event_server.answer = True
            await wait_until(lambda: auto.backend == "event", "the switch back")
            await wait_until(lambda: auto.status.connected, "the event link")
            await wait_until(lambda: not fake.writers, "the legacy connection to close")
        assert "legacy" in seen
        assert seen[-1] == "event"
        assert auto.status.backend == "event"


async def test_auto_waits_for_a_legacy_dither_before_switching_back(fake, event_server):
    event_server.answer = False
    auto = auto_guider(event_server.port, fake.port)
    async with running(auto):
        await wait_until(lambda: auto.backend == "legacy" and auto.status.connected, "legacy")
        fake.distances = [200]
        task = asyncio.get_running_loop().create_task(auto.dither(request(), lambda: None))
        await wait_until(lambda: auto.status.settling, "the legacy settle")
        event_server.answer = True
        await wait_until(lambda: auto.event.status.connected, "the event server")
        assert auto.backend == "legacy"  # not under a running dither
        assert not task.done()
        fake.distances = [10]
        outcome = await within(task)
        assert outcome.kind is OutcomeKind.SETTLED
        assert auto.backend == "event"
        assert auto.status.backend == "event"


async def test_auto_falls_back_when_the_event_server_goes_away(fake, event_server):
    auto = auto_guider(event_server.port, fake.port)
    async with running(auto):
        await wait_until(lambda: auto.status.connected, "the event link")
        assert auto.backend == "event"
        event_server.answer = False
        event_server.drop_clients()
        await wait_until(lambda: auto.backend == "legacy", "the fallback")
        await wait_until(lambda: auto.status.connected, "the legacy link")


async def test_auto_stays_on_the_event_server_while_legacy_is_also_down():
    auto = auto_guider(closed_port(), closed_port())
    async with running(auto):
        await wait_until(lambda: auto.legacy.status.retry_at is not None, "a legacy try")
        assert auto.backend == "event"
        assert not auto.status.connected
        assert auto.status.backend == "event"
