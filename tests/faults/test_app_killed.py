"""ditherapp itself dies, or freezes, while a dither holds the cameras. The real hook
script (in a fake SharpCap) and the simulated camera agent must each let their camera
save again by themselves: the app is a separate process here, killed for real."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

import pytest

from ditherapp.sim.camera_agent import SimCamera
from ditherapp.sim.phd2_sim import Phd2Simulator


@contextlib.asynccontextmanager
async def held_mid_dither(tmp_path, app_process, sharpcap, wait_until, **hook_settings):
    """PHD2 that never settles, the app in its own process, the hook and a SimCamera
    both paused by the app's dither. Yields (app process, hook world, sim camera)."""
    sim = Phd2Simulator(event_port=0, legacy_port=None, time_scale=10, start="guiding")
    await sim.start()
    sim.never_settle = True
    agent_task = None
    try:
        async with app_process(tmp_path, sim.event_port) as (proc, port):
            hooked = sharpcap(port, **hook_settings)
            agent = SimCamera(
                name="agent",
                exposure_s=0.15,
                port=port,
                reconnect_s=0.1,
                app_silent_s=hook_settings.get("APP_SILENT_S", 10.0),
            )
            agent_task = asyncio.get_running_loop().create_task(agent.run())
            await wait_until(
                lambda: sim.dither_windows and hooked.camera.Paused and agent.paused,
                20,
                "both cameras paused by a dither",
            )
            assert sim.dither_windows[-1].end is None
            assert agent.paused_by == "app"
            yield proc, hooked, agent
    finally:
        if agent_task is not None:
            agent.stop()
            await asyncio.wait([agent_task], timeout=5)
        await sim.stop()


async def test_app_killed_mid_dither_the_hook_and_the_agent_resume_by_themselves(
    tmp_path, app_process, sharpcap, wait_until
):
    async with held_mid_dither(tmp_path, app_process, sharpcap, wait_until) as (
        proc,
        hooked,
        agent,
    ):
        proc.kill()  # no goodbye: SIGKILL, TerminateProcess on Windows
        await proc.wait()
        await wait_until(
            lambda: not hooked.camera.Paused and not agent.paused, 2, "both cameras to resume"
        )
        assert "resumed saving by itself (disconnected)" in hooked.hook_log()
        hook_saved = sum(e.saved for e in hooked.camera.frames())
        agent_saved = sum(e.saved for e in agent.exposures)
        await wait_until(
            lambda: (
                sum(e.saved for e in hooked.camera.frames()) > hook_saved
                and sum(e.saved for e in agent.exposures) > agent_saved
            ),
            2,
            "both cameras to save frames again",
        )


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="freezing a process needs SIGSTOP")
async def test_app_frozen_mid_dither_the_hook_and_the_agent_resume_after_its_silence(
    tmp_path, app_process, sharpcap, wait_until
):
    # The app pings every 2.5 s; 3 s of silence means it is hung (the default is 10 s).
    async with held_mid_dither(tmp_path, app_process, sharpcap, wait_until, APP_SILENT_S=3.0) as (
        proc,
        hooked,
        agent,
    ):
        proc.send_signal(signal.SIGSTOP)
        try:
            await wait_until(
                lambda: not hooked.camera.Paused and not agent.paused, 6, "both cameras to resume"
            )
            assert "resumed saving by itself (app_silent)" in hooked.hook_log()
            assert not any(w.writer == "user" for w in hooked.camera.paused_writes)
        finally:
            proc.send_signal(signal.SIGCONT)


async def test_app_killed_mid_settle_at_a_short_exposure_puts_phd2_back_when_started_again(
    tmp_path, app_process, wait_until
):
    """settleexposure: PHD2 guides at 0.5 s while the dither settles; the app is killed
    (no clean-up can run). The next ditherapp started puts the user's 2 s back."""
    sim = Phd2Simulator(
        event_port=0, legacy_port=None, time_scale=10, start="guiding", exposure_s=2.0
    )
    await sim.start()
    sim.never_settle = True
    agent_task = None
    try:
        async with app_process(
            tmp_path, sim.event_port, "--set", "settleexposure=0.5", "--set", "settlemax=300"
        ) as (proc, port):
            agent = SimCamera(name="agent", exposure_s=0.15, port=port, reconnect_s=0.1)
            agent_task = asyncio.get_running_loop().create_task(agent.run())
            await wait_until(
                lambda: sim.dither_windows and sim.model.exposure_ms == 500,
                20,
                "a dither settling at the short exposure",
            )
            record = tmp_path / "ledger.settle-exposure.json"
            assert record.exists(), "the exposure to restore is on disk before it changed"
            proc.kill()
            await proc.wait()
            agent.stop()
            await asyncio.wait([agent_task], timeout=5)
            agent_task = None
        assert sim.model.exposure_ms == 500, "nothing could put it back yet"
        sim.never_settle = False
        async with app_process(tmp_path, sim.event_port):
            await wait_until(lambda: sim.model.exposure_ms == 2000, 20, "the user's exposure")
            await wait_until(lambda: not record.exists(), 5, "the record to be removed")
    finally:
        if agent_task is not None:
            agent.stop()
            await asyncio.wait([agent_task], timeout=5)
        await sim.stop()


@pytest.mark.skipif(sys.platform == "win32", reason="terminate() is TerminateProcess on Windows")
async def test_app_quitting_mid_settle_puts_the_exposure_back_first(
    tmp_path, app_process, wait_until
):
    sim = Phd2Simulator(
        event_port=0, legacy_port=None, time_scale=10, start="guiding", exposure_s=2.0
    )
    await sim.start()
    sim.never_settle = True
    agent_task = None
    try:
        async with app_process(
            tmp_path, sim.event_port, "--set", "settleexposure=0.5", "--set", "settlemax=300"
        ) as (proc, port):
            agent = SimCamera(name="agent", exposure_s=0.15, port=port, reconnect_s=0.1)
            agent_task = asyncio.get_running_loop().create_task(agent.run())
            await wait_until(
                lambda: sim.dither_windows and sim.model.exposure_ms == 500,
                20,
                "a dither settling at the short exposure",
            )
            proc.terminate()  # SIGTERM: a normal quit
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            assert sim.model.exposure_ms == 2000, "put back before the process ended"
            assert not (tmp_path / "ledger.settle-exposure.json").exists()
    finally:
        if agent_task is not None:
            agent.stop()
            await asyncio.wait([agent_task], timeout=5)
        await sim.stop()
