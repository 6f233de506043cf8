"""PHD2 misbehaving while a dither cycle holds the cameras: killed, silent, stalled,
never settling, sending broken lines, refusing. Whatever PHD2 does, no camera is left
paused, the failure is in the ledger with its reason, and the next dither works."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from ditherapp.core.machine import Phase
from ditherapp.core.phd2 import watchdog
from ditherapp.sim.phd2_model import Pause

SLOW_SETTLE = {"settledelay": 5}
"""Five simulated seconds in range (0.5 s of wall time): a settle long enough to break."""


async def two_cameras(world):
    a = world.add_camera("A", 0.15)
    b = world.add_camera("B", 0.25)
    await world.wait_connected()
    return a, b


async def rpc(port: int, method: str, params=None) -> dict:
    """Another PHD2 client (PHD2's own GUI, a script) calling a method."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = {"method": method, "id": 99}
        if params is not None:
            request["params"] = params
        writer.write(json.dumps(request).encode() + b"\r\n")
        async with asyncio.timeout(5):
            while True:
                message = json.loads(await reader.readline())
                if message.get("id") == 99:
                    return message
    finally:
        writer.close()


async def recorded(world, wait_until, outcome: str, within_s: float = 5.0) -> dict:
    """The newest ledger line with ``outcome``: a cycle's line waits for the cost of the
    dither (the next saved frame, or a deadline), so it may come after the cycle ended."""
    await wait_until(
        lambda: any(r["outcome"] == outcome for r in world.tap.records),
        within_s,
        f"a {outcome} dither in the ledger",
    )
    return next(r for r in reversed(world.tap.records) if r["outcome"] == outcome)


async def next_dither_works(world, wait_until) -> None:
    done = len(world.tap.records)
    await wait_until(
        lambda: any(r["outcome"] == "settled" for r in world.tap.records[done:]),
        20,
        "a dither that settles",
    )
    await wait_until(lambda: world.phase is Phase.IDLE, 5, "the cycle to end")
    assert not world.paused_cameras()


async def test_phd2_killed_mid_settle_resumes_every_camera_and_the_next_dither_works(
    make_world, wait_until, error_trap
):
    world = await make_world()
    a, b = await two_cameras(world)
    await world.wait_records(1)
    port = world.sim.event_port

    world.sim.never_settle = True
    await world.wait_phase(Phase.SETTLING)
    assert a.paused
    assert b.paused
    await world.sim.stop()
    stopped = time.monotonic()

    await wait_until(lambda: not world.paused_cameras(), 1.0, "every camera to resume")
    await world.wait_phase(Phase.IDLE, 1.0)
    lost = await recorded(world, wait_until, "lost")
    assert {c["name"] for c in lost["cameras"]} == {"A", "B"}
    status = await world.status()
    assert status["phd2"]["connected"] is False
    assert status["last_outcome"]["outcome"] == "lost"

    world.sim.never_settle = False
    await world.sim.start()
    assert world.sim.event_port == port
    await wait_until(lambda: world.service.guider.status.connected, 10, "the app to reconnect")
    await next_dither_works(world, wait_until)
    assert world.sim.dither_windows[-1].start > stopped
    assert not world.saved_during_dither()
    assert [r["outcome"] for r in world.ledger()] == [r["outcome"] for r in world.tap.records]
    assert not error_trap.problems()


async def test_with_the_frame_guard_phd2_killed_mid_settle_holds_saving_until_it_is_back(
    make_world, wait_until, error_trap
):
    world = await make_world(settings={"guard": True})
    await two_cameras(world)
    await world.wait_records(1)
    world.sim.never_settle = True
    await world.wait_phase(Phase.SETTLING)
    await world.sim.stop()
    # The cycle fails open as before, then the guard holds saving while PHD2 is away.
    await world.wait_phase(Phase.GUARDING, 2.0)
    await wait_until(lambda: len(world.paused_cameras()) == 2, 2.0, "both cameras held")
    held_at = time.monotonic()
    status = await world.status()
    assert status["guard"]["condition"] == "PHD2 is not connected"

    world.sim.never_settle = False
    await world.sim.start()
    await wait_until(lambda: world.service.guider.status.connected, 10, "the app to reconnect")
    await next_dither_works(world, wait_until)
    # The lost dither's line waited for its cost (no camera saved while held); the next
    # dither wrote it at the latest.
    await recorded(world, wait_until, "lost")
    guarded = [r for r in world.ledger() if r.get("kind") == "guarded_frame"]
    assert {r["camera"] for r in guarded} == {"A", "B"}
    assert all(not r["saved"] for r in guarded), (guarded, world.tap.records)
    assert all(any("PHD2" in why for why in r["reasons"]) for r in guarded)
    assert not [bad for bad in world.saved_during_dither() if bad.end > held_at]
    assert not error_trap.problems()


async def test_phd2_connection_dropped_mid_settle_is_survived(make_world, wait_until, error_trap):
    # PHD2 itself is fine and goes on settling; the app cannot know how that settle
    # ends, so it fails open and lets the cameras save at once. The frames saved from
    # then until PHD2's settle really ended are the price of never staying paused
    # blind; no frame finished before the link dropped may have been saved mid-dither.
    world = await make_world(settings=SLOW_SETTLE)
    await two_cameras(world)
    await world.wait_phase(Phase.SETTLING)
    world.sim.drop_connections()
    dropped = time.monotonic()
    await wait_until(lambda: not world.paused_cameras(), 1.0, "every camera to resume")
    await recorded(world, wait_until, "lost")
    await next_dither_works(world, wait_until)
    assert not [bad for bad in world.saved_during_dither() if bad.end <= dropped]
    assert len(world.sim.dither_windows) >= 2
    assert not error_trap.problems()


async def test_a_settle_that_never_succeeds_resumes_the_cameras_and_is_a_failure(
    make_world, wait_until, error_trap
):
    world = await make_world(settings={"settlemax": 3})
    a, b = await two_cameras(world)
    world.sim.never_settle = True
    await world.wait_phase(Phase.SETTLING)
    await world.wait_records(1, timeout=10)
    failed = world.tap.records[0]
    assert failed["outcome"] == "settle_failed"
    assert "timed-out waiting for guider to settle" in failed["message"]
    await world.wait_phase(Phase.IDLE, 5)
    assert not a.paused
    assert not b.paused
    assert world.ledger()[0]["outcome"] == "settle_failed"
    assert (await world.status())["failures"] == 1

    world.sim.never_settle = False
    await next_dither_works(world, wait_until)
    assert not world.saved_during_dither()
    assert not error_trap.problems()


@pytest.mark.timeout(60)
async def test_a_phd2_hung_mid_settle_is_a_dead_link_noticed_in_seconds_and_the_cameras_resume(
    make_world, wait_until, error_trap
):
    # PHD2 frozen with its socket open sends no more guide steps: once the silence is
    # well beyond its guide cadence (here 0.1 s, so the 10 s floor) the link is dead,
    # instead of "connected, settling" until the settle deadline, or for ever.
    # settlemax in PHD2 time: at x10 it must outlast the 10 s silence floor.
    world = await make_world(settings={"settlemax": 300})
    await two_cameras(world)
    links = []
    world.service.guider.add_link_listener(links.append)
    await world.wait_phase(Phase.SETTLING)
    world.sim.stall = True
    stalled = time.monotonic()
    await wait_until(lambda: any(not s.connected for s in links), 20, "the hung PHD2 to be noticed")
    gave_up = time.monotonic()
    noticed = gave_up - stalled
    record = await recorded(world, wait_until, "lost")
    assert record["cycle"] == 1, record
    assert watchdog.SILENCE_FLOOR_S - 0.5 < noticed < watchdog.SILENCE_FLOOR_S + 3, noticed
    said = [s.last_error for s in links if not s.connected]
    assert any("PHD2 stopped answering" in text for text in said), said
    await wait_until(lambda: not world.paused_cameras(), 2, "every camera to resume")
    # Paused all along: the app kept the agents' silence watchdogs fed.
    assert all(c["paused_s"] > 9 for c in record["cameras"])
    world.sim.stall = False
    await next_dither_works(world, wait_until)
    # Once the app has given up, PHD2 thawing and finishing the old settle is beyond it.
    stalled_window = world.sim.dither_windows[0]
    assert not [
        e
        for e in world.saved_during_dither()
        if e.end <= gave_up or e.start >= (stalled_window.end or gave_up)
    ]
    assert not error_trap.problems()


async def test_phd2_stalling_briefly_mid_settle_only_delays_the_dither(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE)
    await two_cameras(world)
    await world.wait_phase(Phase.SETTLING)
    world.sim.stall = True
    await asyncio.sleep(0.3)  # the fault's length: PHD2 frozen for 0.3 s
    assert world.phase is Phase.SETTLING
    assert len(world.paused_cameras()) == 2
    world.sim.stall = False
    await world.wait_records(1)
    assert world.tap.records[0]["outcome"] == "settled"
    await world.wait_phase(Phase.IDLE)
    assert not world.paused_cameras()
    assert not world.saved_during_dither()
    assert not error_trap.problems()


async def test_a_truncated_line_mid_settle_is_skipped_and_the_settle_still_completes(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE)
    await two_cameras(world)
    await world.wait_phase(Phase.SETTLING)
    world.sim.truncate_next_line()
    await wait_until(lambda: world.service.guider.status.bad_lines == 1, 5, "a bad line")
    await world.wait_records(1)
    assert world.tap.records[0]["outcome"] == "settled"
    await world.wait_phase(Phase.IDLE)
    assert not world.paused_cameras()
    assert world.service.guider.status.connected
    assert not error_trap.problems()


def garbage_lines(rng: random.Random) -> list[bytes]:
    """What a broken link or a buggy PHD2 build can put on the wire: noise, cut lines,
    invalid UTF-8, JSON that is not an event, absurd nesting and numbers."""
    guide_step = (
        b'{"Event":"GuideStep","Timestamp":1.5,"Host":"h","Inst":1,"Frame":7,"Time":1.2,'
        b'"Mount":"Mount","dx":0.1,"dy":-0.2,"RADistanceRaw":0.3,"DECDistanceRaw":0.1}'
    )
    lines = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))).replace(b"\n", b""),
        guide_step[: rng.randrange(1, len(guide_step))],
        b"\xff\xfe" + guide_step,
        b"[1,2,3]",
        b'"just a string"',
        b"null",
        b"{}",
        b'{"Event":17}',
        b'{"Event":"GuideStep","Frame":"seven"}',
        b"[" * 10000 + b"]" * 10000,
        b'{"Event":"LockPositionSet","X":1' + b"0" * 500 + b',"Y":1}',
        b'{"jsonrpc":"2.0","result":0,"id":987654}',
        b'{"Event":"SomethingNew","Field":[1,{"a":null}]}',
    ]
    rng.shuffle(lines)
    return [line + b"\r\n" for line in lines]


async def test_garbage_from_phd2_mid_settle_is_skipped_and_the_settle_completes(
    make_world, wait_until, error_trap
):
    world = await make_world(settings=SLOW_SETTLE, proxy=True)
    await two_cameras(world)
    rng = random.Random(5)
    for _ in range(3):
        records = len(world.tap.records)
        await world.wait_phase(Phase.SETTLING)
        for line in garbage_lines(rng):
            world.proxy.inject(line)
        await world.wait_records(records + 1)
        assert world.tap.records[-1]["outcome"] == "settled", world.tap.records[-1]
        await world.wait_phase(Phase.IDLE)
    assert world.service.guider.status.bad_lines >= 3 * 8
    assert world.service.guider.status.connected
    assert not world.paused_cameras()
    assert not world.saved_during_dither()
    assert (await world.status())["phd2"]["state"] == "Guiding"
    assert not error_trap.problems()


async def test_a_lost_settle_done_does_not_keep_the_cameras_paused_until_the_deadline(
    make_world, wait_until, error_trap
):
    # Waiting for our deadline instead would keep them paused settlemax + 10 s after
    # the dither: here 11 s, and with the default settlemax of 60 s, 70 s of imaging.
    world = await make_world(settings={"settlemax": 1, "settledelay": 0}, proxy=True)
    await two_cameras(world)
    await world.wait_phase(Phase.SETTLING)
    world.proxy.cut_line_containing(b'"SettleDone"')
    await wait_until(lambda: world.sim.dither_windows[0].end is not None, 5, "PHD2 to settle")
    await wait_until(lambda: world.service.guider.status.bad_lines >= 1, 2, "the lost line")
    # PHD2 is done and says so if asked; the user sees when the cameras save again.
    await wait_until(lambda: world.tap.records, 5, "the cycle to end after the settle")
    await wait_until(lambda: not world.paused_cameras(), 2, "every camera to resume")
    assert not error_trap.problems()


async def test_after_a_lost_settle_done_the_next_dither_still_happens(
    make_world, wait_until, error_trap
):
    world = await make_world(settings={"settlemax": 1, "settledelay": 0}, proxy=True)
    await two_cameras(world)
    await world.wait_phase(Phase.SETTLING)
    world.proxy.cut_line_containing(b'"SettleDone"')
    await wait_until(lambda: world.tap.records, 5, "the cycle with the lost SettleDone")
    assert world.sim.app_state == "Guiding"
    assert not world.sim.model.settling
    # PHD2 is guiding and idle; two more frames make the next dither due.
    await wait_until(lambda: len(world.tap.records) >= 2, 5, "the next dither")
    assert world.service.machine.skip_reason is None
    assert not error_trap.problems()


async def test_a_lost_reply_to_dither_does_not_resume_the_cameras_mid_settle(
    make_world, wait_until, error_trap
):
    # A settle of 12 s of wall time (120 simulated seconds in range), longer than the
    # 10 s a request may take; the dither's reply line is cut and glued to the next.
    world = await make_world(settings={"settledelay": 120, "settlemax": 300}, proxy=True)
    world.add_camera("A", 0.15)
    await world.wait_connected()
    world.when_phase(Phase.DITHERING, lambda: world.proxy.cut_line_containing(b'"result":0,'))
    await wait_until(lambda: world.phase is Phase.SETTLING, 5, "the settle")
    await wait_until(lambda: world.tap.records, 20, "the cycle to end")
    window = world.sim.dither_windows[0]
    assert window.end is not None, "the cameras were resumed while PHD2 was still settling"
    assert world.tap.records[0]["outcome"] == "settled"
    assert not error_trap.problems()


async def test_a_settle_done_read_together_with_the_dither_reply_ends_the_dither(
    make_world, wait_until, error_trap
):
    world = await make_world(settings={"settlemax": 1, "settledelay": 0}, proxy=True)
    world.add_camera("A", 0.15)
    await world.wait_connected()
    world.when_phase(
        Phase.DITHERING, lambda: world.proxy.hold_line_until(b'"result":0,', b'"SettleDone"')
    )
    await wait_until(lambda: world.sim.dither_windows, 5, "the dither")
    await wait_until(lambda: world.sim.dither_windows[0].end is not None, 5, "PHD2 to settle")
    await wait_until(lambda: world.tap.records, 3, "the cycle to end after the settle")
    assert world.tap.records[0]["outcome"] == "settled"
    assert not error_trap.problems()


async def test_a_dither_due_while_phd2_is_paused_is_skipped_with_the_reason(
    make_world, wait_until, error_trap
):
    world = await make_world()
    a, _ = await two_cameras(world)
    await world.wait_records(1)
    await world.wait_phase(Phase.IDLE)
    assert (await rpc(world.sim.event_port, "set_paused", [True]))["result"] == 0
    saved_before = sum(e.saved for e in a.exposures)
    records = len(world.tap.records)
    await wait_until(
        lambda: world.service.machine.skip_reason == "PHD2 is paused", 5, "the skip reason"
    )
    status = await world.status()
    assert status["skip_reason"] == "PHD2 is paused"
    assert any("PHD2 is paused" in n.message for n in world.service.notices)
    # Frames keep being saved (nothing holds the cameras), and no dither is tried.
    await wait_until(lambda: sum(e.saved for e in a.exposures) >= saved_before + 4, 5, "frames")
    assert not world.paused_cameras()
    assert len(world.tap.records) == records
    assert len(world.sim.dither_windows) == records

    assert (await rpc(world.sim.event_port, "set_paused", [False]))["result"] == 0
    await next_dither_works(world, wait_until)
    assert world.service.machine.skip_reason is None
    assert not error_trap.problems()


async def test_a_dither_due_while_phd2_is_not_guiding_is_skipped_with_the_reason(
    make_world, wait_until, error_trap
):
    world = await make_world()
    a, _ = await two_cameras(world)
    await world.wait_records(1)
    await world.wait_phase(Phase.IDLE)
    assert (await rpc(world.sim.event_port, "stop_capture"))["result"] == 0
    await wait_until(
        lambda: (world.service.machine.skip_reason or "").startswith("PHD2 is not guiding"),
        5,
        "the skip reason",
    )
    assert "Stopped" in (await world.status())["skip_reason"]
    saved = sum(e.saved for e in a.exposures)
    await wait_until(lambda: sum(e.saved for e in a.exposures) >= saved + 4, 5, "frames")
    assert not world.paused_cameras()
    assert (await world.status())["skipped"] >= 1
    assert not error_trap.problems()


async def test_phd2_pausing_as_the_cycle_starts_refuses_the_dither_and_resumes_at_once(
    make_world, wait_until, error_trap
):
    # The machine decided while PHD2 was guiding; by the time the dither is asked for,
    # PHD2 is paused (someone clicked its pause button). The dither is refused by the
    # preflight and the cameras save again without waiting for anything.
    world = await make_world()
    a, _ = await two_cameras(world)
    paused_phd2 = []

    def on_status(_event) -> None:
        if world.phase is Phase.PAUSING and not paused_phd2:
            paused_phd2.append(time.monotonic())
            world.sim.model.set_paused(Pause.GUIDING)

    unsubscribe = world.service.subscribe(on_status)
    try:
        await world.wait_records(1)
    finally:
        unsubscribe()
    refused = world.tap.records[0]
    assert refused["outcome"] == "refused", refused
    assert refused["message"] == "PHD2 is paused"
    assert world.sim.dither_windows == []  # the mount never moved
    await world.wait_phase(Phase.IDLE, 2)
    await wait_until(lambda: not world.paused_cameras(), 2, "every camera to resume")
    # A refused dither spends no frames: the counts still say a dither is due.
    assert all(c["frames_since_last"] >= 2 for c in refused["cameras"])
    world.sim.model.set_paused(Pause.NONE)
    await wait_until(lambda: world.service.guider.status.state.value == "Guiding", 5, "guiding")
    # Each try costs every camera its frame in progress, so the app does not try again
    # at every frame (it backs off for REFUSED_RETRY_S); the user can at any time.
    saved = sum(e.saved for e in a.exposures)
    await wait_until(lambda: sum(e.saved for e in a.exposures) >= saved + 3, 5, "frames")
    assert len(world.tap.records) == 1
    reader, writer = await asyncio.open_connection("127.0.0.1", world.control_port)
    writer.write(b'{"type":"dither_now"}\n')
    async with asyncio.timeout(5):
        assert json.loads(await reader.readline()) == {"type": "ok"}
    writer.close()
    await world.wait_records(2)
    assert world.tap.records[1]["outcome"] == "settled"
    assert world.tap.records[1]["trigger"] == "manual"
    assert not error_trap.problems()
