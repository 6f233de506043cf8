"""ditherctl as a user runs it: its output, and a non-zero exit with a one-line reason
on error."""

from __future__ import annotations

import asyncio
import io
import json

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
