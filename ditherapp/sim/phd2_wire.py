"""PHD2's wire text: how it formats numbers, events and JSON-RPC replies, and how it parses.

PHD2 does not serialise JSON with a library. It glues ``printf`` output together, so a
field's format is part of the protocol a client sees: GuideStep ``dx`` is ``%.3f``, SNR
``%.2f``, Settling ``Distance`` ``%.2f``, a calibration distance ``%g``. Keys keep the order
PHD2 writes them in, and a reply is ``jsonrpc``, then ``result`` or ``error``, then ``id``.
Strings are escaped the way PHD2 escapes them: only backslash, double quote, CR and LF.

Requests are parsed by a small home-grown parser whose error text reaches the client, so
`parse_request` reproduces its three common descriptions (unexpected character, unclosed
object, empty string) and its ``at "<12 characters>..."`` context.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
"""A parsed request value."""

Field = tuple[str, str]
"""An event field: the key and its value already rendered as JSON text."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

_WHITESPACE = " \t\r\n"
_INT32 = 1 << 32


def escape(text: str) -> str:
    """A JSON string literal escaped as PHD2 does (other control characters go out raw)."""
    body = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    return f'"{body}"'


def fixed(value: float, places: int) -> str:
    """``%.<places>f``."""
    return f"{value:.{places}f}"


def general(value: float) -> str:
    """``%g``: six significant digits, trailing zeros dropped."""
    return f"{value:g}"


def integer(value: int) -> str:
    return str(int(value))


def boolean(value: bool) -> str:
    return "true" if value else "false"


def point(x: float, y: float) -> str:
    """A position array as PHD2 writes one in a result: ``[%.2f,%.2f]``."""
    return f"[{x:.2f},{y:.2f}]"


def int_array(values: list[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def string_array(values: list[str]) -> str:
    return "[" + ",".join(escape(v) for v in values) + "]"


def obj(fields: list[Field]) -> str:
    """A JSON object from pre-rendered fields, in the given order."""
    return "{" + ",".join(f'"{key}":{value}' for key, value in fields) + "}"


def _float32(value: float) -> float:
    packed: tuple[float] = struct.unpack("f", struct.pack("f", value))
    return packed[0]


def echo(value: JsonValue) -> str:
    """A request value written back the way PHD2 re-serialises it (used for ``id``).

    PHD2 keeps integers in a C ``int`` and other numbers in a 32-bit ``float``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, int):
        wrapped = (value + (1 << 31)) % _INT32 - (1 << 31)
        return str(wrapped)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "null"
        return general(_float32(value))
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list):
        return "[" + ",".join(echo(item) for item in value) + "]"
    return "{" + ",".join(f'"{key}":{echo(item)}' for key, item in value.items()) + "}"


def result_reply(result: str, request_id: str) -> str:
    """A success reply; ``result`` and ``request_id`` are JSON text."""
    return f'{{"jsonrpc":"2.0","result":{result},"id":{request_id}}}'


def error_reply(code: int, message: str, request_id: str = "null") -> str:
    """An error reply; ``request_id`` is JSON text (PHD2 sends ``null`` for framing errors)."""
    error = f'{{"code":{code},"message":{escape(message)}}}'
    return f'{{"jsonrpc":"2.0","error":{error},"id":{request_id}}}'


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseFailure:
    """Why a request line is not JSON, worded and positioned like PHD2's parser."""

    description: str
    position: int

    def message(self, line: str) -> str:
        line_number = 1 + line.count("\n", 0, self.position)
        context = line[self.position : self.position + 12]
        return f'invalid JSON request: {self.description} on line {line_number} at "{context}..."'


def parse_request(line: str) -> JsonValue | ParseFailure:
    """Parse one request line (CR included, as PHD2 sees it).

    PHD2's parser accepts only an object or an array at the top; a bare number or
    string is an unexpected character.
    """
    if not line.strip(_WHITESPACE):
        return ParseFailure(description="empty string", position=len(line))
    try:
        value: JsonValue = json.loads(line)
    except json.JSONDecodeError as exc:
        content_end = len(line.rstrip(_WHITESPACE))
        if exc.pos >= content_end:
            return ParseFailure(
                description="Not all objects/arrays have been properly closed",
                position=len(line),
            )
        if exc.msg.startswith("Extra data"):
            return ParseFailure(
                description="Second root. Only one root allowed", position=exc.pos + 1
            )
        return ParseFailure(description="Unexpected character", position=exc.pos)
    if not isinstance(value, dict | list):
        start = len(line) - len(line.lstrip(_WHITESPACE))
        return ParseFailure(description="Unexpected character", position=start)
    return value
