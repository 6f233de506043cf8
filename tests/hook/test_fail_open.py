"""The hook never keeps SharpCap paused on its own: every way a pause ends by itself."""

from __future__ import annotations

import threading


def paused_by_app(world, max_s=30.0, **settings):
    world.camera.RunCapture()
    world.run(**settings)
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    message = {"type": "pause", "id": 1}
    if max_s is not None:
        message["max_s"] = max_s
    connection.send(message)
    connection.wait_type("ack", id=1)
    assert world.camera.Paused
    return connection


def test_a_pause_ends_after_max_s_without_a_resume(world):
    connection = paused_by_app(world, max_s=0.3)
    message = connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "watchdog", "reason": "max_s"}
    assert not world.camera.Paused
    mark = connection.mark()
    assert connection.wait_for(lambda m: m["type"] == "frame", start=mark)["saved"] is True


def test_the_hard_cap_bounds_a_pause_longer_than_it(world):
    connection = paused_by_app(world, max_s=5000.0, HARD_CAP_S=0.3)
    message = connection.wait_type("paused", paused=False)
    assert message["by"] == "watchdog"
    assert message["reason"] == "hard_cap"


def test_a_pause_without_max_s_gets_the_hard_cap(world):
    connection = paused_by_app(world, max_s=None, HARD_CAP_S=0.3)
    assert connection.wait_type("paused", paused=False)["reason"] == "hard_cap"


def test_a_dropped_connection_ends_the_pause_and_the_hook_reconnects(world, wait_until):
    first = paused_by_app(world)
    first.close()
    wait_until(lambda: not world.camera.Paused, what="the camera to be unpaused")
    assert any("disconnected" in line for line in world.hook.log_lines)
    second = world.app.connection(2)
    second.wait_type("hello")
    assert second.wait_type("capture") == {"type": "capture", "capturing": True}
    mark = second.mark()
    assert second.wait_for(lambda m: m["type"] == "frame", start=mark)["saved"] is True
    assert second.of_type("paused") == []  # the new session starts unpaused


def test_the_app_going_away_ends_the_pause_and_the_hook_keeps_trying(world, wait_until):
    paused_by_app(world)
    world.app.close()
    wait_until(lambda: not world.camera.Paused, what="the camera to be unpaused")
    wait_until(
        lambda: any("not reachable" in n for n in world.sharpcap.notifications),
        what="a notification that ditherapp is not reachable",
    )
    assert world.hook.running


def test_a_silent_app_ends_the_pause(world):
    connection = paused_by_app(world, APP_SILENT_S=0.4)
    message = connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "watchdog", "reason": "app_silent"}
    assert not world.camera.Paused


def test_an_app_that_keeps_talking_keeps_its_pause(world):
    connection = paused_by_app(world, APP_SILENT_S=0.4)
    stop = threading.Event()
    pings = 0

    def ping_every_100ms() -> None:  # the app's liveness traffic during a long settle
        nonlocal pings
        while not stop.wait(0.1):
            connection.send({"type": "ping"})
            pings += 1

    pinger = threading.Thread(target=ping_every_100ms, daemon=True)
    pinger.start()
    try:
        connection.wait_for(lambda _: pings >= 12)  # three silence windows
        assert world.camera.Paused
        assert connection.of_type("paused") == [{"type": "paused", "paused": True, "by": "app"}]
    finally:
        stop.set()
        pinger.join(5)
    assert connection.wait_type("paused", paused=False)["reason"] == "app_silent"
