"""Abuse of the control socket while a session runs: a thousand clients at once, 10 MB
lines, clients that drip a byte every few milliseconds. The camera keeps dithering, a
controller's requests keep being answered, and the abusers get a clear refusal."""

from __future__ import annotations

import asyncio
import contextlib
import json

from ditherapp.core.control import MAX_LINE_BYTES
from ditherapp.net.control_server import MAX_CLIENTS

ANSWER_S = 2.0
"""How long a controller may wait for an answer before the app counts as unresponsive."""


class Controller:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Controller:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self = cls(reader, writer)
        assert (await self.call({"type": "hello", "role": "controller"}))["type"] == "welcome"
        return self

    async def call(self, message: dict, timeout: float = ANSWER_S) -> dict:
        self.writer.write(json.dumps(message).encode() + b"\n")
        async with asyncio.timeout(timeout):
            return dict(json.loads(await self.reader.readline()))

    def close(self) -> None:
        self.writer.close()


async def test_a_thousand_clients_at_once_are_capped_and_the_app_stays_responsive(
    make_world, wait_until, error_trap
):
    world = await make_world()
    world.add_camera("A", 0.1)
    await world.wait_connected()
    controller = await Controller.open(world.control_port)
    dithers = len(world.tap.records)

    release = asyncio.Event()
    answers: list[dict] = []

    async def storm_client() -> None:
        """Connect, ask for the status, keep the connection until the test is over.

        It speaks first, as every real client does: a silent client whose handshake
        ended in a SYN cookie while the accept queue overflowed would wait for ever,
        the kernel having no record of it."""
        reader, writer = await asyncio.open_connection("127.0.0.1", world.control_port)
        try:
            writer.write(b'{"type":"status"}\n')
            answers.append(json.loads(await reader.readline()))
            await release.wait()
        finally:
            writer.close()

    storm = [asyncio.create_task(storm_client()) for _ in range(1000)]
    # While they pour in, a controller's requests are answered.
    answered = 0
    while len(answers) < 1000:
        assert (await controller.call({"type": "status"}))["type"] == "status"
        answered += 1
        assert not [t for t in storm if t.done()], "a storm client failed"
        assert world.runtime.control.clients <= MAX_CLIENTS
        await wait_until(lambda: True)
    assert answered >= 1
    release.set()
    await asyncio.gather(*storm)
    # The camera and the busy controller kept their slots; the first storm clients took
    # the other 62, and those quiet for a while since gave theirs to later ones.
    kinds = [a["type"] for a in answers]
    assert kinds.count("status") >= MAX_CLIENTS - 2
    busy = [a for a in answers if a["type"] == "error"]
    assert len(busy) == 1000 - kinds.count("status")
    assert {(a["code"], a["message"]) for a in busy} == {("busy", "too many clients")}

    # The slots come back, the camera never noticed, dithering went on.
    await wait_until(lambda: world.runtime.control.clients == 2, 5, "the storm to leave")
    assert (await world.status())["cameras"][0]["connected"] is True
    await world.wait_records(dithers + 1)
    assert (await controller.call({"type": "get", "name": "ditherevery"}))["value"] == 2
    controller.close()
    assert not error_trap.problems()


async def test_ten_megabyte_lines_are_refused_and_closed_while_others_are_served(
    make_world, wait_until, error_trap
):
    world = await make_world()
    world.add_camera("A", 0.1)
    await world.wait_connected()
    controller = await Controller.open(world.control_port)
    huge_request = b'{"type":"set","name":"ditherevery","value":"' + b"9" * 10_000_000 + b'"}\n'
    no_newline = b"x" * 10_000_000

    async def flood(data: bytes) -> bytes:
        """Send it all while reading what comes back, until the app closes the link."""
        reader, writer = await asyncio.open_connection("127.0.0.1", world.control_port)

        async def read_all() -> bytes:
            received = b""
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    received += chunk
            return received

        reading = asyncio.create_task(read_all())
        try:
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            async with asyncio.timeout(5):
                return await reading
        finally:
            writer.close()

    floods = [asyncio.create_task(flood(huge_request)), asyncio.create_task(flood(no_newline))]
    status = asyncio.create_task(controller.call({"type": "status"}))
    results = await asyncio.gather(*floods)
    assert (await status)["type"] == "status"
    for received in results:
        error = json.loads(received.splitlines()[0])
        assert error["code"] == "line_too_long", error
        assert str(MAX_LINE_BYTES) in error["message"]
    await wait_until(lambda: world.runtime.control.clients == 2, 5, "the flooders to be dropped")
    assert (await controller.call({"type": "get", "name": "ditherevery"}))["value"] == 2
    assert world.service.settings.ditherevery == 2
    controller.close()
    assert not error_trap.problems()


async def test_slow_drip_clients_do_not_hold_up_anyone(make_world, wait_until, error_trap):
    world = await make_world()
    world.add_camera("A", 0.1)
    await world.wait_connected()
    controller = await Controller.open(world.control_port)
    dithers = len(world.tap.records)
    request = json.dumps({"type": "get", "name": "settlemax", "pad": "x" * 150}).encode() + b"\n"

    async def drip() -> dict:
        reader, writer = await asyncio.open_connection("127.0.0.1", world.control_port)
        try:
            for i in range(len(request)):
                writer.write(request[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.003)
            async with asyncio.timeout(ANSWER_S):
                return dict(json.loads(await reader.readline()))
        finally:
            writer.close()

    drippers = [asyncio.create_task(drip()) for _ in range(20)]
    calls = 0
    while not all(d.done() for d in drippers):
        reply = await controller.call({"type": "set", "name": "settledelay", "value": calls % 5})
        assert reply == {"type": "value", "name": "settledelay", "value": calls % 5}
        calls += 1
    assert calls >= 10
    for reply in await asyncio.gather(*drippers):
        assert reply == {"type": "value", "name": "settlemax", "value": 30}
    await world.wait_records(dithers + 1)
    controller.close()
    assert not error_trap.problems()
