"""The control-socket protocol (docs/control-protocol.md), sans-IO.

One ``ControlDecoder`` per connection turns received bytes into ``Request``s (a JSON
object with a ``type``), ``LegacyRequest``s (SimpleDither's client.py: one JSON object
with an ``op`` key and no newline) and ``Fault``s (what to answer when the bytes are
not a request). Nothing here raises on bad input.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ditherapp.core.phd2.rpc import phd2_number as json_number

PROTO_VERSION = 1
MAX_LINE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    type: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LegacyRequest:
    op: str
    cmd: str
    value: object


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    code: str
    message: str
    close: bool = False

    def reply(self) -> dict[str, Any]:
        return error(self.code, self.message)


Incoming = Request | LegacyRequest | Fault

_DECODER = json.JSONDecoder(strict=False)


@dataclass(slots=True)
class ControlDecoder:
    max_line: int = MAX_LINE_BYTES
    _buf: bytearray = field(default_factory=bytearray)
    closed: bool = False

    def feed(self, data: bytes) -> list[Incoming]:
        if self.closed:
            return []
        self._buf += data
        out: list[Incoming] = []
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buf[:end]).rstrip(b"\r")
            del self._buf[: end + 1]
            if len(line) > self.max_line:
                return [*out, self._too_long()]
            if line.strip():
                out.append(self._parse(line))
        if len(self._buf) > self.max_line:
            return [*out, self._too_long()]
        legacy = self._legacy_without_newline()
        if legacy is not None:
            out.append(legacy)
        return out

    @property
    def pending(self) -> int:
        """Bytes of a line begun but not finished (a client's clock for it runs)."""
        return len(self._buf)

    def _too_long(self) -> Fault:
        self.closed = True
        self._buf.clear()
        return Fault(
            code="line_too_long",
            message=f"a line is limited to {self.max_line} bytes",
            close=True,
        )

    def _legacy_without_newline(self) -> Incoming | None:
        """client.py sends one object and no newline, then waits for the reply."""
        text = bytes(self._buf).lstrip()
        if not text.startswith(b"{"):
            return None
        try:
            # Bytes that are not UTF-8 still make client.py's one object: it waits for the
            # legacy reply (an unknown setting, say), not for a JSON error after a timeout.
            obj, _ = _DECODER.raw_decode(text.decode("utf-8", "replace"))
        except (ValueError, RecursionError):  # incomplete or absurdly nested
            return None
        if not isinstance(obj, dict) or "op" not in obj or "type" in obj:
            return None
        self._buf.clear()
        return _legacy(obj)

    def _parse(self, line: bytes) -> Incoming:
        try:
            obj = _DECODER.decode(line.decode("utf-8"))
        except UnicodeDecodeError:
            return _not_utf8(line)
        except ValueError as exc:
            return Fault(code="bad_request", message=f"the line is not JSON: {exc}")
        except RecursionError:
            return Fault(code="bad_request", message="the line is nested too deeply")
        if not isinstance(obj, dict):
            return Fault(code="bad_request", message="expected a JSON object")
        if "op" in obj and "type" not in obj:
            return _legacy(obj)
        kind = obj.get("type")
        if not isinstance(kind, str) or not kind:
            return Fault(code="bad_request", message="the object has no 'type'")
        return Request(type=kind, body=obj)


def _not_utf8(line: bytes) -> Incoming:
    """A line that is not UTF-8: a client.py request still gets its legacy reply."""
    try:
        obj = _DECODER.decode(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and "op" in obj and "type" not in obj:
        return _legacy(obj)
    return Fault(code="bad_request", message="the line is not UTF-8")


def _legacy(obj: dict[str, Any]) -> Incoming:
    op = obj.get("op")
    cmd = obj.get("cmd")
    if not isinstance(op, str) or not isinstance(cmd, str):
        return LegacyRequest(op=str(op), cmd=str(cmd), value=obj.get("value"))
    return LegacyRequest(op=op.strip().lower(), cmd=cmd.strip().lower(), value=obj.get("value"))


def encode(message: dict[str, Any]) -> bytes:
    """One message line. Integral floats go out as integers (``10``, not ``10.0``)."""
    text = json.dumps(_tidy(message), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # A lone surrogate (half a UTF-16 pair) cannot be UTF-8: send it as a JSON escape.
    return (text + "\n").encode("utf-8", "backslashreplace")


def _tidy(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _tidy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tidy(v) for v in value]
    if isinstance(value, float):
        return json_number(value)
    return value


def error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, **extra}


def legacy_value_text(value: object) -> str:
    """How client.py prints a value: Python's str(), booleans as True/False."""
    if isinstance(value, float):
        value = json_number(value)
    return str(value)


def encode_legacy_reply(op: str, ok: bool, value: object) -> bytes:
    verb = op.upper() if op in ("get", "set") else str(op).upper()
    status = "OK" if ok else "FAIL"
    text = f"status : {verb} : {status} value : {legacy_value_text(value)}"
    return (text.replace("\r", " ").replace("\n", " ") + "\r\n").encode("utf-8", "replace")
