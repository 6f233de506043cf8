"""Cost of the SharpCap hook's FrameCaptured handler, per call.

SharpCap runs the handler on its capture path, so it must stay tiny. This runs the
real hook script against the fake SharpCap, takes the handler it attached, and
times 100k calls one by one, in two situations: connected to an app that reads
everything (the I/O thread drains the outbox concurrently), and with no app (the
outbox fills to its bound and drops the oldest). A call to an empty function of
the same shape is timed too: that is the timer's own floor.

Run from the repository root: .venv/bin/python -m bench.hook_handler [calls]
CPython numbers; IronPython on .NET will differ (no GIL, JIT), so treat them as a
bound on the work done, not as SharpCap's timing.
"""

from __future__ import annotations

import io
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from typing import Any

from ditherapp.sim.fake_sharpcap import (
    FakeCamera,
    FakeFrame,
    FakeSharpCap,
    FrameEventArgs,
    hook_threads,
    run_hook_script,
)

CALLS = 100_000


@contextmanager
def draining_app() -> Iterator[int]:
    """A server that accepts agents and reads (and drops) whatever they send."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def drain(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)
            while not stop.is_set():
                try:
                    if not conn.recv(1 << 16):
                        return
                except TimeoutError:
                    continue
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        acceptor.join(2)
        server.close()


def time_calls(handler: Callable[[Any, Any], object], sender: object, calls: int) -> list[float]:
    args = FrameEventArgs(FakeFrame(1))
    clock = time.perf_counter_ns
    samples = [0] * calls
    for i in range(calls):
        start = clock()
        handler(sender, args)
        samples[i] = clock() - start
    return [ns / 1000.0 for ns in samples]


def percentile(sorted_us: list[float], fraction: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(fraction * len(sorted_us)))]


def measure(port: int, calls: int, *, connected: bool) -> list[float]:
    camera = FakeCamera("Bench Camera", exposure_s=1.0)
    camera.RunCapture()
    sharpcap = FakeSharpCap(camera)
    scope = run_hook_script(sharpcap, settings={"APP_PORT": port, "NOTIFY": False})
    hook = scope["DITHERAPP_HOOK"]
    try:
        deadline = time.monotonic() + 5
        while connected and "connected as" not in hook.status() and time.monotonic() < deadline:
            time.sleep(0.01)
        [handler] = camera.FrameCaptured.handlers
        time_calls(handler, camera, 1000)  # warm up
        return time_calls(handler, camera, calls)
    finally:
        hook.shutdown()
        delattr(sys, scope["REGISTRY_ATTR"])


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    return (
        f"{name:<28} {percentile(ordered, 0.50):>8.2f} {percentile(ordered, 0.99):>8.2f}"
        f" {ordered[-1]:>9.1f} {statistics.fmean(samples):>8.2f}"
    )


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else CALLS

    def empty(sender: object, args: object) -> None:
        pass

    rows = [row("empty function (floor)", time_calls(empty, None, calls))]
    with redirect_stdout(io.StringIO()):  # the hook's own log lines
        with draining_app() as port:
            rows.append(row("handler, app connected", measure(port, calls, connected=True)))
        rows.append(row("handler, no app", measure(1, calls, connected=False)))
    leftover = list(hook_threads())
    print(f"FrameCaptured handler, {calls} calls each, microseconds per call")
    print(f"{sys.implementation.name} {sys.version.split()[0]} on {sys.platform}")
    print(f"{'case':<28} {'p50':>8} {'p99':>8} {'max':>9} {'mean':>8}")
    print("\n".join(rows))
    if leftover:
        print(f"warning: hook threads still alive: {[t.name for t in leftover]}")


if __name__ == "__main__":
    main()
