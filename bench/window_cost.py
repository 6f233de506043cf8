"""Window cost: CPU the ditherapp process uses while PHD2 sends GuideSteps at 1, 10 and
50 per second, with its window shown (offscreen) and, for comparison, headless.

This process runs the PHD2 simulator (guiding; one GuideStep per simulated exposure,
the simulator sped up so that 1 s exposures come at the wanted rate). ditherapp runs as
it ships, in its own process, connected to it; no camera is connected, so what is
measured is the cost of showing PHD2's state and the graphs. CPU time is read from
/proc/PID/stat (user + system) over the measuring window, after a settling-in period.

The guide graph keeps its last 4000 steps (67 minutes at 1/s) and converts all of them
at each redraw, so its cost grows until that buffer is full. Each window run therefore
starts with the buffer full, as after a long night at the rate measured (the
``prefill`` of bench/patched_app.py: 4000 steps spread over the past at that rate, a
change of starting state only), and the figures are the steady state of a long night.

Run from the repository root: .venv/bin/python -m bench.window_cost [seconds] [rates...]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.common import cpu_seconds, headless_app, machine, rss_kib
from ditherapp.sim.phd2_sim import Phd2Simulator

SECONDS = 60.0
RATES = (1.0, 10.0, 50.0)
SETTLE_IN_S = 5.0
TARGETS = {1.0: 2.0, 50.0: 10.0}


async def wait_connected(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(30):
            while True:
                writer.write(b'{"type":"status"}\n')
                if json.loads(await reader.readline())["phd2"]["connected"]:
                    return
                await asyncio.sleep(0.1)
    finally:
        writer.close()


async def measure(rate: float, seconds: float, *, window: bool) -> tuple[float, int, int]:
    """(% of one core, GuideSteps sent, RSS KiB at the end)."""
    sim = Phd2Simulator(
        event_port=0, legacy_port=None, exposure_s=1.0, time_scale=rate, start="guiding"
    )
    patches = os.environ.get("BENCH_APP_PATCH", "")
    if window:
        os.environ["BENCH_APP_PATCH"] = ",".join(p for p in (patches, "prefill") if p)
        os.environ["BENCH_PREFILL_RATE"] = str(rate)
    await sim.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            async with headless_app(
                Path(tmp), sim.event_port, None, "phd2backend=event", window=window
            ) as (proc, port):
                await wait_connected(port)
                await asyncio.sleep(SETTLE_IN_S)
                frame0 = sim.model.frame
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                await asyncio.sleep(seconds)
                cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
                steps = sim.model.frame - frame0
                rss = rss_kib(proc.pid)
    finally:
        os.environ["BENCH_APP_PATCH"] = patches
        await sim.stop()
    return 100.0 * (cpu1 - cpu0) / (t1 - t0), steps, rss


async def main() -> None:
    args = sys.argv[1:]
    seconds = float(args[0]) if args else SECONDS
    rates = tuple(float(a) for a in args[1:]) or RATES
    print(f"Window cost over {seconds:g} s per run; {machine()}")
    print(f"{'run':<26} {'GuideSteps':>10} {'CPU % of a core':>16} {'RSS MiB':>8}  target")
    for window in (True, False):
        for rate in rates if window else rates[-1:]:
            cpu, steps, rss = await measure(rate, seconds, window=window)
            name = f"{'window' if window else 'headless'}, {rate:g}/s"
            target = TARGETS.get(rate) if window else None
            verdict = ""
            if target is not None:
                verdict = f"<= {target:g}%: {'met' if cpu <= target else 'MISSED'}"
            print(f"{name:<26} {steps:>10} {cpu:>16.2f} {rss / 1024:>8.1f}  {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
