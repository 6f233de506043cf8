"""Memory: resident memory (VmRSS) while a night's worth of PHD2 events and more goes
through the app, headless and with the window.

Each GuideStep line (a new frame number and timestamp each time) takes the headless
app's whole event path (``Phd2Client`` framing and parsing, app-state tracker, the
guider the app builds by default, ``DitherService``, ``ControlServer``). In the
``window`` run the same objects feed a ``ServiceBridge`` and a shown ``MainWindow``
(offscreen), with Qt's events processed every 500 lines so the graphs redraw. A night
at 1 GuideStep/s is ~40,000 events; 1,000,000 is 11 days, or 5.5 hours at 50/s.

Run from the repository root: .venv/bin/python -m bench.memory [headless|window|both] [events]
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import machine, rss_kib
from bench.event_ingest import headless_path

CHECKPOINTS = (10_000, 100_000, 1_000_000)
GROWTH_LIMIT_MIB = 5.0


def guide_step(frame: int, now: float) -> bytes:
    return (
        f'{{"Event":"GuideStep","Timestamp":{now:.3f},"Host":"vm","Inst":1,"Frame":{frame},'
        f'"Time":{frame * 2.0:.3f},"Mount":"Mount","dx":{0.1 + frame % 7 * 0.01:.3f},'
        f'"dy":-0.207,"RADistanceRaw":{0.2 - frame % 5 * 0.05:.3f},"DECDistanceRaw":0.062,'
        f'"RADistanceGuide":0.144,"DECDistanceGuide":0.0,"RADuration":97,'
        f'"RADirection":"West","StarMass":12034.5,"SNR":42.17,"HFD":2.31,"AvgDist":0.21}}\r\n'
    ).encode()


def run(
    name: str, step: Callable[[bytes], object], last: int, pump: Callable[[], None]
) -> list[str]:
    rows = []
    now = time.time()
    for i in range(1000):  # warm up: imports, caches, first allocations
        step(guide_step(i, now + i))
    pump()
    gc.collect()
    base = rss_kib()
    done = 1000
    for checkpoint in (c for c in CHECKPOINTS if c <= last):
        while done < checkpoint:
            step(guide_step(done, now + done))
            done += 1
            if done % 500 == 0:
                pump()
        pump()
        gc.collect()
        rss = rss_kib()
        rows.append(
            f"{name:<10} {checkpoint:>10,} {rss / 1024:>10.1f} {(rss - base) / 1024:>+12.2f}"
        )
    return rows


def headless(last: int) -> list[str]:
    step, _server = headless_path(subscribed=False)
    return run("headless", step, last, lambda: None)


def window(last: int) -> list[str]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from ditherapp.ui.bridge import ServiceBridge
    from ditherapp.ui.main_window import MainWindow
    from ditherapp.ui.settings_store import SettingsStore

    app = QApplication.instance() or QApplication([])
    step, server = headless_path(subscribed=False)
    with tempfile.TemporaryDirectory() as tmp:
        bridge = ServiceBridge(server.service)
        main = MainWindow(bridge, SettingsStore(Path(tmp) / "settings.ini"), tray=False)
        main.resize(1366, 768)
        main.show()
        rows = run("window", step, last, app.processEvents)
        steps = len(main.guide_graph.steps)
        rows.append(f"(the guide graph holds {steps} steps, drew {main.guide_graph.points()})")
        main.close()
        bridge.detach()
    return rows


def main() -> None:
    args = sys.argv[1:]
    which = args[0] if args else "both"
    last = int(args[1]) if len(args) > 1 else CHECKPOINTS[-1]
    print(f"Memory (VmRSS) while GuideStep events flow; {machine()}")
    print(f"{'run':<10} {'events':>10} {'RSS MiB':>10} {'growth MiB':>12}")
    rows = []
    if which in ("headless", "both"):
        rows += headless(last)
    if which in ("window", "both"):
        rows += window(last)
    print("\n".join(rows))
    print(f"target: no growth beyond a few MB (<= {GROWTH_LIMIT_MIB:g} MiB) after warm-up")


if __name__ == "__main__":
    main()
