"""A fake ditherapp (the app side of PROTOCOL.md, camera part) and a fake SharpCap world.

The hook script is executed for real, the way SharpCap runs it, against these.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ditherapp.core.lines import LineBuffer
from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap, hook_threads, run_hook_script

Message = dict[str, Any]
WAIT_S = 5.0


def wait_until(condition: Callable[[], object], timeout: float = WAIT_S, what: str = "") -> None:
    """Poll ``condition`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(0.01)


class AppConnection:
    """One accepted agent connection: records every line the agent sends."""

    def __init__(self, sock: socket.socket, app: FakeApp) -> None:
        self._sock = sock
        self._app = app
        self._cond = threading.Condition()
        self.messages: list[Message] = []
        self.received_at: list[float] = []
        self.eof = threading.Event()
        self._thread = threading.Thread(target=self._read, name="fake-app-conn", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = LineBuffer(max_line=1 << 16)
        try:
            while data := self._sock.recv(65536):
                for line in buffer.feed(data):
                    self._received(json.loads(line))
        except OSError:
            pass
        finally:
            self.eof.set()
            with self._cond:
                self._cond.notify_all()

    def _received(self, msg: Message) -> None:
        with self._cond:
            self.messages.append(msg)
            self.received_at.append(time.monotonic())
            self._cond.notify_all()
        if msg.get("type") == "hello" and self._app.auto_welcome:
            if self._app.token is not None and msg.get("token") != self._app.token:
                self.send({"type": "error", "code": "unauthorized", "message": "bad token"})
                self.close()
            else:
                self.send({"type": "welcome", "proto": 1, "camera": "cam-1"})

    def send(self, msg: Message | str) -> None:
        line = msg if isinstance(msg, str) else json.dumps(msg)
        self._sock.sendall(line.encode() + b"\n")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def of_type(self, kind: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.get("type") == kind]

    def wait_for(
        self, predicate: Callable[[Message], bool], timeout: float = WAIT_S, start: int = 0
    ) -> Message:
        """The first message from index ``start`` on that matches; waits for it."""
        with self._cond:
            found: list[Message] = []

            def match() -> bool:
                found[:] = [m for m in self.messages[start:] if predicate(m)][:1]
                return bool(found)

            if not self._cond.wait_for(match, timeout):
                kinds = [m.get("type") for m in self.messages[start:]]
                pytest.fail(f"no matching message within {timeout} s; got {kinds}")
            return found[0]

    def wait_type(self, kind: str, timeout: float = WAIT_S, **fields: object) -> Message:
        return self.wait_for(
            lambda m: m.get("type") == kind and all(m.get(k) == v for k, v in fields.items()),
            timeout,
        )

    def mark(self) -> int:
        """The index the next message will have (for ``wait_for(start=...)``)."""
        with self._cond:
            return len(self.messages)


class FakeApp:
    """A threaded TCP server on 127.0.0.1:0 that speaks the app side to camera agents."""

    def __init__(self, *, token: str | None = None, auto_welcome: bool = True) -> None:
        self.token = token
        self.auto_welcome = auto_welcome
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.1)
        self.port: int = self._server.getsockname()[1]
        self._cond = threading.Condition()
        self.connections: list[AppConnection] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fake-app", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connection = AppConnection(sock, self)
            with self._cond:
                self.connections.append(connection)
                self._cond.notify_all()

    def connection(self, number: int = 1, timeout: float = WAIT_S) -> AppConnection:
        """The ``number``-th connection (1-based), waiting for it to arrive."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.connections) >= number, timeout):
                pytest.fail(f"connection {number} did not arrive within {timeout} s")
            return self.connections[number - 1]

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5.0)
        self._server.close()
        for connection in self.connections:
            connection.close()


class HookWorld:
    """A fake SharpCap with one exposing camera, a fake app, and the hook runs made."""

    def __init__(self) -> None:
        self.app = FakeApp()
        self.camera = FakeCamera("ZWO ASI294MC Pro", exposure_s=0.1)
        self.sharpcap = FakeSharpCap(self.camera)
        self.scopes: list[dict[str, Any]] = []
        self.cameras = [self.camera]

    def settings(self, **overrides: object) -> dict[str, object]:
        settings: dict[str, object] = {
            "APP_PORT": self.app.port,
            "RECONNECT_MIN_S": 0.05,
            "RECONNECT_MAX_S": 0.2,
            "TICK_S": 0.05,
        }
        settings.update(overrides)
        return settings

    def run(self, scope: dict[str, Any] | None = None, **overrides: object) -> dict[str, Any]:
        """Run the hook script (again) with test-friendly settings."""
        scope = run_hook_script(self.sharpcap, settings=self.settings(**overrides), scope=scope)
        self.scopes.append(scope)
        return scope

    @property
    def hook(self) -> Any:
        return self.scopes[-1]["DITHERAPP_HOOK"]

    def new_camera(self, name: str, exposure_s: float = 0.1) -> FakeCamera:
        camera = FakeCamera(name, exposure_s=exposure_s)
        self.cameras.append(camera)
        return camera

    def close(self) -> None:
        for scope in self.scopes:
            hook = scope.get("DITHERAPP_HOOK")
            if hook is not None:
                hook.shutdown()
        registry_attr = self.scopes[0]["REGISTRY_ATTR"] if self.scopes else None
        if registry_attr and hasattr(sys, registry_attr):
            delattr(sys, registry_attr)
        for camera in self.cameras:
            camera.stop()
        self.app.close()


@pytest.fixture
def world() -> Iterator[HookWorld]:
    world = HookWorld()
    try:
        yield world
    finally:
        world.close()
    wait_until(lambda: not list(hook_threads()), what="the hook's threads to end")


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until
