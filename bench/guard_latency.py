"""How fast the frame guard stops SharpCap saving, and lets it save again.

The real service and control socket, the real hook script in the fake SharpCap (camera
exposing 1 s frames), and a PHD2 link whose state the benchmark flips: guiding -> star
lost, then back. Measured per trial, on the monotonic clock:

* hold: PHD2's state change reaches the service -> the hook sets ``Paused = True``;
* release: guiding back -> the hook sets ``Paused = False`` (after the frame boundary,
  so this includes the wait for the frame in progress to end: up to one exposure).

Run from the repository root: .venv/bin/python -m bench.guard_latency [trials]
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import machine, percentile
from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings
from ditherapp.net.control_server import ControlServer
from ditherapp.net.phd2_client import LinkStatus
from ditherapp.net.service import DitherService
from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap, run_hook_script

EXPOSURE_S = 1.0


class StubGuider:
    backend = "event"

    def __init__(self) -> None:
        self.status = LinkStatus(
            host="127.0.0.1", port=4400, connected=True, state=Phd2State.GUIDING
        )
        self._links: list[Callable[[LinkStatus], None]] = []

    def add_event_listener(self, cb: Callable[[Any], None]) -> Callable[[], None]:
        del cb  # no PHD2 events in this benchmark
        return lambda: None

    def add_link_listener(self, cb: Callable[[LinkStatus], None]) -> Callable[[], None]:
        self._links.append(cb)
        return lambda: self._links.remove(cb)

    def set_state(self, state: Phd2State) -> None:
        self.status = dataclasses.replace(self.status, state=state)
        for cb in list(self._links):
            cb(self.status)

    async def run(self) -> None:
        await asyncio.Event().wait()

    def reconnect_now(self) -> None:
        pass

    def prepare(self) -> None:
        pass

    async def dither(self, request: DitherRequest, started: Callable[[], None]) -> DitherOutcome:
        del request
        started()
        return DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=0.0)


async def wait(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    async with asyncio.timeout(limit_s):
        while not predicate():  # noqa: ASYNC110 - the camera runs on its own thread
            await asyncio.sleep(0.001)


async def run(trials: int) -> tuple[list[float], list[float]]:
    guider = StubGuider()
    service = DitherService(settings=DitherSettings(ditherevery=1000), guider=guider)
    service._on_link(guider.status)  # noqa: SLF001 - the stub is connected from the start
    server = ControlServer(service, host="127.0.0.1", port=0)
    await server.start()
    camera = FakeCamera("Bench Camera", exposure_s=EXPOSURE_S)
    scope = run_hook_script(
        FakeSharpCap(camera), settings={"APP_PORT": server.port, "APP_SILENT_S": 600.0}
    )
    holds: list[float] = []
    releases: list[float] = []
    try:
        camera.RunCapture()
        camera.start()
        await wait(lambda: bool(service.machine.cameras))
        await wait(lambda: any(e.saved for e in camera.frames()))
        for _ in range(trials):
            writes = len(camera.paused_writes)
            start = time.monotonic()
            guider.set_state(Phd2State.LOST_LOCK)
            await wait(lambda w=writes: len(camera.paused_writes) > w)
            holds.append(camera.paused_writes[-1].at - start)
            writes = len(camera.paused_writes)
            start = time.monotonic()
            guider.set_state(Phd2State.GUIDING)
            await wait(lambda w=writes: len(camera.paused_writes) > w, limit_s=3 * EXPOSURE_S)
            releases.append(camera.paused_writes[-1].at - start)
    finally:
        camera.stop()
        scope["DITHERAPP_HOOK"].shutdown()
        service.shutdown()
        await server.close()
    return holds, releases


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print(machine())
    holds, releases = asyncio.run(run(trials))
    for name, values in (("hold", holds), ("release", releases)):
        ms = [v * 1000 for v in values]
        print(
            f"{name:8} n={len(ms)} p50 {percentile(ms, 0.5):7.1f} ms  "
            f"p99 {percentile(ms, 0.99):7.1f} ms  max {max(ms):7.1f} ms"
        )
    print(f"(exposure {EXPOSURE_S:g} s; the hook ticks every 0.25 s)")


if __name__ == "__main__":
    main()
