"""Alerts that reach a sleeping user: a plain HTTP POST of a small JSON body to the
``alerturl`` webhook (ntfy-style services, home automation), besides the window's tray
message and sound.

Posting happens on one worker thread with a bounded queue: ``alert`` only queues, so a
slow or dead webhook never holds up the dither loop. A webhook that fails is logged (and
counted), never raised.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ditherapp import __version__
from ditherapp.core.machine import Level
from ditherapp.net.service import DitherService, Notice, ServiceEvent

log = logging.getLogger(__name__)

POST_TIMEOUT_S = 10.0
MAX_PENDING = 32
"""Alerts waiting for the webhook; more are dropped (and counted) rather than queued
for ever behind a webhook that hangs."""

Post = Callable[[str, bytes, float], int]
"""(url, body, timeout) -> HTTP status; raises OSError when the webhook cannot be reached."""


def http_post(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(  # noqa: S310 - the user's own http(s) webhook
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"ditherapp/{__version__}",
            "Title": "ditherapp alert",  # ntfy shows it as the title
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def alert_body(message: str, wall_time: float) -> bytes:
    return json.dumps(
        {
            "app": "ditherapp",
            "level": "alert",
            "title": "ditherapp alert",
            "message": message,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(wall_time)),
        },
        separators=(",", ":"),
    ).encode("utf-8")


@dataclass(slots=True)
class WebhookStats:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str | None = None


class WebhookAlerts:
    def __init__(
        self,
        url: Callable[[], str],
        *,
        post: Post = http_post,
        timeout_s: float = POST_TIMEOUT_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._url = url
        self._post = post
        self._timeout_s = timeout_s
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(max_pending)
        self.stats = WebhookStats()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def alert(self, message: str, wall_time: float) -> bool:
        """Queue one alert for the webhook; False when none is set or the queue is full."""
        url = self._url().strip()
        if not url or self._closed:
            return False
        try:
            self._queue.put_nowait((url, alert_body(message, wall_time)))
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
            log.warning("alert webhook is behind; dropped an alert")
            return False
        self._ensure_worker()
        return True

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="ditherapp-webhook", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            url, body = item
            try:
                status = self._post(url, body, self._timeout_s)
            except (OSError, ValueError) as exc:  # unreachable, timed out, bad address
                self._failed(f"{exc}")
                continue
            if 200 <= status < 300:
                with self._lock:
                    self.stats.sent += 1
            else:
                self._failed(f"HTTP {status}")

    def _failed(self, error: str) -> None:
        with self._lock:
            self.stats.failed += 1
            self.stats.last_error = error
        log.warning("could not post the alert to the webhook: %s", error)

    def close(self, timeout: float = 1.0) -> None:
        """Stop after the alerts already queued (waiting at most ``timeout``)."""
        self._closed = True
        thread = self._thread
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        thread.join(timeout)

    def follow(self, service: DitherService) -> Callable[[], None]:
        """Post every alert the service raises; returns the unsubscribe function."""

        def on_event(event: ServiceEvent) -> None:
            if isinstance(event, Notice) and event.level is Level.ALERT:
                self.alert(event.message, event.wall_time)

        return service.subscribe(on_event)


def describe(stats: WebhookStats) -> dict[str, Any]:
    return {
        "sent": stats.sent,
        "failed": stats.failed,
        "dropped": stats.dropped,
        "last_error": stats.last_error,
    }
