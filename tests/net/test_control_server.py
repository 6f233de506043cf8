"""The control socket as its clients see it: ditherctl-style controllers, camera
agents, and SimpleDither's unchanged client.py."""

from __future__ import annotations

import asyncio

import pytest

from ditherapp.core.settings import SEED_NAMES
from ditherapp.net.control_server import ControlServer, ControlServerError

SEED_VALUES = {
    "ditherevery": ("20", "20"),
    "waitfornextframe": ("false", "False"),
    "raonly": ("true", "True"),
    "settletarget": ("1.5", "1.5"),
    "settledelay": ("7", "7"),
    "settlemax": ("90", "90"),
    "maxpixels": ("4", "4"),
}


def test_every_seed_variable_is_covered() -> None:
    assert set(SEED_VALUES) == set(SEED_NAMES)


@pytest.mark.parametrize("name", SEED_NAMES)
async def test_legacy_client_get_and_set_every_seed_variable(app_parts, legacy, name) -> None:
    service, _, _ = app_parts
    raw, shown = SEED_VALUES[name]
    reply = await legacy({"op": "set", "cmd": name, "value": raw})
    assert reply == f"status : SET : OK value : {shown}\r\n"
    reply = await legacy({"op": "get", "cmd": name, "value": 0})
    assert reply == f"status : GET : OK value : {shown}\r\n"
    assert str(service.settings.get(name)).lower() in (shown.lower(), shown.lower() + ".0")


async def test_legacy_get_default_prints_like_the_seed(legacy) -> None:
    assert await legacy({"op": "get", "cmd": "ditherevery", "value": 0}) == (
        "status : GET : OK value : 10\r\n"
    )
    assert await legacy({"op": "get", "cmd": "waitfornextframe", "value": None}) == (
        "status : GET : OK value : True\r\n"
    )


async def test_legacy_ditherstring_is_the_next_rpc_line(legacy) -> None:
    await legacy({"op": "set", "cmd": "maxpixels", "value": "3"})
    reply = await legacy({"op": "get", "cmd": "ditherstring", "value": 0})
    assert reply.startswith("status : GET : OK value : {")
    assert '"method":"dither"' in reply
    assert '"amount":3' in reply
    assert '"settle":{"pixels":2,"time":10,"timeout":60}' in reply


@pytest.mark.parametrize(
    ("cmd", "value", "why"),
    [
        ("ditherevery", "0", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", "ten", "ditherevery must be a whole number from 1 to 1000"),
        ("ditherevery", None, "ditherevery needs a value"),
        ("raonly", "maybe", "raonly must be true or false"),
        ("ditherstring", "x", "ditherstring is read-only"),
        ("nosuch", "1", "unknown setting 'nosuch'"),
    ],
)
async def test_legacy_set_fails_clearly(app_parts, legacy, cmd, value, why) -> None:
    service, _, _ = app_parts
    before = service.settings
    reply = await legacy({"op": "set", "cmd": cmd, "value": value})
    assert reply.startswith("status : SET : FAIL value : ")
    assert why in reply
    assert reply.endswith("\r\n")
    assert service.settings == before


async def test_legacy_request_split_across_packets(app_parts) -> None:
    _, server, _ = app_parts
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b'{"op": "get", "cmd": "ditherev')
    await writer.drain()
    await asyncio.sleep(0)  # let the server see the partial object first
    writer.write(b'ery", "value": 0}')
    await writer.drain()
    async with asyncio.timeout(5):
        data = await reader.read()
    assert data == b"status : GET : OK value : 10\r\n"
    writer.close()


async def test_controller_get_set_and_errors(client_factory) -> None:
    c = await client_factory()
    assert await c.call({"type": "get", "name": "ditherevery"}) == {
        "type": "value",
        "name": "ditherevery",
        "value": 10,
    }
    assert (await c.call({"type": "set", "name": "ditherevery", "value": 20}))["value"] == 20
    bad = await c.call({"type": "set", "name": "ditherevery", "value": 0})
    assert bad == {
        "type": "error",
        "code": "invalid_value",
        "message": "ditherevery must be a whole number from 1 to 1000",
    }
    everything = await c.call({"type": "get"})
    assert everything["type"] == "settings"
    assert everything["values"]["ditherevery"] == 20
    assert everything["values"]["ditherstring"].startswith('{"method":"dither"')


async def test_bad_lines_get_errors_and_the_connection_stays_open(client_factory) -> None:
    c = await client_factory()
    await c.send_raw(b"this is not json\n")
    assert (await c.recv())["code"] == "bad_request"
    await c.send_raw(b"[1,2,3]\n")
    assert (await c.recv())["code"] == "bad_request"
    await c.send({"no": "type"})
    assert (await c.recv())["code"] == "bad_request"
    await c.send({"type": "frobnicate"})
    assert (await c.recv())["code"] == "unknown_type"
    assert (await c.call({"type": "ping"}))["type"] == "pong"


async def test_too_long_line_is_refused_and_closed(client_factory) -> None:
    c = await client_factory()
    await c.send_raw(b"x" * (64 * 1024 + 10))
    reply = await c.recv()
    assert reply["code"] == "line_too_long"
    assert await c.closed()


async def test_silent_client_is_dropped(client_factory) -> None:
    c = await client_factory()
    reply = await c.recv(timeout=10)
    assert reply["code"] == "timeout"
    assert await c.closed()


async def test_status_reports_phd2_and_cameras(client_factory) -> None:
    cam = await client_factory()
    welcome = await cam.call({"type": "hello", "role": "camera", "proto": 1, "name": "ASI294"})
    assert welcome == {"type": "welcome", "proto": 1, "camera": "cam-1"}
    await cam.send({"type": "frame", "seq": 1, "t": 0, "exposure_s": 5.0, "saved": True})
    ctl = await client_factory()
    status = await ctl.call({"type": "status"})
    assert status["phd2"]["connected"] is True
    assert status["phd2"]["state"] == "Guiding"
    assert status["phd2"]["backend"] == "event"
    assert status["cameras"][0]["name"] == "ASI294"
    assert status["cameras"][0]["frames_saved"] == 1
    assert status["cameras"][0]["frames_to_next"] == 9


async def test_dither_now_pauses_dithers_and_resumes_a_camera(client_factory, app_parts) -> None:
    _, _, guider = app_parts
    cam = await client_factory()
    await cam.call({"type": "hello", "role": "camera", "name": "cam"})
    ctl = await client_factory()
    assert await ctl.call({"type": "dither_now"}) == {"type": "ok"}
    pause = await cam.recv_type("pause")
    assert pause["max_s"] > 60
    await cam.send({"type": "ack", "id": pause["id"]})
    resume = await cam.recv_type("resume")
    assert resume["after_next_frame"] is True
    assert len(guider.requests) == 1
    refused = await ctl.call({"type": "dither_now"})
    assert refused["type"] == "error"
    assert refused["code"] == "refused"


async def test_dither_now_refused_when_phd2_not_guiding(client_factory, app_parts) -> None:
    from ditherapp.core.phd2.appstate import Phd2State

    _, _, guider = app_parts
    guider.set_status(state=Phd2State.LOOPING)
    ctl = await client_factory()
    reply = await ctl.call({"type": "dither_now"})
    assert reply == {
        "type": "error",
        "code": "refused",
        "message": "PHD2 is not guiding (state Looping)",
    }


async def test_subscribers_see_setting_changes(client_factory) -> None:
    watcher = await client_factory()
    assert (await watcher.call({"type": "subscribe"}))["type"] == "ok"
    other = await client_factory()
    await other.call({"type": "set", "name": "settlemax", "value": "120"})
    event = await watcher.recv_type("event")
    while event.get("event") != "setting":
        event = await watcher.recv_type("event")
    assert event["name"] == "settlemax"
    assert event["value"] == 120


async def test_camera_gone_mid_dither_is_resumed_and_not_waited_for(
    client_factory, app_parts
) -> None:
    service, _, guider = app_parts
    guider.auto_settle = False
    a = await client_factory()
    await a.call({"type": "hello", "role": "camera", "name": "A"})
    b = await client_factory()
    await b.call({"type": "hello", "role": "camera", "name": "B"})
    service.dither_now()
    pa = await a.recv_type("pause")
    pb = await b.recv_type("pause")
    await a.send({"type": "ack", "id": pa["id"]})
    await b.send({"type": "ack", "id": pb["id"]})
    async with asyncio.timeout(5):
        while not guider.requests:
            await asyncio.sleep(0.01)
    await b.close()
    async with asyncio.timeout(5):
        while service.machine.cameras["cam-2"].connected:
            await asyncio.sleep(0.01)
    from ditherapp.core.dither import DitherOutcome, OutcomeKind

    guider.outcomes.put_nowait(DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=1.0))
    resume = await a.recv_type("resume")
    await a.send({"type": "ack", "id": resume["id"]})
    await a.send({"type": "paused", "paused": False, "by": "app"})
    async with asyncio.timeout(5):
        while service.machine.cycle is not None:
            await asyncio.sleep(0.01)
    assert service.machine.totals.dithers == 1


async def test_token_required_off_loopback(app_parts) -> None:
    service, _, _ = app_parts
    with pytest.raises(ControlServerError, match="token"):
        ControlServer(service, host="0.0.0.0", port=0)


async def test_token_checked_on_first_message(app_parts) -> None:
    service, _, _ = app_parts
    server = ControlServer(service, host="127.0.0.1", port=0, token="s3cret")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"get","name":"ditherevery"}\n')
        async with asyncio.timeout(5):
            line = await reader.readline()
            rest = await reader.read()
        assert b'"unauthorized"' in line
        assert rest == b""
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"get","name":"ditherevery","token":"s3cret"}\n')
        async with asyncio.timeout(5):
            line = await reader.readline()
        assert b'"value":10' in line
        writer.close()
    finally:
        await server.close()


async def test_paused_camera_hears_from_the_app_during_a_long_settle(
    client_factory, app_parts, monkeypatch
) -> None:
    """Agents resume by themselves after 10 s of silence while paused; a settle can be
    much longer, so the app must keep talking to them."""
    import ditherapp.net.service as service_module

    service, _, guider = app_parts
    monkeypatch.setattr(service_module, "KEEPALIVE_S", 0.05)
    keepalive = asyncio.create_task(service._keepalive())
    try:
        guider.auto_settle = False
        cam = await client_factory()
        await cam.call({"type": "hello", "role": "camera", "name": "cam"})
        service.dither_now()
        pause = await cam.recv_type("pause")
        await cam.send({"type": "ack", "id": pause["id"]})
        for _ in range(3):
            assert (await cam.recv_type("ping", timeout=2))["type"] == "ping"
    finally:
        keepalive.cancel()
