"""Arbitrary bytes and JSON at the control socket: no crash, and everyone else is still
served."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditherapp.core.settings import DitherSettings
from ditherapp.net.control_server import ControlServer
from ditherapp.net.service import DitherService

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
message_types = st.sampled_from(
    [
        "hello",
        "frame",
        "capture",
        "paused",
        "ack",
        "heartbeat",
        "get",
        "set",
        "status",
        "dither_now",
        "subscribe",
        "ping",
        "enable",
        "disable",
        "x",
    ]
)
messages = st.fixed_dictionaries(
    {"type": message_types},
    optional={
        "name": json_values,
        "value": json_values,
        "role": st.sampled_from(["camera", "controller"]) | json_values,
        "saved": json_values,
        "exposure_s": json_values,
        "id": json_values,
        "paused": json_values,
        "by": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=2048),
    st.lists(messages, max_size=6).map(
        lambda ms: b"".join(json.dumps(m).encode() + b"\n" for m in ms)
    ),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda v: json.dumps({"op": "set", "cmd": "ditherevery", "value": v}).encode(), json_values
    ),
)


class _Guider:
    backend = "event"

    def __init__(self) -> None:
        from ditherapp.net.phd2_client import LinkStatus

        self.status = LinkStatus(host="127.0.0.1", port=1)

    def add_event_listener(self, cb: Any) -> Any:
        return lambda: None

    def add_link_listener(self, cb: Any) -> Any:
        return lambda: None

    async def run(self) -> None:
        await asyncio.Event().wait()

    def reconnect_now(self) -> None:
        pass

    def prepare(self) -> None:
        pass

    async def dither(self, request: Any, on_settle_started: Any) -> Any:
        raise AssertionError("not guiding; never called")


async def _round(payloads_in: list[bytes]) -> None:
    service = DitherService(settings=DitherSettings(), guider=_Guider())
    server = ControlServer(service, host="127.0.0.1", port=0, first_message_timeout_s=2.0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b'{"type":"hello","role":"controller"}\n')
        async with asyncio.timeout(5):
            await reader.readline()
        fuzzers = []
        for data in payloads_in:
            _, w = await asyncio.open_connection("127.0.0.1", server.port)
            w.write(data)
            fuzzers.append(w)
        await asyncio.gather(*(w.drain() for w in fuzzers), return_exceptions=True)
        # The well-behaved client is still served, promptly.
        writer.write(b'{"type":"get","name":"ditherevery"}\n')
        async with asyncio.timeout(5):
            reply = json.loads(await reader.readline())
        assert reply["type"] == "value"
        assert 1 <= reply["value"] <= 1000
        for w in fuzzers:
            w.close()
        writer.close()
        # And a new client can still connect.
        r2, w2 = await asyncio.open_connection("127.0.0.1", server.port)
        w2.write(b'{"type":"status"}\n')
        async with asyncio.timeout(5):
            assert json.loads(await r2.readline())["type"] == "status"
        w2.close()
    finally:
        await server.close()
        service.shutdown()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(payloads, min_size=1, max_size=4))
def test_arbitrary_input_never_hurts_other_clients(payloads_in: list[bytes]) -> None:
    asyncio.run(_round(payloads_in))
