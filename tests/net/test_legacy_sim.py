"""The legacy backend and ``auto`` against the PHD2 simulator over loopback sockets.

The simulator runs at 20x (a 1 s guide exposure every 0.05 s); the legacy guider polls
every 0.02 s. Settle times and timeouts are the client's own wall-clock seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ditherapp.core.dither import DitherRequest, OutcomeKind
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.phd2.legacy import UNKNOWN_COMMAND_REPLY, Command
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.legacy import AutoGuider, LegacyGuider
from ditherapp.net.phd2_client import Phd2Client
from ditherapp.sim.phd2_sim import Phd2Simulator

WAIT_S = 10.0
FAST = {"first_s": 0.02, "cap_s": 0.1}
MOVES = {"MOVE1", "MOVE2", "MOVE3", "MOVE4", "MOVE5"}


async def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


async def within(awaitable: Any, timeout: float = WAIT_S) -> Any:
    async with asyncio.timeout(timeout):
        return await awaitable


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(**changes: Any) -> DitherRequest:
    values: dict[str, Any] = {
        "amount": 2.0,
        "ra_only": False,
        "settle_pixels": 1.0,
        "settle_time": 0.2,
        "settle_timeout": 5.0,
    }
    values.update(changes)
    return DitherRequest(**values)


@contextlib.asynccontextmanager
async def running(guider: Any) -> AsyncIterator[Any]:
    task = asyncio.get_running_loop().create_task(guider.run(), name="guider-under-test")
    try:
        yield guider
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def simulator(**kwargs: Any) -> Phd2Simulator:
    values: dict[str, Any] = {
        "event_port": 0,
        "legacy_port": 0,
        "exposure_s": 1.0,
        "time_scale": 20.0,
        "start": "guiding",
        "seed": 7,
    }
    values.update(kwargs)
    return Phd2Simulator(**values)


@pytest.fixture
async def sim() -> AsyncIterator[Phd2Simulator]:
    s = simulator()
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def legacy_guider(port: int | None, **kwargs: Any) -> LegacyGuider:
    assert port is not None
    kwargs.setdefault("poll_s", 0.02)
    kwargs.setdefault("backoff", Backoff(**FAST))
    kwargs.setdefault("command_timeout_s", 1.0)
    return LegacyGuider("127.0.0.1", port, **kwargs)


@pytest.fixture
async def guider(sim: Phd2Simulator) -> AsyncIterator[LegacyGuider]:
    g = legacy_guider(sim.legacy_port)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        yield g


class Recorder:
    def __init__(self, guider: Any) -> None:
        self.events: list[ev.Phd2Event] = []
        guider.add_event_listener(self.events.append)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def legacy_requests(sim: Phd2Simulator) -> list[str]:
    return [name for _, name in sim.requests if name.isupper() or name.startswith("UNKNOWN")]


# ------------------------------------------------------------------ commands


async def test_status_follows_the_simulators_state(sim, guider):
    assert guider.status.state is Phd2State.GUIDING
    assert guider.status.backend == "legacy"
    await guider.pause()
    await wait_until(lambda: guider.status.state is Phd2State.PAUSED, "Paused")
    assert sim.app_state == "Paused"
    await guider.resume()
    await wait_until(lambda: guider.status.state is Phd2State.GUIDING, "Guiding again")


async def test_commands_and_replies_against_the_simulator(sim, guider):
    assert await guider.command(Command.MSG_GETSTATUS) == 3
    assert 0 < await guider.command(Command.MSG_REQDIST) < 255
    frames: list[int] = []

    async def count() -> int:
        frames.append(await guider.command(Command.MSG_LOOPFRAMECOUNT))
        return frames[-1]

    deadline = time.monotonic() + WAIT_S
    while await count() == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # 0 until the first frame is in
    assert frames[-1] > 0
    assert await guider._exchange(bytes([99]), "99", 1.0) == UNKNOWN_COMMAND_REPLY
    assert await guider.command(Command.MSG_FLIPRACAL) in (0, 1)
    assert await guider.command(Command.MSG_STOP) == 0
    await wait_until(lambda: sim.app_state == "Stopped", "the simulator to stop")
    assert await guider.state() is Phd2State.STOPPED
    assert await guider.command(Command.MSG_REQDIST) == 0  # 0 when not guiding
    assert await guider.command(Command.MSG_MOVE1) == 0  # refused when not guiding
    assert await guider.command(Command.MSG_LOOPFRAMECOUNT) == 0
    # The wiki's star selection: DESELECT, LOOP, (frames), AUTOFINDSTAR, then guide.
    assert await guider.command(Command.MSG_DESELECT) == 0
    assert await guider.command(Command.MSG_LOOP) == 0
    await wait_until(lambda: guider.status.state is Phd2State.LOOPING, "looping")
    frames.clear()
    deadline = time.monotonic() + WAIT_S
    while await count() == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert await guider.command(Command.MSG_AUTOFINDSTAR) == 1
    assert await guider.state() is Phd2State.SELECTED
    await guider.set_lock_position(640, 377)
    assert await guider.command(Command.MSG_STARTGUIDING) == 0
    await wait_until(lambda: guider.status.state is Phd2State.GUIDING, "guiding again")
    names = legacy_requests(sim)
    for name in ("STOP", "MOVE1", "DESELECT", "LOOP", "AUTOFINDSTAR", "SETLOCKPOSITION"):
        assert name in names
    assert "STARTGUIDING" in names


# ------------------------------------------------------------------ dithers


async def test_legacy_dither_settles(sim, guider):
    rec = Recorder(guider)
    started: list[float] = []
    outcome = await within(guider.dither(request(), lambda: started.append(time.monotonic())))
    assert outcome.kind is OutcomeKind.SETTLED, outcome
    assert outcome.settle_s is not None
    assert outcome.settle_s >= 0.2
    assert len(started) == 1
    assert [w.source for w in sim.dither_windows] == ["legacy"]
    assert [n for n in legacy_requests(sim) if n in MOVES] == ["MOVE3"]
    settling = rec.of(ev.Settling)
    assert settling
    assert settling[-1].distance <= 1.0
    assert isinstance(rec.events[0], ev.SettleBegin)
    assert rec.events[-1] == ev.SettleDone(status=0)
    assert not guider.status.settling


async def test_legacy_dither_that_never_settles_times_out(sim, guider):
    sim.never_settle = True
    outcome = await within(guider.dither(request(settle_timeout=0.5), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert outcome.message == "timed-out waiting for guider to settle"


async def test_lost_star_during_the_settle_is_waited_out(sim, guider):
    rec = Recorder(guider)
    outcome_task = asyncio.get_running_loop().create_task(
        guider.dither(request(settle_time=0.3), lambda: None)
    )
    await wait_until(lambda: rec.of(ev.SettleBegin), "the settle")
    sim.lose_star(6)
    outcome = await within(outcome_task)
    assert outcome.kind is OutcomeKind.SETTLED
    assert any(s.star_locked is False for s in rec.of(ev.Settling))


async def test_phd2_stopped_by_someone_else_fails_the_settle(sim, guider):
    other = legacy_guider(sim.legacy_port)
    async with running(other):
        await wait_until(lambda: other.status.connected, "a second legacy client")
        sim.never_settle = True
        task = asyncio.get_running_loop().create_task(guider.dither(request(), lambda: None))
        await wait_until(lambda: guider.status.settling, "the settle")
        assert await other.command(Command.MSG_STOP) == 0
        outcome = await within(task)
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert outcome.message.startswith("PHD2 stopped guiding (")


async def test_dither_refused_while_looping(sim):
    s = simulator(start="looping")
    await s.start()
    try:
        g = legacy_guider(s.legacy_port)
        async with running(g):
            await wait_until(lambda: g.status.connected, "the legacy connection")
            outcome = await within(g.dither(request(), lambda: None))
        assert outcome.kind is OutcomeKind.REFUSED
        assert outcome.message.startswith("PHD2 is not guiding (state ")
        assert not [n for n in legacy_requests(s) if n in MOVES]
        assert not s.dither_windows
    finally:
        await s.stop()


async def test_dither_refused_while_paused(sim, guider):
    await guider.pause()
    outcome = await within(guider.dither(request(), lambda: None))
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == "PHD2 is paused"
    assert not sim.dither_windows


async def test_dropped_connection_mid_settle_is_lost_promptly(sim):
    g = legacy_guider(sim.legacy_port, poll_s=30.0)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        rec = Recorder(g)
        task = asyncio.get_running_loop().create_task(g.dither(request(), lambda: None))
        await wait_until(lambda: rec.of(ev.SettleBegin), "the settle")
        sim.drop_connections()
        outcome = await within(task, timeout=2.0)
        assert outcome.kind is OutcomeKind.LOST
        await wait_until(lambda: g.status.connected, "the reconnection")


async def test_stalled_phd2_times_out_the_dither(sim):
    g = legacy_guider(sim.legacy_port, command_timeout_s=0.3)
    async with running(g):
        await wait_until(lambda: g.status.connected, "the legacy connection")
        rec = Recorder(g)
        task = asyncio.get_running_loop().create_task(g.dither(request(), lambda: None))
        await wait_until(lambda: rec.of(ev.SettleBegin), "the settle")
        sim.stall = True
        outcome = await within(task)
        sim.stall = False
    assert outcome.kind is OutcomeKind.TIMED_OUT
    assert "did not answer" in outcome.message


async def test_reconnects_to_a_restarted_phd2(sim, guider):
    sim_port = sim.legacy_port
    await sim.stop()
    await wait_until(lambda: not guider.status.connected, "the drop")
    await sim.start()
    assert sim.legacy_port == sim_port
    await wait_until(lambda: guider.status.connected, "the reconnection")
    outcome = await within(guider.dither(request(settle_time=0), lambda: None))
    assert outcome.kind is OutcomeKind.SETTLED


# ------------------------------------------------------------------ auto


def auto_guider(event_port: int, legacy_port: int | None) -> AutoGuider:
    client = Phd2Client("127.0.0.1", event_port, backoff=Backoff(**FAST))
    return AutoGuider(EventGuider(client), legacy_guider(legacy_port))


async def test_auto_uses_the_event_server_when_it_is_up(sim):
    auto = auto_guider(sim.event_port, sim.legacy_port)
    async with running(auto):
        await wait_until(lambda: auto.status.connected, "the event link")
        assert auto.backend == "event"
        assert auto.status.backend == "event"
        outcome = await within(auto.dither(request(settle_time=1), lambda: None))
        assert outcome.kind is OutcomeKind.SETTLED
    assert [w.source for w in sim.dither_windows] == ["rpc"]
    assert not legacy_requests(sim)


async def test_auto_falls_back_to_legacy_and_returns_to_the_event_server(sim):
    port = closed_port()
    auto = auto_guider(port, sim.legacy_port)
    backends: list[str] = []
    auto.add_link_listener(lambda s: backends.append(s.backend))
    async with running(auto):
        await wait_until(lambda: auto.backend == "legacy" and auto.status.connected, "legacy")
        assert auto.status.backend == "legacy"
        outcome = await within(auto.dither(request(), lambda: None))
        assert outcome.kind is OutcomeKind.SETTLED
        assert [w.source for w in sim.dither_windows] == ["legacy"]

        # A PHD2 with its event server up appears on the event port.
        second = simulator(event_port=port, legacy_port=None)
        await second.start()
        try:
            await wait_until(lambda: auto.backend == "event", "the switch back")
            await wait_until(lambda: auto.status.connected, "the event link")
            assert auto.status.backend == "event"
            assert auto.status.port == port
            outcome = await within(auto.dither(request(settle_time=1), lambda: None))
            assert outcome.kind is OutcomeKind.SETTLED
            assert [w.source for w in second.dither_windows] == ["rpc"]
        finally:
            await second.stop()
    assert "legacy" in backends
    assert "event" in backends[backends.index("legacy") :]


async def test_a_retarget_during_a_connection_attempt_is_not_lost() -> None:
    """The attempt to the old legacy port completes after the user named a new PHD2:
    the guider must end up on the new one."""
    async with (
        Phd2Simulator(start="guiding") as old,
        Phd2Simulator(start="stopped") as new,
    ):
        release = asyncio.Event()
        attempts: list[int] = []

        async def slow_connect(
            host: str, port: int
        ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            attempts.append(port)
            if port == old.legacy_port:
                await release.wait()  # a slow name lookup, a remote host far away
            return await asyncio.open_connection(host, port)

        guider = LegacyGuider(
            "127.0.0.1",
            old.legacy_port,
            connect=slow_connect,
            backoff=Backoff(first_s=0.05, cap_s=0.2),
            poll_s=0.1,
        )
        task = asyncio.create_task(guider.run())
        try:
            await wait_until(lambda: attempts == [old.legacy_port], "the first attempt")
            guider.retarget("127.0.0.1", 0, new.legacy_port)
            release.set()
            await wait_until(lambda: guider.status.state is Phd2State.STOPPED, "the new PHD2")
            assert guider.status.port == new.legacy_port
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
