"""The fault-injection rig: the real service and control socket, a PHD2 simulator on
real loopback sockets, simulated camera agents, and the tools to break any of them.

Test modules are imported with importlib and cannot import one another, so everything
they share is here, handed out as fixtures.

``World`` is one running ditherapp (``Runtime``: PHD2 client, ``DitherService``,
``ControlServer``, ledger) in the test's own event loop, pointed at a ``Phd2Simulator``
(or at a ``Phd2Proxy`` in front of it, which can garble what PHD2 sends), with
``SimCamera`` agents connected to its control socket. Every wait is on a condition with
a deadline; nothing sleeps to "let things happen".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ditherapp.core.machine import Phase
from ditherapp.core.settings import DitherSettings
from ditherapp.net.service import DitherRecorded, DitherService, ServiceEvent
from ditherapp.runtime import Runtime, RuntimeOptions
from ditherapp.sim.camera_agent import Exposure, SimCamera
from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap, hook_threads, run_hook_script
from ditherapp.sim.phd2_sim import Phd2Simulator

WAIT_S = 10.0

FAST_SETTINGS: dict[str, object] = {
    "phd2backend": "event",
    "ditherevery": 2,
    "settledelay": 1,
    "settlemax": 30,
    "settletarget": 1.5,
    "maxpixels": 1,
    "waitfornextframe": True,
    "guard": False,
}
"""Short cycles: a dither every second frame that settles after one simulated second
in range (0.1 s of wall time at the default simulator speed). The frame guard is off:
these tests are about the dither cycle's own fail-open; with the guard on, a PHD2 that
goes away holds saving instead (test_phd2_faults.py has that case too)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    condition: Callable[[], object], timeout: float = WAIT_S, what: str = ""
) -> None:
    """Poll ``condition`` every few milliseconds; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or condition}")
        await asyncio.sleep(0.005)


def overlaps(a_start: float, a_end: float, b_start: float, b_end: float) -> bool:
    return a_start < b_end and b_start < a_end


# ------------------------------------------------------------------ errors nobody caught


class ErrorTrap(logging.Handler):
    """Collects ERROR records from ditherapp's loggers and asyncio's unhandled errors.

    The service and the control server log an exception they caught at their own
    boundary ("service listener failed", "control client N failed", "dither operation
    failed", a runtime task that stopped): any such record is a crash the user would
    only have noticed as something that silently stopped working.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(context)
        loop.default_exception_handler(context)

    def problems(self) -> list[str]:
        out = [f"{r.name}: {r.getMessage()}" for r in self.records]
        out += [str(c.get("exception") or c.get("message")) for c in self.loop_errors]
        return out


@pytest.fixture
async def error_trap() -> AsyncIterator[ErrorTrap]:
    trap = ErrorTrap()
    logger = logging.getLogger("ditherapp")
    logger.addHandler(trap)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(trap.on_loop_error)
    try:
        yield trap
    finally:
        loop.set_exception_handler(previous)
        logger.removeHandler(trap)


# ------------------------------------------------------------------ a PHD2 proxy


class Phd2Proxy:
    """A TCP relay between the app and the simulator's event server that can corrupt
    what PHD2 sends: inject whole garbage lines between PHD2's lines, or cut the next
    line short and glue the one after onto it. Lines are relayed as they complete, so
    injected bytes never split a real line unless asked to."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[_ProxyLink] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self._links:
            link.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def inject(self, data: bytes) -> None:
        """Queue bytes to write to the app before PHD2's next line (to every link)."""
        for link in self._links:
            link.pending.append(data)

    def cut_line_containing(self, marker: bytes, keep: int = 17) -> None:
        """The next line PHD2 sends that contains ``marker`` loses everything after
        ``keep`` bytes and its end, so the line after it is glued onto the stump."""
        for link in self._links:
            link.cut = (marker, keep)

    def hold_line_until(self, marker: bytes, release: bytes) -> None:
        """Hold back everything from the next line containing ``marker`` until a line
        containing ``release`` comes, then send it all in one write, in order: what a
        reader that was too busy to read for a while finds in one chunk."""
        for link in self._links:
            link.hold = (marker, release)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        link = _ProxyLink(writer, up_writer)
        self._links.append(link)
        down = asyncio.get_running_loop().create_task(self._down(link, up_reader))
        up = asyncio.get_running_loop().create_task(self._up(link, reader))
        for task in (down, up):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        await asyncio.wait([down, up], return_when=asyncio.FIRST_COMPLETED)
        link.abort()
        for task in (down, up):
            task.cancel()

    async def _up(self, link: _ProxyLink, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                link.upstream.write(data)

    async def _down(self, link: _ProxyLink, reader: asyncio.StreamReader) -> None:
        buf = b""
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                buf += data
                *lines, buf = buf.split(b"\n")
                out = []
                for line in lines:
                    out.extend(link.pending)
                    link.pending.clear()
                    if link.cut is not None and link.cut[0] in line:
                        out.append(line[: link.cut[1]])  # no end: glued to the next
                        link.cut = None
                    elif link.hold is not None and (link.held or link.hold[0] in line):
                        link.held.append(line + b"\n")
                        if link.hold[1] in line:
                            out.extend(link.held)
                            link.held.clear()
                            link.hold = None
                    else:
                        out.append(line + b"\n")
                link.downstream.write(b"".join(out))


@dataclass(eq=False)
class _ProxyLink:
    downstream: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pending: list[bytes] = field(default_factory=list)
    cut: tuple[bytes, int] | None = None
    hold: tuple[bytes, bytes] | None = None
    held: list[bytes] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.downstream, self.upstream):
            writer.transport.abort()


# ------------------------------------------------------------------ the world


class Tap:
    """The ledger records the service published, as observers saw them."""

    def __init__(self, service: DitherService) -> None:
        self.records: list[dict[str, Any]] = []
        self.unsubscribe = service.subscribe(self._on)

    def _on(self, event: ServiceEvent) -> None:
        if isinstance(event, DitherRecorded):
            self.records.append(event.record)


@dataclass(eq=False)
class World:
    sim: Phd2Simulator
    runtime: Runtime
    ledger_path: Path
    tap: Tap
    cameras: list[SimCamera] = field(default_factory=list)
    proxy: Phd2Proxy | None = None
    unsaved_reports: Counter[str] = field(default_factory=Counter)
    """Frames reported unsaved, as the app received them, by camera name."""
    _camera_tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        service = self.service
        deliver = service.camera_message

        def received(camera: str, message: dict[str, Any]) -> None:
            if message.get("type") == "frame" and message.get("saved") is not True:
                self.unsaved_reports[service.machine.cameras[camera].name] += 1
            deliver(camera, message)

        service.camera_message = received  # type: ignore[method-assign]

    @property
    def service(self) -> DitherService:
        assert self.runtime.service is not None
        return self.runtime.service

    @property
    def control_port(self) -> int:
        assert self.runtime.control is not None
        return self.runtime.control.port

    @property
    def phase(self) -> Phase:
        return self.service.machine.phase

    def ledger(self) -> list[dict[str, Any]]:
        if not self.ledger_path.exists():
            return []
        return [json.loads(x) for x in self.ledger_path.read_text().splitlines() if x.strip()]

    def add_camera(self, name: str, exposure_s: float, **options: Any) -> SimCamera:
        options.setdefault("reconnect_s", 0.1)
        camera = SimCamera(name=name, exposure_s=exposure_s, port=self.control_port, **options)
        self.cameras.append(camera)
        self.start_camera(camera)
        return camera

    def start_camera(self, camera: SimCamera) -> None:
        task = asyncio.get_running_loop().create_task(camera.run(), name=f"camera {camera.name}")
        self._camera_tasks[id(camera)] = task

    def is_running(self, camera: SimCamera) -> bool:
        return id(camera) in self._camera_tasks

    async def kill_camera(self, camera: SimCamera) -> None:
        """The agent dies: its run ends and its connection closes."""
        camera.stop()
        task = self._camera_tasks.pop(id(camera))
        await asyncio.wait([task], timeout=WAIT_S)
        assert task.done(), f"camera {camera.name} did not stop"

    async def wait_connected(self, timeout: float = WAIT_S) -> None:
        await wait_until(
            lambda: (
                self.service.guider.status.connected
                and sum(c.connected for c in self.service.machine.cameras.values())
                == len(self._camera_tasks)
            ),
            timeout,
            "PHD2 and every camera to be connected",
        )

    async def wait_records(self, count: int, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        await wait_until(lambda: len(self.tap.records) >= count, timeout, f"{count} dithers")
        return self.tap.records

    def when_phase(self, phase: Phase, action: Callable[[], object]) -> None:
        """Run ``action`` once, synchronously, as the machine enters ``phase`` (some
        phases last less than a millisecond: polling would miss them)."""

        def on_event(_event: ServiceEvent) -> None:
            if self.phase is phase:
                unsubscribe()
                action()

        unsubscribe = self.service.subscribe(on_event)

    async def wait_phase(self, phase: Phase, timeout: float = WAIT_S) -> None:
        await wait_until(lambda: self.phase is phase, timeout, f"the {phase.value} phase")

    async def status(self, timeout: float = 2.0) -> dict[str, Any]:
        """Ask over the control socket, as ditherctl does."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.control_port)
        try:
            writer.write(b'{"type":"status"}\n')
            async with asyncio.timeout(timeout):
                return dict(json.loads(await reader.readline()))
        finally:
            writer.close()

    def paused_cameras(self) -> list[str]:
        return [c.name for c in self.cameras if c.paused]

    def saved_during_dither(self) -> list[Exposure]:
        """Every saved exposure that overlapped a finished dither window (from the
        moment PHD2 accepted the dither to its SettleDone)."""
        windows = [(w.start, w.end) for w in self.sim.dither_windows if w.end is not None]
        return [
            e
            for camera in self.cameras
            for e in camera.exposures
            if e.saved and any(overlaps(e.start, e.end, s, t) for s, t in windows)
        ]

    async def close(self) -> None:
        for camera in self.cameras:
            camera.stop()
        tasks = list(self._camera_tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=WAIT_S)
        self.tap.unsubscribe()
        await self.runtime.stop()
        if self.proxy is not None:
            await self.proxy.close()
        await self.sim.stop()


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(tmp_path: Path) -> AsyncIterator[MakeWorld]:
    worlds: list[World] = []

    async def make(
        *,
        settings: dict[str, object] | None = None,
        time_scale: float = 10.0,
        proxy: bool = False,
        seed: int = 7,
        settings_file: Path | None = None,
    ) -> World:
        """``settings_file``: save changes there as the app does (QSettings, off the loop)."""
        sim = Phd2Simulator(
            event_port=0, legacy_port=None, time_scale=time_scale, start="guiding", seed=seed
        )
        await sim.start()
        phd2_port = sim.event_port
        relay = None
        if proxy:
            relay = Phd2Proxy(sim.event_port)
            await relay.start()
            phd2_port = relay.port
        values = {**FAST_SETTINGS, "controlport": free_port(), **(settings or {})}
        dither_settings = DitherSettings().with_values(values)
        ledger = tmp_path / f"ledger-{len(worlds)}.jsonl"
        save = None
        if settings_file is not None:
            from ditherapp.ui.settings_store import SettingsStore

            save = SettingsStore(settings_file).save_changes
        runtime = Runtime(
            dither_settings,
            RuntimeOptions(phd2_port=phd2_port, ledger_path=ledger, phd2_time_scale=time_scale),
            save_settings=save,
        )
        await runtime.__aenter__()
        assert runtime.service is not None
        world = World(
            sim=sim, runtime=runtime, ledger_path=ledger, tap=Tap(runtime.service), proxy=relay
        )
        worlds.append(world)
        return world

    try:
        yield make
    finally:
        for world in worlds:
            await world.close()


# ------------------------------------------------------------------ ditherapp in a process


@contextlib.asynccontextmanager
async def app_process(
    tmp_path: Path, phd2_port: int, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``ditherapp --headless`` in its own process, against a PHD2 on ``phd2_port``;
    yields the process and its control port once the control socket accepts."""
    control_port = free_port()
    args = [
        "-m", "ditherapp", "--headless",
        "--settings", str(tmp_path / "settings.ini"),
        "--ledger", str(tmp_path / "ledger.jsonl"),
        "--phd2", "127.0.0.1", "--phd2-port", str(phd2_port), "--phd2-backend", "event",
        "--control-port", str(control_port),
        *(arg for name, value in FAST_SETTINGS.items() if name != "phd2backend"
          for arg in ("--set", f"{name}={value}")),
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", control_port)
            except OSError:
                if proc.returncode is not None:
                    pytest.fail(f"ditherapp exited at start with {proc.returncode}")
                if time.monotonic() > deadline:
                    pytest.fail("ditherapp did not open its control socket within 20 s")
                await asyncio.sleep(0.05)
            else:
                writer.close()
                break
        yield proc, control_port
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Awaitable[None]]:
    return wait_until


# ------------------------------------------------------------------ the real hook script


@dataclass(eq=False)
class SharpCapWithHook:
    """A fake SharpCap, capturing with one camera, running the real hook script."""

    camera: FakeCamera
    scope: dict[str, Any]

    @property
    def hook(self) -> Any:
        return self.scope["DITHERAPP_HOOK"]

    def hook_log(self) -> str:
        return "\n".join(self.hook.log_lines)


@pytest.fixture
async def sharpcap() -> AsyncIterator[Callable[..., SharpCapWithHook]]:
    made: list[SharpCapWithHook] = []

    def make(port: int, name: str = "ASI2600MM", exposure_s: float = 0.2, **settings: object):
        camera = FakeCamera(name, exposure_s=exposure_s)
        options: dict[str, object] = {
            "APP_PORT": port,
            "NOTIFY": False,
            "RECONNECT_MIN_S": 0.1,
            "RECONNECT_MAX_S": 0.5,
            "TICK_S": 0.05,
            **settings,
        }
        scope = run_hook_script(FakeSharpCap(camera), settings=options)
        world = SharpCapWithHook(camera=camera, scope=scope)
        made.append(world)
        camera.start()
        camera.PrepareToCapture()
        camera.RunCapture()
        return world

    try:
        yield make
    finally:
        for world in made:
            await asyncio.to_thread(world.hook.shutdown)
            world.camera.stop()
        if made and hasattr(sys, made[0].scope["REGISTRY_ATTR"]):
            delattr(sys, made[0].scope["REGISTRY_ATTR"])
        await wait_until(lambda: not list(hook_threads()), WAIT_S, "the hook's threads to end")


@pytest.fixture(name="app_process")
def app_process_fixture() -> Callable[..., Any]:
    return app_process
