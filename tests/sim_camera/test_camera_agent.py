"""SimCamera speaks the camera protocol like the SharpCap hook, with the same fail-open rules."""

from __future__ import annotations

import asyncio
import socket
import time

from ditherapp.sim.camera_agent import SimCamera


async def until(condition, timeout=5.0):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_hello_then_every_frame_in_order(app, camera):
    cam = camera(token="t0k")
    connection = await app.connection()
    hello = await connection.wait_type("hello")
    assert hello["role"] == "camera"
    assert hello["proto"] == 1
    assert hello["name"] == "Sim 294"
    assert hello["token"] == "t0k"
    assert hello["runtime"].endswith("; simulated")
    assert await connection.wait_type("capture") == {"type": "capture", "capturing": True}
    await connection.wait_for(
        lambda m: m["type"] == "frame" and len(connection.of_type("frame")) >= 4
    )
    frames = connection.of_type("frame")
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    by_seq = {e.seq: e for e in cam.exposures}
    assert all(by_seq[f["seq"]].saved == f["saved"] for f in frames)
    assert all(f["saved"] and f["exposure_s"] == 0.1 for f in frames)
    assert cam.camera_id == "cam-1"
    assert cam.connected


async def test_pause_stops_saving_and_resume_saves_again(app, camera):
    cam = camera()
    connection = await app.connection()
    await connection.wait_type("frame")
    connection.send({"type": "pause", "id": 5, "max_s": 30.0})
    ack = await connection.wait_type("ack", id=5)
    index = connection.messages.index(ack)
    assert connection.messages[index - 1] == {"type": "paused", "paused": True, "by": "app"}
    assert (cam.paused, cam.paused_by) == (True, "app")
    mark = connection.mark()
    paused_frame = await connection.wait_type("frame", start=mark)
    assert paused_frame["saved"] is False

    connection.send({"type": "resume", "id": 6})
    await connection.wait_type("ack", id=6)
    assert (cam.paused, cam.paused_by) == (False, None)
    mark = connection.mark()
    assert (await connection.wait_type("frame", start=mark))["saved"] is True


async def test_resume_after_next_frame_drops_the_frame_that_overlapped_the_settle(app, camera):
    cam = camera(exposure_s=0.2)
    connection = await app.connection()
    await connection.wait_type("frame")
    connection.send({"type": "pause", "id": 1, "max_s": 30.0})
    await connection.wait_type("ack", id=1)
    mark = connection.mark()
    await connection.wait_type("frame", start=mark)  # a new exposure is in progress now

    resumed_at = time.monotonic()
    connection.send({"type": "resume", "id": 2, "after_next_frame": True, "max_wait_s": 10.0})
    await connection.wait_type("ack", id=2)
    unpaused = await connection.wait_type("paused", paused=False)
    assert unpaused == {"type": "paused", "paused": False, "by": "app"}
    [overlapping] = [e for e in cam.exposures if e.start < resumed_at < e.end]
    assert not overlapping.saved
    await until(lambda: cam.exposures[-1].seq > overlapping.seq)
    following = cam.exposures[overlapping.seq - cam.exposures[0].seq + 1]
    assert following.seq == overlapping.seq + 1
    assert following.saved  # the next exposure is kept: nothing else lost


async def test_resume_after_next_frame_falls_back_to_max_wait(app, camera):
    cam = camera(exposure_s=30.0)  # no frame boundary will come
    connection = await app.connection()
    connection.send({"type": "pause", "id": 1, "max_s": 60.0})
    connection.send({"type": "resume", "id": 2, "after_next_frame": True, "max_wait_s": 0.2})
    await connection.wait_type("ack", id=2)
    message = await connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "app", "reason": "max_wait"}
    assert not cam.paused


async def test_a_pause_ends_after_max_s(app, camera):
    cam = camera()
    connection = await app.connection()
    connection.send({"type": "pause", "id": 1, "max_s": 0.2})
    message = await connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "watchdog", "reason": "max_s"}
    assert not cam.paused


async def test_a_silent_app_ends_the_pause(app, camera):
    camera(app_silent_s=0.3)
    connection = await app.connection()
    connection.send({"type": "pause", "id": 1, "max_s": 60.0})
    message = await connection.wait_type("paused", paused=False)
    assert message["reason"] == "app_silent"


async def test_a_lost_connection_ends_the_pause_and_the_camera_reconnects(app, camera):
    cam = camera()
    first = await app.connection()
    first.send({"type": "pause", "id": 1, "max_s": 60.0})
    await first.wait_type("ack", id=1)
    first.close()
    second = await app.connection(2)
    await second.wait_type("hello")
    assert not cam.paused
    assert second.of_type("paused") == []
    mark = second.mark()
    assert (await second.wait_type("frame", start=mark))["saved"] is True


async def test_a_user_pause_is_never_undone(app, camera):
    cam = camera(app_silent_s=0.2)
    connection = await app.connection()
    await connection.wait_type("capture")
    cam.press_pause(True)
    assert await connection.wait_type("paused") == {"type": "paused", "paused": True, "by": "user"}
    connection.send({"type": "pause", "id": 1, "max_s": 0.1})
    connection.send({"type": "resume", "id": 2})
    await connection.wait_type("ack", id=2)
    seen = len(cam.exposures)
    await until(lambda: len(cam.exposures) >= seen + 5)  # well past max_s and the silence
    assert (cam.paused, cam.paused_by) == (True, "user")
    assert all(not e.saved for e in cam.exposures[seen:])
    cam.press_pause(False)
    message = await connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "user"}


async def test_set_capturing_reports_and_stops_saving(app, camera):
    cam = camera()
    connection = await app.connection()
    await connection.wait_type("frame")
    cam.set_capturing(False)
    mark = connection.mark()
    assert await connection.wait_type("capture", start=mark) == {
        "type": "capture",
        "capturing": False,
    }
    assert (await connection.wait_type("frame", start=mark))["saved"] is False
    assert not cam.capturing


async def test_heartbeats_and_ping(app, camera):
    camera(heartbeat_s=0.1)
    connection = await app.connection()
    await connection.wait_for(lambda _: len(connection.of_type("heartbeat")) >= 2)
    mark = connection.mark()
    connection.send({"type": "ping"})
    await connection.wait_type("heartbeat", start=mark)


async def test_unknown_and_malformed_messages_are_ignored(app, camera):
    cam = camera()
    connection = await app.connection()
    await connection.wait_type("capture")
    connection._writer.write(b"not json\n[1]\n")
    connection.send({"type": "mystery", "x": 1})
    connection.send({"type": "pause", "id": 3, "max_s": 30, "future": True})
    await connection.wait_type("ack", id=3)
    assert cam.paused
    assert len(app.connections) == 1


async def test_keeps_trying_until_the_app_is_there(app, camera):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cam = camera(port=port)
    await until(lambda: len(cam.exposures) >= 3)  # exposing, not connected
    assert not cam.connected
    late = type(app)()
    await late.start(port)
    try:
        connection = await late.connection()
        await connection.wait_type("hello")
        await until(lambda: cam.connected)
    finally:
        await late.close()


async def test_stop_ends_run_and_releases_the_apps_pause(app):
    cam = SimCamera(name="Sim", exposure_s=0.05, port=app.port, reconnect_s=0.05)
    task = asyncio.create_task(cam.run())
    connection = await app.connection()
    connection.send({"type": "pause", "id": 1, "max_s": 60.0})
    await connection.wait_type("ack", id=1)
    cam.stop()
    async with asyncio.timeout(5):
        await task
    assert not cam.paused
    assert not cam.connected
    await asyncio.wait_for(connection.closed.wait(), 5)


async def test_run_can_be_cancelled(app):
    cam = SimCamera(name="Sim", exposure_s=0.05, port=app.port)
    task = asyncio.create_task(cam.run())
    await app.connection()
    task.cancel()
    async with asyncio.timeout(5):
        while not task.done():
            await asyncio.sleep(0.01)
    assert task.cancelled()
    assert not cam.connected
