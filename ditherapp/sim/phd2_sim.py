"""The PHD2 simulator: a PHD2 peer on real sockets, for tests, benchmarks and ``--simulate``.

It serves PHD2's event server (JSON-RPC and events) and legacy socket server, driven by
`Phd2Model` and a frame clock: a guide exposure takes ``exposure_s`` simulated seconds,
and ``time_scale`` simulated seconds pass per wall second (20 makes a 1 s exposure take
0.05 s). Faults can be switched on and off at any time: dropped connections, a stalled
PHD2, settles that never succeed, a lost star, truncated lines, a slow writer.

Everything it runs is a named task in one TaskGroup owned by the simulator; `stop`
cancels it and closes every socket. A stopped simulator can be started again on the
same ports, as a restarted PHD2, to test a client's reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Self

from ditherapp.sim.legacy_server import LegacyServer
from ditherapp.sim.phd2_model import DitherWindow, Faults, Noise, Phd2Model, StartState
from ditherapp.sim.phd2_server import EventServer

__all__ = ["DitherWindow", "Noise", "Phd2Simulator", "StartState"]

log = logging.getLogger(__name__)

_START_STATES: frozenset[str] = frozenset({"disconnected", "stopped", "looping", "guiding"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bound:
    event: asyncio.Server
    legacy: asyncio.Server | None


class Phd2Simulator:
    """A simulated PHD2 on loopback (or any) sockets."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        event_port: int = 0,
        legacy_port: int | None = 0,
        exposure_s: float = 1.0,
        time_scale: float = 1.0,
        start: StartState = "stopped",
        seed: int | None = None,
        instance: int = 1,
        host_name: str | None = None,
        noise: Noise | None = None,
    ) -> None:
        if exposure_s <= 0:
            raise ValueError("exposure_s must be positive")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if start not in _START_STATES:
            raise ValueError(f"unknown start state {start!r}")
        self._host = host
        self._event_port = event_port
        self._legacy_port = legacy_port
        self._exposure_ms = max(1, round(exposure_s * 1000))
        self.time_scale = time_scale
        self._start_state: StartState = start
        self._instance = instance
        self._host_name = host_name or socket.gethostname()
        self._rng = random.Random(seed)
        self.noise = noise or Noise.steady()
        self._faults = Faults()
        self.dither_windows: list[DitherWindow] = []
        """Every dither accepted, RPC or legacy, in order."""
        self.requests: list[tuple[float, str]] = []
        """``(time.monotonic(), method or legacy command name)`` for every request received."""
        self.write_delay_s = 0.0
        """Sleep this long before each line or byte written (a slow writer)."""
        self._stall = False
        self._unstalled = asyncio.Event()
        self._unstalled.set()
        self._wake = asyncio.Event()
        self._shutdown = asyncio.Event()
        self._forever = asyncio.Event()
        self._model: Phd2Model | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._bound: _Bound | None = None
        self._events = EventServer(self)
        self._legacy = LegacyServer(self)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind both servers (port 0 picks a free port) and start taking frames.

        Each start is a freshly started PHD2 in the ``start`` state; a restart reuses the
        ports bound the first time.
        """
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._shutdown.clear()
        self._model = Phd2Model(
            clock=time.monotonic,
            wall=time.time,
            rng=self._rng,
            emit=self._broadcast,
            wake=self._wake.set,
            faults=self._faults,
            windows=self.dither_windows,
            start=self._start_state,
            exposure_ms=self._exposure_ms,
            time_scale=self.time_scale,
            instance=self._instance,
            host_name=self._host_name,
            noise=self.noise,
        )
        self._events = EventServer(self)
        self._legacy = LegacyServer(self)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self._run(ready), name=f"phd2-sim-{self._instance}")
        self._runner.add_done_callback(self._runner_done)
        try:
            await ready
        except BaseException:
            await self.stop()
            raise
        log.info(
            "PHD2 simulator %d: event server %s:%d, legacy server %s (%s, x%g)",
            self._instance,
            self._host,
            self.event_port,
            "off" if self.legacy_port is None else f"{self._host}:{self.legacy_port}",
            self._start_state,
            self.time_scale,
        )

    async def stop(self) -> None:
        """Close every socket and end every task. Safe to call when not running."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if self._model is not None:
            # PHD2 keeps its exposure in the profile: a restarted one comes back with it.
            self._exposure_ms = self._model.exposure_ms
        runner.cancel()
        await asyncio.wait({runner})
        if not runner.cancelled() and (error := runner.exception()) is not None:
            raise error

    async def wait_shutdown(self) -> None:
        """Return when a client has called ``shutdown`` or the simulator has stopped.

        Raises what made the simulator stop if it crashed.
        """
        runner = self._runner
        if runner is None:
            raise RuntimeError("the simulator is not running")
        await self._shutdown.wait()
        if runner.done() and not runner.cancelled() and (error := runner.exception()) is not None:
            raise error

    def _runner_done(self, runner: asyncio.Task[None]) -> None:
        if not runner.cancelled() and (error := runner.exception()) is not None:
            log.error("PHD2 simulator stopped: %r", error)
        self._shutdown.set()

    async def _run(self, ready: asyncio.Future[None]) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    bound = await self._bind()
                except OSError as exc:
                    ready.set_exception(exc)
                    return
                self._bound = bound
                try:
                    tg.create_task(self._camera_loop(), name=f"phd2-sim-{self._instance}-camera")
                    ready.set_result(None)
                    await self._forever.wait()
                finally:
                    self._close_servers()
                    self._events.abort_all()
                    self._legacy.abort_all()
        finally:
            self._tg = None
            self._bound = None

    async def _bind(self) -> _Bound:
        event = await asyncio.start_server(self._events.accept, self._host, self._event_port)
        legacy = None
        if self._legacy_port is not None:
            try:
                legacy = await asyncio.start_server(
                    self._legacy.accept, self._host, self._legacy_port
                )
            except OSError:
                event.close()
                raise
            self._legacy_port = legacy.sockets[0].getsockname()[1]
        self._event_port = event.sockets[0].getsockname()[1]
        return _Bound(event=event, legacy=legacy)

    def _close_servers(self) -> None:
        if self._bound is not None:
            self._bound.event.close()
            if self._bound.legacy is not None:
                self._bound.legacy.close()

    # ------------------------------------------------------------------ for connections

    @property
    def model(self) -> Phd2Model:
        if self._model is None:
            raise RuntimeError("the simulator has not been started")
        return self._model

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coro`` as a named task of the simulator's TaskGroup."""
        if self._tg is None:
            coro.close()
            raise RuntimeError("the simulator is not running")
        return self._tg.create_task(coro, name=name)

    def record_request(self, name: str) -> None:
        log.debug("request %s", name)
        self.requests.append((time.monotonic(), name))

    async def wait_unstalled(self) -> None:
        await self._unstalled.wait()

    async def sleep_simulated(self, seconds: float) -> None:
        await asyncio.sleep(seconds / self.time_scale)

    def request_shutdown(self) -> None:
        """``shutdown``: reply first, then close everything, like a PHD2 that exits."""
        asyncio.get_running_loop().call_soon(self._shut_down)

    def _shut_down(self) -> None:
        log.info("shutdown requested by a client")
        model = self.model
        if model.capturing:
            model.request_stop(keep_looping=False)
            model.finish_stop()
        self._close_servers()
        self._events.close_all_after_flush()
        self._legacy.abort_all()
        self._shutdown.set()

    def _broadcast(self, line: str) -> None:
        log.debug("event %s", line)
        self._events.broadcast(line)

    # ------------------------------------------------------------------ the frame clock

    async def _nap(self, simulated_s: float) -> bool:
        """Sleep, or return True early when something the camera cares about changed."""
        try:
            async with asyncio.timeout(simulated_s / self.time_scale):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _camera_loop(self) -> None:
        """Expose, process the frame, then wait for the guide pulse and send its GuideStep."""
        while True:
            model = self.model
            self._wake.clear()
            if model.stop_pending:
                model.finish_stop()
                continue
            if self._stall or not model.exposing:
                await self._wake.wait()
                continue
            if await self._nap(model.frame_interval_s):
                continue  # state changed mid-exposure: start a fresh one
            outcome = model.complete_frame()
            if outcome.pulse_s > 0:
                await self.sleep_simulated(outcome.pulse_s)
            if outcome.guide_step is not None:
                self._broadcast(outcome.guide_step)

    # ------------------------------------------------------------------ public surface

    @property
    def event_port(self) -> int:
        """The event server's port (the bound one once started)."""
        return self._event_port

    @property
    def legacy_port(self) -> int | None:
        """The legacy server's port, or None when it is off."""
        return self._legacy_port

    @property
    def app_state(self) -> str:
        """What ``get_app_state`` would answer now."""
        return self.model.app_state()

    @property
    def stall(self) -> bool:
        """True: no frames, no events written, no request answered, until set back to False."""
        return self._stall

    @stall.setter
    def stall(self, value: bool) -> None:
        self._stall = value
        if value:
            self._unstalled.clear()
        else:
            self._unstalled.set()
        self._wake.set()

    @property
    def never_settle(self) -> bool:
        """Settles never get within tolerance, so they time out (legacy 10-frame ones still end)."""
        return self._faults.never_settle

    @never_settle.setter
    def never_settle(self, value: bool) -> None:
        self._faults.never_settle = value

    @property
    def settle_quickly(self) -> bool:
        """Every settle succeeds on its first frame (for benchmarks)."""
        return self._faults.settle_quickly

    @settle_quickly.setter
    def settle_quickly(self, value: bool) -> None:
        self._faults.settle_quickly = value

    @property
    def star_saturated(self) -> bool:
        """Report ErrorCode 1 with the star, as PHD2's own simulator camera does."""
        return self._faults.star_saturated

    @star_saturated.setter
    def star_saturated(self, value: bool) -> None:
        self._faults.star_saturated = value

    def lose_star(self, frames: int) -> None:
        """The next ``frames`` frames with a star lose it (StarLost; LostLock while guiding)."""
        self._faults.lost_frames = max(0, frames)

    def drop_connections(self) -> None:
        """Close every client socket, event and legacy, without a goodbye."""
        self._events.abort_all()
        self._legacy.abort_all()

    def truncate_next_line(self) -> None:
        """Cut the next event line to each client short and glue the following line onto it."""
        self._events.truncate_next_line()
