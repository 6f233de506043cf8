"""Start-up: from launching ``ditherapp --simulate`` to its window on screen.

Each run launches the real command (offscreen Qt) with ``--screenshot`` taken as soon as
the event loop runs after ``show()`` (``--screenshot-after 0``), and times the log line
that reports the PNG saved. That moment includes grabbing and encoding the picture, so
this process also times ``save_screenshot`` on a shown window and subtracts it: the rest
is launch -> window shown and laid out. For comparison: launch -> control socket
accepting, for ``ditherapp --headless --simulate``.

Run from the repository root: .venv/bin/python -m bench.startup [runs]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import free_port, machine

RUNS = 7


async def window_run(tmp: Path, run: int) -> float:
    shot = tmp / f"shot-{run}.png"
    args = [
        "-m", "ditherapp", "--simulate", "--log-level", "INFO",
        "--settings", str(tmp / f"settings-{run}.ini"), "--ledger", str(tmp / "ledger.jsonl"),
        "--control-port", str(free_port()),
        "--screenshot", str(shot), "--screenshot-after", "0", "--quit-after", "2",
    ]  # fmt: skip
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    shown = None
    async with asyncio.timeout(60):
        while line := await proc.stderr.readline():
            if shown is None and b"screenshot" in line:
                shown = time.monotonic() - started
        await proc.wait()
    if shown is None or not shot.exists():
        raise RuntimeError(f"run {run}: no screenshot")
    return shown


async def headless_run(tmp: Path, run: int) -> float:
    port = free_port()
    args = [
        "-m", "ditherapp", "--headless", "--simulate", "--log-level", "WARNING",
        "--settings", str(tmp / f"h-settings-{run}.ini"), "--ledger", str(tmp / "ledger.jsonl"),
        "--control-port", str(port),
    ]  # fmt: skip
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.005)
                else:
                    writer.close()
                    return time.monotonic() - started
    finally:
        proc.terminate()
        await proc.wait()


def screenshot_cost(tmp: Path) -> float:
    """Seconds ``save_screenshot`` takes on a shown window (median of five)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from bench.event_ingest import headless_path
    from ditherapp.ui.bridge import ServiceBridge
    from ditherapp.ui.main_window import MainWindow
    from ditherapp.ui.settings_store import SettingsStore

    app = QApplication.instance() or QApplication([])
    _, server = headless_path(subscribed=False)
    bridge = ServiceBridge(server.service)
    window = MainWindow(bridge, SettingsStore(tmp / "cost.ini"), tray=False)
    window.resize(1366, 768)
    window.show()
    app.processEvents()
    times = []
    for i in range(5):
        started = time.perf_counter()
        window.save_screenshot(tmp / f"cost-{i}.png")
        times.append(time.perf_counter() - started)
    window.close()
    bridge.detach()
    return statistics.median(times)


def row(name: str, values: list[float]) -> str:
    return (
        f"{name:<44} {statistics.median(values) * 1e3:>8.0f} {min(values) * 1e3:>8.0f}"
        f" {max(values) * 1e3:>8.0f}"
    )


async def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else RUNS
    print(f"Start-up, {runs} runs each; {machine()}")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        await window_run(tmp, -1)  # a first run fills the OS file cache; not counted
        shots = [await window_run(tmp, i) for i in range(runs)]
        headless = [await headless_run(tmp, i) for i in range(runs)]
        cost = screenshot_cost(tmp)
    print(f"{'':<44} {'median ms':>8} {'min':>8} {'max':>8}")
    print(row("launch -> window shown, screenshot saved", shots))
    print(row("launch -> window shown (minus the screenshot)", [s - cost for s in shots]))
    print(row("launch -> control socket (--headless)", headless))
    print(f"(grabbing and saving the 1366x768 screenshot: {cost * 1e3:.0f} ms)")


if __name__ == "__main__":
    asyncio.run(main())
