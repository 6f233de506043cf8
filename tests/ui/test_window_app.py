"""The window on the real runtime: the PHD2 simulator and simulated cameras on loopback
sockets, a PHD2 restart and a camera that drops out, the rendered window in both
themes, and the command line that starts it all under qasync."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication

from ditherapp.core.settings import DitherSettings
from ditherapp.runtime import Runtime, RuntimeOptions
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.main_window import MainWindow
from ditherapp.ui.theme import THEMES
from ditherapp.ui.window_app import SCREENSHOT_SIZE, run_in_qt_loop

REPO = Path(__file__).resolve().parents[2]


class Session:
    def __init__(self, runtime: Runtime, window: MainWindow) -> None:
        self.runtime = runtime
        self.window = window

    @property
    def phd2(self) -> str:
        return self.window.banner.phd2.text()

    def camera_state(self) -> str:
        item = self.window.cameras.table.item(0, 1)
        return item.text() if item is not None else ""

    def dithers(self) -> int:
        text = self.window.counters.dithers.text()
        return int(text) if text.isdigit() else 0


@pytest.fixture
async def session(
    qtbot: Any, tmp_path: Path, free_port: int, request: pytest.FixtureRequest
) -> AsyncIterator[Session]:
    extra: dict[str, object] = dict(getattr(request, "param", {}))
    time_scale = float(extra.pop("sim_time_scale", 4.0))  # type: ignore[arg-type]
    settings = DitherSettings(
        ditherevery=1, settledelay=1, settlemax=20, maxpixels=2.0, controlport=free_port
    )
    settings = settings.with_values(extra)
    options = RuntimeOptions(
        simulate=True,
        sim_cameras=1,
        sim_time_scale=time_scale,
        ledger_path=tmp_path / "ledger.jsonl",
    )
    async with Runtime(settings, options) as runtime:
        assert runtime.service is not None
        bridge = ServiceBridge(runtime.service)
        window = MainWindow(bridge, None, theme="dark", tray=False)
        qtbot.addWidget(window)
        window.resize(*SCREENSHOT_SIZE)
        window.show()
        yield Session(runtime, window)
        bridge.detach()


@pytest.mark.timeout(90)
async def test_the_window_keeps_working_through_a_phd2_restart_and_a_camera_dropping_out(
    session: Session, until: Any
) -> None:
    window, runtime = session.window, session.runtime
    await until(lambda: session.phd2 == "PHD2: Guiding", what="PHD2 guiding")
    await until(lambda: session.dithers() >= 1, what="a first dither", timeout=20)

    await runtime.sim.stop()  # PHD2 quits
    await until(lambda: session.phd2 == "PHD2: Not connected", what="PHD2 lost")
    assert window.alert_label.text(), "an alert in the status bar"
    assert any("lost the connection to PHD2" in m for m in window.event_log.messages())
    assert window.banner.phd2_detail.text().startswith(("retrying in", "connecting"))
    await runtime.sim.start()  # and is started again on the same port
    window.banner.reconnect_button.click()
    await until(lambda: session.phd2 == "PHD2: Guiding", what="PHD2 back", timeout=20)

    camera = runtime.cameras[0]
    camera.stop()  # SharpCap closes
    await until(lambda: session.camera_state() == "disconnected", what="camera gone")
    assert any(
        m.endswith("camera Simulated camera 1 disconnected") for m in window.event_log.messages()
    )
    task = asyncio.create_task(camera.run())  # and comes back
    try:
        await until(lambda: session.camera_state() == "saving", what="camera back")
        before = session.dithers()
        await until(lambda: session.dithers() > before, what="a dither after both", timeout=30)
        window.guide_graph.refresh()
        assert window.guide_graph.points() > 0
    finally:
        camera.stop()
        await task


def non_trivial(image: QImage) -> int:
    """How many distinct colours a grid of samples finds."""
    colours = {
        image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)
    }
    return len(colours)


def all_red(image: QImage) -> bool:
    for x in range(0, image.width(), 5):
        for y in range(0, image.height(), 5):
            c = QColor(image.pixel(x, y))
            if max(c.green(), c.blue()) > 24 and c.red() < 2 * max(c.green(), c.blue()):
                return False
    return True


@pytest.mark.timeout(90)
# At PHD2's own pace (time scale 1): the settle graph's seconds are wall seconds, and
# only then do they match the time in range that PHD2 counts.
@pytest.mark.parametrize(
    "session", [{"settledelay": 4, "ditherevery": 2, "sim_time_scale": 1.0}], indirect=True
)
async def test_the_simulated_window_renders_mid_settle_in_both_themes(
    session: Session, until: Any, tmp_path: Path
) -> None:
    window = session.window
    graph = window.settle_graph
    await until(lambda: session.dithers() >= 1, what="a first dither", timeout=40)
    await until(
        lambda: (
            window.banner.phase.text().startswith("SETTLING")
            and graph.current is not None
            and len(graph.current.xs) >= 3
            and graph.current.streak_start is not None
        ),
        what="a settle under way, in range",
        timeout=40,
    )
    out = Path(os.environ.get("DITHERAPP_SCREENSHOT_DIR") or tmp_path)
    for name in ("dark", "red"):
        window.apply_theme(THEMES[name], remember=False)
        path = out / f"screenshot-{name}.png"
        assert window.save_screenshot(path)
        image = QImage(str(path))
        assert (image.width(), image.height()) == SCREENSHOT_SIZE
        assert path.stat().st_size > 40_000
        assert non_trivial(image) > 40
        if name == "red":
            assert all_red(image), "night vision: nothing but dim reds on black"


def test_the_command_line_renders_the_simulated_window_and_exits_cleanly(
    tmp_path: Path, free_port: int
) -> None:
    shot = tmp_path / "window.png"
    args = [
        sys.executable, "-m", "ditherapp", "--simulate",
        "--settings", str(tmp_path / "settings.ini"),
        "--ledger", str(tmp_path / "ledger.jsonl"),
        "--control-port", str(free_port), "--theme", "red",
        "--screenshot", str(shot), "--screenshot-after", "1.5", "--quit-after", "2.5",
    ]  # fmt: skip
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(REPO)}
    done = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        args, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "Fatal" not in done.stderr
    assert shot.stat().st_size > 40_000
    image = QImage(str(shot))
    assert (image.width(), image.height()) == SCREENSHOT_SIZE


def test_the_last_qt_events_still_run_with_the_loop_set(qapp: QApplication) -> None:
    """qasync processes Qt events once more after its loop stopped; whatever runs then
    must still find the running loop (the Python 3.14 shutdown problem)."""
    seen: list[object] = []

    class Late(QObject):
        def event(self, e: QEvent) -> bool:
            if e.type() == QEvent.Type.User:
                seen.append(asyncio.get_running_loop())
                return True
            return super().event(e)

    late = Late()

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        task.add_done_callback(lambda _: QCoreApplication.postEvent(late, QEvent(QEvent.Type.User)))
        return 7

    assert run_in_qt_loop(qapp, main()) == 7
    assert len(seen) == 1
