"""A simulated camera agent: the camera side of the control socket, as the SharpCap hook speaks it.

``ditherapp --simulate`` and the end-to-end tests run one per simulated camera. It
exposes continuously, reports every frame, and obeys ``pause``/``resume`` with the
same fail-open rules as ``sharpcap_hook/ditherapp_hook.py``: a pause by the app ends
by itself after ``max_s`` (at most ``HARD_CAP_S``), when the connection drops, or
when the app has said nothing for ``app_silent_s``; a pause the user made is never
undone. A frame is saved when, at the moment its exposure completes, the camera is
capturing and not paused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ditherapp.core.lines import LineBuffer

log = logging.getLogger(__name__)

Message = dict[str, Any]

AGENT = "ditherapp-sim/1.0"
PROTO = 1
HARD_CAP_S = 900.0
MAX_LINE = 1 << 16
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Exposure:
    """One completed exposure; ``start`` and ``end`` are ``time.monotonic()`` seconds."""

    start: float
    end: float
    saved: bool
    seq: int


class _SessionEnded(Exception):  # noqa: N818 - control flow, not an error
    """The app refused us or broke the protocol; reconnect later."""


def _seconds(value: object, default: float) -> float:
    """A positive finite number of seconds from a message field, else ``default``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return default
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds > 0 else default


def _encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class SimCamera:
    """A camera agent that exposes, reports frames, and pauses when the app asks."""

    def __init__(
        self,
        *,
        name: str,
        exposure_s: float,
        host: str = "127.0.0.1",
        port: int,
        token: str | None = None,
        reconnect_s: float = 1.0,
        capturing: bool = True,
        heartbeat_s: float = 2.0,
        app_silent_s: float = 10.0,
    ) -> None:
        self.name = name
        self.exposure_s = exposure_s
        self._host = host
        self._port = port
        self._token = token
        self._reconnect_s = reconnect_s
        self._heartbeat_s = heartbeat_s
        self._app_silent_s = app_silent_s

        self.exposures: list[Exposure] = []
        self.paused = False
        self.paused_by: str | None = None
        self.capturing = capturing
        self.connected = False
        self.camera_id: str | None = None  # what the app calls us (from welcome)

        self._seq = 0
        self._stop = asyncio.Event()
        self._outbox: asyncio.Queue[Message] | None = None
        self._session_id = 0
        self._resume_after_seq: int | None = None
        self._timers: dict[str, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------------ public
    async def run(self) -> None:
        """Expose and stay connected (retrying) until ``stop()``; cancellable."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(
                        self._expose_forever(), name=f"sim-camera-expose:{self.name}"
                    ),
                    group.create_task(self._link_forever(), name=f"sim-camera-link:{self.name}"),
                ]
                await self._stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            self._outbox = None
            self.connected = False
            self._unpause("watchdog", "stopped")
            self._stop.clear()

    def stop(self) -> None:
        """Make ``run()`` return. Call from the event loop's thread."""
        self._stop.set()

    def set_capturing(self, capturing: bool) -> None:
        """Start or stop capture (frames keep coming; only saving changes)."""
        if capturing != self.capturing:
            self.capturing = capturing
            self._post({"type": "capture", "capturing": capturing})

    def press_pause(self, paused: bool) -> None:
        """The user clicks SharpCap's Pause button."""
        if paused == self.paused:
            return
        if not paused:
            self._cancel_timers()
            self._resume_after_seq = None
        self.paused = paused
        self.paused_by = "user" if paused else None
        self._post({"type": "paused", "paused": paused, "by": "user"})

    # ------------------------------------------------------------------ exposing
    async def _expose_forever(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.exposure_s)
            self._frame_done(start, time.monotonic())

    def _frame_done(self, start: float, end: float) -> None:
        saved = self.capturing and not self.paused
        self._seq += 1
        self.exposures.append(Exposure(start=start, end=end, saved=saved, seq=self._seq))
        self._post(
            {
                "type": "frame",
                "seq": self._seq,
                "t": time.time(),
                "exposure_s": self.exposure_s,
                "saved": saved,
            }
        )
        if self._resume_after_seq is not None and self._seq > self._resume_after_seq:
            self._unpause("app")  # the frame that overlapped the settle has just ended

    # ------------------------------------------------------------------ the link
    async def _link_forever(self) -> None:
        while True:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(self._host, self._port)
            except (OSError, TimeoutError) as exc:
                log.debug(
                    "%s: cannot reach the app at %s:%s: %s", self.name, self._host, self._port, exc
                )
                await asyncio.sleep(self._reconnect_s)
                continue
            try:
                await self._session(reader, writer)
            except (OSError, _SessionEnded) as exc:
                log.info("%s: connection to the app ended: %s", self.name, exc)
            finally:
                self._disconnected()
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            await asyncio.sleep(self._reconnect_s)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._session_id += 1
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        hello: Message = {
            "type": "hello",
            "role": "camera",
            "proto": PROTO,
            "name": self.name,
            "agent": AGENT,
            "runtime": f"{platform.python_implementation()} {platform.python_version()}; simulated",
        }
        if self._token:
            hello["token"] = self._token
        outbox.put_nowait(hello)
        outbox.put_nowait({"type": "capture", "capturing": self.capturing})
        if self.paused:
            outbox.put_nowait({"type": "paused", "paused": True, "by": self.paused_by or "user"})
        self._outbox = outbox
        self.connected = True
        sender = asyncio.create_task(
            self._send_forever(writer, outbox), name=f"sim-camera-send:{self.name}"
        )
        try:
            await self._receive(reader)
        finally:
            sender.cancel()
            await asyncio.wait([sender])
            if not sender.cancelled() and (exc := sender.exception()) is not None:
                log.info("%s: sending failed: %s", self.name, exc)

    async def _send_forever(
        self, writer: asyncio.StreamWriter, outbox: asyncio.Queue[Message]
    ) -> None:
        next_heartbeat = time.monotonic() + self._heartbeat_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, next_heartbeat - time.monotonic())):
                    message = await outbox.get()
            except TimeoutError:
                message = {"type": "heartbeat", "t": time.time()}
                next_heartbeat = time.monotonic() + self._heartbeat_s
            batch = [message]
            while not outbox.empty():
                batch.append(outbox.get_nowait())
            writer.write(b"".join(_encode(m) for m in batch))
            try:
                await writer.drain()
            except OSError:
                writer.close()  # the receiving side sees the end and the session ends
                raise

    async def _receive(self, reader: asyncio.StreamReader) -> None:
        lines = LineBuffer(max_line=MAX_LINE)
        while data := await reader.read(65536):
            for line in lines.feed(data):
                self._on_line(line)
            if lines.overlong:
                raise _SessionEnded("the app sent a line longer than 64 KiB")

    def _on_line(self, line: bytes) -> None:
        self._arm_silence()
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("%s: the app sent a line that is not JSON", self.name)
            return
        if not isinstance(message, dict):
            return
        match message.get("type"):
            case "pause":
                self._on_pause(message)
            case "resume":
                self._on_resume(message)
            case "ping":
                self._post({"type": "heartbeat", "t": time.time()})
            case "welcome":
                camera = message.get("camera")
                self.camera_id = camera if isinstance(camera, str) else None
            case "error":
                log.warning(
                    "%s: the app reported %s: %s",
                    self.name,
                    message.get("code"),
                    message.get("message"),
                )
                if message.get("code") == "unauthorized":
                    raise _SessionEnded("the app refused our token")
            case _:
                pass  # unknown types are for newer agents

    def _disconnected(self) -> None:
        self._outbox = None
        self.connected = False
        self._unpause("watchdog", "disconnected")

    # ------------------------------------------------------------------ pause and resume
    def _on_pause(self, message: Message) -> None:
        limit = _seconds(message.get("max_s"), HARD_CAP_S)
        reason = "max_s"
        if limit >= HARD_CAP_S:
            limit, reason = HARD_CAP_S, "hard_cap"
        if not self.paused:
            self.paused = True
            self.paused_by = "app"
            self._post({"type": "paused", "paused": True, "by": "app"})
        if self.paused_by == "app":  # a user's pause is the user's: nothing to arm
            self._cancel_timers()
            self._resume_after_seq = None
            self._set_timer("max_s", limit, lambda: self._unpause("watchdog", reason))
            self._arm_silence()
        self._post({"type": "ack", "id": message.get("id")})

    def _on_resume(self, message: Message) -> None:
        if self.paused_by == "app":
            if message.get("after_next_frame"):
                self._resume_after_seq = self._seq
                wait = min(_seconds(message.get("max_wait_s"), HARD_CAP_S), HARD_CAP_S)
                self._set_timer("max_wait", wait, lambda: self._unpause("app", "max_wait"))
            else:
                self._unpause("app")
        self._post({"type": "ack", "id": message.get("id")})

    def _unpause(self, by: str, reason: str | None = None) -> None:
        """End the app's pause, if there is one."""
        if self.paused_by != "app":
            return
        self._cancel_timers()
        self._resume_after_seq = None
        self.paused = False
        self.paused_by = None
        message: Message = {"type": "paused", "paused": False, "by": by}
        if reason is not None:
            message["reason"] = reason
        self._post(message)
        if by == "watchdog":
            log.info("%s: resumed saving by itself (%s)", self.name, reason)

    def _arm_silence(self) -> None:
        if self.paused_by == "app":
            self._set_timer(
                "silence", self._app_silent_s, lambda: self._unpause("watchdog", "app_silent")
            )

    def _set_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        if (old := self._timers.pop(name, None)) is not None:
            old.cancel()
        self._timers[name] = asyncio.get_running_loop().call_later(delay, callback)

    def _cancel_timers(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _post(self, message: Message) -> None:
        """Queue a message for the app; dropped while disconnected (it would be history)."""
        if self._outbox is not None:
            self._outbox.put_nowait(message)
