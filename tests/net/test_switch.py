"""The guider switch: one guider for the service, whose backend can be replaced while
everything runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.machine import Phase
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.net.listeners import Listeners
from ditherapp.net.phd2_client import LinkStatus
from ditherapp.net.switch import GuiderSwitch


class Backend:
    def __init__(self, name: str, *, connected: bool) -> None:
        self.backend = name
        self.status = LinkStatus(host="h", port=1, connected=connected, state=Phd2State.GUIDING)
        self.events: Listeners[ev.Phd2Event] = Listeners("test event")
        self.links: Listeners[LinkStatus] = Listeners("test link")
        self.running = False
        self.stopped = asyncio.Event()
        self.calls: list[str] = []

    def add_event_listener(self, cb: Any) -> Any:
        return self.events.add(cb)

    def add_link_listener(self, cb: Any) -> Any:
        return self.links.add(cb)

    async def run(self) -> None:
        self.running = True
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False
            self.stopped.set()

    def reconnect_now(self) -> None:
        self.calls.append("reconnect")

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:
        self.calls.append(f"retarget {host}")

    def prepare(self) -> None:
        self.calls.append("prepare")

    async def dither(self, request: DitherRequest, on_settle_started: Any) -> DitherOutcome:
        self.calls.append("dither")
        return DitherOutcome(kind=OutcomeKind.SETTLED)


async def until(predicate: Any) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_only_the_backend_in_use_is_heard_and_run() -> None:
    old, new = Backend("event", connected=True), Backend("legacy", connected=False)
    switch = GuiderSwitch(old)
    heard: list[object] = []
    switch.add_event_listener(heard.append)
    switch.add_link_listener(heard.append)
    task = asyncio.create_task(switch.run())
    try:
        await until(lambda: old.running)
        old.events(ev.SettleBegin())
        switch.use(new)
        assert heard[-1] == new.status, "the service learns the new link at once"
        await until(lambda: new.running and not old.running)
        old.events(ev.SettleDone(status=0))  # the old one's last words: not heard
        new.events(ev.Paused())
        assert [type(x).__name__ for x in heard] == ["SettleBegin", "LinkStatus", "Paused"]
        assert switch.backend == "legacy"
        assert switch.status is new.status
        switch.reconnect_now()
        switch.retarget("pc", 1, 2)
        switch.prepare()
        request = DitherRequest(
            amount=1, ra_only=False, settle_pixels=1, settle_time=1, settle_timeout=10
        )
        await switch.dither(request, lambda: None)
        assert new.calls == ["reconnect", "retarget pc", "prepare", "dither"]
        assert old.calls == []
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert not new.running, "cancelling the switch stops the backend"


@pytest.mark.parametrize("guard", [False, True])
async def test_a_dither_under_way_when_the_protocol_changes_resumes_the_cameras(
    app_parts: Any, guard: bool
) -> None:
    from ditherapp.core.settings import DitherSettings
    from ditherapp.net.service import DitherService

    _, _, old = app_parts  # tests/net/conftest.py's FakeGuider, guiding
    old.auto_settle = False  # the settle never ends by itself
    switch = GuiderSwitch(old)
    service = DitherService(settings=DitherSettings(ditherevery=1, guard=guard), guider=switch)
    service._on_link(switch.status)
    sent: list[dict[str, Any]] = []

    class Camera:
        def send(self, message: dict[str, Any]) -> None:
            sent.append(message)

    camera = service.attach_camera("main", Camera())
    service.camera_message(camera, {"type": "frame", "exposure_s": 1.0, "saved": True})
    (pause,) = [m for m in sent if m["type"] == "pause"]
    service.camera_message(camera, {"type": "ack", "id": pause["id"], "ok": True})
    await until(lambda: len(old.requests) == 1)
    new = type(old)()
    new.set_status(connected=False, state=Phd2State.UNKNOWN)
    switch.use(new)
    assert service.machine.last_outcome is not None
    assert service.machine.last_outcome.kind is OutcomeKind.LOST
    if guard:
        # The new backend is not connected yet: the frame guard keeps the cameras paused
        # (no resume in between), and lets go once the new backend guides.
        assert service.machine.phase is Phase.GUARDING
        assert not [m for m in sent if m["type"] == "resume"]
        new.set_status(connected=True, state=Phd2State.GUIDING)
        await until(lambda: service.machine.phase is Phase.IDLE)
    assert [m for m in sent if m["type"] == "resume"], "nobody will report this settle's end"
    service.shutdown()


@pytest.mark.parametrize("turns", range(8))
async def test_a_stop_that_comes_during_a_switch_stops(turns: int) -> None:
    """Quitting right after changing the protocol: the switch is stopping the old backend
    when the stop comes; it must stop, not go on with the new backend for ever."""
    from ditherapp.net.guider import EventGuider
    from ditherapp.net.legacy import LegacyGuider
    from ditherapp.net.phd2_client import Phd2Client
    from ditherapp.sim.phd2_sim import Phd2Simulator

    async with Phd2Simulator(start="guiding") as sim:
        old = EventGuider(Phd2Client("127.0.0.1", sim.event_port))
        switch = GuiderSwitch(old)
        task = asyncio.create_task(switch.run())
        await until(lambda: old.status.connected)
        new = LegacyGuider("127.0.0.1", sim.legacy_port)
        switch.use(new)
        for _ in range(turns):
            await asyncio.sleep(0)  # (loop turns: where in the switch the stop lands)
        task.cancel()
        await asyncio.wait({task}, timeout=5)  # (this wait never cancels it again)
        stopped = task.cancelled()
        if not stopped:
            task.cancel()
            await asyncio.wait({task})
        assert stopped, "the stop was taken for the old backend's and lost"
        assert not new.status.connected


async def test_a_stop_is_not_lost_when_the_connection_fails_at_the_same_moment() -> None:
    """On 3.11 a task group can report a child's error and drop a cancel that came with
    it; the reconnect loop must still stop."""
    import json

    from ditherapp.net.backoff import Backoff
    from ditherapp.net.phd2_client import Phd2Client

    async def phd2(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version = {"Event": "Version", "PHDVersion": "2.6.14", "OverlapSupport": True}
        writer.write((json.dumps(version) + "\r\n").encode())
        try:
            while raw := await reader.readline():
                refusal = {"jsonrpc": "2.0", "error": {"code": 1, "message": "no"}}
                reply = {**refusal, "id": json.loads(raw)["id"]}
                writer.write((json.dumps(reply) + "\r\n").encode())
        finally:
            writer.close()

    server = await asyncio.start_server(phd2, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = Phd2Client("127.0.0.1", port, backoff=Backoff(first_s=0.05, cap_s=0.05))
        run = asyncio.create_task(client.run())
        resync = client._resync

        async def resync_then_stop() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.add_done_callback(lambda _: run.cancel())  # the stop lands as it fails
            client._resync = resync  # type: ignore[method-assign]
            await resync()

        client._resync = resync_then_stop  # type: ignore[method-assign]
        async with asyncio.timeout(5):
            with pytest.raises(asyncio.CancelledError):
                await run
    finally:
        server.close()
        await server.wait_closed()
