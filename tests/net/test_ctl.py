"""ditherctl as a user runs it: its output, and a non-zero exit with a one-line reason
on error."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re

import pytest

from ditherapp.net import ctl


async def run_ctl(port: int, *argv: str) -> tuple[int, str, str]:
    def go() -> tuple[int, str, str]:
        import contextlib

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = ctl.main(["--port", str(port), *argv])
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(go)


@pytest.fixture
def port(app_parts) -> int:
    return app_parts[1].port


async def test_get_one_and_all(port) -> None:
    assert await run_ctl(port, "get", "ditherevery") == (0, "10\n", "")
    code, out, _ = await run_ctl(port, "get")
    assert code == 0
    assert "ditherevery = 10" in out.splitlines()
    assert "waitfornextframe = true" in out.splitlines()
    assert any(line.startswith("ditherstring = {") for line in out.splitlines())


async def test_set_changes_the_setting(port, app_parts) -> None:
    service = app_parts[0]
    assert await run_ctl(port, "set", "settlemax", "120") == (0, "settlemax = 120\n", "")
    assert service.settings.settlemax == 120


async def test_bad_value_is_a_one_line_reason_and_exit_1(port) -> None:
    code, out, err = await run_ctl(port, "set", "ditherevery", "0")
    assert code == 1
    assert out == ""
    assert err == "ditherctl: ditherevery must be a whole number from 1 to 1000\n"


async def test_status_reads_like_a_dashboard(port, client_factory) -> None:
    cam = await client_factory()
    await cam.call({"type": "hello", "role": "camera", "name": "ASI294"})
    code, out, _ = await run_ctl(port, "status")
    assert code == 0
    assert "via event backend: connected; state Guiding" in out
    assert "camera     cam-1 'ASI294'" in out
    code, out, _ = await run_ctl(port, "--json", "status")
    assert json.loads(out)["phd2"]["backend"] == "event"


async def test_dither_and_refusal(port, app_parts) -> None:
    from ditherapp.core.phd2.appstate import Phd2State

    assert await run_ctl(port, "dither") == (0, "dither started\n", "")
    _, _, guider = app_parts
    guider.set_status(state=Phd2State.PAUSED)
    code, _, err = await run_ctl(port, "dither")
    assert code == 1
    assert err.strip() in (
        "ditherctl: PHD2 is paused",
        "ditherctl: a dither cycle is already running (resuming)",
    )


async def test_enable_disable(port, app_parts) -> None:
    assert await run_ctl(port, "disable") == (0, "dithering disabled\n", "")
    assert app_parts[0].settings.enabled is False
    assert await run_ctl(port, "enable") == (0, "dithering enabled\n", "")
    assert app_parts[0].settings.enabled is True


async def test_unreachable_app_exits_2() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    code, out, err = await run_ctl(free, "status")
    assert code == 2
    assert out == ""
    assert err.startswith(f"ditherctl: cannot reach ditherapp at 127.0.0.1:{free}")
    assert err.count("\n") == 1


async def test_watch_follows_events(port, app_parts) -> None:
    service, server, _ = app_parts
    lines: list[str] = []

    def watch() -> None:
        client = ctl.ControlClient("127.0.0.1", port, "", 5.0)
        try:
            client.call({"type": "subscribe"})
            for message in client.messages():
                if message.get("type") == "event" and message.get("event") == "setting":
                    lines.append(ctl._describe(message))
                    return
        finally:
            client.close()

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    async with asyncio.timeout(5):
        while not any(session.subscribed for session in server._sessions):
            await asyncio.sleep(0.01)
        service.set_setting("ditherevery", 7)
        await watcher
    assert lines == ["setting ditherevery = 7"]


@pytest.mark.parametrize("value", ["-inf", "-5", "-0.0"])
async def test_a_value_that_starts_with_a_dash_is_sent_as_a_value(port, app_parts, value) -> None:
    # argparse took "-inf" for an unknown option and never asked the app.
    code, out, err = await run_ctl(port, "set", "maxpixels", value)
    if value == "-0.0":
        assert (code, out, err) == (0, "maxpixels = 0\n", "")
        return
    assert code == 1
    assert out == ""
    assert err == "ditherctl: maxpixels must be a number from 0 to 100\n"
    assert app_parts[0].settings.maxpixels == 10.0


async def test_set_over_the_socket_cannot_change_who_may_connect(port, app_parts) -> None:
    code, _, err = await run_ctl(port, "set", "controlhost", "0.0.0.0")
    assert code == 1
    assert "cannot be changed over it" in err
    assert app_parts[0].settings.controlhost == "127.0.0.1"


async def test_status_before_any_dither_says_there_was_none(port) -> None:
    code, out, _ = await run_ctl(port, "status")
    assert code == 0
    (line,) = [x for x in out.splitlines() if x.startswith("dithers")]
    assert line == "dithers    no dither yet"


async def test_an_unknown_setting_is_answered_with_the_names(port) -> None:
    code, out, err = await run_ctl(port, "set", "ditherEvry", "5")
    assert code == 1
    assert out == ""
    assert err.startswith("ditherctl: unknown setting 'ditherevry' (did you mean ditherevery?)")
    assert "settletarget, settledelay, settlemax" in err
    assert err.count("\n") == 1


def test_set_help_lists_every_setting_it_can_change(capsys) -> None:
    from ditherapp.core.settings import SPECS

    with pytest.raises(SystemExit) as exited:
        ctl.main(["set", "-h"])
    assert exited.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for spec in SPECS:
        if spec.remote:
            assert f"  {spec.name:<16}  {spec.range_text()}" in lines
    assert any(x.startswith("not changeable here: alerturl, controlhost") for x in lines)


class _StopWatchingError(Exception):
    pass


class _Screen(io.StringIO):
    """What ``watch`` printed; ends the watch once a line containing ``until`` is out."""

    def __init__(self, until: str) -> None:
        super().__init__()
        self.until = until

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.until in text:
            raise _StopWatchingError
        return n


async def test_watch_tells_each_outcome_once_with_times_a_person_reads(port, app_parts) -> None:
    from ditherapp.core.dither import DitherOutcome, OutcomeKind
    from ditherapp.sim.camera_agent import SimCamera

    service, _, guider = app_parts
    for name, value in (("ditherevery", 1), ("settledelay", 0), ("settlemax", 5)):
        service.set_setting(name, value)
    guider.auto_settle = False
    screen = _Screen(until=" cost:")
    args = ctl.build_parser().parse_args(["--port", str(port), "watch"])

    def watch() -> None:
        with contextlib.suppress(_StopWatchingError):
            ctl.run(args, screen)

    watcher = asyncio.create_task(asyncio.to_thread(watch))
    camera = SimCamera(name="ASI2600MM", exposure_s=0.2, port=port, reconnect_s=0.1)
    exposing = asyncio.create_task(camera.run())
    try:
        async with asyncio.timeout(15):
            while not guider.requests:
                await asyncio.sleep(0.01)
            await guider.outcomes.put(
                DitherOutcome(kind=OutcomeKind.SETTLED, settle_s=2.34259715099995)
            )
            await watcher
    finally:
        camera.stop()
        await exposing
    lines = [x for x in screen.getvalue().splitlines() if "dither 1" in x]
    assert len(lines) == 2, lines
    outcome, cost = lines
    assert outcome.startswith("[info] dither 1")
    assert cost.startswith("dither 1 cost: settle 2.3 s, cameras paused ")
    assert "settled" not in cost, "the outcome is told once, by the notice"
    assert re.search(r"paused \d+\.\d s", cost), cost


async def test_a_reader_that_stops_reading_ends_ditherctl_quietly(port) -> None:
    """``ditherctl status | head -1``: head exits after one line; no traceback follows."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before ditherctl writes a byte
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "ditherapp.net.ctl", "--port", str(port), "status"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr.decode() == ""
    assert done.returncode == 0
