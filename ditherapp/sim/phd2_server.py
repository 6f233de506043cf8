"""PHD2's event server (JSON-RPC over TCP, port 4400 + instance - 1), as the simulator runs it.

Framing is PHD2's: requests split on LF with the client's CR kept (it shows up in
parse-error text); a request line must fit PHD2's 1024-byte read buffer, otherwise the
pending input is thrown away and the reply is ``-32603 "too big"``. Replies and events
go out as one line each, CRLF-terminated, to a per-client queue. Writes are like PHD2's
non-blocking ones: when the client stops reading and the send buffer is full, the rest
of a line is lost and the next line is glued onto the fragment.

A new client gets the catch-up events before it joins the broadcast set, so nothing can
slip in between. ``set_connected`` runs "in a nested event loop" as in PHD2: its reply
comes after a short delay while later requests on the same connection are answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, Final, Protocol

from ditherapp.core.lines import LineBuffer
from ditherapp.sim import phd2_wire as w
from ditherapp.sim.phd2_model import CONNECT_S, Err, Phd2Model
from ditherapp.sim.phd2_wire import JsonValue, ParseFailure

log = logging.getLogger(__name__)

READ_BUFFER: Final = 1024
"""PHD2's per-client read buffer: a request line (CR included) may be 1023 bytes."""
SEND_BUFFER: Final = 1 << 20
"""Bytes a client may leave unread before lines start being cut short."""
_READ_CHUNK: Final = 65536


class SimHost(Protocol):
    """What a connection needs from the simulator that owns it."""

    @property
    def model(self) -> Phd2Model: ...

    @property
    def write_delay_s(self) -> float: ...

    def record_request(self, name: str) -> None: ...

    def wait_unstalled(self) -> Awaitable[None]: ...

    def sleep_simulated(self, seconds: float) -> Awaitable[None]: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]: ...

    def request_shutdown(self) -> None: ...


class EventClient:
    """One event-server connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label
        self.truncate_next = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()

    def send(self, line: str) -> None:
        self._queue.put_nowait(line)

    def close_after_flush(self) -> None:
        self._queue.put_nowait(None)

    def abort(self) -> None:
        self.writer.transport.abort()

    async def write_loop(self, host: SimHost) -> None:
        """Write queued lines in order, with PHD2's slow-writer and short-write behaviour."""
        transport = self.writer.transport
        while True:
            line = await self._queue.get()
            if line is None or transport.is_closing():
                break
            await host.wait_unstalled()
            if host.write_delay_s > 0:
                await asyncio.sleep(host.write_delay_s)
            data = (line + "\r\n").encode()
            if self.truncate_next and line.startswith('{"Event"'):
                # the rest of the line is lost; the next line is glued onto this fragment
                self.truncate_next = False
                data = data[: max(1, len(data) // 2)]
            if transport.is_closing():
                break
            room = SEND_BUFFER - transport.get_write_buffer_size()
            if room < len(data):
                log.debug("evsrv: %s short write %d/%d", self.label, max(room, 0), len(data))
                data = data[: max(room, 0)]
            if data:
                self.writer.write(data)
        self.writer.close()


class EventServer:
    """The clients of the event server, the broadcast, and JSON-RPC dispatch."""

    def __init__(self, host: SimHost) -> None:
        self._host = host
        self._clients: set[EventClient] = set()
        self._next_label = 1

    @property
    def clients(self) -> frozenset[EventClient]:
        return frozenset(self._clients)

    def broadcast(self, line: str) -> None:
        for client in self._clients:
            client.send(line)

    def truncate_next_line(self) -> None:
        for client in self._clients:
            client.truncate_next = True

    def abort_all(self) -> None:
        for client in list(self._clients):
            client.abort()

    def close_all_after_flush(self) -> None:
        for client in list(self._clients):
            client.close_after_flush()

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """The server callback: catch up the new client, then let it join the broadcast."""
        label = f"evsrv-{self._next_label}"
        self._next_label += 1
        client = EventClient(reader, writer, label)
        for line in self._host.model.catch_up():
            client.send(line)
        self._clients.add(client)
        log.info("event client %s connected from %s", label, writer.get_extra_info("peername"))
        self._host.spawn(self._serve(client), f"phd2-sim-{label}")

    async def _serve(self, client: EventClient) -> None:
        writer_task = self._host.spawn(client.write_loop(self._host), f"phd2-sim-{client.label}-w")
        try:
            await self._read_loop(client)
        except OSError as exc:
            log.info("event client %s lost: %s", client.label, exc)
        finally:
            self._clients.discard(client)
            client.abort()
            writer_task.cancel()
            log.info("event client %s disconnected", client.label)

    async def _read_loop(self, client: EventClient) -> None:
        lines = LineBuffer(max_line=READ_BUFFER - 1)
        while True:
            data = await client.reader.read(_READ_CHUNK)
            if not data:
                return
            overlong = lines.overlong
            # LineBuffer strips one CR before each LF; PHD2 keeps the client's CR in the
            # line (its parse errors quote it), so give LineBuffer a CR of its own to strip.
            complete = lines.feed(data.replace(b"\n", b"\r\n"))
            if lines.overlong != overlong:
                # PHD2's read buffer filled up without a newline: it drains all pending
                # input, later requests included, and answers "too big"
                client.send(w.error_reply(w.INTERNAL_ERROR, "too big"))
                lines = LineBuffer(max_line=READ_BUFFER - 1)
                continue
            for raw in complete:
                await self._host.wait_unstalled()
                self._process(client, raw)

    def _process(self, client: EventClient, raw: bytes) -> None:
        text = raw.decode("utf-8", errors="replace")
        parsed = w.parse_request(text)
        if isinstance(parsed, ParseFailure):
            client.send(w.error_reply(w.PARSE_ERROR, parsed.message(text)))
            return
        if isinstance(parsed, list):
            replies = [self._request(client, item, batch=True) for item in parsed]
            answered = [reply for reply in replies if reply is not None]
            if answered:
                client.send("[" + ",".join(answered) + "]")
            return
        reply = self._request(client, parsed, batch=False)
        if reply is not None:
            client.send(reply)

    def _request(self, client: EventClient, request: JsonValue, *, batch: bool) -> str | None:
        """Handle one request object; the reply line, or None for a notification."""
        method = request.get("method") if isinstance(request, dict) else None
        if not isinstance(request, dict) or not isinstance(method, str):
            return w.error_reply(w.INVALID_REQUEST, "invalid request - missing method")
        params = request.get("params")
        if "params" in request and not isinstance(params, list | dict):
            return w.error_reply(
                w.INVALID_REQUEST, "invalid request - params must be an array or object"
            )
        self._host.record_request(method)
        request_id = w.echo(request["id"]) if "id" in request else None
        if method == "set_connected" and not batch:
            self._host.spawn(
                self._slow_call(client, method, params, request_id),
                f"phd2-sim-{client.label}-set_connected",
            )
            return None
        return self._call(method, params, request_id)

    def _call(self, method: str, params: JsonValue, request_id: str | None) -> str | None:
        outcome = self._host.model.call(method, params)
        if method == "shutdown" and outcome is not None:
            self._host.request_shutdown()
        if request_id is None:
            return None
        if outcome is None:
            return w.error_reply(w.METHOD_NOT_FOUND, "method not found", request_id)
        if isinstance(outcome, Err):
            return w.error_reply(outcome.code, outcome.message, request_id)
        return w.result_reply(outcome.result, request_id)

    async def _slow_call(
        self, client: EventClient, method: str, params: JsonValue, request_id: str | None
    ) -> None:
        await self._host.sleep_simulated(CONNECT_S)
        await self._host.wait_unstalled()
        reply = self._call(method, params, request_id)
        if reply is not None and client in self._clients:
            client.send(reply)
