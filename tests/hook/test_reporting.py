"""What the hook tells the app: hello, frames, capture changes, heartbeats."""

from __future__ import annotations

import time


def test_hello_names_the_camera_agent_and_runtime(world):
    world.run()
    hello = world.app.connection().wait_type("hello")
    assert hello["role"] == "camera"
    assert hello["proto"] == 1
    assert hello["name"] == "ZWO ASI294MC Pro"
    assert hello["agent"] == "sharpcap-hook/1.0"
    assert hello["runtime"].startswith("CPython 3.")
    assert hello["runtime"].endswith("; SharpCap 4.1.0.0")
    assert "token" not in hello


def test_hello_carries_the_token_when_one_is_set(world):
    world.app.token = "s3cret"
    world.run(TOKEN="s3cret")
    connection = world.app.connection()
    assert connection.wait_type("hello")["token"] == "s3cret"
    connection.wait_type("capture")  # accepted: the session goes on


def test_a_refused_token_is_shown_to_the_user_and_retried(world, wait_until):
    world.app.token = "right"
    world.run(TOKEN="wrong")
    world.app.connection(1).wait_type("hello")
    wait_until(
        lambda: any("TOKEN" in text for text in world.sharpcap.notifications),
        what="a notification about the token",
    )
    world.app.connection(2).wait_type("hello", token="wrong")


def test_every_frame_is_reported_in_order_with_what_sharpcap_did_with_it(world):
    world.run()
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    world.camera.wait_frames(2, timeout=5)
    world.camera.RunCapture()
    world.camera.wait_frames(6, timeout=5)
    last = connection.wait_for(lambda m: m["type"] == "frame" and m["seq"] >= 6)
    assert abs(last["t"] - time.time()) < 5
    frames = connection.of_type("frame")
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    recorded = world.camera.frames()
    assert [f["saved"] for f in frames] == [e.saved for e in recorded[: len(frames)]]
    assert {f["exposure_s"] for f in frames} == {0.1}
    assert frames[0]["saved"] is False  # not capturing yet
    assert frames[-1]["saved"] is True


def test_capture_start_and_stop_are_reported(world):
    world.run()
    connection = world.app.connection()
    assert connection.wait_type("capture")["capturing"] is False  # state on connect
    world.camera.PrepareToCapture()
    world.camera.RunCapture()
    connection.wait_type("capture", capturing=True)
    world.camera.StopCapture()
    mark = connection.mark()
    connection.wait_for(lambda m: m == {"type": "capture", "capturing": False}, start=mark)


def test_exposure_is_reported_in_seconds(world):
    world.camera.Controls.Exposure.ExposureMs = 150.0
    world.run()
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    assert connection.wait_type("frame")["exposure_s"] == 0.15


def test_heartbeats_flow_while_connected(world):
    world.run(HEARTBEAT_S=0.1)
    connection = world.app.connection()
    connection.wait_for(lambda _: len(connection.of_type("heartbeat")) >= 3)
    assert all(isinstance(h["t"], float) for h in connection.of_type("heartbeat"))


def test_a_ping_gets_a_heartbeat_at_once(world):
    world.run(HEARTBEAT_S=60.0)
    connection = world.app.connection()
    connection.wait_type("capture")
    connection.send({"type": "ping"})
    connection.wait_type("heartbeat", timeout=2.0)


def test_unknown_and_malformed_lines_are_ignored(world):
    world.run()
    connection = world.app.connection()
    connection.wait_type("capture")
    connection.send("this is not json")
    connection.send("[1, 2, 3]")
    connection.send('{"no_type": true}')
    connection.send({"type": "mystery", "payload": {"x": 1}})
    connection.send({"type": "error", "code": "unknown_type", "message": "whatever"})
    connection.send({"type": "pause", "id": 9, "max_s": 30, "future_field": [1]})
    connection.wait_type("ack", id=9)
    assert world.camera.Paused
    assert len(world.app.connections) == 1


def test_a_pause_the_user_made_before_the_hook_started_is_reported_on_connect(world):
    world.camera.press_pause(True)
    world.run()
    connection = world.app.connection()
    connection.wait_type("hello")
    assert connection.wait_type("paused") == {"type": "paused", "paused": True, "by": "user"}
