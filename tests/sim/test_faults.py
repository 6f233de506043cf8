"""Fault injection: every fault takes effect at once and can be switched off again."""

from __future__ import annotations

import json
import time

import pytest

SETTLE = {"pixels": 1.5, "time": 2, "timeout": 3}
ABSENCE_S = 0.25
"""How long (wall) a test watches for something that must not happen (~12 frames)."""


async def test_drop_connections_closes_every_client_and_keeps_listening(
    make_sim, connect, connect_legacy
):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    assert await legacy.command(17) == 3
    sim.drop_connections()
    await conn.wait_until(lambda: conn.closed)
    assert await legacy.closed_by_server()
    again = await connect(sim)
    assert again.names()[-1] == "AppState"
    assert await again.result("get_app_state") == "Guiding"
    assert await (await connect_legacy(sim)).command(17) == 3


async def test_stall_holds_frames_events_and_replies_until_released(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    await conn.wait_event("GuideStep")
    sim.stall = True
    frame = sim.model.frame
    start = len(conn.messages)
    conn.send({"method": "get_app_state", "id": "stalled"})
    with pytest.raises(TimeoutError):
        await conn.wait_for(lambda m: m.get("id") == "stalled", start=start, timeout=ABSENCE_S)
    assert sim.model.frame <= frame + 1  # at most the frame already being processed
    assert [name for _, name in sim.requests].count("get_app_state") == 0
    sim.stall = False
    await conn.wait_for(lambda m: m.get("id") == "stalled", start=start)
    await conn.wait_event("GuideStep", start=len(conn.messages))


async def test_never_settle_makes_settles_time_out(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    sim.never_settle = True
    start = len(conn.messages)
    await conn.result("dither", {"amount": 1, "raOnly": False, "settle": SETTLE})
    done = conn.messages[await conn.wait_event("SettleDone", start=start)]
    assert (done["Status"], done["Error"]) == (1, "timed-out waiting for guider to settle")
    assert all(e["Distance"] > SETTLE["pixels"] for e in conn.events("Settling", start))
    assert sim.dither_windows[-1].status == 1
    sim.never_settle = False
    start = len(conn.messages)
    await conn.result("dither", {"amount": 1, "raOnly": False, "settle": SETTLE | {"timeout": 60}})
    done = conn.messages[await conn.wait_event("SettleDone", start=start)]
    assert done["Status"] == 0


async def test_lose_star_loses_lock_for_that_many_frames(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    start = len(conn.messages)
    sim.lose_star(3)
    await conn.wait_for(
        lambda m: m.get("Event") == "GuideStep" and len(conn.events("StarLost", start)) == 3,
        start=start,
    )
    lost = conn.events("StarLost", start)
    assert [e["Frame"] for e in lost] == list(range(lost[0]["Frame"], lost[0]["Frame"] + 3))
    assert list(lost[0]) == [
        "Event", "Timestamp", "Host", "Inst", "Frame", "Time", "StarMass", "SNR", "HFD",
        "AvgDist", "ErrorCode", "Status",
    ]  # fmt: skip
    steps = [e["Frame"] for e in conn.events("GuideStep", start)]
    assert not set(steps) & {e["Frame"] for e in lost}
    assert await conn.result("get_app_state") == "Guiding"


async def test_truncated_line_is_glued_to_the_next(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    start = len(conn.messages)
    sim.truncate_next_line()
    index = await conn.wait_for(lambda m: "_unparsable" in m, start=start)
    broken = conn.lines[index]
    assert broken.count('{"Event"') == 2
    glued = broken[broken.index('{"Event"', 1) :]
    assert json.loads(glued)["Event"]
    await conn.wait_event("GuideStep", start=index + 1)
    assert all("_unparsable" not in m for m in conn.messages[index + 1 :])


async def test_write_delay_slows_every_line_but_keeps_order(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    sim.write_delay_s = 0.02
    begun = time.monotonic()
    assert await conn.result("get_app_state") == "Guiding"
    assert time.monotonic() - begun >= 0.02
    start = len(conn.messages)
    await conn.wait_for(lambda _: len(conn.events("GuideStep", start)) >= 3, start=start)
    frames = [e["Frame"] for e in conn.events("GuideStep", start)]
    assert frames == sorted(frames)
    sim.write_delay_s = 0.0


async def test_settle_quickly(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    sim.settle_quickly = True
    start = len(conn.messages)
    await conn.result("dither", {"amount": 8, "raOnly": False, "settle": SETTLE | {"time": 30}})
    done = conn.messages[await conn.wait_event("SettleDone", start=start)]
    assert (done["Status"], done["TotalFrames"]) == (0, 1)


async def test_records_of_requests_and_dither_windows(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    before = time.monotonic()
    await conn.result("dither", {"amount": 2, "raOnly": False, "settle": SETTLE | {"timeout": 60}})
    await conn.wait_event("SettleDone")
    assert await legacy.command(3) == 1
    names = [name for _, name in sim.requests]
    assert names[-2:] == ["dither", "MOVE1"]
    times = [t for t, _ in sim.requests]
    assert times == sorted(times)
    assert times[-2] >= before
    rpc, leg = sim.dither_windows
    assert rpc.source == "rpc"
    assert rpc.end is not None
    assert before <= rpc.start < rpc.end
    assert (rpc.status, rpc.error) == (0, None)
    assert (leg.source, leg.end) == ("legacy", None)
