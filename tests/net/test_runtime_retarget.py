"""Changing PHD2's instance or host mid-session: ditherapp lets go of the old PHD2 and
talks to the new one at once, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ditherapp import runtime as runtime_module
from ditherapp.core.settings import DitherSettings
from ditherapp.runtime import Runtime, RuntimeOptions
from ditherapp.sim.phd2_sim import Phd2Simulator


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.mark.parametrize("backend", ["event", "auto", "legacy"])
async def test_a_new_phd2_instance_is_followed_at_once(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        Phd2Simulator(start="guiding", instance=1) as first,
        Phd2Simulator(start="guiding", instance=2) as second,
    ):
        sims = {1: first, 2: second}
        # Instance N is on the ports of simulator N (not 4400 + N - 1: those may be taken).
        monkeypatch.setattr(runtime_module, "event_port", lambda n: sims[n].event_port)
        monkeypatch.setattr(runtime_module, "legacy_port", lambda n: sims[n].legacy_port)
        settings = DitherSettings().with_value("phd2backend", backend)
        options = RuntimeOptions(ledger_path=tmp_path / "ledger.jsonl")
        async with Runtime(settings, options) as rt:
            service = rt.service
            assert service is not None
            wanted = {"event": first.event_port, "auto": first.event_port}
            port = wanted.get(backend, first.legacy_port)
            await until(lambda: service.guider.status.connected)
            assert service.guider.status.port == port

            service.set_setting("phd2instance", 2)
            wanted = {"event": second.event_port, "auto": second.event_port}
            port = wanted.get(backend, second.legacy_port)
            await until(
                lambda: service.guider.status.connected and service.guider.status.port == port
            )
            snapshot = service.snapshot()["phd2"]
            assert snapshot["port"] == port
            assert snapshot["state"] == "Guiding"


@contextlib.asynccontextmanager
async def one_phd2(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Phd2Simulator, Any]]:
    """A simulator that every instance number leads to, and ditherapp connected to it
    through the event server."""
    async with Phd2Simulator(start="guiding") as sim:
        monkeypatch.setattr(runtime_module, "event_port", lambda n: sim.event_port)
        monkeypatch.setattr(runtime_module, "legacy_port", lambda n: sim.legacy_port)
        settings = DitherSettings().with_value("phd2backend", "event")
        async with Runtime(settings, RuntimeOptions()) as rt:
            service = rt.service
            assert service is not None
            await until(lambda: service.guider.status.connected)
            yield sim, service


async def test_only_a_new_address_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    async with one_phd2(monkeypatch) as (sim, service):
        moves: list[tuple[str, int, int]] = []
        monkeypatch.setattr(service.guider, "retarget", lambda *a: moves.append(a))
        service.set_setting("phd2instance", 3)  # the same simulator: nothing to redo
        service.set_setting("phd2host", "127.0.0.1")
        assert moves == []
        service.set_setting("phd2host", "localhost")
        assert moves == [("localhost", sim.event_port, sim.legacy_port)]


async def test_a_new_phd2_protocol_is_used_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    async with one_phd2(monkeypatch) as (sim, service):
        for backend, port in (
            ("legacy", sim.legacy_port),
            ("auto", sim.event_port),
            ("event", sim.event_port),
        ):
            service.set_setting("phd2backend", backend)
            await until(
                lambda port=port: (
                    service.guider.status.connected and service.guider.status.port == port
                )
            )
            expected = "legacy" if backend == "legacy" else "event"
            assert service.snapshot()["phd2"]["backend"] == expected
            assert service.snapshot()["phd2"]["state"] == "Guiding"
