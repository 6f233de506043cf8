"""The frame guard and the hook's self-check as the user sees them: GUARDING in its own
words and colour (not a green IDLE), the counters, the Diagnostics view, the alert sound.

Set DITHERAPP_SCREENSHOTS=<folder> to keep the pictures (docs/ holds the ones shown
in the documentation)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.ui.main_window import MainWindow


def keep(widget: Any, tmp_path: Path, name: str) -> None:
    picture = widget.grab()
    assert picture.save(str(tmp_path / name), "PNG")
    folder = os.environ.get("DITHERAPP_SCREENSHOTS")
    if folder:
        picture.save(str(Path(folder) / name), "PNG")


SELF_CHECK = {
    "type": "selfcheck",
    "sharpcap": "4.1.11904.0",
    "runtime": "IronPython 3.4.1; SharpCap 4.1.11904.0",
    "camera": "ZWO ASI2600MM Pro",
    "checks": [
        {"name": "sharpcap", "verdict": "ok", "detail": "SharpCap 4.1.11904.0"},
        {"name": "python", "verdict": "ok", "detail": "IronPython 3.4.1"},
        {"name": "camera", "verdict": "ok", "detail": "ZWO ASI2600MM Pro"},
        {"name": "members", "verdict": "ok", "detail": "every member the hook uses exists"},
        {"name": "frame_counter", "verdict": "ok", "detail": "CapturedFrameCount = 118"},
        {"name": "binning", "verdict": "ok", "detail": "1"},
        {"name": "pixel_size", "verdict": "warn", "detail": "not available from this SharpCap"},
        {
            "name": "pause_stops_saving",
            "verdict": "fail",
            "detail": "SharpCap saved frames while paused (frame 117 at 01:42:10)",
        },
        {"name": "capture_folder", "verdict": "ok", "detail": r"D:\SharpCap Captures"},
    ],
    "capture": {
        "folder": r"D:\SharpCap Captures",
        "last_file": r"D:\SharpCap Captures\2026-12-03\M31\Light_00117.fits",
    },
}


async def test_guarding_has_its_own_words_colour_and_counters(
    qtbot: Any, window: MainWindow, rig: Any, until: Any, tmp_path: Path
) -> None:
    rig.guider.connect()
    camera = rig.camera("ZWO ASI2600MM Pro")
    camera.frame(120.0)
    await until(lambda: window.banner.phase.text() == "IDLE")
    rig.guider.connect(state=Phd2State.LOST_LOCK)
    await until(lambda: window.banner.phase.text() == "GUARDING")
    assert window.banner.phase.property("state") == "guard"
    assert window.banner.property("state") == "guard"
    assert window.banner.phase_detail.text().startswith(
        "PHD2 has lost the guide star, saving paused"
    )
    await until(lambda: camera.paused, what="the camera to be held")
    camera.frame(120.0)
    camera.frame(120.0)
    table = window.cameras.table
    await until(lambda: table.item(0, 1).text() == "paused (guard)")
    await until(lambda: window.counters.guarded.text() == "2")
    assert window.counters.guarded.property("state") == "guard"
    assert not window.dither_action.isEnabled()
    keep(window, tmp_path, "screenshot-guarding.png")

    rig.guider.connect(state=Phd2State.GUIDING)
    await until(lambda: window.banner.phase.text() == "IDLE")
    assert window.banner.phase.property("state") != "guard"


async def test_phd2_killed_shows_guarding_on_the_alert_banner(
    window: MainWindow, rig: Any, until: Any
) -> None:
    rig.guider.connect()
    rig.camera()
    rig.guider.drop()
    await until(lambda: window.banner.phase.text() == "GUARDING")
    assert "PHD2 is not connected, saving paused" in window.banner.phase_detail.text()
    assert window.banner.property("state") == "bad", "PHD2 lost still turns the banner red"


async def test_the_diagnostics_view_shows_each_check_and_the_suspect_frames(
    qtbot: Any, window: MainWindow, rig: Any, until: Any, tmp_path: Path
) -> None:
    rig.guider.connect()
    camera = rig.camera("ZWO ASI2600MM Pro")
    rig.service.agents[camera.id] = "sharpcap-hook/1.0"
    rig.service.camera_message(camera.id, SELF_CHECK)
    for count in (116, 117):
        rig.service.camera_message(camera.id, {"type": "suspect", "count": count, "seq": count})
    window.show_diagnostics()
    view = window.diagnostics.view
    await until(lambda: view.frames.rowCount() == 2)
    assert view.summary.text() == "1 check FAILED · 2 suspect frames"
    assert view.summary.property("state") == "bad"
    root = view.checks.topLevelItem(0)
    assert "ZWO ASI2600MM Pro (cam-1) · sharpcap-hook/1.0 · IronPython 3.4.1" in root.text(0)
    rows = {root.child(i).text(0): root.child(i) for i in range(root.childCount())}
    assert rows["Pausing stops saving"].text(1) == "FAILED"
    assert rows["Pixel size"].text(1) == "warning"
    assert rows["Last file saved"].text(2).endswith("Light_00117.fits")
    assert [view.frames.item(r, 2).text() for r in range(2)] == ["117", "116"]
    assert view.frames.item(0, 3).text() == "saved while paused"
    assert any("self-check failed: pause_stops_saving" in n.message for n in rig.service.notices)
    window.diagnostics.resize(900, 520)
    keep(window.diagnostics, tmp_path, "screenshot-diagnostics.png")


async def test_an_agent_without_a_self_check_is_not_a_failure(
    window: MainWindow, rig: Any, until: Any
) -> None:
    rig.camera("Simulated camera 1")
    window.show_diagnostics()
    view = window.diagnostics.view
    await until(lambda: view.checks.topLevelItemCount() == 1)
    assert view.summary.text() == "No failure; some agents do not check themselves"
    assert view.checks.topLevelItem(0).child(0).text(1) == "not known yet"


async def test_the_alert_sound_plays_only_when_asked_for(
    window: MainWindow, rig: Any, until: Any
) -> None:
    rig.guider.connect()
    camera = rig.camera()
    camera.leave()  # an alert
    await until(lambda: "disconnected" in window.alert_label.text())
    assert window.alert_sounds == 0
    rig.service.set_setting("alertsound", True)
    camera = rig.camera("Second")
    camera.leave()
    await until(lambda: window.alert_sounds == 1)
