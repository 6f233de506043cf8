"""The frame guard and the hook's self-check, live: the real hook script in a fake
SharpCap, connected to the service over the control socket, with a PHD2 whose state the
test decides. Frames are the fake camera's own record of what it saved."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from ditherapp.core import machine as m
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.settings import DitherSettings
from ditherapp.net import ctl
from ditherapp.net.control_server import ControlServer
from ditherapp.net.service import DitherService, Notice
from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap, hook_threads, run_hook_script

EXPOSURE_S = 0.25


class ListLedger:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def guarded(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("kind") == "guarded_frame"]


@dataclass
class Live:
    service: DitherService
    server: ControlServer
    guider: Any
    ledger: ListLedger
    camera: FakeCamera
    sharpcap: FakeSharpCap
    alerts: list[str]


async def until(predicate, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


@contextlib.contextmanager
def hook_in(sharpcap: FakeSharpCap, port: int) -> Iterator[None]:
    settings = {"APP_PORT": port, "TICK_S": 0.05, "APP_SILENT_S": 120.0, "RECONNECT_MIN_S": 0.05}
    scope = run_hook_script(sharpcap, settings=settings)
    try:
        yield
    finally:
        scope["DITHERAPP_HOOK"].shutdown()
        registry = scope["REGISTRY_ATTR"]
        if hasattr(sys, registry):
            delattr(sys, registry)


@contextlib.asynccontextmanager
async def live(app_parts, camera: FakeCamera, **settings: Any) -> AsyncIterator[Live]:
    _, _, guider = app_parts
    ledger = ListLedger()
    service = DitherService(
        settings=DitherSettings(**{"ditherevery": 1000, **settings}), guider=guider, ledger=ledger
    )
    alerts: list[str] = []
    service.subscribe(
        lambda e: (
            alerts.append(e.message) if isinstance(e, Notice) and e.level is m.Level.ALERT else None
        )
    )
    service._on_link(guider.status)
    server = ControlServer(service, host="127.0.0.1", port=0)
    await server.start()
    sharpcap = FakeSharpCap(camera)
    try:
        with hook_in(sharpcap, server.port):
            camera.Controls.Exposure.Value = camera.Controls.Exposure.seconds
            camera.RunCapture()
            camera.start()
            await until(lambda: bool(service.machine.cameras), what="the hook to connect")
            yield Live(service, server, guider, ledger, camera, sharpcap, alerts)
    finally:
        camera.stop()
        service.shutdown()
        await server.close()
    await until(lambda: not list(hook_threads()), what="the hook's threads to end")


def saved_after(camera: FakeCamera, t: float) -> list[int]:
    return [e.index for e in camera.frames() if e.saved and e.start >= t]


BAD = [
    pytest.param({"connected": False, "state": Phd2State.UNKNOWN}, "PHD2 is not connected",
                 id="phd2-killed"),
    pytest.param({"state": Phd2State.LOST_LOCK}, "PHD2 has lost the guide star", id="star-lost"),
    pytest.param({"state": Phd2State.LOOPING}, "PHD2 stopped guiding (looping)",
                 id="guiding-stopped"),
]  # fmt: skip


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("bad", "reason"), BAD)
async def test_bad_guiding_pauses_saving_within_a_frame_and_resumes_after_recovery(
    app_parts, bad, reason
) -> None:
    camera = FakeCamera("Main", exposure_s=EXPOSURE_S)
    async with live(app_parts, camera) as world:
        await until(lambda: len(saved_after(camera, 0.0)) >= 2, what="frames saving")
        went_bad = time.monotonic()
        world.guider.set_status(**bad)
        assert world.service.machine.phase is m.Phase.GUARDING
        await until(lambda: camera.Paused, what="the hook to pause")
        paused_at = camera.paused_writes[-1].at
        assert paused_at - went_bad < EXPOSURE_S, "paused within the frame in progress"
        await until(lambda: len(camera.frames()) >= 3 + _index_at(camera, paused_at))
        snap = world.service.snapshot()
        assert snap["phase"] == "guarding"
        assert snap["guard"]["condition"] == reason

        recovered = time.monotonic()
        world.guider.set_status(connected=True, state=Phd2State.GUIDING)
        await until(lambda: len(saved_after(camera, recovered)) >= 2, what="saving again")
        assert not camera.Paused

    frames = camera.frames()
    # No frame that was exposing while guiding was bad (from the pause on) was saved.
    bad_frames = [e for e in frames if e.end > paused_at and e.start < recovered]
    assert bad_frames
    assert not any(e.saved for e in bad_frames)
    # The ledger names each of them, with the reason; nothing else is in it.
    named = {r["seq"]: r for r in world.ledger.guarded()}
    assert {e.index for e in bad_frames} <= set(named)
    assert all(reason in r["reasons"] for r in named.values())
    assert all(r["camera"] == "Main" and isinstance(r["time"], float) for r in named.values())
    assert world.service.machine.totals.guarded_frames >= len(bad_frames)
    # The first frame that began after recovery was saved (nothing more was lost).
    first_good = min(e.index for e in frames if e.start >= recovered)
    assert next(e for e in frames if e.index == first_good + 1).saved


def _index_at(camera: FakeCamera, t: float) -> int:
    return sum(1 for e in camera.frames() if e.end <= t)


@pytest.mark.timeout(60)
async def test_a_user_who_never_guides_is_never_guarded(app_parts) -> None:
    _, _, guider = app_parts
    guider.set_status(state=Phd2State.LOOPING)
    camera = FakeCamera("Unguided", exposure_s=0.1)
    async with live(app_parts, camera) as world:
        guider.set_status(connected=False, state=Phd2State.UNKNOWN)
        start = time.monotonic()
        await until(lambda: len(saved_after(camera, start)) >= 4, what="frames saving")
        assert world.service.machine.phase is m.Phase.IDLE
    assert not any(w.value for w in camera.paused_writes)
    assert world.ledger.guarded() == []


async def run_ctl(port: int, *argv: str) -> tuple[int, str, str]:
    def go() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = ctl.main(["--port", str(port), *argv])
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(go)


@pytest.mark.timeout(60)
async def test_a_camera_whose_pause_does_not_stop_saving_alerts_and_lists_suspects(
    app_parts,
) -> None:
    camera = FakeCamera("Leaky", exposure_s=0.15, paused_stops_saving=False)
    async with live(app_parts, camera, ditherevery=3) as world:
        await until(lambda: len(camera.suspect_frames()) >= 1, what="a frame saved while paused")
        await until(
            lambda: any("pausing does not stop" in a for a in world.alerts), what="the alert"
        )
        await until(lambda: bool(world.service.frame_records(suspect_only=True)))
        leaked = {e.count for e in camera.suspect_frames()}
        await until(
            lambda: (
                {r["count"] for r in world.service.frame_records(suspect_only=True)} >= leaked
                or bool(camera.Paused)
            ),
            what="every leaked frame reported",
        )
        port = world.server.port
        code, out, _ = await run_ctl(port, "frames", "--suspect")
        assert code == 0
        lines = out.splitlines()
        assert lines
        assert all("Leaky" in line and "SUSPECT" in line for line in lines)
        assert any(f"SharpCap frame {min(leaked)}" in line for line in lines)
        code, out, _ = await run_ctl(port, "doctor")
        assert code == 1
        assert "FAIL  pause_stops_saving" in out
        assert "suspect frames" in out
    suspects = [r for r in world.ledger.records if r.get("kind") == "suspect_frame"]
    assert {r["count"] for r in suspects} >= leaked


@pytest.mark.timeout(60)
async def test_a_normal_camera_reports_a_clean_self_check(app_parts) -> None:
    camera = FakeCamera("Good", exposure_s=0.1)
    async with live(app_parts, camera, ditherevery=3) as world:
        await until(lambda: world.service.machine.totals.dithers >= 2, what="two dithers")

        def pause_check() -> str | None:
            report = next(iter(world.service.selfchecks.values()), None) or {}
            return next(
                (c["verdict"] for c in report.get("checks", [])
                 if c["name"] == "pause_stops_saving"),
                None,
            )  # fmt: skip

        await until(lambda: pause_check() == "ok", what="the pause check to pass")
        code, out, _ = await run_ctl(world.server.port, "doctor")
        assert code == 0, out
        assert "all checks passed" in out
        assert "ok    pause_stops_saving" in out
        code, out, err = await run_ctl(world.server.port, "frames", "--suspect")
        assert (code, out) == (0, "")
        assert "no suspect frames" in err
    assert camera.suspect_frames() == []
    assert [r for r in world.ledger.records if "kind" in r] == []
