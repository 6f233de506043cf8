"""PHD2's legacy socket server as a guider backend, and the ``auto`` backend.

``LegacyGuider`` speaks the one-byte protocol on port 4300 + instance - 1 (research note
§6): one connection, one reader task, one command in flight at a time (a reply byte says
nothing about which command it answers, so they never overlap), a per-command time
limit, and reconnection with capped, jittered backoff. A poll loop reads MSG_GETSTATUS
every ``poll_s`` seconds for the link status.

PHD2 does not report a legacy dither's settle: the SettleDone it sends event-server
clients ten frames after a MOVEn means only that ten frames passed. So the dither polls
GETSTATUS and REQDIST itself and lets ``LegacySettleDetector`` decide, under the
request's own timeout. To make both backends look the same to the service and the
window, it hands its event listeners **synthesised** ``SettleBegin``, ``Settling`` (one
per poll) and ``SettleDone`` events. They carry no Timestamp/Host/Inst, which is how to
tell them from PHD2's. The legacy port cannot dither RA-only: PHD2 decides that from its
profile, so ``request.ra_only`` is not sent.

``AutoGuider`` uses the event server, and the legacy port only when that alone answers:

* the event-server client runs all the time, retrying with its own backoff;
* when one of its connection attempts fails (refused, timed out, or closed before its
  resync; a connection that was up and then dropped does not count, its retry does),
  the legacy guider is started;
* the legacy guider is adopted when an event-server attempt fails while the legacy
  port is connected. When the legacy port connects, the event client is asked to try
  again at once, so the rule is checked against a fresh attempt, not a stale one (after
  a PHD2 restart both ports come back, and this keeps us from settling on legacy);
* as soon as the event client connects, the event server is used again and the legacy
  connection is closed, but never under a running legacy dither: the switch waits for
  it to end.

``backend`` and ``status.backend`` always name the one in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.errors import ConnectionLost, LocalProtocolError, RemoteProtocolError
from ditherapp.core.guiding_stats import GuideHistory, GuideSample
from ditherapp.core.phd2 import events as ev
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.core.phd2.legacy import (
    STATUS_GUIDING,
    STATUS_LOST_LOCK,
    Command,
    LegacySettleDetector,
    SettleUpdate,
    Verdict,
    encode_command,
    encode_lock_position,
    move_accepted,
    move_command,
    move_pixels,
    reqdist_pixels,
    state_from_status,
)
from ditherapp.net.backoff import Backoff, reconnect_forever
from ditherapp.net.guider import EventGuider, Guider
from ditherapp.net.listeners import Listeners
from ditherapp.net.phd2_client import Connector, LinkStatus, Phd2Client, open_current

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0
"""PHD2 answers on its GUI thread, within milliseconds unless it is stuck."""
COMMAND_TIMEOUTS_S = {Command.MSG_AUTOFINDSTAR: 30.0}
"""Star selection runs synchronously on the current frame."""

REFUSE_REASONS = {
    Phd2State.PAUSED: "PHD2 is paused",
    Phd2State.LOST_LOCK: "PHD2 has lost the guide star",
}


async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(host, port)


class LegacyGuider:
    """PHD2 through its legacy one-byte socket server."""

    backend = "legacy"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        poll_s: float = 1.0,
        connect: Connector = _open,
        backoff: Backoff | None = None,
        command_timeout_s: float = COMMAND_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.host = host
        self.port = port
        self.poll_s = poll_s
        """Seconds between polls, idle and while settling; may be changed at any time."""
        self._connect = connect
        self._backoff = backoff or Backoff()
        self._command_timeout_s = command_timeout_s
        self._clock = clock
        self._writer: asyncio.StreamWriter | None = None
        self._pending: asyncio.Future[int] | None = None
        self._orphans = 0
        """Replies still to come for commands whose caller was cancelled."""
        self._abort_reason = ""
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._lost.set()
        self._wake = asyncio.Event()
        self._dithering = False
        self._event_listeners: Listeners[ev.Phd2Event] = Listeners("PHD2 event")
        self._link_listeners: Listeners[LinkStatus] = Listeners("PHD2 link")
        self._status = LinkStatus(host=host, port=port, backend=self.backend)
        self.history = GuideHistory()
        """REQDIST while guiding, between dithers: the baseline of a calm settle."""

    # ---------------------------------------------------------------- observation

    @property
    def status(self) -> LinkStatus:
        return self._status

    @property
    def dithering(self) -> bool:
        return self._dithering

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        """Only synthesised settle events come this way: the legacy port sends none."""
        return self._event_listeners.add(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        return self._link_listeners.add(callback)

    def reconnect_now(self) -> None:
        """Skip the remaining backoff wait (or drop and redo a live connection)."""
        self._backoff.reset()
        self._abort("reconnecting on request")
        self._wake.set()

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:  # noqa: ARG002
        self.host, self.port = host, legacy_port
        self._update(host=host, port=legacy_port)
        self._backoff.reset()
        self._abort(f"PHD2 is now looked for at {host}:{legacy_port}")
        self._wake.set()

    def prepare(self) -> None:
        """Nothing to ask ahead: the legacy port takes one command at a time, so an early
        MSG_GETSTATUS would only queue before the dither's own."""

    # ---------------------------------------------------------------- commands

    async def command(self, command: Command) -> int:
        """Send one command byte and return PHD2's reply byte.

        Raises ``ConnectionLost`` if the link is down or drops, ``TimeoutError`` if PHD2
        does not answer in time (the connection is then dropped: a late reply would be
        taken for the answer to the next command).
        """
        limit = COMMAND_TIMEOUTS_S.get(command, self._command_timeout_s)
        return await self._exchange(encode_command(command), command.name, limit)

    async def set_lock_position(self, x: int, y: int) -> None:
        """MSG_SETLOCKPOSITION: lock onto the star nearest (x, y). PHD2 always replies 0."""
        await self._exchange(
            encode_lock_position(x, y), Command.MSG_SETLOCKPOSITION.name, self._command_timeout_s
        )

    async def state(self) -> Phd2State:
        """PHD2's app state, asked now (MSG_GETSTATUS)."""
        state = state_from_status(await self.command(Command.MSG_GETSTATUS))
        self._update(state=state)
        return state

    async def pause(self) -> None:
        """Pause guiding; frames go on (the legacy port cannot pause fully)."""
        await self.command(Command.MSG_PAUSE)

    async def resume(self) -> None:
        await self.command(Command.MSG_RESUME)

    async def _exchange(self, data: bytes, name: str, limit: float) -> int:
        async with self._lock:
            writer = self._writer
            if writer is None:
                raise ConnectionLost("not connected to PHD2's legacy server")
            reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self._pending = reply
            try:
                writer.write(data)
                async with asyncio.timeout(limit):
                    return await reply
            except TimeoutError:
                message = f"PHD2 did not answer {name} within {limit:g} s"
                self._abort(message)
                raise TimeoutError(message) from None
            except asyncio.CancelledError:
                if reply.cancelled() and self._pending is reply:
                    self._orphans += 1  # its reply is still to come: skip it
                raise
            finally:
                self._pending = None

    # ---------------------------------------------------------------- supervisor

    async def run(self) -> None:
        """Connect, poll, and reconnect for ever (until cancelled)."""
        await reconnect_forever(
            self._session,
            backoff=self._backoff,
            wake=self._wake,
            errors=(OSError, TimeoutError),
            on_error=lambda reason: self._update(last_error=reason),
            on_wait=lambda delay: self._update(retry_at=self._clock() + delay),
        )

    async def _session(self) -> None:
        reader, writer = await open_current(lambda: (self.host, self.port), self._connect)
        self._writer = writer
        self._lost = asyncio.Event()
        self._orphans = 0
        self._abort_reason = ""
        try:
            async with asyncio.TaskGroup() as group:
                reading = group.create_task(self._read(reader), name="phd2-legacy-reader")
                group.create_task(self._poll(), name="phd2-legacy-poll")
                # Waiting in the body (not only in the group's exit) lets Python 3.11's
                # TaskGroup withdraw its own cancel when a child fails.
                await reading
        except* (OSError, ConnectionLost, TimeoutError, RemoteProtocolError) as errors:
            self._update(last_error=str(errors.exceptions[0]))
        finally:
            self._drop(writer)
        _reraise_pending_cancel()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(64)
            if not data:
                raise ConnectionLost(self._abort_reason or "PHD2 closed the connection")
            for byte in data:
                if self._orphans:
                    self._orphans -= 1
                    continue
                pending = self._pending
                if pending is not None and pending.cancelled():
                    self._pending = None  # the reply to a command its caller gave up
                    continue
                if pending is None or pending.done():
                    # Nothing asked: PHD2 never does this, so it is not PHD2's legacy
                    # server (the event port sends JSON at once), or we are out of step.
                    raise RemoteProtocolError(
                        f"{self.host}:{self.port} sent byte {byte} that answers no command: "
                        "is it PHD2's legacy socket server?"
                    )
                pending.set_result(byte)

    async def _poll(self) -> None:
        code = await self.command(Command.MSG_GETSTATUS)
        self._backoff.reset()
        log.info("connected to PHD2's legacy server at %s:%d", self.host, self.port)
        self._update(connected=True, state=state_from_status(code), retry_at=None, last_error="")
        while True:
            await asyncio.sleep(self.poll_s)
            if not self._dithering:  # the dither polls for itself
                state = await self.state()
                await self._sample_guiding(state)

    async def _sample_guiding(self, state: Phd2State) -> None:
        """While guiding, REQDIST too: the guiding error calm mode settles back to (the
        legacy port sends no GuideSteps)."""
        if self._dithering:
            return
        if state is not Phd2State.GUIDING:
            self.history.break_at(self._clock())
            return
        reqdist = await self.command(Command.MSG_REQDIST)
        if not self._dithering:
            self.history.add(GuideSample(t=self._clock(), ra=reqdist_pixels(reqdist), dec=0.0))

    def _abort(self, reason: str) -> None:
        if self._writer is not None:
            self._abort_reason = reason
            self._writer.close()

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        writer.close()
        self._writer = None
        self._lost.set()
        pending = self._pending
        if pending is not None and not pending.done():
            pending.set_exception(ConnectionLost("the connection to PHD2 dropped"))
        if self._status.connected:
            log.warning(
                "lost the connection to PHD2's legacy server at %s:%d", self.host, self.port
            )
        self._update(connected=False, state=Phd2State.UNKNOWN, settling=False)

    def _update(self, **changes: Any) -> None:
        new = replace(self._status, **changes)
        if new == self._status:
            return
        self._status = new
        self._link_listeners(new)

    def _emit(self, event: ev.Phd2Event) -> None:
        self._event_listeners(event)

    # ---------------------------------------------------------------- dither

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None] = lambda: None
    ) -> DitherOutcome:
        """Dither with the nearest MOVEn and judge the settle by polling. Never raises
        for PHD2's or the network's reasons: every way it can end is an outcome."""
        if self._dithering:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message="a dither is already running")
        self._dithering = True
        try:
            return await self._dither(request, on_settle_started)
        except ConnectionLost as exc:
            return DitherOutcome(kind=OutcomeKind.LOST, message=str(exc))
        finally:
            self._dithering = False
            self._update(settling=False)

    async def _dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None]
    ) -> DitherOutcome:
        try:
            # REQDIST is PHD2's smoothed error, GuideSteps' are raw: the baseline must
            # be of the same figure as the distances judged, so it is our own here.
            baseline = self.history.baseline(self._clock())
            detector = LegacySettleDetector(
                request.settle_pixels,
                request.settle_time,
                request.settle_timeout,
                mode=request.settle_mode,
                baseline=baseline,
            )
            code = await self.command(Command.MSG_GETSTATUS)
        except (ConnectionLost, TimeoutError, LocalProtocolError) as exc:
            # Nothing was sent that moves the mount.
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=f"PHD2 preflight: {exc}")
        state = state_from_status(code)
        self._update(state=state)
        if code != STATUS_GUIDING:
            reason = REFUSE_REASONS.get(state, f"PHD2 is not guiding (state {state.value})")
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=reason)

        lost = self._lost
        move = move_command(request.amount)
        log.info(
            "legacy dither: %s (up to %g px) for %g px requested%s",
            move.name,
            move_pixels(move),
            request.amount,
            "; RA-only is PHD2's profile setting on this port" if request.ra_only else "",
        )
        try:
            reply = await self.command(move)
        except TimeoutError as exc:
            return DitherOutcome(kind=OutcomeKind.TIMED_OUT, message=str(exc))
        if not move_accepted(reply):
            return DitherOutcome(
                kind=OutcomeKind.REFUSED, message="PHD2 refused the dither (not guiding?)"
            )
        started = self._clock()
        detector.begin(started)
        self._update(settling=True)
        self._emit(ev.SettleBegin())
        try:
            on_settle_started()
        except Exception:
            log.exception("settle-started callback failed")

        deadline = started + request.settle_timeout
        next_poll = started
        while True:
            next_poll = max(next_poll + self.poll_s, self._clock())
            if await _lost_within(lost, min(next_poll, deadline) - self._clock()):
                raise ConnectionLost("the connection to PHD2 dropped")
            try:
                update = await self._sample(detector)
            except TimeoutError as exc:
                return DitherOutcome(
                    kind=OutcomeKind.TIMED_OUT,
                    message=f"{exc}; the settle was not judged",
                    settle_s=self._clock() - started,
                )
            if not update.done:
                self._emit(detector.settling_event(update))
                continue
            self._emit(detector.done_event(update))
            self.history.break_at(self._clock())  # the next baseline starts after this
            return _outcome(update, detector)

    async def _sample(self, detector: LegacySettleDetector) -> SettleUpdate:
        code = await self.command(Command.MSG_GETSTATUS)
        reqdist = 0
        if code in (STATUS_GUIDING, STATUS_LOST_LOCK):
            reqdist = await self.command(Command.MSG_REQDIST)
        self._update(state=state_from_status(code))
        return detector.feed(self._clock(), code, reqdist)


def _reraise_pending_cancel() -> None:
    """Python 3.11's TaskGroup swallows a cancel that arrives while a child fails (it
    raises only the child's error, which we handle): without this, cancelling ``run``
    at the moment PHD2 drops the link would leave it reconnecting for ever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _lost_within(lost: asyncio.Event, delay: float) -> bool:
    """Wait up to ``delay`` seconds; True if the connection dropped meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, delay)):
            await lost.wait()
    return lost.is_set()


def _outcome(update: SettleUpdate, detector: LegacySettleDetector) -> DitherOutcome:
    rule = detector.rule
    judge = detector.judge
    return DitherOutcome(
        kind=OutcomeKind.SETTLED
        if update.verdict is Verdict.SETTLED
        else OutcomeKind.SETTLE_FAILED,
        message="" if update.verdict is Verdict.SETTLED else update.reason,
        settle_s=update.elapsed_s,
        rule=None if rule is None else rule.value,
        in_range_after_s=None if judge is None else judge.in_range_after_s,
        broken_run_s=None if judge is None else judge.longest_broken_run_s,
    )


class AutoGuider:
    """The event server when it answers, else PHD2's legacy port (rule in the module
    docstring). ``backend`` says which one is in use now."""

    def __init__(self, event: EventGuider, legacy: LegacyGuider) -> None:
        self.event = event
        self.legacy = legacy
        self.backend = event.backend
        self._active: EventGuider | LegacyGuider = event
        self._event_listeners: Listeners[ev.Phd2Event] = Listeners("PHD2 event")
        self._link_listeners: Listeners[LinkStatus] = Listeners("PHD2 link")
        self._group: asyncio.TaskGroup | None = None
        self._legacy_task: asyncio.Task[None] | None = None
        self._event_was_up = False
        self._legacy_was_up = False
        self._last_retry_at: float | None = None
        event.add_event_listener(lambda e: self._forward_event(event, e))
        legacy.add_event_listener(lambda e: self._forward_event(legacy, e))
        event.add_link_listener(self._on_event_link)
        legacy.add_link_listener(self._on_legacy_link)

    @property
    def status(self) -> LinkStatus:
        return self._active.status

    @property
    def profile(self) -> str | None:
        return self.event.profile if self._active is self.event else None

    @property
    def poll_s(self) -> float:
        return self.legacy.poll_s

    @poll_s.setter
    def poll_s(self, value: float) -> None:
        self.legacy.poll_s = value

    def add_event_listener(self, callback: Callable[[ev.Phd2Event], None]) -> Callable[[], None]:
        return self._event_listeners.add(callback)

    def add_link_listener(self, callback: Callable[[LinkStatus], None]) -> Callable[[], None]:
        return self._link_listeners.add(callback)

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self.event.run(), name="phd2-event")
        finally:
            self._group = None
            self._legacy_task = None

    def reconnect_now(self) -> None:
        """Try the event server again at once (and the legacy port, if it is in play)."""
        self.event.reconnect_now()
        if self._legacy_task is not None:
            self.legacy.reconnect_now()

    def retarget(self, host: str, event_port: int, legacy_port: int) -> None:
        self.event.retarget(host, event_port, legacy_port)
        self.legacy.retarget(host, event_port, legacy_port)

    def prepare(self) -> None:
        self._active.prepare()

    async def dither(
        self, request: DitherRequest, on_settle_started: Callable[[], None] = lambda: None
    ) -> DitherOutcome:
        try:
            return await self._active.dither(request, on_settle_started)
        finally:
            if self._active is self.legacy and self.event.status.connected:
                self._use_event()  # the switch that waited for this dither

    # ---------------------------------------------------------------- switching

    def _on_event_link(self, status: LinkStatus) -> None:
        if status.connected:
            self._event_was_up = True
            if self._active is self.legacy:
                if not self.legacy.dithering:
                    self._use_event()
                return
            self._stop_legacy()
        elif status.retry_at is not None and status.retry_at != self._last_retry_at:
            self._last_retry_at = status.retry_at
            if self._event_was_up:
                self._event_was_up = False  # a drop; the next attempt decides
            elif self._active is self.event:
                self._event_attempt_failed()
        if self._active is self.event:
            self._publish(status)

    def _on_legacy_link(self, status: LinkStatus) -> None:
        came_up = status.connected and not self._legacy_was_up
        self._legacy_was_up = status.connected
        if self._active is self.legacy:
            self._publish(status)
        elif came_up and not self.event.client.connected:
            # Check the rule against a fresh event-server attempt, not an old one (an
            # attempt already past its connect is left alone: it decides by itself).
            self.event.reconnect_now()

    def _event_attempt_failed(self) -> None:
        if self.legacy.status.connected:
            self._use_legacy()
        elif self._legacy_task is None and self._group is not None:
            log.info("PHD2's event server does not answer; trying its legacy port too")
            self._legacy_task = self._group.create_task(self.legacy.run(), name="phd2-legacy")

    def _use_legacy(self) -> None:
        log.warning(
            "PHD2's event server at %s:%d does not answer but its legacy port does: using it",
            self.event.status.host,
            self.event.status.port,
        )
        self._active = self.legacy
        self.backend = self.legacy.backend
        self._publish(self.legacy.status)

    def _use_event(self) -> None:
        if self._active is not self.event:
            log.info("PHD2's event server answers again: using it")
            self._active = self.event
            self.backend = self.event.backend
            self._publish(self.event.status)
        self._stop_legacy()

    def _stop_legacy(self) -> None:
        if self._legacy_task is not None:
            self._legacy_task.cancel()
            self._legacy_task = None

    def _publish(self, status: LinkStatus) -> None:
        self._link_listeners(status)

    def _forward_event(self, source: EventGuider | LegacyGuider, event: ev.Phd2Event) -> None:
        if source is self._active:
            self._event_listeners(event)


def make_guider(
    backend: str,
    *,
    host: str,
    event_port: int,
    legacy_port: int,
    poll_s: float = 1.0,
    restore_path: Path | None = None,
    time_scale: float = 1.0,
) -> Guider:
    """The guider for the ``phd2backend`` setting: "event", "legacy" or "auto"."""
    if backend == "event":
        return EventGuider(
            Phd2Client(host, event_port), restore_path=restore_path, time_scale=time_scale
        )
    if backend == "legacy":
        return LegacyGuider(host, legacy_port, poll_s=poll_s)
    if backend == "auto":
        return AutoGuider(
            EventGuider(
                Phd2Client(host, event_port), restore_path=restore_path, time_scale=time_scale
            ),
            LegacyGuider(host, legacy_port, poll_s=poll_s),
        )
    raise LocalProtocolError(f"unknown PHD2 backend {backend!r}: use auto, event or legacy")
