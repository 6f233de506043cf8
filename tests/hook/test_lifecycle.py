"""Running the script again, changing camera, the toolbar button, and a failing handler."""

from __future__ import annotations

from ditherapp.sim.fake_sharpcap import hook_threads


def thread_names():
    return sorted(t.name for t in hook_threads())


def test_running_the_script_again_replaces_the_old_copy(world, wait_until):
    world.camera.RunCapture()
    scope = world.run()
    old_hook = world.hook
    first = world.app.connection(1)
    first.wait_type("hello")
    world.camera.start()
    first.send({"type": "pause", "id": 1, "max_s": 30.0})
    first.wait_type("ack", id=1)

    world.camera.stop()  # so that frame numbers below are deterministic

    world.run(scope=scope)  # the same console scope, as "Run Script" twice does

    assert world.hook is not old_hook
    assert not old_hook.running
    assert first.eof.wait(5), "the old connection was not closed"
    assert first.of_type("paused")[-1] == {
        "type": "paused",
        "paused": False,
        "by": "watchdog",
        "reason": "replaced",
    }
    assert not world.camera.Paused
    assert len(world.camera.FrameCaptured.handlers) == 1
    assert [b.Name for b in world.sharpcap.CustomButtons] == ["ditherapp"]
    assert thread_names() == ["ditherapp-control", "ditherapp-io"]
    second = world.app.connection(2)
    second.wait_type("hello")
    world.camera.start()
    assert second.wait_type("frame")["seq"] == 1  # a new copy counts from its start
    assert len(world.app.connections) == 2


def test_a_run_in_a_fresh_scope_also_finds_the_old_copy(world):
    world.run()
    world.app.connection(1).wait_type("hello")
    world.run()  # e.g. the startup script ran it, then the user ran it from the console
    assert world.app.connection(1).eof.wait(5)
    world.app.connection(2).wait_type("hello")
    assert len(world.camera.FrameCaptured.handlers) == 1
    assert len(world.sharpcap.CustomButtons) == 1


def test_a_camera_change_moves_the_handler_and_says_hello_again(world):
    world.camera.RunCapture()
    world.run()
    first = world.app.connection(1)
    first.wait_type("hello")
    world.camera.start()
    first.send({"type": "pause", "id": 1, "max_s": 30.0})
    first.wait_type("ack", id=1)

    other = world.new_camera("QHY268M", exposure_s=0.1)
    other.start()
    world.sharpcap.SelectedCamera = other

    second = world.app.connection(2)
    assert second.wait_type("hello")["name"] == "QHY268M"
    assert first.eof.wait(5)
    assert not world.camera.Paused  # our pause on the old camera was undone
    assert world.camera.FrameCaptured.handlers == []
    assert len(other.FrameCaptured.handlers) == 1
    second.wait_type("frame")
    assert world.hook.status().splitlines()[2].startswith("camera: QHY268M")


def test_closing_the_camera_and_opening_one_again(world):
    world.run()
    world.app.connection(1).wait_type("hello")
    world.sharpcap.SelectedCamera = None
    assert world.app.connection(2).wait_type("hello")["name"] == "No camera"
    assert world.camera.FrameCaptured.handlers == []
    world.sharpcap.SelectedCamera = world.camera
    third = world.app.connection(3)
    assert third.wait_type("hello")["name"] == "ZWO ASI294MC Pro"
    world.camera.start()
    third.wait_type("frame")
    assert len(world.camera.FrameCaptured.handlers) == 1


def test_a_failing_frame_or_camera_never_escapes_the_handler(world):
    camera = world.camera
    camera.RunCapture()
    world.run()
    connection = world.app.connection()
    connection.wait_type("hello")
    camera.broken_frames = True  # args.Frame raises
    camera.Controls.Exposure.fail = True
    camera.start()
    first = connection.wait_type("frame")
    assert first["exposure_s"] is None  # unknown, not made up
    assert first["saved"] is True

    camera.fail_flags = True  # Paused and Capturing raise
    mark = connection.mark()
    assert connection.wait_for(lambda m: m["type"] == "frame", start=mark)["saved"] is False
    camera.fail_flags = False

    world.hook._outbox = None  # break the hook itself: the handler must still contain it
    world.camera.wait_frames(len(camera.frames()) + 2, timeout=5)
    assert world.hook._handler_errors >= 2
    assert camera.FrameCaptured.errors == []
    assert world.hook.running


def test_the_toolbar_button_turns_the_hook_off_and_on(world, wait_until):
    world.camera.RunCapture()
    world.run()
    [button] = world.sharpcap.CustomButtons
    assert button.Name == "ditherapp"
    first = world.app.connection(1)
    first.wait_type("hello")
    world.camera.start()
    first.send({"type": "pause", "id": 1, "max_s": 30.0})
    first.wait_type("ack", id=1)

    button.click()
    assert first.eof.wait(5)
    wait_until(lambda: not world.hook.running, what="the hook to turn off")
    assert not world.camera.Paused
    assert first.of_type("paused")[-1]["reason"] == "hook_off"
    assert world.camera.FrameCaptured.handlers == []
    wait_until(lambda: not list(hook_threads()), what="the hook's threads to end")
    wait_until(lambda: any("OFF" in n for n in world.sharpcap.notifications))

    button.click()
    world.app.connection(2).wait_type("hello")
    assert world.hook.running
    assert len(world.camera.FrameCaptured.handlers) == 1


def test_start_enabled_false_adds_only_the_button(world):
    world.run(START_ENABLED=False)
    assert not world.hook.running
    assert world.camera.FrameCaptured.handlers == []
    world.sharpcap.CustomButtons[0].click()
    world.app.connection(1).wait_type("hello")


def test_an_unknown_setting_is_reported(world):
    world.run(APP_PROT=5400)
    assert any("APP_PROT" in line for line in world.hook.log_lines)
    world.app.connection(1).wait_type("hello")


def test_an_overlong_line_from_the_app_drops_the_connection(world):
    world.run()
    first = world.app.connection(1)
    first.wait_type("capture")
    first.send("x" * 70000)
    assert first.eof.wait(5)
    world.app.connection(2).wait_type("hello")


def test_an_endless_line_from_the_app_drops_the_connection(world):
    world.run()
    first = world.app.connection(1)
    first.wait_type("capture")
    first._sock.sendall(b"y" * 70000)  # no newline, ever
    assert first.eof.wait(5)
    world.app.connection(2).wait_type("hello")
