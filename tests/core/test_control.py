"""The control-socket decoder: requests from the hook, ditherctl and the seed's client.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ditherapp.core.control import (
    MAX_LINE_BYTES,
    ControlDecoder,
    Fault,
    LegacyRequest,
    Request,
    encode,
    encode_legacy_reply,
    error,
)

# What SimpleDither's client.py sends: one object, no newline, then it waits.
CLIENT_PY_GET = b'{"op": "get", "cmd": "ditherevery", "value": 0}'
CLIENT_PY_SET = b'{"op": "set", "cmd": "ditherevery", "value": "20"}'


def feed_all(decoder: ControlDecoder, data: bytes, chunk: int | None = None) -> list:
    if chunk is None:
        return decoder.feed(data)
    out = []
    for i in range(0, len(data), chunk):
        out += decoder.feed(data[i : i + chunk])
    return out


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_newline_terminated_requests(chunk):
    data = (
        b'{"type":"hello","role":"camera","proto":1,"name":"ZWO"}\n'
        b'{"type":"frame","seq":17,"t":1763760000.125,"exposure_s":120.0,"saved":true}\r\n'
        b'{"type":"get","name":"ditherevery"}\n'
    )
    out = feed_all(ControlDecoder(), data, chunk)
    assert [r.type for r in out] == ["hello", "frame", "get"]
    assert all(isinstance(r, Request) for r in out)
    assert out[1].body["exposure_s"] == 120.0
    assert out[1].body["saved"] is True
    assert out[2].body == {"type": "get", "name": "ditherevery"}


def test_a_request_split_across_reads_comes_out_once_complete():
    dec = ControlDecoder()
    assert dec.feed(b'{"type":"set","name":"dither') == []
    assert dec.feed(b'every","value":20}') == [], "a modern request waits for its newline"
    assert dec.feed(b"\n") == [
        Request(type="set", body={"type": "set", "name": "ditherevery", "value": 20})
    ]


def test_blank_lines_are_ignored():
    assert ControlDecoder().feed(b"\n\r\n   \n") == []


def test_unknown_fields_are_kept_for_the_handler_to_ignore():
    (req,) = ControlDecoder().feed(b'{"type":"status","future":[1,2]}\n')
    assert req == Request(type="status", body={"type": "status", "future": [1, 2]})


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (b"not json\n", "not JSON"),
        (b'{"type":"get"\n', "not JSON"),
        (b"[1,2]\n", "expected a JSON object"),
        (b'"get"\n', "expected a JSON object"),
        (b'{"name":"ditherevery"}\n', "no 'type'"),
        (b'{"type":""}\n', "no 'type'"),
        (b'{"type":5}\n', "no 'type'"),
        (b"\xff\xfe\n", "not UTF-8"),
        (b"[" * 3000 + b"\n", "nested too deeply"),
    ],
    ids=[
        "text",
        "unclosed",
        "array",
        "string",
        "no-type",
        "empty-type",
        "int-type",
        "utf8",
        "deep",
    ],
)
def test_a_bad_line_is_a_bad_request_and_the_connection_stays_usable(line, says):
    dec = ControlDecoder()
    out = dec.feed(line + b'{"type":"status"}\n')
    assert len(out) == 2
    fault, req = out
    assert isinstance(fault, Fault)
    assert fault.code == "bad_request"
    assert says in fault.message
    assert not fault.close
    assert fault.reply() == {"type": "error", "code": "bad_request", "message": fault.message}
    assert req == Request(type="status", body={"type": "status"})
    assert not dec.closed


def test_a_line_over_64_kib_is_refused_and_closes():
    dec = ControlDecoder()
    line = b'{"type":"set","name":"primarycamera","value":"' + b"x" * MAX_LINE_BYTES + b'"}\n'
    out = dec.feed(b'{"type":"status"}\n' + line + b'{"type":"status"}\n')
    assert out[0] == Request(type="status", body={"type": "status"})
    assert out[1] == Fault(
        code="line_too_long", message=f"a line is limited to {MAX_LINE_BYTES} bytes", close=True
    )
    assert len(out) == 2, "nothing after the overlong line is served"
    assert dec.closed
    assert dec.feed(b'{"type":"status"}\n') == []


def test_64_kib_plus_one_without_a_newline_is_refused_as_it_arrives():
    dec = ControlDecoder()
    assert dec.feed(b"a" * MAX_LINE_BYTES) == []
    (fault,) = dec.feed(b"a")
    assert fault.code == "line_too_long"
    assert fault.close
    assert dec.closed


def test_a_line_of_exactly_64_kib_is_served():
    body = b'{"type":"x","pad":"' + b"p" * (MAX_LINE_BYTES - 21) + b'"}'
    assert len(body) == MAX_LINE_BYTES
    (req,) = ControlDecoder().feed(body + b"\r\n")
    assert isinstance(req, Request)


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_client_py_without_a_newline_is_recognised_when_the_object_is_complete(chunk):
    dec = ControlDecoder()
    out = feed_all(dec, CLIENT_PY_GET, chunk)
    assert out == [LegacyRequest(op="get", cmd="ditherevery", value=0)]


def test_client_py_split_in_the_middle_of_a_string():
    dec = ControlDecoder()
    assert dec.feed(b'{"op": "set", "cmd": "dither') == []
    assert dec.feed(b'every", "value": "20"}') == [
        LegacyRequest(op="set", cmd="ditherevery", value="20")
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (CLIENT_PY_SET, LegacyRequest(op="set", cmd="ditherevery", value="20")),
        (b'{"op":"set","cmd":"waitfornextframe","value":"false"}', None),
        (
            b'{"op": "GET", "cmd": " DitherEvery "}',
            LegacyRequest(op="get", cmd="ditherevery", value=None),
        ),
        (
            b'{"op": "set", "cmd": "raonly", "value": null}',
            LegacyRequest(op="set", cmd="raonly", value=None),
        ),
        (b'  {"op": "get", "cmd": "ditherstring", "value": 0}', None),
        (CLIENT_PY_GET + b"\r\n", LegacyRequest(op="get", cmd="ditherevery", value=0)),
        (b'{"op": 1, "cmd": ["x"]}', LegacyRequest(op="1", cmd="['x']", value=None)),
    ],
    ids=["set-string", "bool-text", "case", "null", "leading-space", "with-newline", "odd-types"],
)
def test_legacy_forms(data, expected):
    (out,) = ControlDecoder().feed(data)
    assert isinstance(out, LegacyRequest)
    if expected is not None:
        assert out == expected
    else:
        assert out.cmd == json.loads(data)["cmd"]


def test_an_object_with_op_and_type_is_a_modern_request():
    dec = ControlDecoder()
    assert dec.feed(b'{"type":"x","op":"get"}') == []
    assert dec.feed(b"\n") == [Request(type="x", body={"type": "x", "op": "get"})]


def test_a_modern_partial_object_is_never_taken_for_legacy():
    dec = ControlDecoder()
    assert dec.feed(b'{"type":"get","name":"ditherevery"}') == []
    assert dec.feed(b"\n")[0].type == "get"


def test_legacy_nesting_bombs_do_not_raise():
    dec = ControlDecoder()
    assert dec.feed(b'{"op":' * 3000) == []


# ------------------------------------------------------------------ replies


@pytest.mark.parametrize(
    ("op", "ok", "value", "line"),
    [
        ("get", True, 10, b"status : GET : OK value : 10\r\n"),
        ("get", True, 10.0, b"status : GET : OK value : 10\r\n"),
        ("get", True, 1.5, b"status : GET : OK value : 1.5\r\n"),
        ("set", True, 20, b"status : SET : OK value : 20\r\n"),
        ("get", True, True, b"status : GET : OK value : True\r\n"),
        ("get", True, False, b"status : GET : OK value : False\r\n"),
        ("get", True, "all", b"status : GET : OK value : all\r\n"),
        (
            "set",
            False,
            "ditherevery must be a whole number from 1 to 1000",
            b"status : SET : FAIL value : ditherevery must be a whole number from 1 to 1000\r\n",
        ),
        ("set", False, "two\r\nlines", b"status : SET : FAIL value : two  lines\r\n"),
        ("frob", False, "unknown op", b"status : FROB : FAIL value : unknown op\r\n"),
    ],
)
def test_legacy_replies_are_what_client_py_prints(op, ok, value, line):
    assert encode_legacy_reply(op, ok, value) == line


def test_ditherstring_as_a_legacy_value_is_one_line():
    ditherstring = '{"method":"dither","params":{"amount":10,"raOnly":false},"id":1}'
    reply = encode_legacy_reply("get", True, ditherstring)
    assert reply == b"status : GET : OK value : " + ditherstring.encode() + b"\r\n"
    assert reply.count(b"\n") == 1


def test_encode_is_one_json_line_with_integral_floats_as_integers():
    data = encode({"type": "value", "name": "settlemax", "value": 60.0, "list": [1.0, 2.5]})
    assert data == b'{"type":"value","name":"settlemax","value":60,"list":[1,2.5]}\n'
    assert encode({"type": "value", "value": True}) == b'{"type":"value","value":true}\n'


def test_encode_keeps_non_ascii_names_readable():
    data = encode({"type": "welcome", "camera": "Caméra"})
    assert data.decode("utf-8") == '{"type":"welcome","camera":"Caméra"}\n'
    (req,) = ControlDecoder().feed(b'{"type":"x","v":"Cam\xc3\xa9ra"}\n')
    assert req.body["v"] == "Caméra"


def test_error_replies():
    assert error("invalid_value", "ditherevery must be a whole number from 1 to 1000") == {
        "type": "error",
        "code": "invalid_value",
        "message": "ditherevery must be a whole number from 1 to 1000",
    }
    assert error("unknown_type", "no such type", type_seen="x")["type_seen"] == "x"


# ------------------------------------------------------------------ robustness


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=100), max_size=20))
def test_arbitrary_bytes_never_raise(chunks):
    dec = ControlDecoder(max_line=256)
    for chunk in chunks:
        for item in dec.feed(chunk):
            assert isinstance(item, Request | LegacyRequest | Fault)


PIECES = st.sampled_from(
    [
        b"{",
        b"}",
        b"[",
        b'"op"',
        b'"type"',
        b":",
        b",",
        b'"get"',
        b"1",
        b"null",
        b"\n",
        b"\r",
        b"\xff",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PIECES, max_size=40).map(b"".join), st.integers(min_value=1, max_value=8))
def test_json_like_noise_never_raises_however_it_is_split(data, chunk):
    dec = ControlDecoder()
    feed_all(dec, data, chunk)


def test_a_lone_surrogate_cannot_break_encoding():
    """A camera named with half a UTF-16 pair must not stop every status reply."""
    import json

    data = encode({"type": "welcome", "camera": "cam\ud800"})
    assert json.loads(data)["camera"] == "cam\ud800"


@pytest.mark.parametrize("end", [b"", b"\n"], ids=["client.py", "with-newline"])
def test_a_legacy_request_with_bytes_that_are_not_utf8_is_still_a_legacy_request(end):
    # client.py waits for its one reply line: a JSON error after the 10 s first-message
    # timeout is not an answer it can print.
    (out,) = ControlDecoder().feed(b'{"op":"get","cmd":"dither\xff\xfeevery"}' + end)
    assert isinstance(out, LegacyRequest)
    assert out.op == "get"
    assert out.cmd.startswith("dither")


def test_a_modern_line_that_is_not_utf8_is_a_bad_request():
    (out,) = ControlDecoder().feed(b'{"type":"get","name":"\xff"}\n')
    assert out == Fault(code="bad_request", message="the line is not UTF-8")


def test_the_decoder_tells_how_much_of_an_unfinished_line_it_holds():
    dec = ControlDecoder()
    dec.feed(b'{"type":"pi')
    assert dec.pending == len(b'{"type":"pi')
    dec.feed(b'ng"}\n')
    assert dec.pending == 0
