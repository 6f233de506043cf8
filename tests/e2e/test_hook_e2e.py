"""End to end with the real hook script: the script runs in a fake SharpCap (the way
SharpCap runs it) against ``ditherapp --headless --simulate --sim-cameras 0``.

The dither windows are taken from the app's own event stream (GuidingDithered to
SettleDone, timestamped as they arrive), the exposures from the fake camera.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ditherapp.sim.fake_sharpcap import FakeCamera, FakeSharpCap, run_hook_script

DITHER_EVERY = 3
FRAMES = 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def headless_simulate(tmp_path: Path) -> Iterator[int]:
    port = free_port()
    args = [
        sys.executable, "-m", "ditherapp", "--headless", "--simulate", "--sim-cameras", "0",
        "--sim-time-scale", "10", "--control-port", str(port),
        "--settings", str(tmp_path / "settings.ini"), "--ledger", str(tmp_path / "ledger.jsonl"),
        "--set", f"ditherevery={DITHER_EVERY}", "--set", "settledelay=1",
        "--set", "settlemax=20", "--set", "maxpixels=2",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "ditherapp did not start"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if os.environ.get("DITHERAPP_E2E_LOG"):
            sys.stderr.write(out.decode(errors="replace"))


class DitherWindows:
    """Subscribes to the app's events; records (start, end) of every dither."""

    def __init__(self, port: int) -> None:
        self.windows: list[tuple[float, float | None]] = []
        self._sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self._sock.sendall(b'{"type":"subscribe"}\n')
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        self._sock.settimeout(None)
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(65536):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._on(json.loads(line), time.monotonic())

    def _on(self, msg: dict, now: float) -> None:
        if msg.get("event") != "phd2":
            return
        if msg.get("name") == "GuidingDithered":
            self.windows.append((now, None))
        elif msg.get("name") == "SettleDone" and self.windows and self.windows[-1][1] is None:
            self.windows[-1] = (self.windows[-1][0], now)

    def close(self) -> None:
        self._sock.close()


@pytest.mark.timeout(180)
def test_real_hook_dithers_every_third_frame_without_saving_during_a_dither(
    tmp_path: Path,
) -> None:
    camera = FakeCamera("ASI2600MM", exposure_s=0.3)
    sharpcap = FakeSharpCap(camera)
    with headless_simulate(tmp_path) as port:
        windows = DitherWindows(port)
        scope = run_hook_script(sharpcap, settings={"APP_PORT": port})
        try:
            camera.start()
            camera.PrepareToCapture()
            camera.RunCapture()
            wait_until(
                lambda: sum(e.saved for e in camera.frames()) >= FRAMES,
                timeout=120,
                what=f"{FRAMES} saved frames",
            )
        finally:
            camera.stop()
            scope["DITHERAPP_HOOK"].shutdown()
            windows.close()
    done = [(s, e) for s, e in windows.windows if e is not None]
    saved = [e for e in camera.frames() if e.saved]
    assert len(done) >= FRAMES // DITHER_EVERY - 1
    for exposure in saved:
        for start, end in done:
            assert not (exposure.start < end and start < exposure.end), (
                f"saved frame {exposure.index} overlapped a dither"
            )
    # A dither follows every third saved frame.
    first_end = done[0][1]
    assert sum(1 for e in saved if e.end <= done[0][0]) == DITHER_EVERY
    for (_, prev_end), (next_start, _) in itertools.pairwise(done):
        between = [e for e in saved if prev_end <= e.start and e.end <= next_start]
        assert len(between) == DITHER_EVERY
    assert first_end is not None
    assert not camera.Paused, "the camera was left paused"
