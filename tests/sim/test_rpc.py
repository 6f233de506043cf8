"""The event server over loopback: framing, JSON-RPC errors, methods, catch-up, event order."""

from __future__ import annotations

import json

import pytest


def is_reply(request_id):
    return lambda m: isinstance(m, dict) and "jsonrpc" in m and m.get("id") == request_id


async def next_reply(conn, start):
    index = await conn.wait_for(lambda m: isinstance(m, list) or "jsonrpc" in m, start=start)
    return conn.messages[index], conn.lines[index]


SETTLE = {"pixels": 1.5, "time": 2, "timeout": 30}
BOOL_0 = "expected bool param at index 0"
SETTLE_OBJ = "expected settle object param"
EXPOSURE = "expected exposure param"


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (
            b'{"method":"get_app_state","id":101\r\n',
            (
                "invalid JSON request: Not all objects/arrays have been properly closed"
                ' on line 1 at "..."'
            ),
        ),
        (
            b"hello phd2\r\n",
            'invalid JSON request: Unexpected character on line 1 at "hello phd2\r..."',
        ),
        (b"\r\n", 'invalid JSON request: empty string on line 1 at "..."'),
        (b"42\n", 'invalid JSON request: Unexpected character on line 1 at "42..."'),
    ],
)
async def test_parse_errors_reply_with_phd2s_text_and_null_id(make_sim, connect, sent, message):
    conn = await connect(await make_sim(start="guiding"))
    start = len(conn.messages)
    conn.send_raw(sent)
    reply, line = await next_reply(conn, start)
    assert reply == {"jsonrpc": "2.0", "error": {"code": -32700, "message": message}, "id": None}
    assert line.startswith('{"jsonrpc":"2.0","error":{"code":-32700,')


async def test_invalid_requests(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    cases = [
        (b'{"id":102}\r\n', -32600, "invalid request - missing method", None),
        (b'{"method":7,"id":3}\r\n', -32600, "invalid request - missing method", None),
        (
            b'{"method":"get_app_state","params":5,"id":103}\r\n',
            -32600,
            "invalid request - params must be an array or object",
            None,
        ),
        (b'{"method":"no_such_method","id":9}\r\n', -32601, "method not found", 9),
        (b'{"method":"set_paused","params":{},"id":13}\r\n', -32602, BOOL_0, 13),
        (
            b'{"method":"set_paused","params":[true,5],"id":14}\r\n',
            -32602,
            "expected string param at index 1",
            14,
        ),
        (
            b'{"method":"dither","params":{"amount":5},"id":10}\r\n',
            -32602,
            "expected settle object param",
            10,
        ),
        (
            b'{"method":"dither","params":{"settle":{"pixels":1,"time":1,"timeout":9}},"id":11}\r\n',
            -32602,
            "expected dither amount param",
            11,
        ),
        (
            b'{"method":"dither","params":[5,false,{"pixels":1,"time":1}],"id":12}\r\n',
            -32602,
            "invalid settle params",
            12,
        ),
        (b'{"method":"guide","params":{"recalibrate":false},"id":15}\r\n', -32602, SETTLE_OBJ, 15),
        (b'{"method":"set_exposure","params":[2000.0],"id":16}\r\n', -32602, EXPOSURE, 16),
    ]
    for sent, code, message, request_id in cases:
        start = len(conn.messages)
        conn.send_raw(sent)
        reply, _ = await next_reply(conn, start)
        assert reply == {
            "jsonrpc": "2.0",
            "error": {"code": code, "message": message},
            "id": request_id,
        }, sent


async def test_notifications_get_no_reply_but_still_run(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    start = len(conn.messages)
    conn.send_raw(b'{"method":"no_such_method_notification"}\r\n')
    conn.send_raw(b'{"method":"set_paused","params":[true]}\r\n')
    conn.send_raw(b'{"method":"get_paused","id":"after"}\r\n')
    await conn.wait_for(is_reply("after"), start=start)
    replies = [m for m in conn.messages[start:] if "jsonrpc" in m]
    assert replies == [{"jsonrpc": "2.0", "result": True, "id": "after"}]
    assert conn.events("Paused", start)


async def test_ids_batches_and_line_endings(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    start = len(conn.messages)
    conn.send_raw(b'[{"method":"get_app_state","id":105},{"method":"get_exposure","id":106}]\r\n')
    reply, line = await next_reply(conn, start)
    assert line == (
        '[{"jsonrpc":"2.0","result":"Guiding","id":105},{"jsonrpc":"2.0","result":1000,"id":106}]'
    )
    start = len(conn.messages)
    conn.send_raw(b'{"method":"get_app_state","id":"str-id-107"}\n')
    _, line = await next_reply(conn, start)
    assert line == '{"jsonrpc":"2.0","result":"Guiding","id":"str-id-107"}'
    start = len(conn.messages)
    conn.send_raw(b'{"jsonrpc":"2.0","method":"get_exposure","id":0.5}\r\n')
    _, line = await next_reply(conn, start)
    assert line == '{"jsonrpc":"2.0","result":1000,"id":0.5}'
    start = len(conn.messages)
    conn.send_raw(b'[{"method":"set_paused","params":[false]},{"id":1}]\r\n')
    reply, _ = await next_reply(conn, start)
    assert reply == [
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "invalid request - missing method"},
            "id": None,
        }
    ]


async def test_a_line_too_big_for_phd2s_buffer_is_drained(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    fits = b'{"method":"get_exposure","id":1' + b" " * (1023 - 33) + b"}\r"
    assert len(fits) == 1023
    start = len(conn.messages)
    conn.send_raw(fits + b"\n")
    reply, _ = await next_reply(conn, start)
    assert reply["result"] == 1000
    start = len(conn.messages)
    conn.send_raw(b'{"method":"get_app_state","id":2,"pad":"' + b"x" * 1100 + b'"}\r\n')
    reply, _ = await next_reply(conn, start)
    assert reply == {"jsonrpc": "2.0", "error": {"code": -32603, "message": "too big"}, "id": None}
    start = len(conn.messages)
    conn.send_raw(b'{"method":"get_app_state","id":3}\r\n')
    reply, _ = await next_reply(conn, start)
    assert reply["id"] == 3


async def test_getters_answer_like_phd2(make_sim, connect):
    conn = await connect(await make_sim(start="disconnected"))
    assert await conn.result("get_app_state") == "Stopped"
    assert await conn.result("get_connected") is False
    assert await conn.result("get_profile") == {"id": 1, "name": "Simulator"}
    assert await conn.result("get_current_equipment") == {
        "camera": {"name": "Simulator", "connected": False},
        "mount": {"name": "On Camera", "connected": False},
    }
    assert await conn.result("get_exposure") == 1000
    assert 1000 in await conn.result("get_exposure_durations")
    assert await conn.result("get_pixel_scale") == pytest.approx(1.93373)
    assert await conn.result("get_lock_position") is None
    assert await conn.result("get_algo_param_names", {"axis": "ra"}) == [
        "algorithmName",
        "minMove",
        "hysteresis",
        "aggression",
    ]
    assert await conn.result("get_settling") is False
    assert await conn.result("set_connected", [True]) == 0
    assert await conn.result("get_connected") is True


async def test_set_exposure_announces_the_change(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    start = len(conn.messages)
    assert await conn.result("set_exposure", [2000]) == 0
    assert conn.names(start) == ["GuideParamChange", "ConfigurationChange", "reply"]
    assert conn.events("GuideParamChange", start)[0] | {"Timestamp": 0} == {
        "Event": "GuideParamChange",
        "Timestamp": 0,
        "Host": conn.events("GuideParamChange", start)[0]["Host"],
        "Inst": 1,
        "Name": "Exposure",
        "Value": "2000 ms",
    }
    assert await conn.result("get_exposure") == 2000
    assert sim.model.frame_interval_s == pytest.approx(2.07)


@pytest.mark.parametrize(
    ("params", "full"),
    [
        ([True], False),
        ([True, "full"], True),
        ({"paused": True}, False),
        ({"paused": True, "type": "full"}, True),
        ([1, "guiding"], False),
    ],
)
async def test_set_paused_forms(make_sim, connect, params, full):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    start = len(conn.messages)
    assert await conn.result("set_paused", params) == 0
    assert conn.names(start) == ["Paused", "reply"]
    assert await conn.result("get_paused") is True
    assert await conn.result("get_app_state") == "Paused"
    assert sim.model.exposing is not full
    start = len(conn.messages)
    assert await conn.result("set_paused", [True]) == 0  # already paused: no second event
    assert await conn.result("set_paused", {"paused": False}) == 0
    assert conn.names(start) == ["reply", "Resumed", "reply"]
    assert await conn.result("get_app_state") == "Guiding"


async def test_dither_while_full_paused_settles_only_after_resume(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    await conn.result("set_paused", [True, "full"])
    start = len(conn.messages)
    assert await conn.result("dither", {"amount": 3, "raOnly": False, "settle": SETTLE}) == 0
    assert conn.names(start) == ["LockPositionSet", "GuidingDithered", "SettleBegin", "reply"]
    assert await conn.result("get_settling") is True
    assert not sim.model.exposing  # no frames: neither Settling nor SettleDone can come
    resumed = len(conn.messages)
    await conn.result("set_paused", [False])
    await conn.wait_event("SettleDone", start=resumed)
    assert conn.events("Settling", start) == conn.events("Settling", resumed)


async def test_catch_up_in_phd2s_order(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    assert conn.names() == [
        "Version",
        "LockPositionSet",
        "StarSelected",
        "CalibrationComplete",
        "StartGuiding",
        "AppState",
    ]
    version = conn.messages[0]
    assert list(version)[4:] == ["PHDVersion", "PHDSubver", "OverlapSupport", "MsgVersion"]
    assert (version["OverlapSupport"], version["MsgVersion"]) == (True, 1)
    assert conn.lines[0].split('"Timestamp":')[1].split(",")[0].count(".") == 1
    assert len(conn.lines[0].split('"Timestamp":')[1].split(",")[0].split(".")[1]) == 3
    await conn.result("set_paused", [True])
    paused = await connect(sim)
    assert paused.names() == [
        "Version",
        "LockPositionSet",
        "StarSelected",
        "CalibrationComplete",
        "Paused",
        "AppState",
    ]
    assert paused.messages[-1]["State"] == "Paused"
    fresh = await connect(await make_sim(start="disconnected"))
    assert fresh.names() == ["Version", "AppState"]


async def test_catch_up_while_calibrating(make_sim, connect):
    sim = await make_sim(start="looping")
    conn = await connect(sim)
    await conn.result("guide", {"settle": SETTLE})
    await conn.wait_event("Calibrating")
    late = await connect(sim)
    names = late.names()
    assert names[-2:] == ["StartCalibration", "AppState"]
    assert "CalibrationComplete" not in names
    assert late.messages[names.index("AppState")]["State"] == "Calibrating"


async def test_dither_events_come_before_the_reply_and_settle_after(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    other = await connect(sim)
    start, other_start = len(conn.messages), len(other.messages)
    conn.send(
        {"method": "dither", "params": {"amount": 5, "raOnly": False, "settle": SETTLE}, "id": 2}
    )
    await conn.wait_event("SettleDone", start=start)
    names = conn.names(start)
    assert names[:4] == ["LockPositionSet", "GuidingDithered", "SettleBegin", "reply"]
    first_settling = names.index("Settling")
    assert (
        names[first_settling + 1] == "GuideStep"
    )  # Settling goes out before its frame's GuideStep
    assert names[names.index("SettleDone") + 1 :].count("Settling") == 0
    await other.wait_event("SettleDone", start=other_start)
    assert "reply" not in other.names(other_start)  # only the caller gets the reply


async def test_guide_while_guiding_is_just_a_settle(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    start = len(conn.messages)
    assert await conn.result("guide", {"settle": SETTLE, "recalibrate": False}) == 0
    assert conn.names(start) == ["SettleBegin", "reply"]
    await conn.wait_event("SettleDone", start=start)
    assert await conn.result("get_app_state") == "Guiding"


async def test_stop_capture_during_a_settle(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    await conn.result("dither", {"amount": 5, "raOnly": False, "settle": SETTLE})
    await conn.wait_event("Settling")
    start = len(conn.messages)
    await conn.result("stop_capture")
    await conn.wait_event("LockPositionLost", start=start)
    names = [n for n in conn.names(start) if n != "GuideStep"]
    assert names == [
        "reply",
        "GuidingStopped",
        "SettleDone",
        "LoopingExposuresStopped",
        "LockPositionLost",
    ]
    done = conn.events("SettleDone", start)[0]
    assert (done["Status"], done["Error"]) == (1, "Guiding stopped")
    assert await conn.result("get_app_state") == "Stopped"
    assert sim.dither_windows[-1].error == "Guiding stopped"


async def test_refusals_when_not_guiding_or_disconnected(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    await conn.result("stop_capture")
    await conn.wait_event("LockPositionLost")
    dither = {"amount": 5, "raOnly": False, "settle": SETTLE}
    assert (await conn.call("dither", dither))["error"] == {"code": 1, "message": "Dither error"}
    assert await conn.result("set_connected", [False]) == 0
    assert (await conn.call("dither", dither))["error"] == {"code": 1, "message": "Dither error"}
    assert (await conn.call("guide", {"settle": SETTLE}))["error"] == {
        "code": 1,
        "message": "all equipment must be connected first",
    }
    assert (await conn.call("loop"))["error"] == {"code": 1, "message": "could not start looping"}
    assert (await conn.call("find_star"))["error"] == {"code": 1, "message": "could not find star"}


async def test_loop_after_stop_finds_the_star_again(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    await conn.result("stop_capture")
    await conn.wait_event("LockPositionLost")
    start = len(conn.messages)
    assert await conn.result("loop") == 0
    await conn.wait_event("StarSelected", start=start)
    assert conn.names(start)[:4] == ["reply", "LoopingExposures", "LockPositionSet", "StarSelected"]
    assert await conn.result("get_app_state") == "Selected"


async def test_find_star_reports_the_lock_position(make_sim, connect):
    conn = await connect(await make_sim(start="looping"))
    await conn.wait_event("LoopingExposures")
    start = len(conn.messages)
    position = await conn.result("find_star")
    assert conn.names(start) == [
        "ConfigurationChange",
        "LockPositionSet",
        "LoopingExposures",
        "StarSelected",
        "reply",
    ]
    lock = conn.events("LockPositionSet", start)[0]
    assert position == [round(lock["X"], 2), round(lock["Y"], 2)]
    assert await conn.result("get_lock_position") == position


def test_every_reply_and_event_line_is_crlf_terminated_json():
    # the framing helpers themselves; the transcript test checks every line on the wire
    from ditherapp.sim import phd2_wire as w

    reply = w.result_reply(w.point(1.005, 2), w.echo("a\r"))
    assert reply == '{"jsonrpc":"2.0","result":[1.00,2.00],"id":"a\\r"}'
    assert json.loads(reply)["id"] == "a\r"
    assert w.escape("tab\there") == '"tab\there"'  # PHD2 escapes only \\ " CR LF
    assert w.echo(2**31) == "-2147483648"  # a C int
    assert w.echo(0.1) == "0.1"
    assert w.echo({"a": [1, None, True]}) == '{"a":[1,null,true]}'
    assert w.error_reply(1, "x") == '{"jsonrpc":"2.0","error":{"code":1,"message":"x"},"id":null}'


async def test_equipment_and_profile_rules(make_sim, connect):
    conn = await connect(await make_sim(start="guiding"))
    assert (await conn.call("set_connected", [False]))["error"] == {
        "code": 1,
        "message": "cannot disconnect equipment while capture active",
    }
    assert (await conn.call("set_connected", {"connected": 1}))["error"]["code"] == -32602
    assert await conn.result("set_profile", {"id": 1}) == 0  # the current one
    assert (await conn.call("set_profile", [2]))["error"] == {
        "code": 1,
        "message": "cannot set profile when equipment is connected",
    }
    assert await conn.result("get_app_state") == "Guiding"


async def test_guide_algorithm_parameters(make_sim, connect):
    sim = await make_sim(start="guiding")
    conn = await connect(sim)
    assert (
        await conn.result("get_algo_param", ["ra", "algorithmName"]) == "GuideAlgorithmHysteresis"
    )
    assert await conn.result("get_algo_param", {"axis": "dec", "name": "minMove"}) == 0.2
    assert await conn.result("get_algo_param_names", ["y"]) == [
        "algorithmName",
        "minMove",
        "aggression",
        "fastSwitch",
    ]
    assert (await conn.call("get_algo_param", ["ra", "nope"]))["error"]["code"] == 1
    # no corrections at all once both axes need an impossible move
    assert await conn.result("set_algo_param", ["ra", "minMove", 50]) == 0
    assert await conn.result("set_algo_param", ["dec", "minMove", 50]) == 0
    start = len(conn.messages)
    await conn.wait_for(lambda _: len(conn.events("GuideStep", start)) >= 3, start=start)
    steps = conn.events("GuideStep", start)[1:]
    assert all("RADuration" not in e and "DECDuration" not in e for e in steps)
    assert await conn.result("get_calibration_data") == {
        "calibrated": True,
        "xAngle": 13.4,
        "xRate": 6.95,
        "xParity": "+",
        "yAngle": 103.4,
        "yRate": 7.7,
        "yParity": "+",
        "declination": 0,
    }
    assert await conn.result("set_dec_guide_mode", ["north"]) == 0
    assert await conn.result("get_dec_guide_mode") == "North"
