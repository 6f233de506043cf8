"""Everything that runs, minus the window: the PHD2 link, the service, the control
socket, and in ``--simulate`` mode the PHD2 simulator and simulated cameras.

Both the headless mode and the window start one ``Runtime``; the window only adds a
view on top of ``runtime.service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ditherapp.core.settings import DitherSettings
from ditherapp.net.alerts import WebhookAlerts
from ditherapp.net.control_server import ControlServer
from ditherapp.net.guider import EventGuider, Guider
from ditherapp.net.ledger import JsonlLedger
from ditherapp.net.phd2_client import Phd2Client, event_port, legacy_port
from ditherapp.net.service import DitherService, SaveSettings, ServiceEvent, SettingChanged
from ditherapp.net.settings_saver import SettingsSaver
from ditherapp.net.switch import GuiderSwitch

log = logging.getLogger(__name__)

SIM_CAMERA_EXPOSURES_S = (3.0, 5.0, 4.0, 6.0)
QUIT_WAIT_S = 5.0
"""How long quitting waits for the dither's own clean-up (the exposure put back)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuntimeOptions:
    phd2_port: int | None = None
    """Overrides the port derived from the instance (tests, odd setups)."""
    legacy_port: int | None = None
    simulate: bool = False
    sim_cameras: int = 1
    sim_time_scale: float = 2.0
    sim_exposure_s: float = 1.0
    ledger_path: Path | None = None
    exposure_restore_path: Path | None = None
    """Where the guide exposure to put back is kept while a settle runs at a short one."""
    phd2_time_scale: float = 1.0
    """How much faster than life PHD2's time runs (a simulator's): the settle judge counts
    PHD2's settle time at the same pace (``--simulate`` sets it to the simulator's)."""


def phd2_address(settings: DitherSettings, options: RuntimeOptions) -> tuple[str, int, int]:
    """PHD2's host, event server port and legacy port (ports given on the command line
    win over the instance's)."""
    return (
        settings.phd2host,
        options.phd2_port or event_port(settings.phd2instance),
        options.legacy_port or legacy_port(settings.phd2instance),
    )


def build_guider(settings: DitherSettings, options: RuntimeOptions) -> Guider:
    host, port, lport = phd2_address(settings, options)
    backend = settings.phd2backend
    if backend in ("legacy", "auto"):
        try:
            from ditherapp.net import legacy  # noqa: PLC0415 - optional until it exists
        except ImportError:
            log.warning("the legacy backend is not available; using the event server")
        else:
            return legacy.make_guider(
                backend,
                host=host,
                event_port=port,
                legacy_port=lport,
                poll_s=settings.legacypoll,
                restore_path=options.exposure_restore_path,
                time_scale=options.phd2_time_scale,
            )
    return EventGuider(
        Phd2Client(host, port),
        restore_path=options.exposure_restore_path,
        time_scale=options.phd2_time_scale,
    )


class Runtime:
    def __init__(
        self,
        settings: DitherSettings,
        options: RuntimeOptions,
        *,
        save_settings: SaveSettings | None = None,
    ) -> None:
        self.options = options
        self._initial = settings
        self.saver = SettingsSaver(save_settings) if save_settings is not None else None
        """Writes the settings file off the event loop (``save_settings`` runs in a thread)."""
        self.sim: Any = None
        self.cameras: list[Any] = []
        self.service: DitherService | None = None
        self.control: ControlServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._phd2_address: tuple[str, int, int] | None = None
        self.guider: GuiderSwitch | None = None
        self.alerts: WebhookAlerts | None = None

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _start(self) -> None:
        options = self.options
        settings = self._initial
        if options.simulate:
            from ditherapp.sim.phd2_sim import Phd2Simulator  # noqa: PLC0415

            self.sim = Phd2Simulator(
                event_port=0,
                legacy_port=0,
                exposure_s=options.sim_exposure_s,
                time_scale=options.sim_time_scale,
                start="guiding",
            )
            await self.sim.start()
            options = RuntimeOptions(
                phd2_port=self.sim.event_port,
                legacy_port=self.sim.legacy_port,
                simulate=True,
                sim_cameras=options.sim_cameras,
                sim_time_scale=options.sim_time_scale,
                ledger_path=options.ledger_path,
                exposure_restore_path=options.exposure_restore_path,
                phd2_time_scale=options.sim_time_scale,
            )
            settings = settings.with_value("phd2host", "127.0.0.1")
            self.options = options
        ledger = JsonlLedger(options.ledger_path) if options.ledger_path else None
        self.guider = GuiderSwitch(build_guider(settings, options))
        self.service = DitherService(
            settings=settings,
            guider=self.guider,
            ledger=ledger,
            save_settings=self.saver.submit if self.saver is not None else None,
        )
        if self.saver is not None:
            self.saver.on_error = self.service.alert
        self._phd2_address = phd2_address(settings, options)
        self.service.subscribe(self._on_service_event)
        service = self.service
        self.alerts = WebhookAlerts(lambda: service.settings.alerturl)
        self.alerts.follow(service)
        self.control = ControlServer(
            self.service,
            host=settings.controlhost,
            port=settings.controlport,
            token=settings.controltoken,
        )
        await self.control.start()
        self._spawn(self.service.run(), "service")
        if options.simulate:
            from ditherapp.sim.camera_agent import SimCamera  # noqa: PLC0415

            for i in range(options.sim_cameras):
                camera = SimCamera(
                    name=f"Simulated camera {i + 1}",
                    exposure_s=SIM_CAMERA_EXPOSURES_S[i % len(SIM_CAMERA_EXPOSURES_S)],
                    port=self.control.port,
                    token=settings.controltoken or None,
                )
                self.cameras.append(camera)
                self._spawn(camera.run(), f"sim-camera-{i + 1}")

    def _on_service_event(self, event: ServiceEvent) -> None:
        if not isinstance(event, SettingChanged):
            return
        if event.name in ("phd2host", "phd2instance"):
            self._follow_phd2()
        elif event.name == "phd2backend" and self.guider is not None and self.service:
            log.info("talking to PHD2 through its %s protocol from now on", event.value)
            self.guider.use(build_guider(self.service.settings, self.options))

    def _follow_phd2(self) -> None:
        """PHD2's host or instance changed: talk to it there from now on."""
        service = self.service
        if service is None:
            return
        address = phd2_address(service.settings, self.options)
        if address == self._phd2_address:
            return  # (both changed at once: one reconnect)
        self._phd2_address = address
        host, port, lport = address
        log.info("PHD2 is now looked for at %s (event port %d, legacy port %d)", host, port, lport)
        service.guider.retarget(host, port, lport)

    def _spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s stopped: %s", task.get_name(), task.exception())

    async def stop(self) -> None:
        """Resume every camera first, then close everything."""
        if self.service is not None:
            self.service.shutdown()
            # A dither cancelled mid-settle puts PHD2's guide exposure back first.
            await self.service.wait_stopped(QUIT_WAIT_S)
        for camera in self.cameras:
            camera.stop()
        if self.control is not None:
            await self.control.close()
        if self.saver is not None:
            await self.saver.flush()  # the last change is on disk before we are gone
        if self.alerts is not None:
            await asyncio.to_thread(self.alerts.close)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sim is not None:
            with contextlib.suppress(Exception):
                await self.sim.stop()
