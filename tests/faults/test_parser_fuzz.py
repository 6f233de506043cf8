"""Property tests for what comes off the wire, beyond tests/core's: real PHD2 lines from
the recorded transcripts, mutated byte by byte and field by field, through
``Phd2Connection.receive_data``; and the control protocol's decoder fed valid requests
mixed with broken lines, split at arbitrary points.

What a user would notice if these failed: a line mangled in transit stops the app from
reading PHD2 (a crash, or a stuck stream), or an event reaches the dither logic with a
field of the wrong type (a crash later, far from the cause)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ditherapp.core.control import ControlDecoder, Fault, LegacyRequest, Request
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.connection import Phd2Connection
from ditherapp.core.phd2.rpc import RpcError, RpcResult

TRANSCRIPTS = Path(__file__).resolve().parent.parent / "data" / "transcripts"
SETTLE_DONE = (
    b'{"Event":"SettleDone","Timestamp":1.5,"Host":"h","Inst":1,"Status":0,'
    b'"TotalFrames":6,"DroppedFrames":0}\r\n'
)


def real_lines() -> list[bytes]:
    """Every line a real PHD2 sent on its event server, without its CRLF."""
    lines = []
    for path in sorted(TRANSCRIPTS.glob("*.jsonl")):
        for text in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(text)
            raw = record.get("raw")
            if record.get("dir") == "S->C" and isinstance(raw, str) and raw[:1] in "{[":
                lines.extend(part for part in raw.encode().split(b"\r\n") if part)
    assert len(lines) > 400
    return lines


REAL_LINES = real_lines()
REAL_EVENTS = [
    obj for obj in (json.loads(line) for line in REAL_LINES) if isinstance(obj, dict)
    if "Event" in obj
]  # fmt: skip


def typed_correctly(event: ev.Phd2Event) -> list[str]:
    """Fields whose value does not match the event's own annotation."""
    wrong = []
    for f in dataclasses.fields(event):
        kind = str(f.type)
        value = getattr(event, f.name)
        if value is None:
            if "None" not in kind and "Any" not in kind:
                wrong.append(f"{f.name}=None")
            continue
        base = kind.replace(" | None", "")
        ok = {
            "bool": lambda v: isinstance(v, bool),
            "str": lambda v: isinstance(v, str),
            "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "float": lambda v: isinstance(v, float),
            "tuple[float, ...]": lambda v: (
                isinstance(v, tuple) and all(isinstance(x, float) for x in v)
            ),
        }.get(base, lambda v: True)
        if not ok(value):
            wrong.append(f"{f.name}={value!r} ({kind})")
    return wrong


def check_stream(conn: Phd2Connection, messages: list[Any]) -> None:
    for message in messages:
        if isinstance(message, ev.Phd2Event):
            assert not typed_correctly(message), (message, typed_correctly(message))
        else:
            assert isinstance(message, RpcResult | RpcError)


# ------------------------------------------------------------------ byte mutations


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    line = bytearray(draw(st.sampled_from(REAL_LINES)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "duplicate"]))
        at = draw(st.integers(0, max(0, len(line) - 1)))
        if kind == "flip" and line:
            line[at] = draw(st.integers(0, 255))
        elif kind == "delete":
            del line[at : at + draw(st.integers(1, 20))]
        elif kind == "insert":
            line[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "truncate":
            del line[at:]
        else:
            line[at:at] = line[at : at + draw(st.integers(1, 40))]
    return bytes(line)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(mutated_line(), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_mangled_real_lines_never_stop_the_stream_or_leak_a_mistyped_event(lines, cuts):
    conn = Phd2Connection()
    conn._pending.update(range(1, 40))
    data = b"\r\n".join(lines) + b"\r\n" + SETTLE_DONE
    messages: list[Any] = []
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        messages += conn.receive_data(data[previous:cut])
        previous = cut
    messages += conn.receive_data(data[previous:])
    check_stream(conn, messages)
    # Whatever the damage, the next good line arrives intact.
    assert isinstance(messages[-1], ev.SettleDone)
    assert messages[-1].total_frames == 6
    assert len(messages) - 1 + conn.bad_lines + conn.stray_replies <= data.count(b"\n") * 8


# ------------------------------------------------------------------ field mutations

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@st.composite
def mutated_event(draw: st.DrawFn) -> dict[str, Any]:
    event = dict(draw(st.sampled_from(REAL_EVENTS)))
    keys = sorted(event)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            event[key] = draw(json_values)
        else:
            event.pop(key, None)
    return event


@settings(max_examples=400, deadline=None)
@given(st.lists(mutated_event(), min_size=1, max_size=5))
def test_real_events_with_fields_of_any_type_are_typed_or_bad_lines(mutated):
    conn = Phd2Connection()
    for event in mutated:
        skipped = conn.bad_lines + conn.stray_replies
        messages = conn.receive_data(json.dumps(event).encode() + b"\r\n" + SETTLE_DONE)
        check_stream(conn, messages)
        assert isinstance(messages[-1], ev.SettleDone)
        if len(messages) == 2:
            parsed = messages[0]
            name = event["Event"]
            if isinstance(parsed, ev.UnknownEvent):
                assert name not in ev.EVENT_TYPES
                assert parsed.name == name
            else:
                assert name == parsed.NAME
        else:
            assert len(messages) == 1
            assert conn.bad_lines + conn.stray_replies == skipped + 1


# ------------------------------------------------------------------ the control decoder

requests = st.fixed_dictionaries(
    {"type": st.sampled_from(["status", "get", "set", "hello", "frame", "ack", "x"])},
    optional={"name": st.text(max_size=8), "value": json_values, "id": st.integers()},
)
broken_lines = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b and b'"op"' not in b),
    st.sampled_from([b"[]", b"null", b'{"no_type":1}', b'{"type":""}', b"{", b"\xff\xfe"]),
)


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.one_of(requests, broken_lines), max_size=12),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
    crlf=st.booleans(),
)
def test_every_line_gives_one_answer_however_the_bytes_are_split(items, cuts, crlf):
    end = b"\r\n" if crlf else b"\n"
    lines = [json.dumps(i).encode() if isinstance(i, dict) else i for i in items]
    data = b"".join(line + end for line in lines)
    whole = ControlDecoder().feed(data)
    decoder = ControlDecoder()
    split: list[Any] = []
    previous = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        split += decoder.feed(data[previous:cut])
        previous = cut
    split += decoder.feed(data[previous:])
    assert split == whole
    meaningful = [line for line in lines if line.strip()]
    assert len(whole) == len(meaningful)
    for item, line, source in zip(
        whole,
        meaningful,
        [i for i in items if not isinstance(i, bytes) or i.strip()],
        strict=True,
    ):
        assert not isinstance(item, LegacyRequest), line
        if isinstance(source, dict):
            assert item == Request(type=source["type"], body=source)
        else:
            assert isinstance(item, Fault | Request)
