"""The PHD2 event-server connection: everything real PHD2 sends parses, replies reach the
request that asked, and bad data from PHD2 (truncated, glued, not UTF-8) is skipped and
counted, never fatal."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ditherapp.core.dither import DitherRequest
from ditherapp.core.errors import LocalProtocolError
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.connection import Phd2Connection
from ditherapp.core.phd2.rpc import (
    INTERNAL_ERROR,
    MAX_REQUEST_BYTES,
    METHOD_NOT_FOUND,
    RpcError,
    RpcResult,
    encode_request,
)


def connection_with_pending(*ids: int) -> Phd2Connection:
    conn = Phd2Connection()
    for _ in range(max(ids, default=0)):
        conn.send_request("get_app_state")
    for request_id in set(range(1, max(ids, default=0) + 1)) - set(ids):
        conn.forget(request_id)
    assert conn.pending == frozenset(ids)
    return conn


def by_connection(transcripts) -> dict[tuple[str, str], list]:
    streams: dict[tuple[str, str], list] = defaultdict(list)
    for rec in transcripts:
        if rec.direction in ("S->C", "C->S"):
            streams[(rec.file, rec.conn)].append(rec)
    return streams


def request_ids(raw: str) -> list[int]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return []
    items = obj if isinstance(obj, list) else [obj]
    return [i["id"] for i in items if isinstance(i, dict) and type(i.get("id")) is int]


def replay(records, *, chunk: int | None = None):
    """Feed one recorded connection to a Phd2Connection, registering each request the
    client sent as pending, as send_request would."""
    conn = Phd2Connection()
    out = []
    for rec in records:
        if rec.direction == "C->S":
            conn._pending.update(request_ids(rec.raw))
            continue
        data = rec.raw.encode("utf-8")
        if chunk is None:
            out += conn.receive_data(data)
        else:
            for i in range(0, len(data), chunk):
                out += conn.receive_data(data[i : i + chunk])
    return conn, out


# ------------------------------------------------------------------ real PHD2 lines


def test_the_transcripts_are_there(transcripts):
    files = {rec.file for rec in transcripts}
    assert {"a-connect-initial", "c-dither-5px", "e-errors-and-misc"} <= files
    assert sum(rec.direction == "S->C" for rec in transcripts) > 400


def test_every_line_real_phd2_sent_parses_into_a_known_event_or_a_reply(transcripts):
    for (file, label), records in by_connection(transcripts).items():
        conn, messages = replay(records)
        where = f"{file} connection {label}"
        assert conn.bad_lines == 0, f"{where}: {conn.last_error}"
        unknown = [m for m in messages if isinstance(m, ev.UnknownEvent)]
        assert not [u.name for u in unknown if u.name in ev.EVENT_TYPES], where
        assert not unknown, f"{where}: PHD2 sent events we do not model: {unknown}"
        sent = [r for r in records if r.direction == "S->C"]
        assert len(messages) + conn.stray_replies >= len(sent), where


def test_every_event_name_in_the_transcripts_has_its_own_type(transcripts):
    names = set()
    for rec in transcripts:
        if rec.direction == "S->C":
            obj = json.loads(rec.raw, strict=False)
            names |= {i["Event"] for i in (obj if isinstance(obj, list) else [obj]) if "Event" in i}
    assert "SettleDone" in names
    for name in names:
        assert name in ev.EVENT_TYPES, name


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_transcripts_fed_in_pieces_give_the_same_messages(transcripts, chunk):
    for records in by_connection(transcripts).values():
        conn_whole, whole = replay(records)
        conn_split, split = replay(records, chunk=chunk)
        assert split == whole
        assert conn_split.bad_lines == conn_whole.bad_lines == 0


def test_a_whole_dither_from_a_real_phd2(transcripts):
    records = by_connection(transcripts)[("c-dither-5px", "A")]
    conn, messages = replay(records)
    kinds = [type(m).__name__ for m in messages if not isinstance(m, ev.GuideStep)]
    dither_at = kinds.index("GuidingDithered")
    # SettleBegin arrives before the reply to our dither request (research note §5).
    assert kinds[dither_at : dither_at + 3] == ["GuidingDithered", "SettleBegin", "RpcResult"]
    done = [m for m in messages if isinstance(m, ev.SettleDone)]
    assert len(done) == 1
    assert done[0].succeeded
    assert done[0].total_frames is not None
    assert done[0].total_frames > 0
    settling = [m for m in messages if isinstance(m, ev.Settling)]
    assert settling
    assert all(s.settle_time == 5.0 for s in settling)
    steps = [m for m in messages if isinstance(m, ev.GuideStep)]
    assert steps
    assert all(s.dec_distance_raw is not None for s in steps)
    assert conn.version is not None
    assert conn.overlap_support is True
    assert conn.pending == frozenset()


def test_the_error_transcript_replies_reach_their_requests(transcripts):
    records = by_connection(transcripts)[("e-errors-and-misc", "A")]
    conn, messages = replay(records)
    errors = {m.id: m for m in messages if isinstance(m, RpcError)}
    assert errors[9].code == METHOD_NOT_FOUND
    assert errors[15].message == "Cannot initiate dither while dither is in progress"
    assert errors[30].message == "Dither error"
    # The batch reply answers both requests in it.
    results = {m.id: m.result for m in messages if isinstance(m, RpcResult)}
    assert results[105] == "Guiding"
    assert results[106] == 1000
    # The reply to the string id "str-id-107" is not one of ours: counted, not delivered.
    assert conn.stray_replies == 1
    failed = [m for m in messages if isinstance(m, ev.SettleDone) and not m.succeeded]
    assert failed
    assert failed[0].error


# ------------------------------------------------------------------ replies and ids


def test_send_request_registers_the_id_and_its_reply_clears_it():
    conn = Phd2Connection()
    first, data1 = conn.send_request("get_app_state")
    second, _ = conn.send_request("get_exposure")
    assert data1 == b'{"method":"get_app_state","id":%d}\r\n' % first
    assert first != second
    assert conn.pending == {first, second}
    msgs = conn.receive_data(b'{"jsonrpc":"2.0","result":1000,"id":%d}\r\n' % second)
    assert msgs == [RpcResult(id=second, result=1000)]
    assert msgs[0].result == 1000
    assert conn.pending == {first}


def test_replies_out_of_order_each_reach_their_own_request():
    conn = connection_with_pending(1, 2, 3)
    msgs = conn.receive_data(
        b'{"jsonrpc":"2.0","result":"b","id":2}\r\n'
        b'{"jsonrpc":"2.0","error":{"code":1,"message":"x"},"id":3}\r\n'
        b'{"jsonrpc":"2.0","result":"a","id":1}\r\n'
    )
    assert [(type(m).__name__, m.id) for m in msgs] == [
        ("RpcResult", 2),
        ("RpcError", 3),
        ("RpcResult", 1),
    ]
    assert conn.pending == frozenset()


def test_an_id_null_error_is_the_only_pending_requests():
    conn = connection_with_pending(7)
    msgs = conn.receive_data(
        b'{"jsonrpc":"2.0","error":{"code":-32603,"message":"too big"},"id":null}\r\n'
    )
    assert msgs == [RpcError(id=7, code=INTERNAL_ERROR, message="too big")]
    assert conn.pending == frozenset()


def test_an_id_null_error_with_several_pending_is_not_pinned_on_any():
    conn = connection_with_pending(1, 2)
    msgs = conn.receive_data(
        b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"parse"},"id":null}\r\n'
    )
    assert msgs == [RpcError(id=None, code=-32700, message="parse")]
    assert conn.pending == {1, 2}


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","result":0,"id":99}\r\n',
        b'{"jsonrpc":"2.0","result":0,"id":"abc"}\r\n',
        b'{"jsonrpc":"2.0","result":0,"id":null}\r\n',
    ],
    ids=["unknown-id", "string-id", "null-id-result"],
)
def test_stray_replies_are_counted_not_delivered(line):
    conn = connection_with_pending(1)
    assert conn.receive_data(line) == []
    assert conn.stray_replies == 1
    assert conn.pending == {1}


def test_a_reply_after_the_caller_gave_up_is_stray():
    conn = Phd2Connection()
    request_id, _ = conn.send_request("dither", {"amount": 1})
    conn.forget(request_id)
    assert conn.receive_data(b'{"jsonrpc":"2.0","result":0,"id":%d}\n' % request_id) == []
    assert conn.stray_replies == 1


def test_a_batch_reply_answers_every_request_in_it():
    conn = connection_with_pending(1, 2)
    msgs = conn.receive_data(
        b'[{"jsonrpc":"2.0","result":"Guiding","id":1},{"jsonrpc":"2.0","result":1000,"id":2}]\r\n'
    )
    assert [(m.id, m.result) for m in msgs] == [(1, "Guiding"), (2, 1000)]
    assert conn.pending == frozenset()


def test_a_bad_element_in_a_batch_does_not_lose_the_good_replies():
    conn = connection_with_pending(1, 2)
    msgs = conn.receive_data(b'[{"jsonrpc":"2.0","result":"Guiding","id":1},42]\r\n')
    assert [(m.id, m.result) for m in msgs] == [(1, "Guiding")]
    assert conn.bad_lines == 1
    assert conn.pending == {2}


def test_connection_lost_fails_every_pending_request_and_forgets_partial_data():
    conn = connection_with_pending(1, 2)
    conn.receive_data(
        b'{"Event":"Version","PHDVersion":"2.6.13","OverlapSupport":true}\r\n{"jsonrpc"'
    )
    assert conn.overlap_support is True
    assert conn.connection_lost() == {1, 2}
    assert conn.pending == frozenset()
    assert conn.overlap_support is None
    assert conn.version is None
    # What was left of a line from the old connection does not glue onto the new one.
    assert conn.receive_data(b'{"Event":"Paused"}\r\n') == [ev.Paused()]
    assert conn.bad_lines == 0


# ------------------------------------------------------------------ bad data from PHD2

SETTLE_DONE = (
    b'{"Event":"SettleDone","Timestamp":1.5,"Host":"vm","Inst":1,"Status":0,'
    b'"TotalFrames":6,"DroppedFrames":0}\r\n'
)
GUIDE_STEP = (
    b'{"Event":"GuideStep","Frame":12,"Time":13.4,"Mount":"On Camera","dx":0.1,"dy":-0.2,'
    b'"RADistanceRaw":0.1,"DECDistanceRaw":-0.2,"RADistanceGuide":0.1,"DECDistanceGuide":0.0,'
    b'"StarMass":5000,"SNR":40.1,"HFD":2.1,"AvgDist":0.2}\r\n'
)


def test_a_truncated_line_glued_to_the_next_is_counted_and_the_following_line_parses():
    # PHD2 drops what a slow reader cannot take: a GuideStep cut short runs into the
    # next event on the same line. That line is lost; the one after it is not.
    truncated = GUIDE_STEP[:70]
    conn = Phd2Connection()
    msgs = conn.receive_data(truncated + SETTLE_DONE + b'{"Event":"Resumed"}\r\n')
    assert msgs == [ev.Resumed()]
    assert conn.bad_lines == 1
    assert conn.last_error is not None


@pytest.mark.parametrize("chunk", [1, 5, 1000])
def test_bad_lines_never_stop_the_stream(chunk):
    data = (
        b"garbage that is not json\r\n"
        + GUIDE_STEP[:40]
        + b"\r\n"
        + b"\xff\xfe not utf-8 \xc3\x28\r\n"
        + b"[1,2,3]\r\n"
        + b'{"Event":"SettleDone"}\r\n'  # a known event without its required Status
        + b'{"Event":"Settling","Distance":"far","Time":1,"SettleTime":5}\r\n'
        + b'{"jsonrpc":"2.0"}\r\n'
        + b"\r\n"
        + SETTLE_DONE
    )
    conn = Phd2Connection()
    msgs = []
    for i in range(0, len(data), chunk):
        msgs += conn.receive_data(data[i : i + chunk])
    assert [type(m) for m in msgs] == [ev.SettleDone]
    assert msgs[0].total_frames == 6
    assert conn.bad_lines == 7


def test_a_line_that_is_not_utf8_is_skipped_and_counted():
    conn = Phd2Connection()
    msgs = conn.receive_data(b'{"Event":"Alert","Msg":"caf\xe9"}\r\n' + SETTLE_DONE)
    assert [type(m) for m in msgs] == [ev.SettleDone]
    assert conn.bad_lines == 1
    assert conn.last_error is not None
    assert "utf-8" in conn.last_error


def test_control_characters_inside_strings_are_accepted():
    # PHD2 escapes only backslash, quote, CR and LF: a TAB goes out raw.
    line = b'{"Event":"Alert","Msg":"star\tlost\x01","Type":"warning"}\r\n'
    conn = Phd2Connection()
    assert conn.receive_data(line) == [ev.Alert(msg="star\tlost\x01", type="warning")]
    assert conn.bad_lines == 0


def test_an_event_we_do_not_know_is_kept_not_fatal():
    conn = Phd2Connection()
    (msg,) = conn.receive_data(b'{"Event":"MultiStarReport","Timestamp":1.25,"Stars":[1,2]}\r\n')
    assert isinstance(msg, ev.UnknownEvent)
    assert msg.name == "MultiStarReport"
    assert msg.raw["Stars"] == [1, 2]
    assert msg.timestamp == 1.25
    assert conn.bad_lines == 0


def test_optional_fields_missing_and_unknown_fields_present():
    conn = Phd2Connection()
    (step,) = conn.receive_data(
        b'{"Event":"GuideStep","Frame":1,"Time":1.0,"dx":0,"dy":0,"RADistanceRaw":0,'
        b'"DECDistanceRaw":0,"NewField":true}\r\n'
    )
    assert isinstance(step, ev.GuideStep)
    assert step.ra_duration is None
    assert step.error_code is None
    assert step.hfd is None


def test_an_overlong_line_is_a_bad_line_and_the_stream_recovers():
    conn = Phd2Connection()
    msgs = conn.receive_data(b'{"x":"' + b"a" * (2 << 20) + b'"}\r\n' + SETTLE_DONE)
    assert [type(m) for m in msgs] == [ev.SettleDone]
    assert conn.bad_lines == 1


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 5000 + b"\r\n",
        b"1" * 5000 + b"\r\n",
        b'{"Event":"LockPositionSet","X":1' + b"0" * 400 + b',"Y":1}\r\n',
        b'{"Event":"Calibrating","pos":[1' + b"0" * 400 + b",2]}\r\n",
    ],
    ids=["deep-nesting", "huge-number", "int-too-big-for-float", "list-of-huge"],
)
def test_pathological_lines_are_bad_lines_not_crashes(line):
    conn = Phd2Connection()
    assert conn.receive_data(line + SETTLE_DONE)[-1].total_frames == 6
    assert conn.bad_lines == 1


def test_an_event_the_parsers_did_not_foresee_is_a_bad_line_not_a_dropped_link(monkeypatch):
    import ditherapp.core.phd2.connection as connection_module

    real = connection_module.parse_event

    def parse(obj):
        if obj.get("Event") == "LockPositionSet":
            raise OverflowError("a case nobody thought of")
        return real(obj)

    monkeypatch.setattr(connection_module, "parse_event", parse)
    conn = Phd2Connection()
    lines = b'{"Event":"LockPositionSet","X":1,"Y":2}\r\n' + SETTLE_DONE
    assert conn.receive_data(lines)[-1].total_frames == 6
    assert conn.bad_lines == 1
    assert "OverflowError" in conn.last_error


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    conn = connection_with_pending(1, 2, 3)
    for chunk in chunks:
        conn.receive_data(chunk)
    # Whatever came before, the next newline resynchronises and a good line parses.
    last = conn.receive_data(b"\n" + SETTLE_DONE)[-1]
    assert isinstance(last, ev.SettleDone)
    assert last.total_frames == 6


JSONISH = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b"]",
        b'"Event"',
        b'"id"',
        b":",
        b",",
        b"null",
        b"1",
        b"1e999",
        b'"SettleDone"',
        b'"Status"',
        b"\r\n",
        b"\n",
        b"\xff",
        b'"jsonrpc":"2.0"',
        b'"error":{"code":1}',
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(JSONISH, max_size=40).map(b"".join))
def test_json_like_noise_never_raises(data):
    conn = connection_with_pending(1)
    conn.receive_data(data)
    conn.receive_data(b"\n")


# ------------------------------------------------------------------ requests


def test_integral_floats_go_out_as_json_integers():
    line = encode_request("set_exposure", [2000.0], 5)
    assert line == b'{"method":"set_exposure","params":[2000],"id":5}\r\n'
    line = encode_request("capture_single_frame", {"exposure": 1000.0, "binning": 2.0}, 6)
    assert json.loads(line) == {
        "method": "capture_single_frame",
        "params": {"exposure": 1000, "binning": 2},
        "id": 6,
    }
    assert b"1000.0" not in line


def test_fractional_numbers_and_booleans_are_kept():
    line = encode_request("dither", {"amount": 1.5, "raOnly": True}, 1)
    assert line == b'{"method":"dither","params":{"amount":1.5,"raOnly":true},"id":1}\r\n'


def test_the_dither_request_uses_phd2s_exact_key_names():
    req = DitherRequest(
        amount=5.0, ra_only=True, settle_pixels=1.5, settle_time=10.0, settle_timeout=60.0
    )
    line = encode_request("dither", req.rpc_params(), 12)
    assert line == (
        b'{"method":"dither","params":{"amount":5,"raOnly":true,'
        b'"settle":{"pixels":1.5,"time":10,"timeout":60}},"id":12}\r\n'
    )
    # The ditherstring a user reads is the line that goes to PHD2, minus the CRLF.
    assert req.rpc_line(12).encode() + b"\r\n" == line


def test_settle_time_and_timeout_are_whole_seconds():
    req = DitherRequest(
        amount=3.25, ra_only=False, settle_pixels=0.8, settle_time=7.9, settle_timeout=30.5
    )
    params = json.loads(encode_request("dither", req.rpc_params(), 1))["params"]
    assert params == {
        "amount": 3.25,
        "raOnly": False,
        "settle": {"pixels": 0.8, "time": 7, "timeout": 30},
    }


def test_a_request_without_params_has_no_params_key():
    assert encode_request("get_app_state", None, 3) == b'{"method":"get_app_state","id":3}\r\n'


def test_a_request_longer_than_phd2_accepts_is_refused():
    fits = "x" * (MAX_REQUEST_BYTES - len(b'{"method":"","id":1}'))
    assert len(encode_request(fits, None, 1)) == MAX_REQUEST_BYTES + 2
    with pytest.raises(LocalProtocolError, match="1024 bytes; PHD2 accepts at most 1023"):
        encode_request(fits + "x", None, 1)


def test_an_oversized_request_is_not_registered_as_pending():
    conn = Phd2Connection()
    with pytest.raises(LocalProtocolError):
        conn.send_request("set_profile", {"name": "p" * 2000})
    assert conn.pending == frozenset()


@pytest.mark.parametrize("bad_id", [0, -1, 2**31])
def test_ids_outside_phd2s_int_range_are_refused(bad_id):
    with pytest.raises(LocalProtocolError):
        encode_request("get_app_state", None, bad_id)


def test_ids_wrap_before_phd2s_int_overflows():
    conn = Phd2Connection()
    conn._next_id = 2**31 - 1
    last, _ = conn.send_request("get_app_state")
    wrapped, _ = conn.send_request("get_app_state")
    assert (last, wrapped) == (2**31 - 1, 1)
