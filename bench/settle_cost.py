"""Settle cost: imaging time lost per dither and the first saved frame's guiding,
PHD2's rule at a 2 s guide exposure against ``settleexposure 0.5`` + ``settlemode calm``.

Everything real but the camera and the clock: the PHD2 simulator (``Noise.night()``:
wandering seeing, jitter that grows as the exposure shortens, dithers and pulses that
overshoot now and then), the event-server client, ``EventGuider`` with the one settle
judge and the exposure keeper, and ``DitherService`` with the dither machine and the
cost meter. Simulated time runs ``SCALE`` times faster than wall time; ditherapp's
clock (service and settle judge) runs at the same rate, so every figure below is in
simulated seconds. The camera is an in-process agent in still mode: it exposes
``CAMERA_S``, a dither every frame; a pause aborts the exposure in progress and a resume
starts the next one at once (``waitfornextframe`` off), so the imaging time lost is the
dither's own cost, not rounded to frame boundaries.

Per dither, from the ledger lines the service writes: ``lost_imaging_s`` (end of the
trigger frame -> start of the next saved frame), ``settle_s``, the rule that ended it,
``first_frame_rms`` against ``baseline_rms``. A settle is counted *false* when any of
the next ``FALSE_FRAMES`` guide frames after its end is outside the settle target.

Run from the repository root: python -m bench.settle_cost [dithers] [--scale X]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import machine, percentile
from ditherapp.core import machine as m
from ditherapp.core.phd2 import events as ev
from ditherapp.core.settings import DitherSettings
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.phd2_client import Phd2Client
from ditherapp.net.service import DitherRecorded, DitherService, ServiceEvent
from ditherapp.sim.phd2_sim import Noise, Phd2Simulator

DITHERS = 200
SCALE = 25.0
CAMERA_S = 30.0
GUIDE_EXPOSURE_S = 2.0
FALSE_FRAMES = 5
NOT_CALM = 1.5
SETTLE = {
    "settletarget": 1.5,
    "settledelay": 10,
    "settlemax": 60,
    "maxpixels": 3.0,
    "ditherevery": 1,
    "waitfornextframe": False,
}


@dataclass(frozen=True, slots=True)
class Config:
    name: str
    settlemode: str
    settleexposure: float


CONFIGS = (
    Config("phd2 @ 2 s", "phd2", 0.0),
    Config("settleexposure 0.5 + calm", "calm", 0.5),
)
EXTRA_CONFIGS = (
    Config("phd2 + settleexposure 0.5", "phd2", 0.5),
    Config("calm @ 2 s", "calm", 0.0),
)


class StillCamera:
    """A camera agent on the service's own API: still mode, one frame at a time."""

    def __init__(self, service: DitherService, clock: Callable[[], float], scale: float) -> None:
        self.service = service
        self.clock = clock
        self.scale = scale
        self.id = service.attach_camera("bench camera", self)
        self.paused = False
        self._exposure: asyncio.TimerHandle | None = None
        self.service.camera_message(self.id, {"type": "capture", "capturing": True})
        self._start()

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        self._exposure = loop.call_later(CAMERA_S / self.scale, self._done)

    def _done(self) -> None:
        self._exposure = None
        self.service.camera_message(
            self.id, {"type": "frame", "exposure_s": CAMERA_S, "saved": not self.paused}
        )
        if not self.paused:
            self._start()

    def send(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pause":
            if self._exposure is not None:
                self._exposure.cancel()  # the frame in progress is thrown away
                self._exposure = None
            self.paused = True
            self._reply({"type": "ack", "id": message["id"], "ok": True})
            self._reply({"type": "paused", "paused": True, "by": "app"})
        elif kind == "resume":
            self.paused = False
            self._reply({"type": "ack", "id": message["id"], "ok": True})
            self._reply({"type": "paused", "paused": False, "by": "app"})
            if self._exposure is None:
                self._start()

    def _reply(self, message: dict[str, Any]) -> None:
        # the agent answers on its own socket: never inside the service's own call
        asyncio.get_running_loop().call_soon(self.service.camera_message, self.id, message)

    def stop(self) -> None:
        if self._exposure is not None:
            self._exposure.cancel()


@dataclass
class Result:
    config: Config
    records: list[dict[str, Any]] = field(default_factory=list)
    false_settles: int = 0
    not_calm: int = 0
    """Settles whose next FALSE_FRAMES frames guided over NOT_CALM x the baseline RMS."""
    judged: int = 0
    wall_s: float = 0.0


async def run(config: Config, dithers: int, scale: float, seed: int) -> Result:
    sim = Phd2Simulator(
        event_port=0,
        legacy_port=None,
        time_scale=scale,
        start="guiding",
        exposure_s=GUIDE_EXPOSURE_S,
        seed=seed,
        noise=Noise.night(),
    )
    await sim.start()
    origin = time.monotonic()

    def clock() -> float:
        return (time.monotonic() - origin) * scale

    client = Phd2Client("127.0.0.1", sim.event_port, backoff=Backoff(first_s=0.05, cap_s=0.2))
    guider = EventGuider(client, clock=clock, time_scale=scale)
    settings = DitherSettings(settlemode=config.settlemode, settleexposure=config.settleexposure)
    for name, value in SETTLE.items():
        settings = settings.with_value(name, value)
    # no dither before a minute of guiding (the first baseline)
    settings = settings.with_value("enabled", False)
    service = DitherService(settings=settings, guider=guider, clock=clock)
    result = Result(config)
    steps: list[tuple[float, float]] = []
    done = asyncio.Event()

    def on_event(event: ServiceEvent) -> None:
        if isinstance(event, DitherRecorded):
            result.records.append(event.record)
            if len(result.records) >= dithers:
                done.set()

    def on_phd2(event: ev.Phd2Event) -> None:
        if isinstance(event, ev.GuideStep):
            steps.append((clock(), math.hypot(event.ra_distance_raw, event.dec_distance_raw)))

    service.subscribe(on_event)
    client.add_event_listener(on_phd2)
    ends: list[tuple[float, float, float]] = []
    original = service.machine.handle

    def handle(event: Any, now: float) -> Any:
        # the moment each settle ended, and its target (for the false-settle count)
        cycle = service.machine.cycle
        if (
            isinstance(event, m.DitherFinished)
            and event.outcome.rule in ("calm", "phd2")
            and cycle is not None
        ):
            base = cycle.request.baseline
            ends.append((now, cycle.request.settle_pixels, base.distance_rms if base else 0.0))
        return original(event, now)

    service.machine.handle = handle  # type: ignore[method-assign]
    runner = asyncio.get_running_loop().create_task(service.run())
    started = time.monotonic()
    camera = None
    try:
        connected = asyncio.Event()
        client.add_link_listener(lambda status: connected.set() if status.connected else None)
        async with asyncio.timeout(30):
            await connected.wait()
        camera = StillCamera(service, clock, scale)
        await asyncio.sleep(60.0 / scale)
        service.set_setting("enabled", True)
        budget = dithers * (CAMERA_S + SETTLE["settlemax"] + 10) / scale + 60
        async with asyncio.timeout(budget):
            await done.wait()
    finally:
        result.wall_s = time.monotonic() - started
        if camera is not None:
            camera.stop()
        service.shutdown()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await sim.stop()
    for end, target, baseline in ends:
        after = [d for t, d in steps if t > end][:FALSE_FRAMES]
        if len(after) == FALSE_FRAMES:
            result.judged += 1
            if any(d > target for d in after):
                result.false_settles += 1
            rms = math.sqrt(sum(d * d for d in after) / len(after))
            if baseline and rms > NOT_CALM * baseline:
                result.not_calm += 1
    return result


def _values(records: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in records if isinstance(r.get(key), int | float)]


def report(result: Result, dithers: int) -> list[str]:
    # (the line written at shutdown, for a dither cut short, is not one of them)
    recs = [r for r in result.records[:dithers] if r.get("outcome") != "refused"]
    lost = _values(recs, "lost_imaging_s")
    settle = _values([r for r in recs if r.get("outcome") == "settled"], "settle_s")
    ratios = [
        float(r["first_frame_rms"]) / float(r["baseline_rms"])
        for r in recs
        if isinstance(r.get("first_frame_rms"), int | float)
        and isinstance(r.get("baseline_rms"), int | float)
        and r["baseline_rms"] > 0
    ]
    rules: dict[str, int] = {}
    for r in recs:
        rules[str(r.get("settle_rule"))] = rules.get(str(r.get("settle_rule")), 0) + 1
    refused = len(result.records[:dithers]) - len(recs)
    return [
        (
            f"### {result.config.name}: {len(recs)} dithers ({refused} refused), "
            f"{result.wall_s:.0f} s wall"
        ),
        "",
        "| figure | median | p95 |",
        "|---|---|---|",
        (
            f"| imaging time lost per dither (s) | {statistics.median(lost):.2f} | "
            f"{percentile(lost, 0.95):.2f} |"
        ),
        f"| settle time (s) | {statistics.median(settle):.2f} | {percentile(settle, 0.95):.2f} |",
        (
            f"| first saved frame RMS / baseline RMS | {statistics.median(ratios):.3f} | "
            f"{percentile(ratios, 0.95):.3f} |"
        ),
        "",
        f"mean first-frame ratio {statistics.fmean(ratios):.3f}; "
        f"ended by: {', '.join(f'{k} {v}' for k, v in sorted(rules.items()))}; "
        f"false settles (a frame out of target in the {FALSE_FRAMES} after the end): "
        f"{result.false_settles} of {result.judged}"
        + (f" ({100 * result.false_settles / result.judged:.1f} %)" if result.judged else "")
        + f"; not yet calm (those {FALSE_FRAMES} frames over {NOT_CALM:g} x the baseline RMS):"
        f" {result.not_calm} of {result.judged}"
        + (f" ({100 * result.not_calm / result.judged:.1f} %)" if result.judged else ""),
        "",
    ]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dithers", type=int, nargs="?", default=DITHERS)
    parser.add_argument("--scale", type=float, default=SCALE)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--all", action="store_true", help="also the two mixed configurations")
    parser.add_argument("--target", type=float, default=SETTLE["settletarget"])
    args = parser.parse_args()
    configs = CONFIGS + (EXTRA_CONFIGS if args.all else ())
    SETTLE["settletarget"] = args.target
    print(machine())
    print(
        f"{args.dithers} dithers per configuration, simulator x{args.scale:g}, camera "
        f"{CAMERA_S:g} s frames, guide exposure {GUIDE_EXPOSURE_S:g} s, settle {SETTLE}\n"
    )
    results = await asyncio.gather(
        *(run(c, args.dithers, args.scale, args.seed + i) for i, c in enumerate(configs))
    )
    for result in results:
        print("\n".join(report(result, args.dithers)))
    base = statistics.median(_values(results[0].records[: args.dithers], "lost_imaging_s"))
    fast = statistics.median(_values(results[1].records[: args.dithers], "lost_imaging_s"))
    print(
        f"median imaging time lost: {fast:.2f} s against {base:.2f} s: "
        f"{100 * (1 - fast / base):.0f} % lower (done when >= 40 %)"
    )


if __name__ == "__main__":
    asyncio.run(main())
