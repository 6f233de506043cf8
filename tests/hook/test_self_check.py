"""The hook checks SharpCap for itself every session and reports it; while it holds
saving paused it watches SharpCap's own saved-frame counter."""

from __future__ import annotations

from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap


def checks(report):
    return {c["name"]: (c["verdict"], c["detail"]) for c in report["checks"]}


def capturing(world, camera=None, sharpcap=None, exposure_s=0.1):
    if camera is not None:
        world.camera.stop()
        world.camera = camera
        world.cameras.append(camera)
        world.sharpcap = sharpcap or FakeSharpCap(camera)
    world.camera.Controls.Exposure.Value = exposure_s
    world.camera.RunCapture()
    world.run()
    connection = world.app.connection()
    connection.wait_type("hello")
    world.camera.start()
    return connection


def pause_for_frames(world, connection, frames=4, command_id=5):
    connection.send({"type": "pause", "id": command_id, "max_s": 30.0})
    connection.wait_type("ack", id=command_id)
    world.camera.wait_frames(len(world.camera.frames()) + frames, timeout=5)


def test_every_session_starts_with_a_self_check_of_sharpcap(world, tmp_path):
    camera = FakeCamera("ZWO ASI2600MM Pro", exposure_s=0.1, save_to=tmp_path / "captures")
    sharpcap = FakeSharpCap(camera, version="4.1.11904.0", capture_folder=tmp_path / "captures")
    connection = capturing(world, camera, sharpcap)
    report = connection.wait_type("selfcheck")
    seen = checks(report)
    assert report["camera"] == "ZWO ASI2600MM Pro"
    assert report["sharpcap"] == "4.1.11904.0"
    assert seen["sharpcap"] == ("ok", "SharpCap 4.1.11904.0")
    assert seen["python"][1].startswith("CPython 3.")
    assert seen["members"][0] == "ok"
    assert seen["frame_counter"][0] == "ok"
    assert seen["binning"] == ("ok", "1")
    assert seen["pause_stops_saving"][0] == "unknown"
    assert seen["capture_folder"] == ("ok", str(tmp_path / "captures"))
    assert not any(verdict == "fail" for verdict, _ in seen.values())


def test_a_normal_camera_passes_the_pause_check_and_no_frame_is_suspect(world):
    connection = capturing(world)
    connection.wait_for(lambda m: m["type"] == "frame" and m["saved"])
    pause_for_frames(world, connection)
    report = connection.wait_for(
        lambda m: m["type"] == "selfcheck" and checks(m)["pause_stops_saving"][0] == "ok"
    )
    assert "none saved" in checks(report)["pause_stops_saving"][1]
    connection.send({"type": "resume", "id": 6, "after_next_frame": False})
    connection.wait_type("ack", id=6)
    world.camera.wait_frames(len(world.camera.frames()) + 2, timeout=5)
    assert connection.of_type("suspect") == []
    assert world.camera.suspect_frames() == []
    assert not any(c["verdict"] == "fail" for c in connection.of_type("selfcheck")[-1]["checks"])


def test_a_camera_that_saves_while_paused_raises_the_alert_and_names_each_frame(world, tmp_path):
    camera = FakeCamera(
        "Leaky Cam", exposure_s=0.1, paused_stops_saving=False, save_to=tmp_path / "cap"
    )
    sharpcap = FakeSharpCap(camera, capture_folder=tmp_path / "cap")
    connection = capturing(world, camera, sharpcap)
    connection.wait_for(lambda m: m["type"] == "frame" and m.get("count", 0) >= 1)
    pause_for_frames(world, connection, frames=4)
    report = connection.wait_for(
        lambda m: m["type"] == "selfcheck" and checks(m)["pause_stops_saving"][0] == "fail"
    )
    assert "saved frames while paused" in checks(report)["pause_stops_saving"][1]
    assert any("SAVED A FRAME WHILE PAUSED" in n for n in sharpcap.notifications)
    connection.send({"type": "resume", "id": 6, "after_next_frame": False})
    connection.wait_type("ack", id=6)
    leaked = [e.count for e in camera.suspect_frames()]
    assert len(leaked) >= 3
    suspects = connection.wait_for(lambda m: m["type"] == "suspect" and m["count"] == leaked[-1])
    assert suspects["file"].endswith(f"Leaky Cam_{leaked[-1]:05d}.fits")
    assert [m["count"] for m in connection.of_type("suspect")] == leaked
    # One notification in SharpCap per pause, not one per frame.
    assert sum("WHILE PAUSED" in n for n in sharpcap.notifications) == 1


def test_a_sharpcap_without_capturedframecount_says_the_check_cannot_be_made(world):
    camera = FakeCamera("Counterless", exposure_s=0.1, frame_count=False)
    connection = capturing(world, camera, FakeSharpCap(camera, version="3.2.6482.0"))
    seen = checks(connection.wait_type("selfcheck"))
    assert seen["frame_counter"][0] == "warn"
    assert "GetStatus" in seen["frame_counter"][1]
    assert seen["members"][0] == "warn"
    assert "CapturedFrameCount" in seen["members"][1]
    assert seen["pause_stops_saving"][0] == "unknown"
    pause_for_frames(world, connection)
    assert connection.of_type("suspect") == []
    frames = connection.of_type("frame")
    assert frames
    assert all("count" not in f for f in frames)


def test_a_sharpcap_whose_version_cannot_be_read_is_a_warning_not_a_failure(world):
    camera = FakeCamera("Old", exposure_s=0.1)
    connection = capturing(world, camera, FakeSharpCap(camera, version=None))
    seen = checks(connection.wait_type("selfcheck"))
    assert seen["sharpcap"][0] == "warn"
    assert seen["capture_folder"][0] == "warn"
    assert "fail" not in {verdict for verdict, _ in seen.values()}


def test_no_camera_selected_fails_the_check(world):
    world.sharpcap.SelectedCamera = None
    world.run()
    connection = world.app.connection()
    seen = checks(connection.wait_type("selfcheck"))
    assert seen["camera"][0] == "fail"


def test_frames_carry_sharpcaps_own_frame_number(world):
    connection = capturing(world)
    frame = connection.wait_for(lambda m: m["type"] == "frame" and m["saved"])
    assert frame["count"] >= 1
    saved = [e for e in world.camera.frames() if e.saved]
    assert frame["count"] in {e.count for e in saved}
