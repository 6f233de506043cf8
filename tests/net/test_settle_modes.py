"""settlemode through the one settle judge, on both backends, against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from ditherapp.core.dither import DitherRequest, OutcomeKind
from ditherapp.core.guiding_stats import ErrorStats, GuideHistory
from ditherapp.core.phd2 import events as ev
from ditherapp.net.backoff import Backoff
from ditherapp.net.guider import EventGuider
from ditherapp.net.legacy import LegacyGuider
from ditherapp.net.phd2_client import Phd2Client
from ditherapp.sim.phd2_sim import Phd2Simulator

FAST = 25.0


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def sim() -> AsyncIterator[Phd2Simulator]:
    s = Phd2Simulator(event_port=0, legacy_port=0, time_scale=FAST, start="guiding", seed=5)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


def request(mode: str, baseline: ErrorStats | None, **values: float) -> DitherRequest:
    fields: dict[str, object] = {
        "amount": 2.0,
        "ra_only": False,
        "settle_pixels": 1.5,
        "settle_time": 10,
        "settle_timeout": 60,
        "settle_mode": mode,
        "baseline": baseline,
    }
    fields.update(values)
    return DitherRequest(**fields)  # type: ignore[arg-type]


async def baseline_from(client: Phd2Client, frames: int = 20) -> ErrorStats:
    """The guiding before the dither, from GuideSteps as the service keeps them."""
    history = GuideHistory()
    loop = asyncio.get_running_loop()
    remove = client.add_event_listener(
        lambda e: history.add_step(e, loop.time()) if isinstance(e, ev.GuideStep) else None
    )
    try:
        await until(lambda: len(history) >= frames, 20)
    finally:
        remove()
    stats = history.baseline(loop.time() + 1)
    assert stats is not None
    return stats


async def test_calm_ends_the_settle_before_phd2s_rule_and_says_so(sim: Phd2Simulator) -> None:
    client = Phd2Client("127.0.0.1", sim.event_port, backoff=Backoff(first_s=0.05, cap_s=0.2))
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status.connected)
        baseline = await baseline_from(client)
        guider = EventGuider(client, time_scale=FAST)  # settle times in PHD2's seconds
        calm = await asyncio.wait_for(guider.dither(request("calm", baseline)), 30)
        assert calm.kind is OutcomeKind.SETTLED
        assert calm.rule == "calm"
        assert calm.settle_s is not None
        assert calm.settle_s < 10, "sooner than the 10 s PHD2 keeps the star in range"
        assert calm.in_range_after_s is not None
        await until(lambda: not client.status.settling, 20)  # PHD2's own settle ends too
        phd2 = await asyncio.wait_for(guider.dither(request("phd2", baseline)), 30)
        assert phd2.kind is OutcomeKind.SETTLED
        assert phd2.rule == "phd2"
        assert phd2.settle_s is not None
        assert phd2.settle_s >= 10
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_calm_without_a_baseline_is_phd2s_rule(sim: Phd2Simulator) -> None:
    client = Phd2Client("127.0.0.1", sim.event_port, backoff=Backoff(first_s=0.05, cap_s=0.2))
    task = asyncio.create_task(client.run())
    try:
        await until(lambda: client.status.connected)
        outcome = await asyncio.wait_for(
            EventGuider(client).dither(request("calm", None, settle_time=3)), 30
        )
        assert outcome.kind is OutcomeKind.SETTLED
        assert outcome.rule == "phd2"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_legacy_calm_from_reqdist_with_its_own_baseline(sim: Phd2Simulator) -> None:
    assert sim.legacy_port is not None
    guider = LegacyGuider("127.0.0.1", sim.legacy_port, poll_s=0.04)
    task = asyncio.create_task(guider.run())
    try:
        await until(lambda: guider.status.connected)
        # REQDIST polled while guiding between dithers: the baseline (a simulated minute)
        await until(lambda: len(guider.history) >= 60, 20)
        outcome = await asyncio.wait_for(guider.dither(request("calm", None)), 30)
        assert outcome.kind is OutcomeKind.SETTLED
        assert outcome.rule == "calm"
        assert outcome.settle_s is not None
        assert outcome.settle_s < 10
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
