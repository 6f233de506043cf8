"""Settings are saved off the event loop: a burst is one write of the last value, within
a second, and nothing pending is lost on a clean stop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ditherapp.core.settings import DitherSettings
from ditherapp.net.settings_saver import COALESCE_S, SettingsSaver


class SlowFile:
    """A settings file on a slow disk: each write takes ``write_s`` of a thread."""

    def __init__(self, write_s: float = 0.0, fail: bool = False) -> None:
        self.write_s = write_s
        self.fail = fail
        self.written: list[DitherSettings] = []
        self.threads: set[int] = set()
        self.at: list[float] = []

    def __call__(self, settings: DitherSettings) -> None:
        self.threads.add(threading.get_ident())
        if self.write_s:
            time.sleep(self.write_s)  # blocking, as fsync is
        if self.fail:
            raise OSError("disk full")
        self.written.append(settings)
        self.at.append(time.monotonic())


async def wait_for(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def numbered(n: int) -> DitherSettings:
    return DitherSettings(ditherevery=n)


async def test_a_burst_is_one_write_of_the_last_value_within_a_second():
    file = SlowFile()
    saver = SettingsSaver(file)
    started = time.monotonic()
    for n in range(1, 1001):
        saver.submit(numbered(n))
    # The saver counts a write once its thread is back: wait for that, not for the file.
    await wait_for(lambda: saver.writes)
    assert file.at[0] - started < 1.0
    assert [s.ditherevery for s in file.written] == [1000]
    assert saver.writes == 1
    assert threading.get_ident() not in file.threads, "written off the event loop"


async def test_a_slow_disk_does_not_stall_the_loop():
    file = SlowFile(write_s=0.5)
    saver = SettingsSaver(file, delay_s=0.0)
    saver.submit(numbered(2))
    worst, last = 0.0, time.monotonic()
    while not file.written:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        worst, last = max(worst, now - last), now
    assert worst < 0.2, f"the loop stood still for {worst:.2f} s"


async def test_changes_during_a_write_are_written_after_it_last_value_wins():
    file = SlowFile(write_s=0.2)
    saver = SettingsSaver(file, delay_s=0.01)
    saver.submit(numbered(1))
    await wait_for(lambda: file.threads)  # the first write is under way
    for n in range(2, 50):
        saver.submit(numbered(n))
    await wait_for(lambda: len(file.written) == 2)
    assert [s.ditherevery for s in file.written] == [1, 49]


@pytest.mark.parametrize("writing", [False, True], ids=["waiting", "mid-write"])
async def test_a_clean_stop_writes_what_is_pending(writing):
    file = SlowFile(write_s=0.1)
    saver = SettingsSaver(file, delay_s=60.0 if not writing else 0.0)
    saver.submit(numbered(5))
    if writing:
        await wait_for(lambda: file.threads)
        saver.submit(numbered(6))  # comes while 5 is being written
    await saver.flush()
    assert file.written[-1].ditherevery == (6 if writing else 5)
    assert not saver.pending


async def test_a_failed_write_is_reported_and_later_saves_go_on():
    file = SlowFile(fail=True)
    said: list[str] = []
    saver = SettingsSaver(file, delay_s=0.0, on_error=said.append)
    saver.submit(numbered(3))
    await wait_for(lambda: said)
    assert said == ["could not save settings: disk full"]
    file.fail = False
    saver.submit(numbered(4))
    await wait_for(lambda: file.written)
    assert file.written[-1].ditherevery == 4


def test_the_coalescing_wait_keeps_the_promise_of_a_second():
    assert 0 < COALESCE_S <= 0.5
