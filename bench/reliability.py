"""Reliability under attack: the 45 x 1000 ``set`` flood, and the time to notice a
PHD2 that hangs with its socket open.

Flood: the real runtime (PHD2 client, service, control socket, the settings file
written through QSettings) runs in this process against the PHD2 simulator, with a
simulated camera paused in a long settle and a monitor task that measures how late the
event loop wakes it (the loop stall). The flood runs in a child process, so its own
work does not count as the app's: 45 clients each pipeline 1000 ``set`` requests and
read the replies, while one more client pings every 20 ms and records each answer's
latency. ``--on-loop`` saves as round 1 did (on the event loop, at every change) for
comparison.

Hung PHD2: the runtime guides against the simulator, then the simulator freezes with
its socket open (no more events, no replies); the time until the link is called dead
is measured, while guiding (at two guide exposures), mid-settle, and while stopped
(where the client has to ask).

Run from the repository root: .venv/bin/python -m bench.reliability [flood|hung] [--on-loop]
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import free_port, machine, percentile
from ditherapp.core.settings import DitherSettings
from ditherapp.runtime import Runtime, RuntimeOptions
from ditherapp.sim.camera_agent import SimCamera
from ditherapp.sim.phd2_sim import Phd2Simulator

CLIENTS = 45
SETS = 1000
PING_EVERY_S = 0.02


# ------------------------------------------------------------------ the child: the flood


async def flood_client(port: int, number: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    started = time.monotonic()
    lines = b"".join(
        json.dumps({"type": "set", "name": "primarycamera", "value": f"c{number}-{i}"}).encode()
        + b"\n"
        for i in range(SETS)
    )
    writer.write(lines)
    for _ in range(SETS):
        reply = json.loads(await reader.readline())
        assert reply["type"] == "value", reply
    writer.close()
    return time.monotonic() - started


async def pinger(port: int, stop: asyncio.Event, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    while not stop.is_set():
        sent = time.monotonic()
        writer.write(b'{"type":"ping"}\n')
        assert json.loads(await reader.readline()) == {"type": "pong"}
        latencies.append(time.monotonic() - sent)
        await asyncio.sleep(PING_EVERY_S)
    writer.close()


async def child(port: int) -> None:
    latencies: list[float] = []
    stop = asyncio.Event()
    ping = asyncio.create_task(pinger(port, stop, latencies))
    started = time.monotonic()
    durations = await asyncio.gather(*(flood_client(port, n) for n in range(CLIENTS)))
    total = time.monotonic() - started
    stop.set()
    await ping
    print(
        json.dumps(
            {
                "total_s": total,
                "slowest_client_s": max(durations),
                "pings": len(latencies),
                "ping_p50_ms": 1000 * statistics.median(latencies),
                "ping_p99_ms": 1000 * percentile(latencies, 0.99),
                "ping_max_ms": 1000 * max(latencies),
            }
        )
    )


# ------------------------------------------------------------------ the app side


async def loop_monitor(stalls: list[float], stop: asyncio.Event) -> None:
    tick = 0.005
    while not stop.is_set():
        before = time.monotonic()
        await asyncio.sleep(tick)
        stalls.append(time.monotonic() - before - tick)


async def flood(on_loop: bool) -> None:
    from ditherapp.ui.settings_store import SettingsStore

    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    sim = Phd2Simulator(event_port=0, legacy_port=None, start="guiding", time_scale=1.0)
    await sim.start()
    store = SettingsStore(work / "settings.ini")
    store.load()
    settings = DitherSettings().with_values(
        {"phd2backend": "event", "ditherevery": 1, "settledelay": 60, "settlemax": 600,
         "settletarget": 0.1, "controlport": free_port()}
    )  # fmt: skip
    options = RuntimeOptions(phd2_port=sim.event_port, ledger_path=work / "ledger.jsonl")
    async with Runtime(settings, options, save_settings=store.save_changes) as rt:
        assert rt.service is not None
        assert rt.control is not None
        if on_loop:
            rt.service._save_settings = store.save_changes  # noqa: SLF001 - round 1's way
        port = rt.control.port
        camera = SimCamera(name="paused camera", exposure_s=0.5, port=port)
        camera_task = asyncio.create_task(camera.run())
        service = rt.service
        await until(lambda: camera.paused and service.machine.phase.value == "settling")
        connects = camera._session_id  # noqa: SLF001
        stalls: list[float] = []
        stop = asyncio.Event()
        monitor = asyncio.create_task(loop_monitor(stalls, stop))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.reliability", "--child", str(port),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        stop.set()
        await monitor
        result = json.loads(out)
        still_paused = camera.paused
        kept = camera._session_id == connects  # noqa: SLF001
        # The settle's target is unreachable: the resume comes with the clean stop.
        assert rt.saver is not None
        writes = rt.saver.writes
    camera.stop()
    await camera_task
    await sim.stop()
    on_disk, _ = SettingsStore(work / "settings.ini").load()
    mode = "saved on the loop at every change (round 1)" if on_loop else "saved off the loop"
    print(f"\n## 45 x 1000 set flood, {mode}\n\n{machine()}\n")
    print(
        f"flood took {result['total_s']:.1f} s (slowest client {result['slowest_client_s']:.1f} s)"
    )
    print(
        f"ping latency over {result['pings']} pings: p50 {result['ping_p50_ms']:.1f} ms, "
        f"p99 {result['ping_p99_ms']:.1f} ms, worst {result['ping_max_ms']:.1f} ms"
    )
    print(
        f"event-loop stall (5 ms ticks): p99 {1000 * percentile(stalls, 0.99):.1f} ms, "
        f"worst {1000 * max(stalls):.1f} ms"
    )
    print(
        f"paused camera: kept its connection {kept}, still paused in the settle {still_paused}; "
        f"settings file written {writes} times, last value on disk "
        f"{on_disk.primarycamera!r}"
    )


async def until(condition: Callable[[], bool], limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {condition}")
        await asyncio.sleep(0.01)


async def time_to_notice(label: str, *, exposure_s: float, start: str, settle: bool) -> float:
    sim = Phd2Simulator(event_port=0, legacy_port=None, start=start, exposure_s=exposure_s)  # type: ignore[arg-type]
    await sim.start()
    settings = DitherSettings().with_values(
        {"phd2backend": "event", "controlport": free_port(), "settledelay": 60, "settlemax": 600,
         "settletarget": 0.1, "ditherevery": 1}
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="bench-hung-"))
    options = RuntimeOptions(phd2_port=sim.event_port, ledger_path=work / "ledger.jsonl")
    async with Runtime(settings, options) as rt:
        assert rt.service is not None
        assert rt.control is not None
        guider = rt.service.guider
        camera = None
        camera_task = None
        await until(lambda: guider.status.connected)
        await asyncio.sleep(4 * exposure_s)  # the fault's moment: after a few frames
        if settle:
            camera = SimCamera(name="cam", exposure_s=0.5, port=rt.control.port)
            camera_task = asyncio.create_task(camera.run())
            service = rt.service
            await until(lambda: service.machine.phase.value == "settling")
        sim.stall = True
        frozen = time.monotonic()
        await until(lambda: not guider.status.connected)
        noticed = time.monotonic() - frozen
        reason = guider.status.last_error
        sim.stall = False
        if camera is not None and camera_task is not None:
            camera.stop()
            await camera_task
    await sim.stop()
    print(f"{label:<44} {noticed:6.1f} s   ({reason})")
    return noticed


HUNG_CASES = (
    ("guiding, 1 s guide exposures", 1.0, "guiding", False),
    ("guiding, 4 s guide exposures", 4.0, "guiding", False),
    ("mid-settle, 1 s guide exposures", 1.0, "guiding", True),
    ("stopped (asked after 10 s of silence)", 1.0, "stopped", False),
)


async def hung() -> None:
    print(f"\n## Time to notice a hung PHD2\n\n{machine()}\n")
    for label, exposure_s, start, settle in HUNG_CASES:
        await time_to_notice(label, exposure_s=exposure_s, start=start, settle=settle)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        asyncio.run(child(int(argv[1])))
        return
    what = [a for a in argv if not a.startswith("--")] or ["flood", "hung"]
    if "flood" in what:
        asyncio.run(flood(on_loop="--on-loop" in argv))
    if "hung" in what:
        asyncio.run(hung())


if __name__ == "__main__":
    main(sys.argv[1:])
