"""JSON-RPC as PHD2 implements it: requests out, replies in.

PHD2's request parser is home-grown (research note §1-2): it reads at most 1023 bytes
before a newline, parses numbers with a dot as 32-bit floats and requires integers for
several parameters, matches names case-sensitively and silently ignores unknown keys.
So requests carry small integer ids, named parameters spelled exactly as PHD2 spells
them, integral values as JSON integers, and never exceed the line limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ditherapp.core.errors import LocalProtocolError, RemoteProtocolError

MAX_REQUEST_BYTES = 1023
"""PHD2 drops every pending request when a line reaches 1024 bytes without a newline."""

MAX_ID = 2**31 - 1

# PHD2's error codes (event_server.cpp); match on codes, never on text.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
METHOD_FAILED = 1

JsonParams = dict[str, Any] | list[Any] | None


def phd2_number(value: float) -> int | float:
    """An integral value as a JSON integer: PHD2 rejects ``2000.0`` where it wants ints."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_ID:
        return int(value)
    return value


def _normalise(params: Any) -> Any:
    if isinstance(params, dict):
        return {k: _normalise(v) for k, v in params.items()}
    if isinstance(params, list):
        return [_normalise(v) for v in params]
    if isinstance(params, float):
        return phd2_number(params)
    return params


def encode_request(method: str, params: JsonParams, request_id: int) -> bytes:
    """One request line, CRLF-terminated, checked against PHD2's limits."""
    if not 0 < request_id <= MAX_ID:
        raise LocalProtocolError(f"request id {request_id} is outside 1..2^31-1")
    obj: dict[str, Any] = {"method": method}
    if params is not None:
        obj["params"] = _normalise(params)
    obj["id"] = request_id
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    data = text.encode("ascii")
    if len(data) > MAX_REQUEST_BYTES:
        raise LocalProtocolError(
            f"{method} request is {len(data)} bytes; PHD2 accepts at most {MAX_REQUEST_BYTES}"
        )
    return data + b"\r\n"


def dither_params(
    *, amount: float, ra_only: bool, pixels: float, time: float, timeout: float
) -> dict[str, Any]:
    """PHD2's named dither parameters. ``time`` and ``timeout`` are whole seconds there."""
    return {
        "amount": amount,
        "raOnly": ra_only,
        "settle": {"pixels": pixels, "time": int(time), "timeout": int(timeout)},
    }


def settle_params(*, pixels: float, time: float, timeout: float) -> dict[str, Any]:
    return {"pixels": pixels, "time": int(time), "timeout": int(timeout)}


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcResult:
    id: int | str | None
    result: Any = field(compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RpcError:
    """An error reply. ``id`` is None for PHD2's ``id: null`` replies (parse errors,
    "too big", missing method, bad params type), which name no request."""

    id: int | str | None
    code: int
    message: str


RpcReply = RpcResult | RpcError


def parse_reply(obj: dict[str, Any]) -> RpcReply:
    """One decoded reply object (an element of a batch reply is one too)."""
    if "id" not in obj:
        raise RemoteProtocolError("reply without an id")
    reply_id = obj["id"]
    if not (reply_id is None or isinstance(reply_id, int | str)) or isinstance(reply_id, bool):
        raise RemoteProtocolError(f"reply id of unexpected type: {reply_id!r}")
    if "error" in obj:
        err = obj["error"]
        if not isinstance(err, dict):
            raise RemoteProtocolError("error reply whose error is not an object")
        code = err.get("code")
        message = err.get("message", "")
        if not isinstance(code, int) or isinstance(code, bool):
            raise RemoteProtocolError(f"error reply with a non-integer code: {code!r}")
        return RpcError(id=reply_id, code=code, message=str(message))
    if "result" in obj:
        return RpcResult(id=reply_id, result=obj["result"])
    raise RemoteProtocolError("reply with neither result nor error")
