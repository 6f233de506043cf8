"""The event-server connection, sans-IO: bytes in, events and replies out.

``receive_data`` never raises on bad input. PHD2 writes without blocking and drops
what a slow reader cannot take, so a truncated or glued line is lost data, not a
fatal error: it is skipped and counted in ``bad_lines`` (the caller resyncs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ditherapp.core.errors import RemoteProtocolError
from ditherapp.core.lines import LineBuffer
from ditherapp.core.phd2.events import Phd2Event, Version, parse_event
from ditherapp.core.phd2.rpc import (
    MAX_ID,
    JsonParams,
    RpcError,
    RpcReply,
    encode_request,
    parse_reply,
)

_DECODER = json.JSONDecoder(strict=False)
"""PHD2 writes raw control characters inside strings (a camera name, an alert). One
decoder for every line: ``json.loads(strict=False)`` would build one per line."""

MAX_LINE_BYTES = 1 << 20
"""Longest line we accept from PHD2 (get_star_image replies are ~11 KB)."""

Phd2Message = Phd2Event | RpcReply


@dataclass(slots=True)
class Phd2Connection:
    bad_lines: int = 0
    stray_replies: int = 0
    overlap_support: bool | None = None
    version: Version | None = None
    last_error: str | None = None
    _lines: LineBuffer = field(default_factory=lambda: LineBuffer(max_line=MAX_LINE_BYTES))
    _next_id: int = 1
    _pending: set[int] = field(default_factory=set)

    @property
    def pending(self) -> frozenset[int]:
        return frozenset(self._pending)

    def send_request(self, method: str, params: JsonParams = None) -> tuple[int, bytes]:
        """Allocate an id, register it as pending, and return the bytes to write."""
        request_id = self._next_id
        self._next_id = 1 if self._next_id >= MAX_ID else self._next_id + 1
        data = encode_request(method, params, request_id)
        self._pending.add(request_id)
        return request_id, data

    def forget(self, request_id: int) -> None:
        """Stop waiting for a reply (the caller gave up); a late reply becomes stray."""
        self._pending.discard(request_id)

    def connection_lost(self) -> frozenset[int]:
        """The transport closed: every pending id has failed. Returns them."""
        lost = frozenset(self._pending)
        self._pending.clear()
        self._lines = LineBuffer(max_line=MAX_LINE_BYTES)
        self.overlap_support = None
        self.version = None
        return lost

    def receive_data(self, data: bytes) -> list[Phd2Message]:
        messages: list[Phd2Message] = []
        overlong_before = self._lines.overlong
        for line in self._lines.feed(data):
            messages.extend(self._parse_line(line))
        self.bad_lines += self._lines.overlong - overlong_before
        return messages

    def _parse_line(self, line: bytes) -> list[Phd2Message]:
        if not line.strip():
            return []
        try:
            obj = _DECODER.decode(line.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, absurd nesting or digits
            return self._bad(f"unparsable line from PHD2: {exc}")
        items: list[Any] = obj if isinstance(obj, list) else [obj]
        out: list[Phd2Message] = []
        problem: str | None = None
        for item in items:
            # A bad element of a batch must not take the good ones with it: their ids
            # are no longer pending, so a dropped reply would never be answered.
            if not isinstance(item, dict):
                problem = "PHD2 sent a JSON value that is not an object"
                continue
            try:
                message = self._parse_object(item)
            except RemoteProtocolError as exc:
                problem = str(exc)
                continue
            except (ValueError, TypeError, OverflowError, RecursionError) as exc:
                # A case the parsers do not foresee is still PHD2's odd line, not a
                # reason to drop the link (and with it a dither in progress).
                problem = f"PHD2 sent what we cannot read: {type(exc).__name__}: {exc}"
                continue
            if message is not None:
                out.append(message)
        if problem is not None:
            self._bad(problem)
        return out

    def _parse_object(self, obj: dict[str, Any]) -> Phd2Message | None:
        if "Event" in obj:
            event = parse_event(obj)
            if isinstance(event, Version):
                self.version = event
                self.overlap_support = event.overlap_support
            return event
        reply = parse_reply(obj)
        if isinstance(reply.id, int) and reply.id in self._pending:
            self._pending.discard(reply.id)
            return reply
        if reply.id is None and isinstance(reply, RpcError):
            # PHD2 answers some malformed requests with id null; when exactly one
            # request is outstanding it can only be that one.
            if len(self._pending) == 1:
                only = self._pending.pop()
                return RpcError(id=only, code=reply.code, message=reply.message)
            return reply
        self.stray_replies += 1
        return None

    def _bad(self, reason: str) -> list[Phd2Message]:
        self.bad_lines += 1
        self.last_error = reason
        return []
