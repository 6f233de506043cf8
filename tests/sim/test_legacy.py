"""The legacy one-byte socket server."""

from __future__ import annotations

import struct

GETSTATUS, REQDIST, LOOPFRAMECOUNT = 17, 10, 21
PAUSE, RESUME, STOP, LOOP, STARTGUIDING = 1, 2, 18, 19, 20
MOVES = {3: 0.5, 4: 1.0, 5: 2.0, 12: 3.0, 13: 5.0}


async def test_status_codes_through_a_session(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    assert await legacy.command(GETSTATUS) == 3
    start = len(conn.messages)
    assert await legacy.command(PAUSE) == 0
    await conn.wait_event("Paused", start=start)
    assert await legacy.command(GETSTATUS) == 100
    assert await legacy.command(ord("r")) == 0  # 'r' is RESUME too
    await conn.wait_event("Resumed", start=start)
    assert await legacy.command(GETSTATUS) == 3
    start = len(conn.messages)
    assert await legacy.command(STOP) == 0
    await conn.wait_event("LockPositionLost", start=start)
    assert conn.names(start) == ["GuidingStopped", "LoopingExposuresStopped", "LockPositionLost"]
    assert [await legacy.command(c) for c in (GETSTATUS, REQDIST, 3, LOOPFRAMECOUNT)] == [0] * 4
    start = len(conn.messages)
    assert await legacy.command(LOOP) == 0
    await conn.wait_event("StarSelected", start=start)
    assert await legacy.command(GETSTATUS) == 1
    assert await legacy.command(LOOPFRAMECOUNT) >= 1
    start = len(conn.messages)
    assert await legacy.command(STARTGUIDING) == 0
    await conn.wait_event("GuideStep", start=start)
    names = [n for n in conn.names(start) if n not in ("LoopingExposures", "GuideStep")]
    assert names == ["LockPositionSet", "StartGuiding"]
    assert await legacy.command(GETSTATUS) == 3


async def test_looping_calibrating_and_lost_lock_codes(make_sim, connect, connect_legacy):
    sim = await make_sim(start="looping")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    assert await legacy.command(GETSTATUS) == 101
    await conn.result("guide", {"settle": {"pixels": 1.5, "time": 1, "timeout": 60}})
    await conn.wait_event("StartCalibration")
    assert await legacy.command(GETSTATUS) == 2
    await conn.wait_event("SettleDone")
    sim.lose_star(1000)
    await conn.wait_event("StarLost")
    assert await legacy.command(GETSTATUS) == 4
    first = conn.events("StarLost")[0]["Time"]
    await conn.wait_for(lambda m: m.get("Event") == "StarLost" and m["Time"] - first > 21)
    assert await legacy.command(REQDIST) == 255  # no star for 20 s: distance 100, capped
    sim.lose_star(0)


async def test_moves_dither_and_reply_the_exposure(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    for command, amount in MOVES.items():
        start = len(conn.messages)
        assert await legacy.command(command) == 1
        dithered = conn.events("GuidingDithered", start)
        if not dithered:
            await conn.wait_event("GuidingDithered", start=start)
            dithered = conn.events("GuidingDithered", start)
        assert abs(dithered[0]["dx"]) <= amount
        assert abs(dithered[0]["dy"]) <= amount
    done = conn.messages[
        await conn.wait_for(
            lambda m: m.get("Event") == "SettleDone" and m["Status"] == 0, start=start
        )
    ]
    assert done["TotalFrames"] == 10
    assert {e["SettleTime"] for e in conn.events("Settling", start)} == {9999.0}
    assert [w.status for w in sim.dither_windows[:-1]] == [1] * 4  # each aborted by the next
    await conn.result("set_exposure", [3000])
    assert await legacy.command(4) == 3
    await conn.result("set_exposure", [500])
    assert await legacy.command(4) == 1


async def test_legacy_dither_aborts_an_rpc_settle(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    settle = {"pixels": 1.5, "time": 5, "timeout": 60}
    await conn.result("dither", {"amount": 3, "raOnly": False, "settle": settle})
    start = len(conn.messages)
    assert await legacy.command(5) == 1
    await conn.wait_event("SettleBegin", start=start)
    aborted = conn.events("SettleDone", start)[0]
    assert (aborted["Status"], aborted["Error"]) == (1, "manual or phd1-style dither")
    assert [w.source for w in sim.dither_windows] == ["rpc", "legacy"]


async def test_reqdist_and_frame_count(make_sim, connect_legacy):
    sim = await make_sim(start="guiding")
    legacy = await connect_legacy(sim)
    distance = await legacy.command(REQDIST)
    assert 0 <= distance <= 255
    sim.model.frame = 300
    assert await legacy.command(LOOPFRAMECOUNT) == 255


async def test_set_lock_position_reads_two_uint16(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    start = len(conn.messages)
    assert await legacy.command(15, struct.pack("<HH", 700, 300)) == 0
    lock = conn.events("LockPositionSet", start) or [
        conn.messages[await conn.wait_event("LockPositionSet", start=start)]
    ]
    assert (lock[0]["X"], lock[0]["Y"]) == (700.0, 300.0)
    assert await legacy.command(GETSTATUS) == 3  # the next byte is a new command


async def test_unknown_and_misc_commands(make_sim, connect_legacy):
    sim = await make_sim(start="guiding")
    legacy = await connect_legacy(sim)
    for unknown in (0, 6, 7, 8, 9, 11, 25, 99, 255):
        assert await legacy.command(unknown) == 1
    assert await legacy.command(16) == 1  # FLIPRACAL: calibrated
    assert await legacy.command(22) == 0  # CLEARCAL
    assert await legacy.command(16) == 0  # nothing left to flip
    assert await legacy.command(23) == 0
    assert await legacy.command(24) == 0  # DESELECT
    assert await legacy.command(GETSTATUS) == 101
    assert await legacy.command(14) == 1  # AUTOFINDSTAR
    assert await legacy.command(GETSTATUS) == 1
