"""A pause the user makes with SharpCap's Pause button is the user's: the hook never undoes it."""

from __future__ import annotations


def connected(world, **settings):
    world.camera.RunCapture()
    world.run(**settings)
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    return connection


def hook_writes(camera):
    return [w for w in camera.paused_writes if w.writer != "user"]


def test_a_user_pause_is_reported_and_survives_the_apps_pause_and_resume(world):
    connection = connected(world)
    world.camera.press_pause(True)
    assert connection.wait_type("paused") == {"type": "paused", "paused": True, "by": "user"}
    connection.send({"type": "pause", "id": 1, "max_s": 0.2})
    connection.wait_type("ack", id=1)
    connection.send({"type": "resume", "id": 2})
    connection.wait_type("ack", id=2)
    mark = connection.mark()
    connection.wait_for(lambda m: m["type"] == "frame", start=mark)
    world.camera.wait_frames(len(world.camera.frames()) + 3, timeout=5)  # past max_s
    assert world.camera.Paused
    assert hook_writes(world.camera) == []

    world.camera.press_pause(False)
    mark = connection.mark()
    message = connection.wait_for(lambda m: m["type"] == "paused", start=mark)
    assert message == {"type": "paused", "paused": False, "by": "user"}


def test_the_watchdog_leaves_a_user_pause_alone_when_the_app_goes_silent(world):
    connection = connected(world, APP_SILENT_S=0.2)
    world.camera.press_pause(True)
    connection.wait_type("paused", by="user")
    connection.send({"type": "pause", "id": 1, "max_s": 0.2})
    connection.wait_type("ack", id=1)
    connection.close()
    world.app.connection(2).wait_type("hello")
    assert world.camera.Paused
    assert hook_writes(world.camera) == []


def test_a_user_unpausing_during_the_apps_pause_takes_it_over(world):
    connection = connected(world)
    connection.send({"type": "pause", "id": 1, "max_s": 0.5})
    connection.wait_type("ack", id=1)
    world.camera.press_pause(False)
    message = connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "user"}

    world.camera.press_pause(True)  # the user pauses again, on purpose
    connection.wait_type("paused", paused=True, by="user")
    connection.send({"type": "resume", "id": 2})
    connection.wait_type("ack", id=2)
    mark = connection.mark()
    connection.wait_for(lambda m: m["type"] == "frame", start=mark)
    world.camera.wait_frames(len(world.camera.frames()) + 6, timeout=5)  # past max_s
    assert world.camera.Paused
    assert [w.value for w in hook_writes(world.camera)] == [True]
