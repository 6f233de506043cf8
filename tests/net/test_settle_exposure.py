"""settleexposure against the simulated PHD2: the guide exposure is short while a dither
settles and the user's is back however the settle ends (settled, failed, timed out,
PHD2 lost, ditherapp quitting), after a restart from the file left on disk, and never
over an exposure the user chose meanwhile."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ditherapp.core.dither import DitherRequest, OutcomeKind
from ditherapp.core.phd2 import events as ev
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.phd2_client import Phd2Client
from ditherapp.sim.phd2_sim import Phd2Simulator

FAST = 25.0
USER_MS = 2000


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


@pytest.fixture
async def sim() -> AsyncIterator[Phd2Simulator]:
    s = Phd2Simulator(
        event_port=0,
        legacy_port=None,
        time_scale=FAST,
        start="guiding",
        seed=11,
        exposure_s=USER_MS / 1000,
    )
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def connect(port: int) -> tuple[Phd2Client, asyncio.Task[None]]:
    client = Phd2Client("127.0.0.1", port, backoff=Backoff(first_s=0.05, cap_s=0.2))
    return client, asyncio.get_running_loop().create_task(client.run())


async def close(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def client(sim: Phd2Simulator) -> AsyncIterator[Phd2Client]:
    c, task = connect(sim.event_port)
    await until(lambda: c.status.connected, what="the connection")
    try:
        yield c
    finally:
        await close(task)


def request(**overrides: object) -> DitherRequest:
    values: dict[str, object] = {
        "amount": 3.0,
        "ra_only": False,
        "settle_pixels": 1.5,
        "settle_time": 2,
        "settle_timeout": 30,
        "settle_exposure_s": 0.5,
    }
    values.update(overrides)
    return DitherRequest(**values)  # type: ignore[arg-type]


def restore_file(tmp_path: Path) -> Path:
    return tmp_path / "settle-exposure.json"


async def settling_at_short_exposure(
    sim: Phd2Simulator, guider: EventGuider, req: DitherRequest, path: Path
) -> asyncio.Task[object]:
    task: asyncio.Task[object] = asyncio.get_running_loop().create_task(guider.dither(req))
    await until(lambda: sim.model.settling, what="PHD2 to settle")
    assert sim.model.exposure_ms == 500, "the shortest listed exposure of at least 0.5 s"
    assert json.loads(path.read_text()) == {"restore_ms": USER_MS, "short_ms": 500}
    return task


async def test_settled_the_user_exposure_is_back_and_the_record_gone(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    task = await settling_at_short_exposure(sim, guider, request(), path)
    outcome = await asyncio.wait_for(task, 20)
    assert outcome.kind is OutcomeKind.SETTLED  # type: ignore[attr-defined]
    assert sim.model.exposure_ms == USER_MS
    assert await client.request("get_exposure") == USER_MS
    assert not path.exists()


async def test_failed_settle_the_user_exposure_is_back(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    sim.never_settle = True
    task = await settling_at_short_exposure(sim, guider, request(settle_timeout=2), path)
    outcome = await asyncio.wait_for(task, 20)
    assert outcome.kind is OutcomeKind.SETTLE_FAILED  # type: ignore[attr-defined]
    assert outcome.rule in ("timeout", "failed")  # type: ignore[attr-defined]
    assert sim.model.exposure_ms == USER_MS
    assert not path.exists()


async def test_phd2_lost_mid_settle_the_exposure_is_put_back_at_the_reconnect(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    task = await settling_at_short_exposure(sim, guider, request(settle_time=20), path)
    sim.drop_connections()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.kind is OutcomeKind.LOST  # type: ignore[attr-defined]
    await until(lambda: sim.model.exposure_ms == USER_MS, what="the exposure to come back")
    await until(lambda: not path.exists(), what="the record to go")


async def test_phd2_restarted_mid_settle_comes_back_short_and_is_put_back(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    task = await settling_at_short_exposure(sim, guider, request(settle_time=20), path)
    await sim.stop()
    outcome = await asyncio.wait_for(task, 10)
    assert outcome.kind is OutcomeKind.LOST  # type: ignore[attr-defined]
    await sim.start()
    assert sim.model.exposure_ms == 500, "PHD2 keeps its exposure in its profile"
    await until(lambda: sim.model.exposure_ms == USER_MS, what="the exposure to come back")
    assert not path.exists()


async def test_quitting_mid_settle_puts_the_exposure_back_before_it_ends(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    task = await settling_at_short_exposure(sim, guider, request(settle_time=20), path)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sim.model.exposure_ms == USER_MS, "back before the cancelled dither returned"
    assert not path.exists()


async def test_the_users_own_change_during_the_settle_wins(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    seen: list[ev.Phd2Event] = []
    client.add_event_listener(seen.append)
    task = await settling_at_short_exposure(sim, guider, request(settle_time=4), path)
    assert sim.model.set_exposure(1000)  # the user picks 1 s in PHD2's drop-down
    await until(
        lambda: any(isinstance(e, ev.GuideParamChange) and e.value == "1000 ms" for e in seen),
        what="PHD2 to announce the user's exposure",
    )
    outcome = await asyncio.wait_for(task, 20)
    assert outcome.kind is OutcomeKind.SETTLED  # type: ignore[attr-defined]
    assert sim.model.exposure_ms == 1000, "not overwritten with the exposure from before"
    assert not path.exists()


async def test_a_record_left_by_a_crash_is_put_back_at_the_first_connection(
    sim: Phd2Simulator, tmp_path: Path
) -> None:
    assert sim.model.set_exposure(500)  # where a killed ditherapp left PHD2
    path = restore_file(tmp_path)
    path.write_text(json.dumps({"restore_ms": USER_MS, "short_ms": 500}))
    client, task = connect(sim.event_port)
    EventGuider(client, restore_path=path)
    try:
        await until(lambda: sim.model.exposure_ms == USER_MS, what="the exposure to come back")
        await until(lambda: not path.exists(), what="the record to go")
    finally:
        await close(task)


async def test_a_record_is_not_applied_over_an_exposure_the_user_chose_since(
    sim: Phd2Simulator, tmp_path: Path
) -> None:
    assert sim.model.set_exposure(3000)  # the user changed it after the crash
    path = restore_file(tmp_path)
    path.write_text(json.dumps({"restore_ms": USER_MS, "short_ms": 500}))
    client, task = connect(sim.event_port)
    EventGuider(client, restore_path=path)
    try:
        await until(lambda: not path.exists(), what="the record to go")
        assert sim.model.exposure_ms == 3000
    finally:
        await close(task)


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"restore_ms": "2000", "short_ms": 500}', '{"restore_ms": 0}']
)
async def test_a_bad_record_file_is_dropped_and_phd2_left_alone(
    sim: Phd2Simulator, tmp_path: Path, text: str
) -> None:
    path = restore_file(tmp_path)
    path.write_text(text)
    client, task = connect(sim.event_port)
    guider = EventGuider(client, restore_path=path)
    try:
        await until(lambda: client.status.connected, what="the connection")
        outcome = await asyncio.wait_for(guider.dither(request()), 20)
        assert outcome.kind is OutcomeKind.SETTLED
        assert sim.model.exposure_ms == USER_MS
        assert not path.exists()
    finally:
        await close(task)


async def test_off_or_not_shorter_leaves_phd2_alone(
    sim: Phd2Simulator, client: Phd2Client, tmp_path: Path
) -> None:
    path = restore_file(tmp_path)
    guider = EventGuider(client, restore_path=path)
    for wanted in (0.0, 2.0, 5.0):
        outcome = await asyncio.wait_for(guider.dither(request(settle_exposure_s=wanted)), 30)
        assert outcome.kind is OutcomeKind.SETTLED
        assert sim.model.exposure_ms == USER_MS
        assert not path.exists()
    assert "set_exposure" not in [name for _, name in sim.requests]
