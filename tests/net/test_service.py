"""The service's own duties: timers that must never be lost, camera messages that must
not be believed too readily, and a shutdown that only ever resumes."""

from __future__ import annotations

import asyncio
from typing import Any

from ditherapp.core import machine as m
from ditherapp.core.settings import DitherSettings
from ditherapp.net.service import DitherService


class Link:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [x for x in self.sent if x["type"] == kind]


async def until(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def make_service(guider, **kwargs: Any) -> DitherService:
    service = DitherService(settings=DitherSettings(ditherevery=1), guider=guider, **kwargs)
    service._on_link(guider.status)
    return service


async def test_a_timer_that_fires_early_is_not_lost(app_parts, monkeypatch) -> None:
    """Qt's and Windows' timers can fire a little before the deadline; the cycle must
    still end (here: a camera that never confirms its pause is given up on)."""
    _, _, guider = app_parts
    monkeypatch.setattr(m, "PAUSE_ACK_TIMEOUT_S", 0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    service = make_service(guider, clock=lambda: start + (loop.time() - start) * 0.8)
    silent = Link()
    camera = service.attach_camera("silent", silent)
    service.camera_message(camera, {"type": "frame", "exposure_s": 1.0, "saved": True})
    assert silent.of("pause")
    await until(lambda: bool(silent.of("resume")), timeout=3)
    assert service.machine.totals.failures == 1
    service.shutdown()


async def test_a_failed_pause_is_not_a_confirmation(app_parts, monkeypatch) -> None:
    _, _, guider = app_parts
    monkeypatch.setattr(m, "PAUSE_ACK_TIMEOUT_S", 0.2)
    service = make_service(guider)
    cam = Link()
    camera = service.attach_camera("broken", cam)
    service.camera_message(camera, {"type": "frame", "exposure_s": 1.0, "saved": True})
    (pause,) = cam.of("pause")
    service.camera_message(
        camera, {"type": "ack", "id": pause["id"], "ok": False, "error": "pause_failed"}
    )
    await until(lambda: bool(cam.of("resume")))
    assert guider.requests == [], "no dither while that camera may still be saving"
    service.shutdown()


async def test_absurd_numbers_from_a_camera_are_tamed(app_parts) -> None:
    _, _, guider = app_parts
    service = make_service(guider)
    camera = service.attach_camera("odd", Link())
    for exposure in (10**400, -5, float("inf"), 1e12, "12", None, [1]):
        service.camera_message(camera, {"type": "frame", "exposure_s": exposure, "saved": False})
    cam = service.machine.cameras[camera]
    assert cam.connected
    assert 0.0 <= cam.last_exposure_s <= 86_400.0
    service.shutdown()


async def test_shutdown_never_starts_a_dither(app_parts) -> None:
    _, _, guider = app_parts
    service = make_service(guider)
    cam = Link()
    camera = service.attach_camera("cam", cam)
    service.camera_message(camera, {"type": "frame", "exposure_s": 1.0, "saved": True})
    assert service.machine.phase is m.Phase.PAUSING
    service.shutdown()
    assert cam.of("resume"), "the paused camera is told to save again"
    service.detach_camera(camera)  # the control socket closing, as on exit
    await asyncio.sleep(0.05)
    assert guider.requests == []


async def test_phd2_is_asked_ahead_once_per_cycle_while_the_cameras_pause(app_parts) -> None:
    """The guider gets its hint when the pauses go out, not after the last ack, and a
    camera that joins mid-cycle does not ask again."""
    _, _, guider = app_parts
    service = make_service(guider)
    first, second = Link(), Link()
    a = service.attach_camera("a", first)
    service.camera_message(a, {"type": "frame", "exposure_s": 1.0, "saved": True})
    assert first.of("pause")
    assert guider.prepared == 1
    assert guider.requests == []
    b = service.attach_camera("b", second)
    service.camera_message(b, {"type": "frame", "exposure_s": 1.0, "saved": True})
    assert guider.prepared == 1
    for link, camera in ((first, a), (second, b)):
        for pause in link.of("pause"):
            service.camera_message(camera, {"type": "ack", "id": pause["id"], "ok": True})
    await until(lambda: bool(first.of("resume")))
    assert len(guider.requests) == 1
    assert guider.prepared == 1
    service.shutdown()


async def test_a_guider_that_cannot_ask_ahead_still_dithers(app_parts, monkeypatch) -> None:
    _, _, guider = app_parts

    def broken() -> None:
        raise RuntimeError("cannot ask ahead")

    monkeypatch.setattr(guider, "prepare", broken)
    service = make_service(guider)
    cam = Link()
    camera = service.attach_camera("main", cam)
    service.camera_message(camera, {"type": "frame", "exposure_s": 1.0, "saved": True})
    (pause,) = cam.of("pause")
    service.camera_message(camera, {"type": "ack", "id": pause["id"], "ok": True})
    await until(lambda: bool(cam.of("resume")))
    assert len(guider.requests) == 1
    service.shutdown()
