"""The alert webhook against a real local HTTP server: a small JSON body per alert, posted
off the loop, never blocking, and a webhook that fails or hangs costs nothing."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ditherapp.core import machine as m
from ditherapp.core.settings import DitherSettings, SettingError
from ditherapp.net.alerts import WebhookAlerts
from ditherapp.net.service import DitherService


class Receiver:
    """A local HTTP server that records every POST; it can be told to hold requests."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.status = status
        self.release = threading.Event()
        self.release.set()
        self.arrived = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with receiver.arrived:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers))
                    receiver.arrived.notify_all()
                receiver.release.wait(10)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ditherapp"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout), (
                f"{len(self.bodies)} of {count} posts arrived"
            )
            return list(self.bodies)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_alert_is_posted_as_a_small_json_body(receiver: Receiver) -> None:
    hook = WebhookAlerts(lambda: receiver.url)
    try:
        assert hook.alert("frame guard let go after 15 min", 1_764_000_000.0)
        (body,) = receiver.wait(1)
        assert body["app"] == "ditherapp"
        assert body["level"] == "alert"
        assert body["message"] == "frame guard let go after 15 min"
        assert body["time"].startswith("2025-11-2")
        assert receiver.headers[0]["Content-Type"] == "application/json"
        wait_for(lambda: hook.stats.sent == 1)
    finally:
        hook.close()


def test_a_hanging_webhook_never_blocks_the_caller(receiver: Receiver) -> None:
    receiver.release.clear()  # the server holds every request until told
    hook = WebhookAlerts(lambda: receiver.url, max_pending=3)
    try:
        assert hook.alert("one", 0.0)
        receiver.wait(1)  # the first is being posted and held by the server ...
        queued = [hook.alert(f"more {i}", 0.0) for i in range(5)]
        # ... and the caller went on: three queued, the rest dropped and counted.
        assert queued == [True, True, True, False, False]
        assert hook.stats.dropped == 2
        receiver.release.set()
        assert [b["message"] for b in receiver.wait(4)] == ["one", "more 0", "more 1", "more 2"]
    finally:
        hook.close()


def test_no_url_means_no_post_and_a_changed_url_is_used_at_once(receiver: Receiver) -> None:
    settings = {"url": ""}
    hook = WebhookAlerts(lambda: settings["url"])
    try:
        assert not hook.alert("nobody listens", 0.0)
        settings["url"] = receiver.url
        assert hook.alert("now someone does", 0.0)
        assert receiver.wait(1)[0]["message"] == "now someone does"
    finally:
        hook.close()


def test_a_failing_or_unreachable_webhook_is_counted_not_raised(receiver: Receiver) -> None:
    receiver.status = 500
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    urls = [receiver.url]
    hook = WebhookAlerts(lambda: urls[0], timeout_s=2.0)
    try:
        assert hook.alert("server error", 0.0)
        wait_for(lambda: hook.stats.failed == 1)
        assert hook.stats.last_error == "HTTP 500"
        urls[0] = dead
        assert hook.alert("nobody there", 0.0)
        wait_for(lambda: hook.stats.failed == 2)
        assert hook.stats.sent == 0
    finally:
        hook.close()


@pytest.fixture
def service(app_parts) -> DitherService:
    service, _, _ = app_parts
    return service


async def test_service_alerts_are_posted_and_other_notices_are_not(
    service: DitherService, receiver: Receiver
) -> None:
    service.set_setting("alerturl", receiver.url)
    hook = WebhookAlerts(lambda: service.settings.alerturl)
    unsubscribe = hook.follow(service)
    try:
        service._notice(m.Level.INFO, "camera connected")
        service._notice(m.Level.ALERT, "lost the connection to PHD2")
        (body,) = receiver.wait(1)
        assert body["message"] == "lost the connection to PHD2"
    finally:
        unsubscribe()
        hook.close()


@pytest.mark.parametrize("bad", ["ftp://example.org/x", "example.org", "http://", "http://a b"])
def test_an_alerturl_that_is_not_a_web_address_is_refused_with_the_reason(bad: str) -> None:
    with pytest.raises(SettingError, match="alerturl"):
        DitherSettings().with_value("alerturl", bad)
    assert DitherSettings().with_value("alerturl", " https://ntfy.sh/my-scope ").alerturl == (
        "https://ntfy.sh/my-scope"
    )
