"""Start, stop, restart on the same ports, shutdown, and the ditherapp-sim command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
from pathlib import Path

import pytest

from ditherapp.sim.__main__ import main
from ditherapp.sim.phd2_sim import Phd2Simulator

DEADLINE = 10.0
REPO = Path(__file__).resolve().parents[2]


async def test_restart_on_the_same_ports(make_sim, connect, connect_legacy):
    sim = await make_sim(start="guiding")
    event_port, legacy_port = sim.event_port, sim.legacy_port
    assert event_port != 0
    assert legacy_port not in (0, None)
    conn = await connect(sim)
    legacy = await connect_legacy(sim)
    await sim.stop()
    await conn.wait_until(lambda: conn.closed)
    assert await legacy.closed_by_server()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", event_port)
    await sim.start()
    assert (sim.event_port, sim.legacy_port) == (event_port, legacy_port)
    again = await connect(sim)
    assert again.names()[0] == "Version"
    assert await again.result("get_app_state") == "Guiding"
    assert await (await connect_legacy(sim)).command(17) == 3


async def test_stop_is_safe_before_start_and_twice():
    sim = Phd2Simulator(start="guiding", time_scale=50)
    await sim.stop()
    async with sim:
        with pytest.raises(RuntimeError):
            await sim.start()
        await sim.stop()
    await sim.stop()


async def test_a_taken_port_fails_start_cleanly(make_sim):
    sim = await make_sim()
    clash = Phd2Simulator(event_port=sim.event_port, time_scale=50)
    with pytest.raises(OSError):
        await clash.start()
    await clash.stop()


async def test_no_legacy_server(make_sim, connect):
    sim = await make_sim(legacy_port=None, start="stopped")
    assert sim.legacy_port is None
    conn = await connect(sim)
    assert await conn.result("get_connected") is True


async def test_shutdown_replies_then_closes(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    other = await connect(sim)
    assert await conn.result("shutdown") == 0
    await conn.wait_until(lambda: conn.closed)
    await other.wait_until(lambda: other.closed)
    async with asyncio.timeout(DEADLINE):
        await sim.wait_shutdown()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", sim.event_port)


def test_command_line_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--instance", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        main(["--start", "flying"])
    assert "invalid choice" in capsys.readouterr().err


def _free_instance() -> int:
    """An instance number whose event (4400+N-1) and legacy (4300+N-1) ports are free."""
    for _ in range(50):
        instance = random.randint(15000, 25000)
        with contextlib.ExitStack() as stack:
            try:
                for port in (4400 + instance - 1, 4300 + instance - 1):
                    probe = stack.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return instance
    raise AssertionError("no free port pair")


async def test_command_runs_on_phd2s_ports_until_shutdown(connect):
    instance = _free_instance()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ditherapp.sim",
        "--instance",
        str(instance),
        "--time-scale",
        "50",
        "--seed",
        "1",
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        async with asyncio.timeout(DEADLINE):
            while True:  # until the simulator is listening
                line = await process.stderr.readline()
                assert line, "the simulator exited early"
                if b"legacy server" in line:
                    break
        sim_like = type("Ports", (), {"event_port": 4400 + instance - 1})()
        conn = await connect(sim_like)
        assert conn.messages[-1]["State"] == "Guiding"
        assert conn.messages[0]["Inst"] == instance
        reader, writer = await asyncio.open_connection("127.0.0.1", 4300 + instance - 1)
        writer.write(bytes([17]))
        assert await reader.readexactly(1) == bytes([3])
        writer.close()
        assert await conn.result("shutdown") == 0
        async with asyncio.timeout(DEADLINE):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_crash_surfaces_instead_of_hanging():
    sim = Phd2Simulator(start="guiding", time_scale=50)
    await sim.start()

    def broken_frame():
        raise RuntimeError("broken model")

    sim.model.complete_frame = broken_frame
    with pytest.raises(ExceptionGroup) as waited:
        await sim.wait_shutdown()
    assert waited.group_contains(RuntimeError, match="broken model")
    with pytest.raises(ExceptionGroup):
        await sim.stop()
    await sim.stop()
