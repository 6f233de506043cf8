"""``ditherctl``: read and change ditherapp's settings, ask for status, trigger a dither,
or follow events, over the control socket."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ditherapp.core import control as proto
from ditherapp.core.phd2.rpc import phd2_number
from ditherapp.core.settings import READ_ONLY, SPECS

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_UNREACHABLE = 2


class CtlError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


class ControlClient:
    def __init__(self, host: str, port: int, token: str, timeout: float) -> None:
        try:
            self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise CtlError(
                f"cannot reach ditherapp at {host}:{port}: {exc.strerror or exc}",
                EXIT_UNREACHABLE,
            ) from exc
        self._buf = b""
        self._token = token
        self._said_hello = False

    def close(self) -> None:
        self._sock.close()

    def send(self, message: dict[str, Any]) -> None:
        if self._token and not self._said_hello:
            message = {**message, "token": self._token}
            self._said_hello = True
        try:
            self._sock.sendall(proto.encode(message))
        except OSError as exc:  # a BrokenPipeError here is ditherapp's side, not stdout's
            raise CtlError(f"connection failed: {exc}") from exc

    def messages(self) -> Iterator[dict[str, Any]]:
        while True:
            while b"\n" not in self._buf:
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError as exc:
                    raise CtlError("ditherapp did not answer in time") from exc
                except OSError as exc:
                    raise CtlError(f"connection failed: {exc}") from exc
                if not chunk:
                    raise CtlError("ditherapp closed the connection")
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise CtlError(f"unreadable reply from ditherapp: {exc}") from exc
            if isinstance(obj, dict):
                yield obj

    def call(self, message: dict[str, Any]) -> dict[str, Any]:
        self.send(message)
        for reply in self.messages():
            if reply.get("type") == "event":
                continue
            if reply.get("type") == "error":
                raise CtlError(str(reply.get("message") or reply.get("code")))
            return reply
        raise CtlError("no reply")  # pragma: no cover - messages() never ends quietly


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(phd2_number(value))
    return str(value)


def format_status(s: dict[str, Any]) -> str:
    phd2 = s.get("phd2", {})
    link = "connected" if phd2.get("connected") else "not connected"
    if not phd2.get("connected") and phd2.get("retry_in_s") is not None:
        link += f", retrying in {phd2['retry_in_s']:.0f} s"
    lines = [
        f"PHD2       {phd2.get('host')}:{phd2.get('port')} via {phd2.get('backend')} "
        f"backend: {link}; state {phd2.get('state')}"
        + (" (settling)" if phd2.get("settling") else ""),
        f"dithering  {'enabled' if s.get('enabled') else 'DISABLED'}; phase {s.get('phase')}",
        f"dithers    {format_totals(s)}",
    ]
    settle = s.get("settle")
    if settle:
        lines.append(
            f"settling   {settle.get('elapsed_s')} s of {settle.get('timeout_s')} s; distance "
            f"{settle.get('distance')} px (target {settle.get('target_px')}); in range "
            f"{settle.get('in_range_s')} of {settle.get('settle_time_s')} s"
        )
    if s.get("skip_reason"):
        lines.append(f"skipping   {s['skip_reason']}")
    guard = s.get("guard") or {}
    if guard:
        lines.append(f"guard      {format_guard(guard)}")
    last = s.get("last_outcome")
    if last:
        lines.append(f"last       {last.get('outcome')} {last.get('message') or ''}".rstrip())
    cameras = s.get("cameras") or []
    if not cameras:
        lines.append("cameras    none connected")
    for cam in cameras:
        state = "connected" if cam.get("connected") else "gone"
        if cam.get("connected"):
            state = "capturing" if cam.get("capturing") else "not capturing"
            if cam.get("paused"):
                state += f", paused by {cam.get('paused_by')}"
        lines.append(
            f"camera     {cam.get('id')} {cam.get('name')!r}: {state}; {cam.get('frames_saved')} "
            f"saved, {cam.get('frames_to_next')} to the next dither"
        )
    return "\n".join(lines)


def _seconds(value: object) -> str:
    """Seconds as a person reads them: "2.3 s" (a time measured to the microsecond is
    not more useful for it)."""
    return f"{value:.1f} s" if isinstance(value, int | float) else "? s"


def format_totals(s: dict[str, Any]) -> str:
    dithers, failures = s.get("dithers") or 0, s.get("failures") or 0
    if not dithers and not failures:
        return "no dither yet"
    text = f"{dithers} done, {failures} failed; "
    mean = s.get("mean_settle_s")
    text += "none settled yet" if mean is None else f"mean settle {_seconds(mean)}"
    return text + f"; imaging time lost {_seconds(s.get('lost_s'))}"


def format_guard(guard: dict[str, Any]) -> str:
    if not guard.get("enabled") and not guard.get("armed"):
        state = "off"
    elif not guard.get("armed"):
        state = "waiting for PHD2 to guide once"
    elif guard.get("holding"):
        held = guard.get("holding_s")
        state = f"GUARDING: {guard.get('condition')}, saving paused"
        if isinstance(held, int | float):
            state += f" for {held:.0f} s"
    elif guard.get("let_go"):
        state = f"LET GO (saving anyway): {guard.get('condition')}"
    else:
        state = "on, guiding is good"
    return (
        f"{state}; {guard.get('guarded_frames', 0)} guarded frames, "
        f"{guard.get('unguarded_saved', 0)} saved with bad guiding, "
        f"{guard.get('suspect_frames', 0)} suspect"
    )


VERDICT_WORDS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "unknown": "?"}


def format_doctor(d: dict[str, Any]) -> tuple[str, bool]:
    """The doctor's report, and whether every check passed."""
    lines: list[str] = []
    healthy = True
    phd2 = d.get("phd2") or {}
    if phd2.get("connected"):
        lines.append(f"ok    PHD2                connected, {phd2.get('state')}")
    else:
        lines.append("WARN  PHD2                not connected")
    cameras = d.get("cameras") or []
    if not cameras:
        healthy = False
        lines.append("FAIL  camera              no camera agent is connected (load the hook)")
    for cam in cameras:
        agent = f", {cam['agent']}" if cam.get("agent") else ""
        lines.append(f"camera {cam.get('name')!r} ({cam.get('id')}{agent})")
        report = cam.get("selfcheck")
        if not report:
            lines.append("  ?     self-check          this agent does not check itself")
            continue
        for check in report.get("checks") or []:
            verdict = str(check.get("verdict"))
            healthy &= verdict != "fail"
            word = VERDICT_WORDS.get(verdict, "?")
            lines.append(f"  {word:<5} {check.get('name', '?'):<19} {check.get('detail', '')}")
        capture = report.get("capture") or {}
        if capture.get("last_file"):
            lines.append(f"        last file           {capture['last_file']}")
    suspects = d.get("suspect_frames") or []
    if suspects:
        healthy = False
        lines.append(
            f"FAIL  suspect frames      {len(suspects)} frame(s) SharpCap may have saved while "
            "paused: ditherctl frames --suspect"
        )
    lines.append("all checks passed" if healthy else "some checks FAILED")
    return "\n".join(lines), healthy


def format_frame(record: dict[str, Any]) -> str:
    t = record.get("time")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, int | float) else "?"
    )
    parts = [when, str(record.get("camera", "?"))]
    if record.get("count") is not None:
        parts.append(f"SharpCap frame {record['count']}")
    if record.get("seq") is not None:
        parts.append(f"seq {record['seq']}")
    if record.get("kind") == "suspect_frame":
        parts.append("SUSPECT: saved while paused")
    else:
        parts.append("saved" if record.get("saved") else "not saved")
        parts.append("; ".join(record.get("reasons") or []))
    if record.get("file"):
        parts.append(str(record["file"]))
    return "  ".join(p for p in parts if p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ditherctl", description="Talk to a running ditherapp.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5322)
    p.add_argument("--token", default="")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for a reply")
    p.add_argument("--json", action="store_true", help="print replies as JSON")
    sub = p.add_subparsers(dest="command", required=True)
    get = sub.add_parser("get", help="print one setting, or all of them")
    get.add_argument("name", nargs="?")
    set_ = sub.add_parser(
        "set",
        help="change a setting (takes effect for the next dither)",
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_.add_argument("name", help="the setting (listed below)")
    # Everything after the name is the value, so "-inf" or "-5" is a value to send (and
    # for the app to judge), never taken for an option.
    set_.add_argument("value", nargs=argparse.REMAINDER, help="the new value")
    sub.add_parser("status", help="PHD2, cameras, dither counts")
    sub.add_parser("dither", help="dither now")
    sub.add_parser("enable", help="enable automatic dithering")
    sub.add_parser("disable", help="disable automatic dithering")
    sub.add_parser(
        "doctor",
        help="every camera's self-check and suspect frames; exits 1 if any check failed",
    )
    frames = sub.add_parser("frames", help="frames guarded this session, one line each")
    frames.add_argument(
        "--suspect",
        action="store_true",
        help="only frames SharpCap may have saved while saving was paused",
    )
    watch = sub.add_parser("watch", help="follow events until interrupted")
    watch.add_argument("--phd2", action="store_true", help="include every PHD2 event")
    return p


def run(args: argparse.Namespace, out: Any = None) -> int:
    client = ControlClient(args.host, args.port, args.token, args.timeout)
    try:
        return _run(client, args, out if out is not None else sys.stdout)
    finally:
        client.close()


def _run(client: ControlClient, args: argparse.Namespace, out: Any) -> int:
    def emit(text: str, obj: object) -> None:
        print(json.dumps(obj) if args.json else text, file=out, flush=True)

    match args.command:
        case "get" if args.name:
            reply = client.call({"type": "get", "name": args.name})
            emit(_show(reply.get("value")), reply)
        case "get":
            reply = client.call({"type": "get"})
            values = reply.get("values", {})
            emit("\n".join(f"{k} = {_show(v)}" for k, v in values.items()), reply)
        case "set":
            reply = client.call({"type": "set", "name": args.name, "value": args.value})
            emit(f"{reply.get('name')} = {_show(reply.get('value'))}", reply)
        case "status":
            reply = client.call({"type": "status"})
            emit(format_status(reply), reply)
        case "dither":
            reply = client.call({"type": "dither_now"})
            emit("dither started", reply)
        case "enable" | "disable":
            reply = client.call({"type": args.command})
            emit(f"dithering {args.command}d", reply)
        case "doctor":
            reply = client.call({"type": "diagnostics"})
            text, healthy = format_doctor(reply)
            emit(text, reply)
            return EXIT_OK if healthy else EXIT_ERROR
        case "frames":
            reply = client.call({"type": "frames", "suspect": args.suspect})
            records = reply.get("frames") or []
            if args.json:
                emit("", reply)
            elif records:
                emit("\n".join(format_frame(r) for r in records), reply)
            else:
                what = "suspect frames" if args.suspect else "guarded or suspect frames"
                print(f"no {what} this session", file=sys.stderr)
        case "watch":
            client._sock.settimeout(None)  # noqa: SLF001 - watching waits for ever by design
            client.call({"type": "subscribe"})
            for message in client.messages():
                if message.get("type") != "event":
                    continue
                if message.get("event") == "phd2" and not args.phd2:
                    continue
                emit(_describe(message), message)
    return EXIT_OK


def _describe(message: dict[str, Any]) -> str:
    kind = message.get("event")
    if kind == "notice":
        return f"[{message.get('level')}] {message.get('message')}"
    if kind == "setting":
        return f"setting {message.get('name')} = {_show(message.get('value'))}"
    if kind == "frame":
        return f"frame {format_frame(message.get('record', {}))}"
    if kind == "selfcheck":
        report = message.get("report", {})
        bad = [c["name"] for c in report.get("checks", []) if c.get("verdict") == "fail"]
        return f"self-check {message.get('camera')}: " + (
            "failed " + ", ".join(bad) if bad else "passed"
        )
    if kind == "dither":
        return format_cost(message.get("record", {}))
    fields = {k: v for k, v in message.items() if k not in ("type", "event", "name")}
    return f"phd2 {message.get('name')} {json.dumps(fields)}"


def format_cost(record: dict[str, Any]) -> str:
    """A dither's ledger line as ``watch`` shows it. Its outcome was a notice line the
    moment it was known; this line comes once the cost is measured (after the next
    saved frames), so it tells what the notice could not yet, and no more."""
    parts = []
    if record.get("settle_s") is not None:
        parts.append(f"settle {_seconds(record['settle_s'])}")
    if record.get("lost_s") is not None:
        parts.append(f"cameras paused {_seconds(record['lost_s'])}")
    if record.get("lost_imaging_s") is not None:
        parts.append(f"imaging time lost {_seconds(record['lost_imaging_s'])}")
    return f"dither {record.get('cycle')} cost: " + (", ".join(parts) or "nothing measured")


def settings_epilog() -> str:
    """The names ``set`` takes, for ``ditherctl set -h``."""
    remote = [spec for spec in SPECS if spec.remote and spec.name not in READ_ONLY]
    width = max(len(spec.name) for spec in remote)
    lines = ["settings (ditherctl get shows their values):"]
    lines += [f"  {spec.name:<{width}}  {spec.range_text()}" for spec in remote]
    fixed = ", ".join(spec.name for spec in SPECS if not spec.remote)
    lines.append(f"not changeable here: {fixed} (the window, the command line or the INI file)")
    return "\n".join(lines)


def _quiet_stdout() -> None:
    """The reader of our output has gone (``ditherctl status | head -1``): send what is
    left to nowhere, so that Python's flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "set":
        if len(args.value) != 1:
            parser.error("set takes a name and one value, e.g. ditherctl set ditherevery 5")
        args.value = args.value[0]
    try:
        return run(args)
    except CtlError as exc:
        print(f"ditherctl: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # only stdout: the socket's own are CtlErrors
        _quiet_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
