"""Helpers the benchmarks share: the machine they ran on, percentiles, tables, and
``ditherapp --headless`` started as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path


def machine() -> str:
    """CPU model, cores, Python and the date, for RESULTS.md."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (
        f"{model}, {os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()} on {sys.platform}, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC{load}"
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def row(name: str, values: Sequence[float], scale: float = 1e3, width: int = 38) -> str:
    """p50, p99, max and mean of ``values`` (seconds), shown in ms by default."""
    if not values:
        return f"{name:<{width}} (no samples)"
    return (
        f"{name:<{width}} {len(values):>6} {percentile(values, 0.5) * scale:>9.2f}"
        f" {percentile(values, 0.99) * scale:>9.2f} {max(values) * scale:>9.2f}"
        f" {statistics.fmean(values) * scale:>9.2f}"
    )


def header(unit: str = "ms", width: int = 38) -> str:
    return f"{'':<{width}} {'n':>6} {'p50 ' + unit:>9} {'p99 ' + unit:>9} {'max':>9} {'mean':>9}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int | str = "self") -> int:
    """Resident memory (VmRSS) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.asynccontextmanager
async def headless_app(
    workdir: Path,
    phd2_port: int,
    legacy_port: int | None,
    *settings: str,
    window: bool = False,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """``ditherapp --headless`` (or with its window, offscreen) in its own process;
    yields it and its control port once the control socket accepts."""
    control_port = free_port()
    mode = [] if window else ["--headless"]
    args = [
        "-m", "ditherapp", *mode, "--log-level", os.environ.get("BENCH_APP_LOG", "WARNING"),
        "--settings", str(workdir / "settings.ini"), "--ledger", str(workdir / "ledger.jsonl"),
        "--phd2", "127.0.0.1", "--phd2-port", str(phd2_port),
        "--control-port", str(control_port),
    ]  # fmt: skip
    if legacy_port is not None:
        args += ["--phd2-legacy-port", str(legacy_port)]
    for setting in settings:
        args += ["--set", setting]
    if patch := os.environ.get("BENCH_APP_PATCH"):
        args = ["-m", "bench.patched_app", "--patch", patch, *args[2:]]
    if profile := os.environ.get("BENCH_APP_PROFILE"):
        args = ["-m", "cProfile", "-o", profile, *args]
    log = (workdir / "app.log").open("wb")
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.DEVNULL, stderr=log, env=env
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", control_port)
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    text = (workdir / "app.log").read_text(errors="replace")
                    raise RuntimeError(f"ditherapp did not start: {text}") from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                break
        yield proc, control_port
    finally:
        if proc.returncode is None:
            # the window closes on Ctrl+C (SIGINT) and shuts down cleanly; headless on SIGTERM
            proc.send_signal(signal.SIGINT if window else signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
