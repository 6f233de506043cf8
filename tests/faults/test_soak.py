"""A night compressed into a minute or two: 2000 dither cycles with two cameras on the
real service, control socket and PHD2 client, against the simulator running 200 times
faster than life, with a fault from a seeded random draw in about one cycle in six.

What a user would check in the morning:

* no camera was left paused, and the app never crashed (no error was logged, a
  controller was answered all night);
* every frame is accounted for: each frame a camera did not save was held by a dither
  cycle, and the ledger's ``frames_not_saved`` adds up to exactly the frames the cameras
  reported unsaved; the only unsaved frames the ledger cannot know are the reports that
  died with a killed camera agent;
* no saved frame was exposing while PHD2 dithered or settled, except around the faults
  that make the app fail open (PHD2 lost, a camera reconnecting mid-dither).

Why real sockets and real time, not a fake guider in virtual time: the races that lose a
camera's pause live in the socket layers (the control server's queues, the PHD2 client's
reconnect, the agents' watchdogs), and a virtual-time harness would drive none of them.
The app's own real-time waits that only fault recovery spends (the reconnect delay, the
request time limit, the settle deadline's margin, the back-off after a refused dither)
are compressed like the simulator's time; the logic that uses them is unchanged.

A second, shorter night adds the round 2 attacks, all at once and all night: clients
flooding ``set``, clients dripping a byte at a time (slowloris), and a PHD2 that hangs
with its socket open now and then (the watchdog must call the link dead and the app
fail open); every frame must still be accounted for.

A different night: DITHERAPP_SOAK_SEED=N (and DITHERAPP_SOAK_CYCLES=N for a longer one).
If dithers stop coming, the failure says what the machine, PHD2 and the agents were in.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from ditherapp.core import machine
from ditherapp.core.machine import Phase
from ditherapp.core.phd2 import watchdog
from ditherapp.net import control_server, guider, phd2_client
from ditherapp.net.backoff import Backoff
from ditherapp.net.service import DitherRecorded
from ditherapp.sim.phd2_model import Pause

SCALE = 200.0
STALL_S = 20.0
"""The longest a healthy night goes without a dither here (the worst fault costs the
settle timeout, 5 s, plus our compressed margin)."""
CYCLES = int(os.environ.get("DITHERAPP_SOAK_CYCLES", "2000"))
ATTACKED_CYCLES = max(1, CYCLES // 4)
HUNG_S = 3.0
"""How long a hung PHD2 stays frozen: well beyond the compressed watchdog floor."""
WATCHDOG_FLOOR_S = 1.0
"""The watchdog's silence floor here (10 s in life); guide frames come every 5 ms."""
HUNG_AT = (40, 200)
"""Cycles at which PHD2 hangs whatever the draw says (besides the random hangs)."""
SEED = int(os.environ.get("DITHERAPP_SOAK_SEED", "20261121"))

SOAK_SETTINGS = {
    "ditherevery": 1,
    "settledelay": 1,
    "settlemax": 5,
    "maxpixels": 1,
    "settletarget": 1.5,
    "waitfornextframe": True,
}
"""A dither after every frame; at 200x a settle takes a few 5 ms guide frames, and
PHD2's own settle timeout (5 simulated seconds) passes in 25 ms."""

# (fault, weight, phase it strikes in); the remaining weight is "no fault".
FAULTS = [
    ("never_settle", 30, Phase.PAUSING),
    ("lose_star", 25, Phase.SETTLING),
    ("brief_stall", 25, Phase.SETTLING),
    ("garbage", 25, Phase.SETTLING),
    ("camera_killed", 20, Phase.SETTLING),
    ("camera_killed_early", 10, Phase.PAUSING),
    ("phd2_paused", 15, Phase.PAUSING),
    # Seeds 6 and 11 once found a lost SettleDone leaving the client believing PHD2
    # settled for ever (test_phd2_faults.py::test_after_a_lost_settle_done_...).
    ("truncated_line", 3, Phase.SETTLING),
    ("phd2_dropped", 4, Phase.SETTLING),
    ("phd2_killed", 4, Phase.SETTLING),
]
ATTACK_FAULTS = [*FAULTS, ("phd2_hung", 3, Phase.SETTLING)]
FAIL_OPEN = {"phd2_dropped", "phd2_killed", "phd2_hung", "camera_killed", "camera_killed_early"}
"""Faults after which a frame saved while PHD2 still settles is the designed price."""

GARBAGE = [
    b"\x00\x01\x02 not json at all",
    b'{"Event":"GuideStep","Frame":',
    b"\xff\xfe\xfd",
    b"[1,2,3]",
    b'{"Event":"GuideStep","Frame":"x"}',
    b'{"Event":"NewFancyEvent","X":[1,2]}',
]


@dataclass
class Chaos:
    world: object
    rng: random.Random
    injected: Counter = field(default_factory=Counter)
    tainted: list[tuple[float, float | None]] = field(default_factory=list)
    """(from, to) monotonic intervals in which a fail-open fault was active."""
    tasks: set = field(default_factory=set)
    planned: tuple[int, str, Phase] | None = None
    cleanup: list = field(default_factory=list)
    kills: Counter = field(default_factory=Counter)
    running: bool = True
    recent: list = field(default_factory=list)
    faults: list = field(default_factory=lambda: FAULTS)
    forced: dict = field(default_factory=dict)
    """cycle number -> fault, whatever the draw."""

    def on_event(self, event) -> None:
        machine = self.world.service.machine
        if isinstance(event, DitherRecorded):
            self._cycle_over()
            return
        cycle = machine.cycle
        if cycle is None or not self.running:
            return
        if self.planned is None or self.planned[0] != cycle.number:
            forced = self.forced.get(cycle.number)
            draw = (forced, Phase.SETTLING) if forced else self._draw()
            self.planned = (cycle.number, *draw)
        number, fault, phase = self.planned
        if fault and machine.phase is phase:
            self.planned = (number, "", phase)
            self._inject(fault)

    def _draw(self) -> tuple[str, Phase]:
        pick = self.rng.randrange(1000)
        no_fault = 1000 - sum(w for _, w, _ in self.faults)
        if pick < no_fault:
            return "", Phase.IDLE
        pick -= no_fault
        for name, weight, phase in self.faults:
            if pick < weight:
                return name, phase
            pick -= weight
        raise AssertionError("weights")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _inject(self, fault: str) -> None:
        world = self.world
        sim = world.sim
        if sim.stall or sim._runner is None:
            return  # PHD2 is already down or frozen by an earlier fault
        self.injected[fault] += 1
        now = time.monotonic()
        self.recent.append((round(now, 3), fault, self.world.service.machine.cycle.number))
        if fault in FAIL_OPEN:
            self.tainted.append((now, None))
        match fault:
            case "never_settle":
                sim.never_settle = True
                self.cleanup.append(lambda: setattr(sim, "never_settle", False))
            case "lose_star":
                sim.lose_star(self.rng.randint(1, 3))
            case "brief_stall":
                sim.stall = True
                asyncio.get_running_loop().call_later(0.02, setattr, sim, "stall", False)
            case "phd2_hung":  # frozen with its socket open, for seconds
                sim.stall = True
                asyncio.get_running_loop().call_later(HUNG_S, setattr, sim, "stall", False)
            case "garbage":
                for line in self.rng.sample(GARBAGE, 3):
                    world.proxy.inject(line + b"\r\n")
            case "truncated_line":
                sim.truncate_next_line()
            case "camera_killed" | "camera_killed_early":
                self._spawn(self._kill_camera(self.rng.choice(world.cameras)))
            case "phd2_paused":
                sim.model.set_paused(Pause.GUIDING)
                self.cleanup.append(lambda: sim.model.set_paused(Pause.NONE))
            case "phd2_dropped":
                sim.drop_connections()
            case "phd2_killed":
                self._spawn(self._restart_phd2())

    async def _kill_camera(self, camera) -> None:
        if not self.world.is_running(camera):
            return  # already dead: an earlier fault killed it
        self.kills[camera.name] += 1
        machine = self.world.service.machine
        number = machine.cycle.number if machine.cycle else None
        await self.world.kill_camera(camera)
        # Half of them come back while the cycle still runs (and must be paused again,
        # their earlier unsaved frames still counted), half once it is over.
        if self.rng.random() < 0.5:
            while machine.cycle is not None and machine.cycle.number == number:
                await asyncio.sleep(0.002)
        await asyncio.sleep(self.rng.uniform(0, 0.01))
        self.world.start_camera(camera)

    async def _restart_phd2(self) -> None:
        await self.world.sim.stop()
        await asyncio.sleep(0.05)
        await self.world.sim.start()

    def _cycle_over(self) -> None:
        for undo in self.cleanup:
            undo()
        self.cleanup.clear()
        now = time.monotonic()
        slack = 0.1  # the frame in progress, and the next one
        self.tainted = [(a, b if b is not None else now + slack) for a, b in self.tainted]

    def is_tainted(self, start: float, end: float) -> bool:
        return any(a < end and start < (b or float("inf")) for a, b in self.tainted)


def state(world, chaos: Chaos) -> str:
    """What a stuck night looks like, for the failure message."""
    machine = world.service.machine
    cycle = machine.cycle
    sim = world.sim
    return "\n".join(
        [
            f"phase {machine.phase.value}, skip reason {machine.skip_reason!r}",
            f"cycle {cycle and (cycle.number, cycle.trigger, cycle.deadline, cycle.members)}",
            "cameras "
            + str(
                [(c.id, c.connected, c.capturing, c.frames_since) for c in machine.cameras.values()]
            ),
            f"agents {[(c.name, c.connected, c.paused, c.paused_by) for c in world.cameras]}",
            f"guider {machine.guider}; link {world.service.guider.status}",
            f"PHD2 running {sim._runner is not None}, stall {sim.stall}, never {sim.never_settle}",
            f"PHD2 state {sim.app_state if sim._runner is not None else '-'}",
            f"last faults {chaos.recent[-5:]}",
            f"last record {world.tap.records[-1] if world.tap.records else None}",
        ]
    )


async def run_until_done(world, chaos: Chaos, watched: list[asyncio.Task], cycles: int) -> None:
    """Until ``cycles`` dithers are recorded; fail, saying why, if they stop coming."""
    count, changed = 0, time.monotonic()
    while len(world.tap.records) < cycles:
        await asyncio.sleep(0.05)
        for task in watched:
            assert not task.done(), task.exception()
        if len(world.tap.records) != count:
            count, changed = len(world.tap.records), time.monotonic()
        elif time.monotonic() - changed > STALL_S:
            pytest.fail(f"no dither for {STALL_S:g} s after {count}:\n{state(world, chaos)}")


def compress_the_apps_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's time runs 200 times faster; so do the app's real-time waits that
    only fault recovery spends (the logic that uses them is unchanged). The waits the
    camera agents' watchdogs are tuned against (keepalive, pause limits) are left alone."""
    monkeypatch.setattr(machine, "REFUSED_RETRY_S", 30.0 / SCALE)
    monkeypatch.setattr(guider, "MIN_DEADLINE_MARGIN_S", 0.5)
    monkeypatch.setattr(phd2_client, "DEFAULT_TIMEOUT_S", 1.0)
    monkeypatch.setattr(phd2_client, "Backoff", functools.partial(Backoff, first_s=0.05, cap_s=0.5))


@pytest.mark.timeout(300)
async def test_a_night_of_dithers_with_random_faults(
    make_world, wait_until, error_trap, monkeypatch
):
    compress_the_apps_waits(monkeypatch)
    world = await make_world(settings=SOAK_SETTINGS, time_scale=SCALE, proxy=True, seed=SEED)
    chaos = Chaos(world=world, rng=random.Random(SEED))
    await night(world, chaos, cycles=CYCLES, wait_until=wait_until, error_trap=error_trap)


@pytest.mark.timeout(300)
async def test_a_night_under_a_set_flood_a_slowloris_and_a_hanging_phd2(
    make_world, wait_until, error_trap, monkeypatch, tmp_path
):
    compress_the_apps_waits(monkeypatch)
    monkeypatch.setattr(watchdog, "SILENCE_FLOOR_S", WATCHDOG_FLOOR_S)
    monkeypatch.setattr(control_server, "LINE_TIMEOUT_S", 1.0)
    settings_file = tmp_path / "settings.ini"
    world = await make_world(
        settings=SOAK_SETTINGS,
        time_scale=SCALE,
        proxy=True,
        seed=SEED,
        settings_file=settings_file,
    )
    chaos = Chaos(
        world=world,
        rng=random.Random(SEED),
        faults=ATTACK_FAULTS,
        forced=dict.fromkeys(HUNG_AT, "phd2_hung"),
    )
    links = []
    world.service.guider.add_link_listener(links.append)
    attack = Attack(world.control_port)
    attackers = attack.start()
    try:
        await night(
            world,
            chaos,
            cycles=ATTACKED_CYCLES,
            wait_until=wait_until,
            error_trap=error_trap,
            attackers=attackers,
        )
    finally:
        await attack.stop()
    print(
        f"attacks: {attack.sets} sets answered, {attack.slowloris_dropped} slowloris dropped, "
        f"{chaos.injected['phd2_hung']} PHD2 hangs"
    )
    assert attack.sets >= 1000
    assert attack.slowloris_dropped >= SLOWLORIS
    assert chaos.injected["phd2_hung"] >= len(HUNG_AT)
    assert any("PHD2 stopped answering" in s.last_error for s in links if not s.connected)
    # The flood's last value is on disk, in a whole file.
    from ditherapp.ui.settings_store import SettingsStore

    await world.runtime.stop()
    settings, problems = SettingsStore(settings_file).load()
    assert problems == []
    assert settings.primarycamera == attack.last_value


FLOODERS = 3
FLOOD_BURST = 200
SLOWLORIS = 4


class Attack:
    """Clients that flood ``set`` in pipelined bursts, and clients that drip a byte
    every 50 ms (each dropped by the line timeout, and back at once), all night."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sets = 0
        self.slowloris_dropped = 0
        self.last_value = ""
        self._tasks: list[asyncio.Task] = []

    def start(self) -> list[asyncio.Task]:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flood(n)) for n in range(FLOODERS)]
        self._tasks += [loop.create_task(self._slowloris()) for _ in range(SLOWLORIS)]
        return list(self._tasks)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        failed = [r for r in results if not isinstance(r, asyncio.CancelledError | type(None))]
        assert not failed, failed

    async def _flood(self, number: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            burst = 0
            while True:
                burst += 1
                values = [f"flood {number}.{burst}.{i}" for i in range(FLOOD_BURST)]
                writer.write(
                    b"".join(
                        json.dumps({"type": "set", "name": "primarycamera", "value": v}).encode()
                        + b"\n"
                        for v in values
                    )
                )
                for value in values:
                    async with asyncio.timeout(5):
                        reply = json.loads(await reader.readline())
                    assert reply == {"type": "value", "name": "primarycamera", "value": value}
                    self.sets += 1
                    self.last_value = value
                await asyncio.sleep(0.05)
        finally:
            writer.close()

    async def _slowloris(self) -> None:
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)

            async def drip(writer: asyncio.StreamWriter = writer) -> None:
                with contextlib.suppress(ConnectionError):
                    for byte in b'{"type":"status","pad":"' + b"x" * 10_000:
                        writer.write(bytes([byte]))
                        await asyncio.sleep(0.05)

            dripping = asyncio.create_task(drip())
            try:
                async with asyncio.timeout(5):
                    line = await reader.readline()
                assert json.loads(line)["code"] == "timeout", line
                self.slowloris_dropped += 1
            finally:
                dripping.cancel()
                writer.close()


async def night(world, chaos: Chaos, *, cycles: int, wait_until, error_trap, attackers=()) -> None:
    service = world.service
    unsubscribe = service.subscribe(chaos.on_event)
    world.add_camera("A", 0.004, reconnect_s=0.02)
    world.add_camera("B", 0.006, reconnect_s=0.02)
    await world.wait_connected()

    # A controller asks for the status all night long; every answer must come promptly.
    reader, writer = await asyncio.open_connection("127.0.0.1", world.control_port)
    answers = 0

    async def poll_status() -> None:
        nonlocal answers
        while True:
            writer.write(b'{"type":"status"}\n')
            async with asyncio.timeout(2):
                assert json.loads(await reader.readline())["type"] == "status"
            answers += 1
            await asyncio.sleep(0.1)

    poller = asyncio.create_task(poll_status())
    started = time.monotonic()
    try:
        await run_until_done(world, chaos, [poller, *attackers], cycles)
    finally:
        chaos.running = False
        service.set_enabled(False)
        await asyncio.gather(*chaos.tasks, return_exceptions=True)
        for undo in chaos.cleanup:
            undo()
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
        writer.close()
        unsubscribe()
    elapsed = time.monotonic() - started

    # The morning after: nothing paused, nothing crashed.
    await world.wait_phase(Phase.IDLE, 40)
    await world.wait_connected(15)
    await wait_until(lambda: not world.paused_cameras(), 5, "every camera to be saving")
    assert (await world.status())["phase"] == "idle"
    assert not error_trap.problems()
    for camera in world.cameras:
        await world.kill_camera(camera)

    records = world.tap.records
    assert [r["cycle"] for r in world.ledger()] == [r["cycle"] for r in records]
    outcomes = Counter(r["outcome"] for r in records)
    print(
        f"\n{len(records)} cycles in {elapsed:.0f} s; outcomes {dict(outcomes)}; "
        f"faults {dict(chaos.injected)}; {answers} status answers"
    )
    assert outcomes["settled"] > cycles * 0.7
    assert sum(chaos.injected.values()) > cycles / 10

    # Every frame accounted for.
    in_ledger = Counter()
    for record in records:
        for cam in record["cameras"]:
            in_ledger[cam["name"]] += cam["frames_not_saved"]
    for camera in world.cameras:
        unsaved = sum(1 for e in camera.exposures if not e.saved)
        reported = world.unsaved_reports[camera.name]
        assert in_ledger[camera.name] == reported, (camera.name, in_ledger, reported)
        # A killed agent's last reports may die with it, a couple of frames at most.
        assert reported <= unsaved <= reported + 2 * chaos.kills[camera.name], (
            camera.name,
            unsaved,
            reported,
            chaos.kills[camera.name],
        )

    # No saved frame exposed during a dither, except where the app failed open.
    # The settle's hard limit is the user's: at settlemax the app resumes whatever PHD2
    # still says (a PHD2 that never settles ends its own window a few ms of latency later,
    # which at 200x is a whole 5 ms frame). So a window counts up to settlemax.
    limit = SOAK_SETTINGS["settlemax"] / SCALE
    windows = [
        (w.start, min(w.end, w.start + limit))
        for w in world.sim.dither_windows
        if w.end is not None
    ]
    clean = [(s, e) for s, e in windows if not chaos.is_tainted(s, e)]
    assert len(clean) > cycles * 0.7
    smeared = [
        (camera.name, e.seq)
        for camera in world.cameras
        for e in camera.exposures
        if e.saved and any(e.start < end and start < e.end for start, end in clean)
    ]
    assert not smeared
