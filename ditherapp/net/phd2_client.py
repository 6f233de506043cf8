"""The asyncio client of PHD2's event server.

One connection, one reader task that never waits on anything but the socket, a future
per request id, and a supervisor that reconnects with capped, jittered backoff and
resyncs (``get_app_state``, ``get_settling``) after every connect. When the link drops
every pending request fails at once with ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from ditherapp.core.errors import ConnectionLost, DitherAppError
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2 import watchdog
from ditherapp.core.phd2.appstate import AppStateTracker, Phd2State
from ditherapp.core.phd2.connection import Phd2Connection
from ditherapp.core.phd2.rpc import JsonParams, RpcError, RpcResult
from ditherapp.net.backoff import Backoff, reconnect_forever
from ditherapp.net.listeners import Listeners

log = logging.getLogger(__name__)

Connector = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]

DEFAULT_TIMEOUT_S = 10.0
METHOD_TIMEOUTS_S = {
    "set_connected": 60.0,
    "set_profile": 60.0,
    "find_star": 30.0,
    "guide": 30.0,
    "capture_single_frame": 30.0,
    "get_star_image": 30.0,
}
CONNECT_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 5.0
"""A quiet PHD2 that is not guiding is asked get_app_state; this long without a reply
(and nothing else heard) is a dead link."""
READ_CHUNK = 65536


def event_port(instance: int) -> int:
    return 4400 + instance - 1


def legacy_port(instance: int) -> int:
    return 4300 + instance - 1


class Phd2RpcError(DitherAppError):
    """PHD2 answered a request with an error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"PHD2 refused {method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


async def open_current(
    address: Callable[[], tuple[str, int]], connect: Connector
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to where ``address()`` says PHD2 is. If it names somewhere else by the
    time an attempt ends (the user changed it meanwhile), that attempt's result says
    nothing: try the new address at once, within the same attempt."""
    while True:
        target = address()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await connect(*target)
        except (OSError, TimeoutError):
            if address() != target:
                continue
            raise
        if address() == target:
            return reader, writer
        writer.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatus:
    host: str
    port: int
    backend: str = "event"
    connected: bool = False
    state: Phd2State = Phd2State.UNKNOWN
    settling: bool = False
    version: str = ""
    retry_at: float | None = None
    """Monotonic time of the next connection attempt while disconnected."""
    last_error: str = ""
    bad_lines: int = 0


def _new_watchdog() -> watchdog.LinkWatchdog:
    # The limits are read at each connect, so an accelerated soak can compress them.
    return watchdog.LinkWatchdog(
        started_at=time.monotonic(),
        floor_s=watchdog.SILENCE_FLOOR_S,
        ceiling_s=watchdog.NOTICE_WITHIN_S,
        probe_after_s=watchdog.PROBE_AFTER_S,
    )


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port, limit=READ_CHUNK)


class Phd2Client:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect: Connector = _open,
        backoff: Backoff | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._connect = connect
        self._backoff = backoff or Backoff()
        self._conn = Phd2Connection()
        self._tracker = AppStateTracker()
        self._settling = False
        self._settle_events = 0
        """SettleBegin and SettleDone events read, so a stale get_settling answer is
        known for one."""
        self._writer: asyncio.StreamWriter | None = None
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._serial = asyncio.Lock()
        self._event_listeners: Listeners[ev.Phd2Event] = Listeners("PHD2 event")
        self._link_listeners: Listeners[LinkStatus] = Listeners("PHD2 link")
        self._status = LinkStatus(host=host, port=port)
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._closed_by_us = ""
        """Why we closed the connection ourselves, for the status, instead of blaming PHD2."""
        self._watchdog = _new_watchdog()
        """Judges a PHD2 that hangs with its socket open (core/phd2/watchdog.py)."""
        self._in_line: set[asyncio.Task[Any]] = set()
        """Requests to a PHD2 without OverlapSupport, each waiting for its turn or reply
        (they end by themselves: the link dropping fails them)."""

    # ---------------------------------------------------------------- observation

    @property
    def status(self) -> LinkStatus:
        return self._status

    @property
    def connected(self) -> bool:
        return self._writer is not None

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        """Call ``callback`` with every event, in order, from the reader task. It must not
        block. Returns a function that removes it."""
        return self._event_listeners.add(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        return self._link_listeners.add(callback)

    async def wait_connected(self) -> None:
        await self._connected.wait()

    def reconnect_now(self) -> None:
        """Skip the remaining backoff wait (or drop and redo a live connection)."""
        self._close_now("reconnecting on request")

    def retarget(self, host: str, port: int) -> None:
        """Connect somewhere else from the next attempt on."""
        self.host, self.port = host, port
        self._update(host=host, port=port)
        self._close_now(f"PHD2 is now looked for at {host}:{port}")

    def _close_now(self, reason: str) -> None:
        self._backoff.reset()
        if self._writer is not None:
            self._closed_by_us = reason
            self._writer.close()
        self._wake.set()

    # ---------------------------------------------------------------- requests

    async def request(
        self, method: str, params: JsonParams = None, *, time_limit: float | None = None
    ) -> Any:
        """Send one request and return its result.

        Raises ``Phd2RpcError`` for an error reply, ``ConnectionLost`` if the link is
        down or drops, ``TimeoutError`` after the method's time limit.
        """
        limit = (
            time_limit
            if time_limit is not None
            else METHOD_TIMEOUTS_S.get(method, DEFAULT_TIMEOUT_S)
        )
        result = await self._request(method, params, limit)
        if method == "get_exposure" and isinstance(result, int | float):
            self._watchdog.exposure_hint(float(result) / 1000.0)
        return result

    async def _request(self, method: str, params: JsonParams, limit: float) -> Any:
        if self._conn.overlap_support:
            return await self._reply(method, self._send(method, params), limit)
        # Servers without OverlapSupport (before 2.6.7) lose pipelined requests: one at a
        # time. A caller cancelled while it waits for its turn sends nothing; a request
        # once written holds the line until it is answered, timed out or the link drops,
        # even if its caller stops waiting, or the next one would be lost.
        await self._serial.acquire()
        try:
            sent = self._send(method, params)
        except BaseException:
            self._serial.release()
            raise
        task = asyncio.get_running_loop().create_task(
            self._reply(method, sent, limit), name=f"phd2-{method}"
        )
        self._in_line.add(task)
        task.add_done_callback(self._line_free)
        return await asyncio.shield(task)

    def _line_free(self, task: asyncio.Task[Any]) -> None:
        self._in_line.discard(task)
        self._serial.release()
        if not task.cancelled():
            task.exception()  # its caller, if still waiting, has it; if not, nobody needs it

    def _send(self, method: str, params: JsonParams) -> tuple[int, asyncio.Future[Any]]:
        writer = self._writer
        if writer is None:
            raise ConnectionLost("not connected to PHD2")
        request_id, data = self._conn.send_request(method, params)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        writer.write(data)
        return request_id, future

    async def _reply(self, method: str, sent: tuple[int, asyncio.Future[Any]], limit: float) -> Any:
        request_id, future = sent
        sent_at = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                reply = await future
        except TimeoutError:
            dead = self._watchdog.request_timed_out(sent_at, time.monotonic(), method)
            if dead is not None and request_id in self._futures:
                self._declare_dead(dead)
            raise TimeoutError(f"PHD2 did not answer {method} within {limit:g} s") from None
        finally:
            self._futures.pop(request_id, None)
            self._conn.forget(request_id)
        if isinstance(reply, RpcError):
            raise Phd2RpcError(method, reply.code, reply.message)
        return reply.result

    # ---------------------------------------------------------------- supervisor

    async def run(self) -> None:
        """Connect, read, and reconnect for ever (until cancelled)."""
        await reconnect_forever(
            self._session,
            backoff=self._backoff,
            wake=self._wake,
            errors=(OSError, TimeoutError, ConnectionLost),
            on_error=lambda reason: self._update(last_error=reason),
            on_wait=lambda delay: self._update(retry_at=time.monotonic() + delay),
        )

    async def _session(self) -> None:
        reader, writer = await open_current(lambda: (self.host, self.port), self._connect)
        self._writer = writer
        self._closed_by_us = ""
        self._watchdog = _new_watchdog()
        self._conn = Phd2Connection()
        self._tracker = AppStateTracker()
        self._settling = False
        self._backoff.reset()
        log.info("connected to PHD2 at %s:%d", self.host, self.port)
        try:
            async with asyncio.TaskGroup() as group:
                reading = group.create_task(self._read(reader), name="phd2-reader")
                group.create_task(self._resync(), name="phd2-resync")
                watching = group.create_task(self._watch(writer), name="phd2-watchdog")
                await reading
                watching.cancel()
        except* (OSError, ConnectionLost, TimeoutError) as errors:
            self._update(last_error=str(errors.exceptions[0]))
            # On 3.11 a cancel arriving while the link fails can be swallowed by the task
            # group; honour it, or run() would go on reconnecting after being cancelled.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError from None
        finally:
            self._drop(writer)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(READ_CHUNK)
            if not data:
                raise ConnectionLost(self._closed_by_us or "PHD2 closed the connection")
            self._watchdog.heard(time.monotonic())
            for message in self._conn.receive_data(data):
                if isinstance(message, ev.Phd2Event):
                    self._on_event(message)
                elif isinstance(message, RpcResult | RpcError):
                    self._on_reply(message)
            if self._conn.bad_lines != self._status.bad_lines:
                log.warning("PHD2 sent a line we could not read: %s", self._conn.last_error)
                self._update(bad_lines=self._conn.bad_lines)
                if self._status.connected:
                    # The lost line may have been a SettleDone or a state change: ask.
                    self._spawn_state_query()

    async def _resync(self) -> None:
        """After a connect (or a lost line): ask rather than guess."""
        state = await self.request("get_app_state")
        self._tracker.set(Phd2State.parse(state))
        settle_events = self._settle_events
        try:
            settling = await self.request("get_settling")
        except Phd2RpcError:
            settling = False  # PHD2 before 2.6.4 has no get_settling
        if self._settle_events == settle_events:  # (see _query_state)
            self._settling = bool(settling)
        version = self._conn.version
        self._update(
            connected=True,
            state=self._tracker.state,
            settling=self._settling,
            version=(version.phd_version + version.phd_subver) if version else "",
            retry_at=None,
            last_error="",
        )
        self._connected.set()

    def _on_reply(self, reply: RpcResult | RpcError) -> None:
        if not isinstance(reply.id, int):
            log.warning("PHD2 error with no request id: %s", getattr(reply, "message", reply))
            return
        future = self._futures.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

    async def _watch(self, writer: asyncio.StreamWriter) -> None:
        """Close the link when the watchdog says PHD2 hangs (the reader then ends the
        session, and the supervisor reconnects)."""
        watchdog = self._watchdog
        while self._writer is writer:
            now = time.monotonic()
            dead = watchdog.dead(now)
            if dead is not None:
                self._declare_dead(dead)
                return
            if watchdog.probe_due(now) and self._status.connected:
                watchdog.probe_sent(now)
                self._spawn(self._probe(), "phd2-probe")
            await asyncio.sleep(max(0.05, min(1.0, watchdog.next_check(now) - now)))

    async def _probe(self) -> None:
        with contextlib.suppress(ConnectionLost, TimeoutError, Phd2RpcError):
            await self.request("get_app_state", time_limit=PROBE_TIMEOUT_S)

    def _declare_dead(self, reason: str) -> None:
        if self._writer is None or self._closed_by_us:
            return
        log.warning("%s; reconnecting", reason)
        self._closed_by_us = reason
        self._writer.close()
        self._writer.transport.abort()  # a hung PHD2 would not take our goodbye

    def _on_event(self, event: ev.Phd2Event) -> None:
        if isinstance(event, ev.GuideStep | ev.StarLost):
            self._watchdog.guide_frame(time.monotonic())
        before = (self._tracker.state, self._settling)
        self._tracker.apply(event)
        if isinstance(event, ev.SettleBegin):
            self._settling = True
            self._settle_events += 1
        elif isinstance(event, ev.SettleDone):
            self._settling = False
            self._settle_events += 1
        self._event_listeners(event)
        if self._status.connected and before != (self._tracker.state, self._settling):
            self._update(state=self._tracker.state, settling=self._settling)
        if self._tracker.needs_query and self._status.connected:
            self._tracker.needs_query = False
            self._spawn_state_query()

    def _spawn_state_query(self) -> None:
        self._spawn(self._query_state(), "phd2-state")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _query_state(self) -> None:
        with contextlib.suppress(ConnectionLost, TimeoutError, Phd2RpcError):
            state = await self.request("get_app_state")
            self._tracker.set(Phd2State.parse(state))
            settle_events = self._settle_events
            settling = await self.request("get_settling")
            # A SettleBegin or SettleDone read since the question went out (the reply
            # and a SettleDone can come in one chunk, the event handled before this
            # task runs again) is newer than the answer or says the same: keep it.
            if self._settle_events == settle_events:
                self._settling = bool(settling)
            if self._status.connected:
                self._update(state=self._tracker.state, settling=self._settling)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._writer = None
        self._connected.clear()
        self._conn.connection_lost()
        lost = ConnectionLost("the connection to PHD2 dropped")
        for future in self._futures.values():
            if not future.done():
                future.set_exception(lost)
        self._futures.clear()
        for task in list(self._background):
            task.cancel()
        if self._status.connected:
            log.warning("lost the connection to PHD2 at %s:%d", self.host, self.port)
        self._settling = False
        self._update(connected=False, state=Phd2State.UNKNOWN, settling=False)

    def _update(self, **changes: Any) -> None:
        if "state" in changes:
            self._watchdog.set_guiding(changes["state"] is Phd2State.GUIDING, time.monotonic())
        new = replace(self._status, **changes)
        if new == self._status:
            return
        self._status = new
        self._link_listeners(new)
