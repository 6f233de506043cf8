"""The app pauses saving for a dither and lets SharpCap save again afterwards."""

from __future__ import annotations

import time


def connected_and_capturing(world, exposure_s=0.1, **settings):
    world.camera.Controls.Exposure.Value = exposure_s
    world.camera.RunCapture()
    world.run(**settings)
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    return connection


def hook_writes(camera):
    return [w for w in camera.paused_writes if w.writer != "user"]


def test_pause_stops_saving_and_resume_saves_again(world):
    connection = connected_and_capturing(world)
    connection.wait_for(lambda m: m["type"] == "frame" and m["saved"])

    connection.send({"type": "pause", "id": 5, "max_s": 30.0})
    ack = connection.wait_type("ack", id=5)
    assert world.camera.Paused
    paused = connection.wait_type("paused")
    assert paused == {"type": "paused", "paused": True, "by": "app"}
    assert connection.messages.index(paused) < connection.messages.index(ack)
    mark = connection.mark()
    connection.wait_for(lambda m: m["type"] == "frame", start=mark)
    world.camera.wait_frames(len(world.camera.frames()) + 2, timeout=5)
    during = [m for m in connection.messages[mark:] if m["type"] == "frame"]
    assert during
    assert not any(f["saved"] for f in during)

    connection.send({"type": "resume", "id": 6, "after_next_frame": False})
    ack = connection.wait_type("ack", id=6)
    assert not world.camera.Paused
    resumed = connection.wait_type("paused", paused=False)
    assert resumed == {"type": "paused", "paused": False, "by": "app"}
    assert connection.messages.index(resumed) < connection.messages.index(ack)
    mark = connection.mark()
    assert connection.wait_for(lambda m: m["type"] == "frame", start=mark)["saved"] is True
    assert [w.value for w in hook_writes(world.camera)] == [True, False]
    assert {w.writer for w in hook_writes(world.camera)} == {"ditherapp-control"}


def test_resume_after_next_frame_drops_the_frame_that_overlapped_the_settle(world):
    camera = world.camera
    connection = connected_and_capturing(world, exposure_s=0.4)
    connection.send({"type": "pause", "id": 1, "max_s": 30.0})
    connection.wait_type("ack", id=1)
    camera.wait_frames(len(camera.frames()) + 1, timeout=5)  # an exposure in progress now

    resumed_at = time.monotonic()
    connection.send({"type": "resume", "id": 2, "after_next_frame": True, "max_wait_s": 10.0})
    ack = connection.wait_type("ack", id=2)
    unpaused = connection.wait_type("paused", paused=False)
    assert unpaused == {"type": "paused", "paused": False, "by": "app"}
    assert connection.messages.index(ack) < connection.messages.index(unpaused)

    boundary = next(e for e in camera.frames() if e.end > resumed_at)
    assert boundary.start < resumed_at  # it was in progress when the resume came
    assert not boundary.saved
    unpause_write = hook_writes(camera)[-1]
    assert unpause_write.value is False
    assert unpause_write.at >= boundary.end
    frames = camera.wait_frames(boundary.index + 1, timeout=5)
    assert frames[boundary.index].saved  # the next exposure is saved: nothing else lost
    assert not any(e.saved for e in frames if e.start < resumed_at and e.end > resumed_at)


def test_resume_after_next_frame_falls_back_to_max_wait_when_no_frame_comes(world):
    connection = connected_and_capturing(world)
    connection.send({"type": "pause", "id": 1, "max_s": 30.0})
    connection.wait_type("ack", id=1)
    world.camera.stop()
    connection.send({"type": "resume", "id": 2, "after_next_frame": True, "max_wait_s": 0.3})
    connection.wait_type("ack", id=2)
    assert world.camera.Paused
    message = connection.wait_type("paused", paused=False)
    assert message == {"type": "paused", "paused": False, "by": "app", "reason": "max_wait"}
    assert not world.camera.Paused


def test_a_second_pause_is_acked_and_one_resume_ends_it(world):
    connection = connected_and_capturing(world)
    connection.send({"type": "pause", "id": 1, "max_s": 30.0})
    connection.send({"type": "pause", "id": 2, "max_s": 30.0})
    connection.wait_type("ack", id=2)
    connection.send({"type": "resume", "id": 3})
    connection.wait_type("ack", id=3)
    assert not world.camera.Paused
    assert len(connection.of_type("paused")) == 2


def test_a_resume_without_a_pause_is_only_acked(world):
    connection = connected_and_capturing(world)
    connection.send({"type": "resume", "id": 7})
    connection.wait_type("ack", id=7)
    assert connection.of_type("paused") == []
    assert hook_writes(world.camera) == []


def test_a_pause_with_no_camera_selected_is_refused_in_the_ack(world):
    world.sharpcap.SelectedCamera = None
    world.run()
    connection = world.app.connection()
    assert connection.wait_type("hello")["name"] == "No camera"
    connection.send({"type": "pause", "id": 4, "max_s": 30.0})
    assert connection.wait_type("ack", id=4) == {
        "type": "ack",
        "id": 4,
        "ok": False,
        "error": "no_camera",
    }
