"""The PHD2 client and its dither operation over real loopback sockets, against the
simulator (and, where exact control of the wire is needed, a scripted fake PHD2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ditherapp.core.dither import DitherRequest, OutcomeKind
from ditherapp.core.errors import ConnectionLost
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.phd2_client import Phd2Client, Phd2RpcError
from ditherapp.sim.phd2_sim import Phd2Simulator

FAST = 25.0  # simulated seconds per wall second


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[Phd2Simulator]:
    s = Phd2Simulator(event_port=0, legacy_port=None, time_scale=FAST, start="guiding", seed=7)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def client(sim: Phd2Simulator) -> AsyncIterator[Phd2Client]:
    c = Phd2Client("127.0.0.1", sim.event_port, backoff=Backoff(first_s=0.05, cap_s=0.2))
    task = asyncio.create_task(c.run())
    await until(lambda: c.status.connected)
    try:
        yield c
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def quick(**overrides: float) -> DitherRequest:
    values = {
        "amount": 3.0,
        "ra_only": False,
        "settle_pixels": 1.5,
        "settle_time": 2,
        "settle_timeout": 30,
    }
    values.update(overrides)
    return DitherRequest(**values)  # type: ignore[arg-type]


async def test_connect_resyncs_state(client: Phd2Client) -> None:
    assert client.status.state is Phd2State.GUIDING
    assert client.status.settling is False
    assert client.status.version.startswith("2.6")


async def test_concurrent_requests_each_get_their_own_reply(client: Phd2Client) -> None:
    results = await asyncio.gather(
        client.request("get_app_state"),
        client.request("get_exposure"),
        client.request("get_paused"),
        client.request("get_connected"),
    )
    assert results == ["Guiding", 1000, False, True]


async def test_error_reply_raises_with_phd2s_code(client: Phd2Client) -> None:
    with pytest.raises(Phd2RpcError) as info:
        await client.request("no_such_method")
    assert info.value.code == -32601


async def test_events_reach_listeners(client: Phd2Client) -> None:
    steps: list[ev.GuideStep] = []
    client.add_event_listener(lambda e: steps.append(e) if isinstance(e, ev.GuideStep) else None)
    await until(lambda: len(steps) >= 2)
    assert steps[1].frame > steps[0].frame


async def test_pending_requests_fail_at_once_when_the_link_drops(
    sim: Phd2Simulator, client: Phd2Client
) -> None:
    sim.stall = True  # requests go unanswered
    pending = asyncio.create_task(client.request("get_app_state"))
    await asyncio.sleep(0.05)
    sim.drop_connections()
    with pytest.raises(ConnectionLost):
        async with asyncio.timeout(3):
            await pending
    sim.stall = False


async def test_request_time_limit(sim: Phd2Simulator, client: Phd2Client) -> None:
    sim.stall = True
    with pytest.raises(TimeoutError, match="get_app_state"):
        await client.request("get_app_state", time_limit=0.2)
    sim.stall = False


async def test_reconnects_after_phd2_restarts(sim: Phd2Simulator, client: Phd2Client) -> None:
    seen: list[bool] = []
    client.add_link_listener(lambda s: seen.append(s.connected))
    await sim.stop()
    await until(lambda: not client.status.connected)
    with pytest.raises(ConnectionLost):
        await client.request("get_app_state")
    await sim.start()
    await until(lambda: client.status.connected)
    assert await client.request("get_app_state") == "Guiding"
    assert False in seen
    assert seen[-1] is True


async def test_dither_settles(client: Phd2Client, sim: Phd2Simulator) -> None:
    began: list[bool] = []
    outcome = await EventGuider(client).dither(quick(), lambda: began.append(True))
    assert outcome.kind is OutcomeKind.SETTLED, outcome
    assert began == [True]
    assert outcome.total_frames is not None
    assert outcome.total_frames >= 2
    assert sim.dither_windows[-1].end is not None


async def test_dither_settle_failure_is_reported(client: Phd2Client, sim: Phd2Simulator) -> None:
    sim.never_settle = True
    outcome = await EventGuider(client).dither(quick(settle_timeout=3))
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert "timed-out" in outcome.message


async def test_dither_refused_unless_guiding(client: Phd2Client) -> None:
    await client.request("set_paused", [True])
    outcome = await EventGuider(client).dither(quick())
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == "PHD2 is paused"
    await client.request("stop_capture")
    await until(lambda: client.status.state is Phd2State.STOPPED)
    outcome = await EventGuider(client).dither(quick())
    assert outcome.kind is OutcomeKind.REFUSED
    assert "not guiding" in outcome.message


async def test_dither_refused_while_another_settles(client: Phd2Client) -> None:
    guider = EventGuider(client)
    first = asyncio.create_task(guider.dither(quick(settle_time=5)))
    await until(lambda: client.status.settling)
    second = await guider.dither(quick())
    assert second.kind is OutcomeKind.REFUSED
    assert second.message == "PHD2 is already settling"
    assert (await first).kind is OutcomeKind.SETTLED


async def test_dither_ends_at_settlemax_when_frames_stop(
    client: Phd2Client, sim: Phd2Simulator
) -> None:
    """PHD2 would never report its timeout without frames: the settle judge's own
    settlemax ends the settle, on time."""
    guider = EventGuider(client)
    # The deadline alone, not the hung-PHD2 watchdog, which would call the link dead
    # first (tests/faults/test_phd2_faults.py).
    client._watchdog.floor_s = client._watchdog.ceiling_s = 60.0
    task = asyncio.create_task(guider.dither(quick(settle_timeout=1)))
    await until(lambda: client.status.settling)
    sim.stall = True
    try:
        outcome = await asyncio.wait_for(task, 20)
    finally:
        sim.stall = False
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert outcome.rule == "timeout"
    assert outcome.message == "timed-out waiting for guider to settle"
    assert outcome.settle_s is not None
    assert 1.0 <= outcome.settle_s < 2.0


async def test_dither_lost_when_phd2_dies_mid_settle(
    client: Phd2Client, sim: Phd2Simulator
) -> None:
    task = asyncio.create_task(EventGuider(client).dither(quick(settle_time=10)))
    await until(lambda: client.status.settling)
    sim.drop_connections()
    outcome = await asyncio.wait_for(task, 3)
    assert outcome.kind is OutcomeKind.LOST


async def test_guide_from_stopped_settles(client: Phd2Client) -> None:
    await client.request("stop_capture")
    await until(lambda: client.status.state is Phd2State.STOPPED)
    outcome = await EventGuider(client).guide(pixels=1.5, time_s=1, timeout_s=30)
    assert outcome.kind is OutcomeKind.SETTLED
    assert await client.request("get_app_state") == "Guiding"


# ---------------------------------------------------------------- scripted fake PHD2

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[None]] = []

    async def serve(script: Script) -> int:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            task = asyncio.current_task()
            assert task is not None
            handlers.append(task)
            try:
                await script(reader, writer)
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield serve
    for server in servers:
        server.close()
    for writer in writers:
        writer.close()
    for task in handlers:
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Phd2Client], None]]:
    """Run clients' supervisors for the test; cancel and await them afterwards."""
    tasks: list[asyncio.Task[None]] = []

    def start(client: Phd2Client) -> None:
        tasks.append(asyncio.create_task(client.run()))

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def line(obj: object) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\r\n").encode()


VERSION = {"Event": "Version", "PHDVersion": "2.6.14", "PHDSubver": "", "OverlapSupport": True}


async def read_request(reader: asyncio.StreamReader) -> dict[str, object]:
    raw = await reader.readline()
    obj = json.loads(raw)
    assert isinstance(obj, dict)
    return obj


async def answer_resync(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for result in ("Guiding", False):
        req = await read_request(reader)
        writer.write(line({"jsonrpc": "2.0", "result": result, "id": req["id"]}))


async def test_out_of_order_replies_are_matched_by_id(scripted, running) -> None:
    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        first = await read_request(reader)
        second = await read_request(reader)
        writer.write(line({"jsonrpc": "2.0", "result": "second", "id": second["id"]}))
        writer.write(line({"jsonrpc": "2.0", "result": "first", "id": first["id"]}))
        await reader.read()

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    a = asyncio.create_task(client.request("set_connected", [True]))
    await asyncio.sleep(0.01)
    b = asyncio.create_task(client.request("get_app_state"))
    assert await a == "first"
    assert await b == "second"


async def test_truncated_line_is_skipped_and_the_next_read(scripted, running) -> None:
    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        # PHD2 drops the rest of a line a slow reader could not take; the next line is
        # glued onto the fragment.
        writer.write(b'{"Event":"GuideStep","Frame":1,"Ti' + line({"Event": "SettleBegin"}))
        writer.write(line({"Event": "StarLost", "Frame": 2}))
        await reader.read()

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    seen: list[str] = []
    client.add_event_listener(lambda e: seen.append(type(e).__name__))
    running(client)
    await until(lambda: "StarLost" in seen)
    assert client.status.bad_lines == 1


async def test_foreign_settle_done_is_not_taken_for_ours(scripted, running) -> None:
    """Another client's settle ends while our dither request is on its way: that
    SettleDone must not end our dither."""

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        for result in ("Guiding", False, 1000):  # preflight
            req = await read_request(reader)
            writer.write(line({"jsonrpc": "2.0", "result": result, "id": req["id"]}))
        req = await read_request(reader)
        assert req["method"] == "dither"
        writer.write(line({"Event": "SettleDone", "Status": 1, "Error": "someone else's"}))
        writer.write(line({"Event": "LockPositionSet", "X": 1.0, "Y": 2.0}))
        writer.write(line({"Event": "GuidingDithered", "dx": 1.0, "dy": 0.5}))
        writer.write(line({"Event": "SettleBegin"}))
        writer.write(line({"jsonrpc": "2.0", "result": 0, "id": req["id"]}))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(line({"Event": "Settling", "Distance": 0.5, "Time": 1.0, "SettleTime": 2}))
        writer.write(line({"Event": "SettleDone", "Status": 0, "TotalFrames": 3}))
        await reader.read()

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    outcome = await EventGuider(client).dither(quick())
    assert outcome.kind is OutcomeKind.SETTLED
    assert outcome.total_frames == 3


async def test_one_request_in_flight_without_overlap_support(scripted, running) -> None:
    in_flight: list[int] = []

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line({"Event": "Version", "PHDVersion": "2.6.5", "PHDSubver": ""}))
        await answer_resync(reader, writer)
        for _ in range(3):
            req = await read_request(reader)
            # Nothing else may arrive before we answer (old PHD2 would lose it).
            try:
                async with asyncio.timeout(0.05):
                    extra = await reader.readline()
                in_flight.append(2 if extra else 1)
            except TimeoutError:
                in_flight.append(1)
            writer.write(line({"jsonrpc": "2.0", "result": 0, "id": req["id"]}))
        await reader.read()

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    await asyncio.gather(*(client.request("get_exposure") for _ in range(3)))
    assert in_flight == [1, 1, 1]


async def test_guide_ends_on_calibration_failure_and_unsticks_phd2(scripted, running) -> None:
    """PHD2 sends no SettleDone when calibration fails, and refuses every later guide
    until stop_capture: the guide operation must end, and send it."""
    methods: list[str] = []

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        while True:
            req = await read_request(reader)
            methods.append(str(req["method"]))
            if req["method"] == "get_exposure":
                writer.write(line({"jsonrpc": "2.0", "result": 1000, "id": req["id"]}))
            elif req["method"] == "guide":
                writer.write(line({"Event": "StartCalibration", "Mount": "On Camera"}))
                writer.write(line({"jsonrpc": "2.0", "result": 0, "id": req["id"]}))
                await writer.drain()
                writer.write(line({"Event": "CalibrationFailed", "Reason": "star did not move"}))
                writer.write(line({"Event": "LockPositionLost"}))
            else:
                writer.write(line({"jsonrpc": "2.0", "result": 0, "id": req["id"]}))

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    outcome = await asyncio.wait_for(
        EventGuider(client).guide(pixels=1.5, time_s=5, timeout_s=60), 5
    )
    assert outcome.kind is OutcomeKind.SETTLE_FAILED
    assert "star did not move" in outcome.message
    await until(lambda: "stop_capture" in methods)


# ---------------------------------------------------------------- the early preflight


def _preflight_phd2(methods: list[str], *, states: list[str], extra_events: list[object]) -> Script:
    """A PHD2 that answers each get_app_state with the next of ``states``, sends
    ``extra_events`` after the first round of answers, and settles every dither."""

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        answered = 0
        while True:
            req = await read_request(reader)
            method = str(req["method"])
            methods.append(method)
            if method == "get_app_state":
                result: object = states[min(answered, len(states) - 1)]
                answered += 1
            elif method == "get_settling":
                result = False
            elif method == "get_exposure":
                result = 2000
            else:
                result = 0
            if method == "dither":
                writer.write(line({"Event": "SettleBegin"}))
            writer.write(line({"jsonrpc": "2.0", "result": result, "id": req["id"]}))
            if method == "dither":
                writer.write(line({"Event": "SettleDone", "Status": 0, "TotalFrames": 2}))
            if method == "get_exposure" and answered == 1:
                for event in extra_events:
                    writer.write(line(event))

    return phd2


GUIDE_STEP = {  # as PHD2 2.6.13 sent it (tests/data/transcripts)
    "Event": "GuideStep",
    "Frame": 1,
    "Time": 1.279,
    "Mount": "On Camera",
    "dx": -0.944,
    "dy": -0.967,
    "RADistanceRaw": 1.142,
    "DECDistanceRaw": -0.757,
    "RADistanceGuide": 0.719,
    "DECDistanceGuide": -0.757,
    "StarMass": 642391,
    "SNR": 91.16,
}
PREFLIGHT = ["get_app_state", "get_settling", "get_exposure"]


class PreflightRig:
    """A scripted PHD2 (``_preflight_phd2``), a client connected to it, its guider, and
    what PHD2 was asked and sent."""

    def __init__(self) -> None:
        self.methods: list[str] = []
        self.seen: list[ev.Phd2Event] = []
        self.guider: EventGuider

    async def start(
        self, scripted: Any, running: Any, *, states: list[str], extra_events: list[object]
    ) -> EventGuider:
        port = await scripted(
            _preflight_phd2(self.methods, states=states, extra_events=extra_events)
        )
        client = Phd2Client("127.0.0.1", port)
        running(client)
        await until(lambda: client.status.connected)
        client.add_event_listener(self.seen.append)
        self.guider = EventGuider(client)
        return self.guider

    def saw(self, kind: type[ev.Phd2Event]) -> bool:
        return any(isinstance(e, kind) for e in self.seen)


async def test_answers_asked_while_the_cameras_pause_are_used_for_the_dither(
    scripted, running
) -> None:
    rig = PreflightRig()
    guider = await rig.start(scripted, running, states=["Guiding"], extra_events=[GUIDE_STEP])
    guider.prepare()
    await until(lambda: rig.saw(ev.GuideStep))
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.SETTLED
    # A GuideStep says nothing new about PHD2's state: no second round of questions.
    assert sorted(rig.methods[:3]) == sorted(PREFLIGHT)
    assert rig.methods[3:] == ["dither"]


async def test_an_event_after_the_early_answers_makes_the_dither_ask_again(
    scripted, running
) -> None:
    """The early answer said Guiding, then the star was lost: the dither must see it."""
    star_lost = {"Event": "StarLost", "Frame": 6, "Status": "Star lost - low SNR", "ErrorCode": 2}
    rig = PreflightRig()
    guider = await rig.start(
        scripted, running, states=["Guiding", "LostLock"], extra_events=[star_lost]
    )
    guider.prepare()
    await until(lambda: rig.saw(ev.StarLost))
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == "PHD2 has lost the guide star"
    assert "dither" not in rig.methods
    assert rig.methods.count("get_app_state") == 2


async def test_early_answers_too_old_are_asked_again(
    scripted, running, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ditherapp.net.guider as guider_module

    rig = PreflightRig()
    guider = await rig.start(scripted, running, states=["Guiding"], extra_events=[])
    monkeypatch.setattr(guider_module, "PREFLIGHT_FRESH_S", -1.0)  # every answer is old
    guider.prepare()
    await until(lambda: len(rig.methods) == 3)
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.SETTLED
    assert rig.methods.count("get_app_state") == 2
    assert rig.methods[-1] == "dither"


async def test_early_answers_are_used_once(scripted, running) -> None:
    rig = PreflightRig()
    guider = await rig.start(scripted, running, states=["Guiding"], extra_events=[])
    guider.prepare()
    await until(lambda: len(rig.methods) == 3)
    assert (await guider.dither(quick())).kind is OutcomeKind.SETTLED
    assert (await guider.dither(quick())).kind is OutcomeKind.SETTLED
    assert rig.methods.count("get_app_state") == 2
    assert rig.methods.count("dither") == 2


async def test_a_failed_early_preflight_is_asked_again(client: Phd2Client) -> None:
    """The early questions went out on a connection that then dropped; the dither asks
    on the new one."""
    guider = EventGuider(client)
    links: list[bool] = []
    client.add_link_listener(lambda status: links.append(status.connected))
    guider.prepare()
    client.reconnect_now()
    await until(lambda: False in links and client.status.connected)
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.SETTLED, outcome


async def test_a_lost_star_after_the_early_answers_refuses_the_dither(
    client: Phd2Client, sim: Phd2Simulator
) -> None:
    """Against the simulator: PHD2 would accept this dither and then time out."""
    guider = EventGuider(client)
    guider.prepare()
    assert guider._preflight is not None
    await guider._preflight.task
    sim.lose_star(1000)
    await until(lambda: client.status.state is Phd2State.LOST_LOCK)
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.REFUSED
    assert outcome.message == "PHD2 has lost the guide star"


async def test_a_retarget_during_a_connection_attempt_is_not_lost(scripted, running) -> None:
    """The attempt to the old address completes after the user named a new one: the
    client must end up talking to the new PHD2, not stay with the old one."""

    def phd2_named(name: str) -> Script:
        async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(line(VERSION))
            await answer_resync(reader, writer)
            while True:
                req = await read_request(reader)
                writer.write(line({"jsonrpc": "2.0", "result": name, "id": req["id"]}))

        return phd2

    old_port = await scripted(phd2_named("old"))
    new_port = await scripted(phd2_named("new"))
    release = asyncio.Event()
    attempts: list[int] = []

    async def slow_connect(
        host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        attempts.append(port)
        if port == old_port:
            await release.wait()  # a slow name lookup, a remote host far away
        return await asyncio.open_connection(host, port)

    client = Phd2Client(
        "127.0.0.1", old_port, connect=slow_connect, backoff=Backoff(first_s=0.05, cap_s=0.2)
    )
    running(client)
    await until(lambda: attempts == [old_port])
    client.retarget("127.0.0.1", new_port)
    release.set()
    await until(lambda: client.status.connected)
    assert client.status.port == new_port
    assert await client.request("get_exposure") == "new"


OLD_VERSION = {"Event": "Version", "PHDVersion": "2.6.5", "PHDSubver": ""}  # no OverlapSupport


async def test_without_overlap_a_request_whose_caller_gave_up_still_holds_the_line(
    scripted, running
) -> None:
    """PHD2 before 2.6.7 loses a request written before the last is answered, so a
    caller that stops waiting (is cancelled) must not let the next one out early; and
    a caller cancelled while waiting for its turn sends nothing at all."""
    received: list[str] = []
    early: list[bytes] = []
    callers_done = asyncio.Event()

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(OLD_VERSION))
        await answer_resync(reader, writer)
        first = await read_request(reader)
        received.append(str(first["method"]))
        await callers_done.wait()
        # Old PHD2 would lose anything written now: nothing may come before the reply.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                early.append(await reader.readline())
        writer.write(line({"jsonrpc": "2.0", "result": 1, "id": first["id"]}))
        while True:
            req = await read_request(reader)
            received.append(str(req["method"]))
            writer.write(line({"jsonrpc": "2.0", "result": 2, "id": req["id"]}))

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    gave_up = asyncio.create_task(client.request("get_exposure"))
    await until(lambda: received == ["get_exposure"])
    never_sent = asyncio.create_task(client.request("stop_capture"))
    await asyncio.sleep(0)  # (a turn of the loop: it is now waiting for its turn)
    gave_up.cancel()
    never_sent.cancel()
    waited = asyncio.create_task(client.request("get_app_state"))
    callers_done.set()
    assert await waited == 2
    assert early == [], "a request was written before the one in flight was answered"
    assert received == ["get_exposure", "get_app_state"], "the cancelled one was not sent"
    assert gave_up.cancelled()
    assert never_sent.cancelled()


async def test_an_unanswered_early_preflight_is_the_answer(
    scripted, running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PHD2 does not answer the questions asked while the cameras paused: the dither is
    called off after one time limit, not after asking them all again."""
    import ditherapp.net.phd2_client as client_module

    asked: list[str] = []

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        while True:
            asked.append(str((await read_request(reader))["method"]))

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    running(client)
    await until(lambda: client.status.connected)
    monkeypatch.setattr(client_module, "DEFAULT_TIMEOUT_S", 0.3)
    guider = EventGuider(client)
    guider.prepare()
    await until(lambda: len(asked) == 3)
    outcome = await guider.dither(quick())
    assert outcome.kind is OutcomeKind.REFUSED
    assert "did not answer" in outcome.message
    assert sorted(asked) == sorted(PREFLIGHT), "asked once"


async def test_a_settling_answer_overtaken_by_settle_done_is_not_kept(scripted, running) -> None:
    # The reply to get_settling ("true") and PHD2's SettleDone come in one chunk: the
    # reader handles both before the asking task runs again, and the stale "true" then
    # left the client believing PHD2 settled for ever (every dither refused as
    # "PHD2 is already settling"; found by the soak under a set flood).
    connected = asyncio.Event()

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(line(VERSION))
        await answer_resync(reader, writer)
        await connected.wait()
        writer.write(line({"Event": "SettleBegin"}))
        writer.write(b"[1,2,3]\r\n")  # a line the client cannot read: it asks
        req = await read_request(reader)
        assert req["method"] == "get_app_state"
        writer.write(line({"jsonrpc": "2.0", "result": "Guiding", "id": req["id"]}))
        req = await read_request(reader)
        assert req["method"] == "get_settling"
        writer.write(
            line({"jsonrpc": "2.0", "result": True, "id": req["id"]})
            + line({"Event": "SettleDone", "Status": 0, "TotalFrames": 3, "DroppedFrames": 0})
        )
        await reader.read()

    port = await scripted(phd2)
    client = Phd2Client("127.0.0.1", port)
    done: list[object] = []
    client.add_event_listener(
        lambda e: done.append(e) if type(e).__name__ == "SettleDone" else None
    )
    running(client)
    await until(lambda: client.status.connected)
    connected.set()
    await until(lambda: bool(done))
    await until(lambda: not client._background)  # the question is over
    assert client.status.settling is False
