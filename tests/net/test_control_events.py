"""Event lines for subscribed controllers: built only when someone is subscribed, the
same content and order as ever, and who is subscribed never goes stale."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

from ditherapp.core.phd2 import events as ev
from ditherapp.net import control_server
from ditherapp.net.service import Phd2EventSeen

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "data" / "transcripts"


def transcript_events() -> list[ev.Phd2Event]:
    """Every event PHD2 sent in the recorded transcripts, parsed."""
    found: list[ev.Phd2Event] = []
    for path in sorted(TRANSCRIPTS.glob("*.jsonl")):
        for text in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(text)
            if record.get("dir") != "S->C":
                continue
            for line in record.get("raw", "").split("\r\n"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue  # empty, or a line the transcript cut in two
                if isinstance(obj, dict) and "Event" in obj:
                    found.append(ev.parse_event(obj))
    return found


def reference_fields(event: ev.Phd2Event) -> dict[str, Any]:
    """What a phd2 event line carried before the field list was cached."""
    out: dict[str, Any] = {"name": getattr(event, "name", None) or event.NAME}
    if isinstance(event, ev.GuideParamChange):  # its Name is the parameter's
        out = {"name": "GuideParamChange", "param": event.name}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name in ("raw", "host", "inst", "name") or value is None:
            continue
        key = "level" if f.name == "type" else f.name  # Alert's Type: "type" is the line's
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def step(frame: int) -> ev.GuideStep:
    return ev.GuideStep(
        frame=frame,
        time=frame * 2.0,
        mount="Mount",
        dx=0.25,
        dy=-0.5,
        ra_distance_raw=0.3,
        dec_distance_raw=-0.1,
        pos=(512.0, 384.5),
        snr=42.0,
        host="vm",
        inst=1,
    )


def test_phd2_event_lines_keep_every_field_in_order() -> None:
    seen = [
        *transcript_events(),
        ev.GuideParamChange(name="Exposure", value=2000),
        ev.GuideParamChange(value=3),
        ev.UnknownEvent(name="SomethingNew", raw={"Event": "SomethingNew", "X": 1}),
        ev.Alert(msg="Dark library is out of date", type="info"),
        step(7),
    ]
    kinds = {type(e) for e in seen}
    assert {ev.GuideStep, ev.SettleDone, ev.AppState, ev.UnknownEvent} <= kinds
    for event in seen * 2:  # the second time from the cached field list
        message = control_server._event_message(Phd2EventSeen(event=event))
        expected = {"type": "event", "event": "phd2", **reference_fields(event)}
        assert message is not None
        assert list(message.items()) == list(expected.items())


def test_a_guide_parameter_change_keeps_its_event_name() -> None:
    message = control_server._event_message(
        Phd2EventSeen(event=ev.GuideParamChange(name="Exposure", value=2000))
    )
    assert message is not None
    assert message["name"] == "GuideParamChange"
    assert message["param"] == "Exposure"
    assert message["value"] == 2000


def test_a_phd2_alert_line_is_still_an_event_line() -> None:
    """PHD2's Alert has a Type of its own; it must not replace the line's "type"."""
    message = control_server._event_message(
        Phd2EventSeen(event=ev.Alert(msg="Star lost - low SNR", type="warning"))
    )
    assert message is not None
    assert message["type"] == "event"
    assert message["event"] == "phd2"
    assert message["name"] == "Alert"
    assert message["level"] == "warning"
    assert message["msg"] == "Star lost - low SNR"


def test_a_guide_step_line_as_a_controller_reads_it() -> None:
    message = control_server._event_message(Phd2EventSeen(event=step(7)))
    assert message is not None
    assert control_server.proto.encode(message) == (
        b'{"type":"event","event":"phd2","name":"GuideStep","frame":7,"time":14,'
        b'"mount":"Mount","dx":0.25,"dy":-0.5,"ra_distance_raw":0.3,"dec_distance_raw":-0.1,'
        b'"pos":[512,384.5],"snr":42}\n'
    )


def test_no_line_is_built_without_a_subscriber(app_parts, monkeypatch) -> None:
    _, server, guider = app_parts
    built: list[object] = []
    monkeypatch.setattr(control_server, "_event_message", built.append)
    guider.emit(step(1))
    assert server.clients == 0
    assert built == []


async def wait_for(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def next_phd2(client: Any) -> dict[str, Any]:
    while True:
        event = await client.recv_type("event")
        if event.get("event") == "phd2":
            return event


async def test_events_reach_a_subscriber_after_another_left(client_factory, app_parts) -> None:
    _, server, guider = app_parts
    stays = await client_factory()
    assert (await stays.call({"type": "subscribe"}))["type"] == "ok"
    leaves = await client_factory()
    assert (await leaves.call({"type": "subscribe"}))["type"] == "ok"
    guider.emit(step(1))
    first = await next_phd2(stays)
    assert first == await next_phd2(leaves)  # one line, the same for both
    assert first["frame"] == 1
    await leaves.close()
    await wait_for(lambda: server.clients == 1)
    for frame in (2, 3, 4):
        guider.emit(step(frame))
    assert [(await next_phd2(stays))["frame"] for _ in range(3)] == [2, 3, 4]


async def test_a_controller_subscribing_mid_stream_starts_receiving(
    client_factory, app_parts
) -> None:
    _, server, guider = app_parts
    camera = await client_factory()
    await camera.call({"type": "hello", "role": "camera", "name": "A"})
    gone = await client_factory()
    assert (await gone.call({"type": "subscribe"}))["type"] == "ok"
    guider.emit(step(1))
    assert (await next_phd2(gone))["frame"] == 1
    await gone.close()
    await wait_for(lambda: server.clients == 1)
    guider.emit(step(2))  # nobody subscribed: goes to nobody
    late = await client_factory()
    assert (await late.call({"type": "hello", "role": "controller"}))["type"] == "welcome"
    guider.emit(step(3))  # connected, not yet subscribed
    assert (await late.call({"type": "subscribe"}))["type"] == "ok"
    for frame in (4, 5):
        guider.emit(step(frame))
    assert [(await next_phd2(late))["frame"] for _ in range(2)] == [4, 5]
    again = await client_factory()
    assert (await again.call({"type": "subscribe"}))["type"] == "ok"
    guider.emit(step(6))
    assert (await next_phd2(late))["frame"] == 6
    assert (await next_phd2(again))["frame"] == 6
