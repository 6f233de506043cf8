"""The control socket: camera agents, controllers (ditherctl) and SimpleDither's client.py.

Each client gets one task that reads and one that writes from a bounded queue. A client
whose replies pile up is not read from until it has taken them (back-pressure); one
that reads nothing at all for SEND_STALL_S, or that stops reading the events it
subscribed to, is dropped instead of slowing anyone else down. A client's requests are
handled a batch at a time, so one client's flood cannot keep the others waiting.
Every deadline runs on its own clock: a byte now and then buys nothing. Nothing a client
sends can raise out of its own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Self

from ditherapp import __version__
from ditherapp.core import control as proto
from ditherapp.core.phd2.events import Phd2Event, UnknownEvent
from ditherapp.core.settings import SettingError, SettingLocked
from ditherapp.net.service import (
    DitherRecorded,
    DitherRefused,
    DitherService,
    FrameRecorded,
    Notice,
    Phd2EventSeen,
    SelfCheckChanged,
    ServiceEvent,
    SettingChanged,
)

log = logging.getLogger(__name__)

FIRST_MESSAGE_TIMEOUT_S = 10.0
"""A client that has not sent one whole line this long after connecting is dropped."""
LINE_TIMEOUT_S = 10.0
"""A line begun must be finished within this, counted from its first byte (a client
sending one byte a second is not a client that is talking)."""
CAMERA_SILENCE_S = 30.0
"""Camera agents send a heartbeat every 2 s; this much silence means they are gone."""
CONTROLLER_IDLE_S = 15.0
"""A controller that neither asks anything nor subscribed is dropped after this, well
before a camera would be: ditherctl connects, asks and goes."""
EVICTABLE_AFTER_S = 2.0
"""With every slot taken, a newcomer takes the slot of the client other than a camera
that has been quiet longest, if for this long: a restarting hook is never shut out by
clients that only hold their connections."""
MAX_CLIENTS = 64
SEND_QUEUE = 1024
HIGH_WATER = SEND_QUEUE - 64
"""Requests are not handled while this many messages wait to go out..."""
LOW_WATER = SEND_QUEUE // 4
"""...until the client has taken them down to this many."""
SEND_STALL_S = 30.0
"""A client whose replies wait this long without it reading any is not reading."""
BATCH = 8
"""Requests handled from one client before the others get their turn."""
READ_CHUNK = 65536


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ControlServerError(Exception):
    """The control socket cannot be started as configured."""


@dataclass(slots=True, eq=False)
class Session:
    """One connected client."""

    number: int
    writer: asyncio.StreamWriter
    connected_at: float = 0.0
    """Loop time of the connect."""
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    role: str = "unknown"
    camera: str | None = None
    authorised: bool = False
    subscribed: bool = False
    closing: bool = False
    sender: asyncio.Task[None] | None = None
    last_message: float = 0.0
    """Loop time of the last whole line (or of the connect)."""
    line_started: float | None = None
    """Loop time of the first byte of the line not finished yet."""
    room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the writer when the queue has gone down to LOW_WATER."""

    def send(self, message: dict[str, Any]) -> None:
        self.send_bytes(proto.encode(message))

    def send_bytes(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            log.warning("control client %d is not reading; dropping it", self.number)
            self.abort()

    def abort(self) -> None:
        self.close()
        self.writer.transport.abort()  # its unsent data would keep the socket open

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.room.set()  # a reader waiting for room sees the close
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
        if self.queue.full():
            self.writer.transport.abort()


class ControlServer:
    def __init__(
        self,
        service: DitherService,
        *,
        host: str = "127.0.0.1",
        port: int = 5322,
        token: str = "",
        max_clients: int = MAX_CLIENTS,
        first_message_timeout_s: float = FIRST_MESSAGE_TIMEOUT_S,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ControlServerError(
                f"the control socket may listen on {host} only with a token set "
                "(controltoken), since anyone on the network could reach it"
            )
        self.service = service
        self.host = host
        self._port = port
        self.token = token
        self.max_clients = max_clients
        self.first_message_timeout_s = first_message_timeout_s
        self._server: asyncio.Server | None = None
        self._sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = 0
        self._unsubscribe = service.subscribe(self._on_service_event)

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def clients(self) -> int:
        return len(self._sessions)

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._accept, self.host, self._port, limit=READ_CHUNK
            )
        except OSError as exc:
            raise ControlServerError(
                f"cannot listen on {self.host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        log.info("control socket listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop listening; let every client's queued messages (resumes on shutdown)
        go out for up to a second, then drop them."""
        self._unsubscribe()
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.close()
        senders = [s.sender for s in self._sessions if s.sender is not None]
        if senders:
            await asyncio.wait(senders, timeout=1.0)
        for session in list(self._sessions):
            session.writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- sessions

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        now = asyncio.get_running_loop().time()
        if len(self._sessions) >= self.max_clients and not self._make_room(now):
            with contextlib.suppress(OSError):
                writer.write(proto.encode(proto.error("busy", "too many clients")))
                writer.close()
            return
        self._numbers += 1
        session = Session(number=self._numbers, writer=writer, connected_at=now, last_message=now)
        session.authorised = not self.token
        self._sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        sender = asyncio.get_running_loop().create_task(
            self._write(session), name=f"control-write-{session.number}"
        )
        session.sender = sender
        self._tasks.add(sender)
        try:
            await self._read(session, reader)
        except (OSError, asyncio.IncompleteReadError):
            pass
        except Exception:
            log.exception("control client %d failed", session.number)
        finally:
            self._sessions.discard(session)
            if session.camera is not None:
                self.service.detach_camera(session.camera)
            session.close()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(2.0):
                    await asyncio.shield(sender)
            sender.cancel()
            writer.close()
            self._tasks.discard(sender)
            if task is not None:
                self._tasks.discard(task)

    def _make_room(self, now: float) -> bool:
        """Every slot is taken: drop the client (never a camera) quiet for longest, if
        it has been quiet EVICTABLE_AFTER_S at least. False if there is none."""
        quiet = [
            s
            for s in self._sessions
            if s.role != "camera" and not s.closing and now - s.last_message >= EVICTABLE_AFTER_S
        ]
        if not quiet:
            return False
        victim = min(quiet, key=lambda s: (s.subscribed, s.last_message))
        log.info("control client %d was quiet; its slot goes to a new client", victim.number)
        victim.send(proto.error("idle", "dropped to make room for another client"))
        victim.close()
        # Its goodbye has a second to go out; a client that does not read it is cut.
        asyncio.get_running_loop().call_later(1.0, victim.writer.transport.abort)
        self._sessions.discard(victim)  # its slot is free now, not when its task ends
        return True

    async def _write(self, session: Session) -> None:
        writer = session.writer
        try:
            while True:
                data = await session.queue.get()
                if data is None:
                    break
                writer.write(data)
                await writer.drain()
                if session.queue.qsize() <= LOW_WATER:
                    session.room.set()
        except (OSError, ConnectionError):
            pass
        finally:
            session.room.set()
            with contextlib.suppress(OSError):
                writer.close()

    async def _read(self, session: Session, reader: asyncio.StreamReader) -> None:
        decoder = proto.ControlDecoder()
        loop = asyncio.get_running_loop()
        first = True
        while not session.closing:
            deadline, why = self._deadline(session, decoder, first=first)
            try:
                async with asyncio.timeout_at(deadline):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                log.info("control client %d: %s; dropping it", session.number, why)
                session.send(proto.error("idle" if why.startswith("idle") else "timeout", why))
                return
            if not data:
                return
            now = loop.time()
            items = decoder.feed(data)
            if items:
                first = False
                session.last_message = now
            if not decoder.pending:
                session.line_started = None
            elif items or session.line_started is None:
                session.line_started = now  # the unfinished line began in this chunk
            for count, item in enumerate(items, 1):
                if not await self._wait_for_room(session):
                    return
                self._handle(session, item)
                if session.is_closing():  # _handle may have closed it
                    return
                if count % BATCH == 0:
                    await asyncio.sleep(0)  # the other clients' turn

    def _deadline(
        self, session: Session, decoder: proto.ControlDecoder, *, first: bool
    ) -> tuple[float | None, str]:
        """When this client's read times out, and what to tell it then."""
        deadlines: list[tuple[float, str]] = []
        if first:
            limit = self.first_message_timeout_s
            deadlines.append((session.connected_at + limit, f"no message for {limit:.0f} s"))
        elif session.role == "camera":
            deadlines.append(
                (session.last_message + CAMERA_SILENCE_S, f"silent for {CAMERA_SILENCE_S:.0f} s")
            )
        elif not session.subscribed:
            deadlines.append(
                (
                    session.last_message + CONTROLLER_IDLE_S,
                    f"idle: no request for {CONTROLLER_IDLE_S:.0f} s",
                )
            )
        if session.line_started is not None and decoder.pending:
            deadlines.append(
                (
                    session.line_started + LINE_TIMEOUT_S,
                    f"a line begun was not finished within {LINE_TIMEOUT_S:.0f} s",
                )
            )
        if not deadlines:
            return None, ""
        return min(deadlines)

    async def _wait_for_room(self, session: Session) -> bool:
        """Back-pressure: while this client's replies pile up, handle none of its
        requests (and so read none), until it has read them. False if it reads nothing
        for SEND_STALL_S, or is closed meanwhile."""
        if session.queue.qsize() < HIGH_WATER:
            return not session.closing
        try:
            async with asyncio.timeout(SEND_STALL_S):
                while session.queue.qsize() > LOW_WATER and not session.closing:
                    session.room.clear()
                    await session.room.wait()
        except TimeoutError:
            log.warning(
                "control client %d has read nothing for %.0f s; dropping it",
                session.number,
                SEND_STALL_S,
            )
            session.abort()
            return False
        return not session.closing

    # ---------------------------------------------------------------- requests

    def _handle(self, session: Session, item: proto.Incoming) -> None:
        if isinstance(item, proto.Fault):
            if not session.authorised:
                session.send(proto.error("unauthorized", "a valid token is required"))
                session.close()
                return
            session.send(item.reply())
            if item.close:
                session.close()
            return
        if isinstance(item, proto.LegacyRequest):
            self._handle_legacy(session, item)
            return
        if not session.authorised:
            supplied = item.body.get("token")
            if not isinstance(supplied, str) or not hmac.compare_digest(
                # (a lone surrogate cannot be UTF-8; it cannot be the token either)
                supplied.encode("utf-8", "surrogatepass"),
                self.token.encode(),
            ):
                session.send(proto.error("unauthorized", "a valid token is required"))
                session.close()
                return
            session.authorised = True
        try:
            self._dispatch(session, item)
        except SettingLocked as exc:
            session.send(proto.error("not_allowed", str(exc)))
        except SettingError as exc:
            session.send(proto.error("invalid_value", str(exc)))
        except DitherRefused as exc:
            session.send(proto.error("refused", str(exc)))

    def _dispatch(self, session: Session, request: proto.Request) -> None:
        body = request.body
        match request.type:
            case "hello":
                self._hello(session, body)
            case "frame" | "capture" | "paused" | "ack" | "suspect" | "selfcheck" if (
                session.camera is not None
            ):
                self.service.camera_message(session.camera, body)
            case "heartbeat":
                pass
            case "frame" | "capture" | "paused" | "ack" | "suspect" | "selfcheck":
                session.send(proto.error("bad_request", "say hello as a camera first"))
            case "diagnostics":
                session.send(self.service.diagnostics())
            case "frames":
                suspect = body.get("suspect") is True
                records = self.service.frame_records(suspect_only=suspect)
                session.send({"type": "frames", "suspect": suspect, "frames": records})
            case "get":
                self._get(session, body)
            case "set":
                name = body.get("name")
                if not isinstance(name, str):
                    session.send(proto.error("bad_request", "set needs a 'name'"))
                    return
                if "value" not in body:
                    session.send(proto.error("invalid_value", f"{name} needs a 'value'"))
                    return
                value = self.service.set_setting(name, body["value"], remote=True)
                session.send({"type": "value", "name": name.strip().lower(), "value": value})
            case "status":
                session.send(self.service.snapshot())
            case "dither_now":
                self.service.dither_now()
                session.send({"type": "ok"})
            case "enable" | "disable":
                self.service.set_enabled(request.type == "enable")
                session.send({"type": "ok"})
            case "subscribe":
                session.subscribed = True
                session.send({"type": "ok"})
            case "ping":
                session.send({"type": "pong"})
            case "pong":
                pass
            case _:
                session.send(proto.error("unknown_type", f"unknown message type {request.type!r}"))

    def _hello(self, session: Session, body: dict[str, Any]) -> None:
        role = body.get("role", "controller")
        if role == "camera":
            if session.camera is not None:
                session.send(proto.error("bad_request", "already said hello"))
                return
            raw_name = body.get("name")
            name = raw_name.strip()[:128] if isinstance(raw_name, str) else ""
            name = name or f"camera {session.number}"
            session.role = "camera"
            agent = body.get("agent")
            session.camera = self.service.attach_camera(
                name, session, agent=agent if isinstance(agent, str) else ""
            )
            session.send(
                {"type": "welcome", "proto": proto.PROTO_VERSION, "camera": session.camera}
            )
            log.info("camera %s (%s) connected: %s", session.camera, name, body.get("agent", ""))
        else:
            session.role = "controller"
            session.send(
                {"type": "welcome", "proto": proto.PROTO_VERSION, "app": f"ditherapp/{__version__}"}
            )

    def _get(self, session: Session, body: dict[str, Any]) -> None:
        name = body.get("name")
        if name is None:
            values = self.service.settings.as_dict()
            values["ditherstring"] = self.service.ditherstring()
            session.send({"type": "settings", "values": values})
            return
        if not isinstance(name, str):
            session.send(proto.error("bad_request", "'name' must be a string"))
            return
        key = name.strip().lower()
        session.send({"type": "value", "name": key, "value": self.service.get_setting(key)})

    def _handle_legacy(self, session: Session, request: proto.LegacyRequest) -> None:
        """SimpleDither's client.py: one request, one line, then close."""
        op, name = request.op, request.cmd
        if self.token:
            session.send_bytes(
                proto.encode_legacy_reply(op, False, "this control socket requires a token")
            )
            session.close()
            return
        try:
            if op == "get":
                reply = proto.encode_legacy_reply(op, True, self.service.get_setting(name))
            elif op == "set":
                value = self.service.set_setting(name, request.value, remote=True)
                reply = proto.encode_legacy_reply(op, True, value)
            else:
                reply = proto.encode_legacy_reply(op, False, f"unknown op {op!r}: use get or set")
        except SettingError as exc:
            reply = proto.encode_legacy_reply(op, False, str(exc))
        session.send_bytes(reply)
        session.close()

    # ---------------------------------------------------------------- events out

    def _on_service_event(self, event: ServiceEvent) -> None:
        # Who is subscribed is read from the sessions at each event, not kept in a
        # separate count, so it cannot go stale; with no subscriber nothing is built or
        # encoded (most PHD2 events, GuideStep above all, go to nobody).
        subscribers = [session for session in self._sessions if session.subscribed]
        if not subscribers:
            return
        message = _event_message(event)
        if message is None:
            return
        data = proto.encode(message)  # once, whoever receives it
        for session in subscribers:
            session.send_bytes(data)


def _event_message(event: ServiceEvent) -> dict[str, Any] | None:
    match event:
        case SettingChanged(name=name, value=value):
            return {"type": "event", "event": "setting", "name": name, "value": value}
        case Notice(level=level, message=message, wall_time=t):
            return {"type": "event", "event": "notice", "level": level.value, "message": message,
                    "t": round(t, 3)}  # fmt: skip
        case DitherRecorded(record=record):
            return {"type": "event", "event": "dither", "record": record}
        case FrameRecorded(record=record):
            return {"type": "event", "event": "frame", "record": record}
        case SelfCheckChanged(camera=camera, report=report):
            return {"type": "event", "event": "selfcheck", "camera": camera, "report": report}
        case Phd2EventSeen(event=phd2_event):
            return {"type": "event", "event": "phd2", **_phd2_fields(phd2_event)}
        case _:
            return None


_PHD2_SKIPPED = frozenset(("raw", "host", "inst"))
_PHD2_RENAMED = {"name": "param", "type": "level"}
"""Fields whose name the line's own keys take: GuideParamChange's Name (the parameter)
and Alert's Type (info, question, warning, error)."""
_PHD2_FIELDS: dict[type[Phd2Event], tuple[tuple[str, str], ...]] = {}
"""Per event class, (attribute, key in the line) for the fields a ``phd2`` line carries."""


def _phd2_fields(event: Phd2Event) -> dict[str, Any]:
    cls = type(event)
    fields = _PHD2_FIELDS.get(cls)
    if fields is None:
        named = [
            (f.name, _PHD2_RENAMED.get(f.name, f.name))
            for f in dataclasses.fields(cls)
            if f.name not in _PHD2_SKIPPED and not (cls is UnknownEvent and f.name == "name")
        ]
        fields = tuple(sorted(named, key=lambda pair: pair[0] != "name"))  # param first
        _PHD2_FIELDS[cls] = fields
    out: dict[str, Any] = {"name": event.name if isinstance(event, UnknownEvent) else event.NAME}
    for attr, key in fields:
        value = getattr(event, attr)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out
