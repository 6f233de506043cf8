# -*- coding: utf-8 -*-
"""ditherapp hook for SharpCap: lets ditherapp pause saving while PHD2 dithers.

WHAT IT DOES
    Runs inside SharpCap (Pro; scripting needs a Pro licence). It connects to
    ditherapp at APP_HOST:APP_PORT as a TCP client, reports every frame the
    selected camera captures, and pauses/resumes saving (the camera's Paused
    flag) when ditherapp asks, so that no frame is saved while PHD2 dithers and
    settles. It never keeps SharpCap paused on its own: a pause ends by itself
    after the time ditherapp allowed (at most HARD_CAP_S), when the connection
    to ditherapp drops, or when ditherapp goes silent for APP_SILENT_S. It never
    undoes a pause you made yourself with SharpCap's Pause button.

    A toolbar button named "ditherapp" turns the hook off and on again.
    Running the script again replaces the running copy cleanly.

INSTALL (choose one)
    * Every time SharpCap starts: SharpCap Settings (F10) > Scripting >
      Startup Script, and choose this file. (Older versions: File > SharpCap
      Settings > Startup Scripts.)
    * Once: Tools > Scripting Console > File > Run Script, and choose this file.
    Start ditherapp before or after SharpCap: the hook keeps retrying.

SETTINGS
    Edit the values below, or, without editing this file, define a dict named
    DITHERAPP_SETTINGS before running it, e.g. in the scripting console or in a
    startup script:

        DITHERAPP_SETTINGS = {"APP_PORT": 5400, "TOKEN": "secret"}
        exec(open(r"C:\\path\\to\\ditherapp_hook.py").read())

    Keys are the setting names below; unknown keys are reported and ignored.

CHECKING IT
    In the scripting console: print(DITHERAPP_HOOK.status())
    Every session the hook checks SharpCap for itself (versions, the members
    it uses, the capture folder) and reports it to ditherapp: see ditherapp's
    Diagnostics view or run `ditherctl doctor`. While it holds saving paused
    it watches SharpCap's own saved-frame counter (CapturedFrameCount): if
    that still goes up, pausing does not stop this SharpCap from saving, and
    the hook says so at once (here, in ditherapp, and in its alerts), and
    names every frame SharpCap may have saved during a dither
    (`ditherctl frames --suspect`).

Runs unchanged on IronPython 2.7 (SharpCap 3.2 / 4.0), IronPython 3.4
(SharpCap 4.1+) and CPython 3 (ditherapp's tests). Keep to the shared syntax
subset: no f-strings, annotations, nonlocal, keyword-only arguments, bare
super(), yield from, async or :=; no bytes literals; time.time() for time.
"""
from __future__ import print_function, division

import json
import socket
import sys
import threading
import time
from collections import deque

# ----------------------------------------------------------------- settings
APP_HOST = "127.0.0.1"  # where ditherapp listens
APP_PORT = 5322  # ditherapp's control socket port
TOKEN = ""  # only needed when ditherapp listens on a non-loopback address
HEARTBEAT_S = 2.0  # how often the hook tells ditherapp it is alive
APP_SILENT_S = 10.0  # while paused by ditherapp: resume if it says nothing this long
HARD_CAP_S = 900.0  # no pause by ditherapp lasts longer than this, whatever it asked
RECONNECT_MIN_S = 1.0  # first wait before reconnecting; doubles up to RECONNECT_MAX_S
RECONNECT_MAX_S = 5.0
SOCKET_TIMEOUT_S = 1.0  # connect and send time limit
RECV_POLL_S = 0.05  # how long one receive waits; bounds the delay of outgoing messages
TICK_S = 0.25  # watchdog period
RESUME_DELAY_S = 0.2  # after the frame boundary that ends a pause, wait this long
#                       before unpausing, in case SharpCap is still saving that frame
BUTTON_NAME = "ditherapp"  # toolbar button that turns the hook off and on
NOTIFY = True  # show connection changes in SharpCap's notification bar
START_ENABLED = True  # False: only add the button; the hook starts when clicked

# ------------------------------------------------------------ fixed values
AGENT = "sharpcap-hook/1.0"
PROTO = 1
MAX_LINE = 65536
OUTBOX_MAX = 2000
JOIN_S = 2.0  # time limit for each thread to stop
REGISTRY_ATTR = "_ditherapp_hook_registry"  # on the sys module: survives re-runs
SUSPECTS_PER_TICK = 50  # suspect-frame messages sent at most per tick
LAST_FILE_SCAN = 3000  # entries looked at, at most, to find the newest saved file
REQUIRED_MEMBERS = ("DeviceName", "FrameCaptured", "Paused", "Capturing")
OPTIONAL_MEMBERS = ("CapturedFrameCount", "Controls.Exposure", "GetStatus")
APP_MEMBERS = ("ShowNotification", "AddCustomButton", "CustomButtons", "Settings.CaptureFolder")

SETTING_NAMES = (
    "APP_HOST", "APP_PORT", "TOKEN", "HEARTBEAT_S", "APP_SILENT_S", "HARD_CAP_S",
    "RECONNECT_MIN_S", "RECONNECT_MAX_S", "SOCKET_TIMEOUT_S", "RECV_POLL_S",
    "TICK_S", "RESUME_DELAY_S", "BUTTON_NAME", "NOTIFY", "START_ENABLED",
)


class Settings(object):
    """The settings one hook instance runs with (a snapshot taken at install)."""

    def __init__(self, scope):
        self.unknown = []
        for name in SETTING_NAMES:
            setattr(self, name, scope[name])
        overrides = scope.get("DITHERAPP_SETTINGS") or {}
        for name in overrides:
            if name in SETTING_NAMES:
                setattr(self, name, overrides[name])
            else:
                self.unknown.append(name)


def _seconds(value, default):
    """A positive finite number of seconds from a message field, else default."""
    if value is None or isinstance(value, bool):
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return default
    if seconds != seconds or seconds <= 0 or seconds == float("inf"):
        return default
    return seconds


def _is_timeout(error):
    """Old IronPython raises socket.error where CPython raises socket.timeout."""
    if isinstance(error, socket.timeout):
        return True
    code = getattr(error, "errno", None)
    if code in (11, 35, 110, 10035, 10060):
        return True
    return "timed out" in str(error).lower()


def _wire(messages):
    """Messages as the bytes of one or more protocol lines (str on IronPython 2)."""
    text = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in messages)
    return text.encode("utf-8")


def _runtime_string(sharpcap):
    implementation = getattr(sys, "implementation", None)  # Python 3.3+
    name = getattr(implementation, "name", None)
    if not name and sys.platform == "cli":
        name = "ironpython"  # IronPython 2.7
    if not name:
        try:
            import platform
            name = platform.python_implementation().lower()
        except Exception:
            name = "python"
    pretty = {"ironpython": "IronPython", "cpython": "CPython", "pypy": "PyPy"}
    text = "%s %s" % (pretty.get(name, name), sys.version.split()[0])
    try:
        version = sharpcap.GetType().Assembly.GetName().Version
        if version is not None:
            text += "; SharpCap %s" % (version,)
    except Exception:
        pass
    return text


def _member(obj, dotted):
    """(True, value) if obj has the dotted member, else (False, None); never raises."""
    value = obj
    try:
        for name in dotted.split("."):
            value = getattr(value, name)
    except Exception:
        return False, None
    return True, value


def _saved_count(cam):
    """SharpCap's count of frames it saved (CapturedFrameCount), or None.

    GetStatus(False).CapturedFrames is not used: public scripts read it during
    preview to measure the frame rate, so it counts frames that are not saved."""
    if cam is None:
        return None
    try:
        value = cam.CapturedFrameCount
    except Exception:
        return None
    try:
        if isinstance(value, bool):
            return None
        return int(value)
    except Exception:
        return None


def _newest_file(folder):
    """The newest file under SharpCap's capture folder (a bounded look), or None."""
    import os
    if not folder:
        return None
    newest, newest_t, seen = None, -1.0, 0
    try:
        for root, dirs, files in os.walk(folder):
            for name in files:
                seen += 1
                if seen > LAST_FILE_SCAN:
                    return newest
                path = os.path.join(root, name)
                try:
                    t = os.path.getmtime(path)
                except Exception:
                    continue
                if t > newest_t:
                    newest, newest_t = path, t
    except Exception:
        return newest
    return newest


def _acquire(lock, timeout):
    """lock.acquire with a time limit (IronPython 2.7 has no acquire(timeout=))."""
    deadline = time.time() + timeout
    while not lock.acquire(False):
        if time.time() >= deadline:
            return False
        time.sleep(0.01)
    return True


class DitherHook(object):
    """One running hook: a frame handler, an I/O thread and a control thread.

    Threads and what they own:
      * SharpCap's capture thread runs the frame handler: it only appends a
        frame message under the lock (no I/O, cannot raise).
      * the I/O thread owns the socket: connects, sends the outbox, heartbeats,
        parses the app's messages into commands.
      * the control thread is the only writer of camera.Paused. It applies
        commands, enforces every deadline, follows camera changes and reports
        capture and pause changes.
    Fields shared between threads are read and written under self._lock.
    """

    def __init__(self, sharpcap, settings):
        self._sc = sharpcap
        self._s = settings
        self._runtime = _runtime_string(sharpcap)
        self._lock = threading.Lock()
        self._toggle_lock = threading.Lock()
        self._wake_ctl = threading.Event()
        self.log_lines = deque(maxlen=200)
        # shared, under self._lock
        self._seq = 0
        self._outbox = deque(maxlen=OUTBOX_MAX)
        self._commands = deque(maxlen=100)
        self._connected = False
        self._conn_id = 0
        self._last_rx = 0.0
        self._reconnect = False
        self._sock = None
        self._cam_name = "No camera"
        self._view = {"capturing": False, "paused": False, "by": None}
        self._exposure_s = None
        self._handler_errors = 0
        self._app_camera_id = None
        self._report = None  # the latest self-check, sent at every session start
        self._pause_check = ("unknown", "not tried yet: checked during the first pause")
        # owned by the control thread (and by start/stop while it is not running)
        self._cam = None
        self._cam_handler = None
        self._paused_seen = False
        self._capturing_seen = False
        self._our_pause = None
        self._pending_resume = None
        self._stop_reason = "stopped"
        self._error_log_times = {}
        # lifecycle
        self._running = False
        self._threads = []
        self._stop_ctl = None
        self._stop_io = None
        self._retired = False

    # ------------------------------------------------------------ lifecycle
    @property
    def running(self):
        return self._running

    def start(self):
        if self._running or self._retired:
            return
        self._running = True
        self._stop_reason = "stopped"
        with self._lock:
            self._outbox.clear()
            self._commands.clear()
            self._connected = False
            self._reconnect = False
        self._attach(self._selected_camera())
        self._stop_ctl = threading.Event()
        self._stop_io = threading.Event()
        control = threading.Thread(
            target=self._control_main, args=(self._stop_ctl,), name="ditherapp-control")
        io = threading.Thread(target=self._io_main, args=(self._stop_io,), name="ditherapp-io")
        control.daemon = True
        io.daemon = True
        self._threads = [control, io]
        control.start()
        io.start()
        self._log("started (%s; app at %s:%s)" % (
            self._runtime, self._s.APP_HOST, self._s.APP_PORT))

    def stop(self, reason="stopped"):
        """Stop both threads; undo our pause; detach the handler; close the socket."""
        if not self._running:
            return
        self._running = False
        self._stop_reason = reason
        control, io = self._threads
        self._stop_ctl.set()
        self._wake_ctl.set()
        control.join(JOIN_S)
        if control.is_alive():
            self._log("control thread did not stop within %.1f s" % JOIN_S)
            self._detach()
        self._stop_io.set()
        io.join(JOIN_S)
        if io.is_alive():
            self._log("I/O thread did not stop within %.1f s; closing its socket" % JOIN_S)
            with self._lock:
                sock = self._sock
            _close(sock)
        self._log("stopped (%s)" % reason)

    def shutdown(self):
        """Stop for good (the script is being run again, or removed)."""
        locked = _acquire(self._toggle_lock, 2 * JOIN_S + 1.0)
        if not locked:
            self._log("a toggle is still running; shutting down anyway")
        try:
            self._retired = True
            self.stop("replaced")
        finally:
            if locked:
                self._toggle_lock.release()

    def toggle(self):
        """Turn the hook off or on (the toolbar button). Returns at once."""
        thread = threading.Thread(target=self._toggle, name="ditherapp-toggle")
        thread.daemon = True
        thread.start()

    def _toggle(self):
        if not _acquire(self._toggle_lock, 2 * JOIN_S + 1.0):
            return
        try:
            if self._retired:
                return
            if self._running:
                self.stop("hook_off")
                self._notify("ditherapp hook is OFF: frames are not reported, no pauses")
            else:
                self.start()
                self._notify("ditherapp hook is ON")
        finally:
            self._toggle_lock.release()

    def status(self):
        with self._lock:
            lines = [
                "ditherapp hook %s, %s" % ("running" if self._running else "off", self._runtime),
                "app %s:%s: %s" % (
                    self._s.APP_HOST, self._s.APP_PORT,
                    "connected as %s" % (self._app_camera_id,) if self._connected
                    else "not connected"),
                "camera: %s; frames seen: %d; handler errors: %d" % (
                    self._cam_name, self._seq, self._handler_errors),
                "paused: %s (by %s); our pause: %s" % (
                    self._view["paused"], self._view["by"], self._our_pause is not None),
                "pausing stops saving: %s (%s)" % self._pause_check,
            ]
        lines.extend(list(self.log_lines)[-10:])
        return "\n".join(lines)

    # ------------------------------------------------------------ frames
    def _make_handler(self, cam):
        hook = self

        def on_frame(sender, args):
            try:
                hook._on_frame(cam)
            except Exception:
                try:
                    hook._handler_errors += 1
                except Exception:
                    pass

        return on_frame

    def _on_frame(self, cam):
        """Runs on SharpCap's capture thread: O(1), no I/O."""
        t = time.time()
        try:
            saved = bool(cam.Capturing) and not bool(cam.Paused)
        except Exception:
            saved = False
        exposure = self._exposure_s
        try:
            exposure = float(cam.Controls.Exposure.Value)
        except Exception:
            pass
        count = _saved_count(cam)
        with self._lock:
            self._seq += 1
            self._exposure_s = exposure
            frame = {"type": "frame", "seq": self._seq, "t": t, "exposure_s": exposure,
                     "saved": saved}
            if count is not None:
                frame["count"] = count
            self._outbox.append(frame)
        if self._pending_resume is not None:
            self._wake_ctl.set()

    # ------------------------------------------------------------ camera
    def _selected_camera(self):
        try:
            return getattr(self._sc, "SelectedCamera", None)
        except Exception:
            return None

    def _attach(self, cam):
        self._cam = None
        self._cam_handler = None
        self._paused_seen = False
        self._capturing_seen = False
        name = "No camera"
        if cam is not None:
            try:
                name = cam.DeviceName or "Camera"
            except Exception:
                name = "Camera"
            self._paused_seen = self._read_flag(cam, "Paused", False)
            self._capturing_seen = self._read_flag(cam, "Capturing", False)
            handler = self._make_handler(cam)
            try:
                cam.FrameCaptured += handler
                self._cam_handler = handler
            except Exception as e:
                self._log("cannot attach to %s's FrameCaptured: %s" % (name, e))
                self._notify("ditherapp hook cannot watch frames of %s" % name)
            self._cam = cam
        with self._lock:
            self._cam_name = name
            self._view = {"capturing": self._capturing_seen, "paused": self._paused_seen,
                          "by": "user" if self._paused_seen else None}
        if _saved_count(cam) is None:
            self._pause_check = (
                "unknown", "SharpCap has no CapturedFrameCount: cannot see what it saves")
        else:
            self._pause_check = ("unknown", "not tried yet: checked during the first pause")
        self._refresh_report(send=False)

    # ------------------------------------------------------------ self-check
    def self_check(self):
        """The checks, as sent to ditherapp (a dict of plain values)."""
        sc, cam = self._sc, self._cam
        checks = []

        def add(name, verdict, detail):
            checks.append({"name": name, "verdict": verdict, "detail": detail})

        version = None
        try:
            version = sc.GetType().Assembly.GetName().Version
        except Exception:
            pass
        if version is not None:
            add("sharpcap", "ok", "SharpCap %s" % (version,))
        else:
            add("sharpcap", "warn", "SharpCap's version could not be read")
        add("python", "ok", self._runtime.split(";")[0])
        if cam is None:
            add("camera", "fail", "no camera is selected in SharpCap")
        else:
            with self._lock:
                name = self._cam_name
            add("camera", "ok", name)
            missing = [m for m in REQUIRED_MEMBERS if not _member(cam, m)[0]]
            absent = [m for m in OPTIONAL_MEMBERS if not _member(cam, m)[0]]
            absent += [m for m in APP_MEMBERS if not _member(sc, m)[0]]
            if missing:
                add("members", "fail", "the camera has no " + ", ".join(missing))
            elif absent:
                add("members", "warn", "all needed members exist; missing: " + ", ".join(absent))
            else:
                add("members", "ok", "every member the hook uses exists")
            counter = _saved_count(cam)
            if counter is not None:
                add("frame_counter", "ok", "CapturedFrameCount = %d" % counter)
            else:
                add("frame_counter", "warn", "no CapturedFrameCount (GetStatus(False)."
                    "CapturedFrames counts unsaved frames too, so it is not used)")
            found, binning = _member(cam, "Controls.Binning.Value")
            add("binning", "ok" if found else "warn",
                str(binning) if found else "not available from this SharpCap")
            found, size = _member(cam, "Controls.PixelSize.Value")
            add("pixel_size", "ok" if found else "warn",
                "%s um" % (size,) if found else "not available from this SharpCap")
        verdict, detail = self._pause_check
        add("pause_stops_saving", verdict, detail)
        found, folder = _member(sc, "Settings.CaptureFolder")
        folder = str(folder) if found and folder else None
        add("capture_folder", "ok" if folder else "warn",
            folder or "SharpCap's capture folder could not be read")
        return {"type": "selfcheck", "sharpcap": str(version) if version is not None else None,
                "runtime": self._runtime, "camera": self._cam_name, "checks": checks,
                "capture": {"folder": folder, "last_file": _newest_file(folder)}}

    def _refresh_report(self, send=True):
        try:
            report = self.self_check()
        except Exception as e:
            self._log_error("self-check", e)
            return
        with self._lock:
            self._report = report
            if send:
                self._outbox.append(report)

    def _set_pause_check(self, verdict, detail):
        if (verdict, detail) == self._pause_check:
            return
        self._pause_check = (verdict, detail)
        self._refresh_report()

    def _watch_pause(self, now):
        """While our pause holds: SharpCap's saved-frame counter must not go up."""
        pause = self._our_pause
        if pause is None or pause.get("count_at") is None:
            return
        count = _saved_count(self._cam)
        if count is None:
            return
        with self._lock:
            seq = self._seq
        if count > pause["count_at"]:
            if seq == pause["seq_at"]:
                pause["count_at"] = count  # still saving a frame that ended before the pause
                return
            first, pause["count_at"] = pause["count_at"] + 1, count
            last_file = _newest_file(_member(self._sc, "Settings.CaptureFolder")[1])
            for number in range(first, count + 1)[:SUSPECTS_PER_TICK]:
                suspect = {"type": "suspect", "count": number, "t": now, "seq": seq}
                if last_file and number == count:
                    suspect["file"] = last_file
                self._send(suspect)
            pause["suspects"] = pause.get("suspects", 0) + count - first + 1
            self._log("SharpCap saved frame %d while paused" % count)
            if not pause.get("alerted"):
                pause["alerted"] = True
                self._notify("ditherapp: SharpCap SAVED A FRAME WHILE PAUSED (frame %d): "
                             "pausing does not stop saving here; see ditherctl doctor" % count,
                             warning=True)
            self._set_pause_check(
                "fail", "SharpCap saved frames while paused (frame %d at %s)"
                % (count, time.strftime("%H:%M:%S", time.localtime(now))))
        elif seq >= pause["seq_at"] + 2 and self._pause_check[0] != "fail":
            self._set_pause_check(
                "ok", "verified at %s: %d frames ended while paused, none saved"
                % (time.strftime("%H:%M:%S", time.localtime(now)), seq - pause["seq_at"]))

    def _detach(self):
        cam, handler = self._cam, self._cam_handler
        self._cam = None
        self._cam_handler = None
        if cam is not None and handler is not None:
            try:
                cam.FrameCaptured -= handler
            except Exception as e:
                self._log("cannot detach from FrameCaptured: %s" % e)

    def _read_flag(self, cam, name, default):
        try:
            return bool(getattr(cam, name))
        except Exception as e:
            self._log_error("read " + name, e)
            return default

    # ------------------------------------------------------------ control thread
    def _control_main(self, stop):
        while not stop.is_set():
            self._wake_ctl.wait(self._next_wait())
            self._wake_ctl.clear()
            if stop.is_set():
                break
            try:
                self._tick(time.time())
            except Exception as e:
                self._log_error("tick", e)
                self._release("watchdog", "error")
        try:
            self._release("watchdog", self._stop_reason)
        except Exception as e:
            self._log_error("release at stop", e)
        self._detach()

    def _next_wait(self):
        pending = self._pending_resume
        if pending is not None and pending["boundary_at"] is not None:
            due = pending["boundary_at"] + self._s.RESUME_DELAY_S - time.time()
            return max(0.0, min(self._s.TICK_S, due))
        return self._s.TICK_S

    def _tick(self, now):
        cam = self._selected_camera()
        if cam is not self._cam:
            self._switch_camera(cam)
        with self._lock:
            commands = list(self._commands)
            self._commands.clear()
        cam = self._cam
        if cam is None:
            for command in commands:
                self._send({"type": "ack", "id": command["msg"].get("id"), "ok": False,
                            "error": "no_camera"})
            return
        capturing = self._read_flag(cam, "Capturing", self._capturing_seen)
        if capturing != self._capturing_seen:
            self._capturing_seen = capturing
            self._set_view(capturing=capturing)
            self._send({"type": "capture", "capturing": capturing})
        paused = self._read_flag(cam, "Paused", self._paused_seen)
        if paused != self._paused_seen:
            self._paused_by_someone_else(paused)
        for command in commands:
            self._apply(command)
        self._watch_pause(now)
        self._check_pending_resume(now)
        self._check_our_pause(now)

    def _switch_camera(self, cam):
        if self._our_pause is not None:
            self._release("watchdog", "camera_changed")
        self._detach()
        self._attach(cam)
        with self._lock:
            self._reconnect = True  # a new hello carries the new camera's name
            name = self._cam_name
        self._log("camera is now %s" % name)

    def _paused_by_someone_else(self, paused):
        """Paused changed and we did not write it: the user (or SharpCap) did."""
        self._paused_seen = paused
        if not paused and self._our_pause is not None:
            self._our_pause = None  # the user took over: it is no longer ours to undo
            self._pending_resume = None
        self._set_view(paused=paused, by="user" if paused else None)
        self._send({"type": "paused", "paused": paused, "by": "user"})

    def _apply(self, command):
        msg = command["msg"]
        with self._lock:
            live = self._connected and command["conn"] == self._conn_id
        if not live:
            return  # from a connection that is gone; nobody waits for the ack
        ack = {"type": "ack", "id": msg.get("id")}
        if msg.get("type") == "pause":
            limit = _seconds(msg.get("max_s"), self._s.HARD_CAP_S)
            reason = "max_s"
            if limit >= self._s.HARD_CAP_S:
                limit, reason = self._s.HARD_CAP_S, "hard_cap"
            pause = {"id": msg.get("id"), "since": command["t"],
                     "deadline": command["t"] + limit, "reason": reason,
                     "conn": command["conn"], "count_at": None, "seq_at": None}
            if self._our_pause is not None:
                for key in ("count_at", "seq_at", "alerted"):  # the same stretch of pause
                    if key in self._our_pause:
                        pause[key] = self._our_pause[key]
                self._our_pause = pause  # a fresh pause: new deadline, no pending resume
                self._pending_resume = None
            elif not self._paused_seen:
                try:
                    self._cam.Paused = True
                except Exception as e:
                    self._log_error("pause", e)
                    ack["ok"] = False
                    ack["error"] = "pause_failed"
                    self._send(ack)
                    return
                self._paused_seen = True
                pause["count_at"] = _saved_count(self._cam)
                with self._lock:
                    pause["seq_at"] = self._seq
                self._our_pause = pause
                self._set_view(paused=True, by="app")
                self._send({"type": "paused", "paused": True, "by": "app"})
            # else: the user has paused; that pause already stops saving
            self._send(ack)
        elif msg.get("type") == "resume":
            if self._our_pause is not None:
                if msg.get("after_next_frame"):
                    wait = min(_seconds(msg.get("max_wait_s"), self._s.HARD_CAP_S),
                               self._s.HARD_CAP_S)
                    self._pending_resume = {"id": msg.get("id"), "after_seq": command["seq"],
                                            "deadline": command["t"] + wait,
                                            "boundary_at": None}
                else:
                    self._release("app", None)
            self._send(ack)

    def _check_pending_resume(self, now):
        pending = self._pending_resume
        if pending is None:
            return
        if pending["boundary_at"] is None:
            with self._lock:
                seq = self._seq
            if seq > pending["after_seq"]:
                pending["boundary_at"] = now
        if pending["boundary_at"] is not None:
            if now >= pending["boundary_at"] + self._s.RESUME_DELAY_S:
                self._release("app", None)
        elif now >= pending["deadline"]:
            self._release("app", "max_wait")

    def _check_our_pause(self, now):
        pause = self._our_pause
        if pause is None:
            return
        with self._lock:
            connected, conn_id, last_rx = self._connected, self._conn_id, self._last_rx
        if not connected or conn_id != pause["conn"]:
            self._release("watchdog", "disconnected")
        elif now >= pause["deadline"]:
            self._release("watchdog", pause["reason"])
        elif now < pause["since"] - 1.0:
            self._release("watchdog", "clock_changed")  # deadlines no longer mean anything
        elif now - last_rx >= self._s.APP_SILENT_S:
            self._release("watchdog", "app_silent")

    def _release(self, by, reason):
        """Undo our pause, if we hold one. Only the control thread calls this."""
        pause = self._our_pause
        if pause is None:
            return
        try:
            self._watch_pause(time.time())  # the last frames of the pause count too
        except Exception as e:
            self._log_error("watch", e)
        self._pending_resume = None
        cam = self._cam
        if cam is not None and self._paused_seen:
            try:
                cam.Paused = False
            except Exception as e:
                self._log_error("unpause", e)
                return  # keep the pause as ours and try again on the next tick
            self._paused_seen = False
        self._our_pause = None
        self._set_view(paused=False, by=None)
        msg = {"type": "paused", "paused": False, "by": by}
        if reason:
            msg["reason"] = reason
        self._send(msg)
        if by == "watchdog":
            self._log("resumed saving by itself (%s)" % reason)

    def _set_view(self, **changes):
        with self._lock:
            view = dict(self._view)
            view.update(changes)
            self._view = view

    def _send(self, msg):
        with self._lock:
            self._outbox.append(msg)

    # ------------------------------------------------------------ I/O thread
    def _io_main(self, stop):
        backoff = self._s.RECONNECT_MIN_S
        failures = 0
        while not stop.is_set():
            try:
                sock = self._connect()
            except Exception as e:
                failures += 1
                if failures == 1:
                    self._log("cannot reach ditherapp at %s:%s (%s); retrying" % (
                        self._s.APP_HOST, self._s.APP_PORT, e))
                    self._notify("ditherapp hook: ditherapp is not reachable; retrying")
                stop.wait(backoff)
                backoff = min(backoff * 2, self._s.RECONNECT_MAX_S)
                continue
            failures = 0
            backoff = self._s.RECONNECT_MIN_S
            outcome = "error"
            try:
                outcome = self._session(sock, stop)
            except Exception as e:
                self._log("connection lost: %s" % e)
            finally:
                if stop.is_set():
                    try:
                        self._flush(sock)
                    except Exception:
                        pass
                with self._lock:
                    self._connected = False
                    self._sock = None
                _close(sock)
                self._wake_ctl.set()
            if outcome == "reconnect":
                continue
            if outcome not in ("stopped", "unauthorized"):
                self._notify("ditherapp hook: lost the connection to ditherapp; retrying")
            stop.wait(self._s.RECONNECT_MAX_S if outcome == "unauthorized" else backoff)

    def _connect(self):
        address = (self._s.APP_HOST, int(self._s.APP_PORT))
        sock = socket.create_connection(address, self._s.SOCKET_TIMEOUT_S)
        sock.settimeout(self._s.SOCKET_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception:
            pass
        return sock

    def _session(self, sock, stop):
        now = time.time()
        with self._lock:
            self._sock = sock
            self._outbox.clear()  # what happened while disconnected is history
            self._connected = True
            self._conn_id += 1
            self._last_rx = now
            self._reconnect = False
            self._app_camera_id = None
            name = self._cam_name
            view = dict(self._view)
            report = self._report
        hello = {"type": "hello", "role": "camera", "proto": PROTO, "name": name,
                 "agent": AGENT, "runtime": self._runtime}
        if self._s.TOKEN:
            hello["token"] = self._s.TOKEN
        first = [hello, {"type": "capture", "capturing": view["capturing"]}]
        if view["paused"]:
            first.append({"type": "paused", "paused": True, "by": view["by"] or "user"})
        if report is not None:
            first.append(report)
        sock.sendall(_wire(first))
        self._log("connected to ditherapp at %s:%s as %s" % (
            self._s.APP_HOST, self._s.APP_PORT, name))
        newline = "\n".encode("ascii")
        buffer = "".encode("ascii")
        next_heartbeat = now + self._s.HEARTBEAT_S
        while not stop.is_set():
            with self._lock:
                if self._reconnect:
                    return "reconnect"
            sock.settimeout(self._s.SOCKET_TIMEOUT_S)
            self._flush(sock)
            now = time.time()
            if now >= next_heartbeat:
                sock.sendall(_wire([{"type": "heartbeat", "t": now}]))
                next_heartbeat = now + self._s.HEARTBEAT_S
            sock.settimeout(self._s.RECV_POLL_S)
            try:
                data = sock.recv(65536)
            except socket.error as e:
                if _is_timeout(e):
                    continue
                raise
            if not data:
                self._log("ditherapp closed the connection")
                return "closed"
            buffer += data
            outcome = None
            end = buffer.find(newline)
            while end >= 0 and not outcome:
                line, buffer = buffer[:end], buffer[end + 1:]
                outcome = "line_too_long" if end > MAX_LINE else self._on_line(line)
                end = buffer.find(newline)
            if not outcome and len(buffer) > MAX_LINE:
                outcome = "line_too_long"
            if outcome == "line_too_long":
                self._log("ditherapp sent a line longer than %d bytes" % MAX_LINE)
            if outcome:
                return outcome
        return "stopped"

    def _flush(self, sock):
        with self._lock:
            messages = list(self._outbox)
            self._outbox.clear()
        if messages:
            sock.sendall(_wire(messages))

    def _on_line(self, raw):
        now = time.time()
        with self._lock:
            self._last_rx = now
        try:
            msg = json.loads(raw.decode("utf-8"))
        except ValueError:
            self._log_error("bad line", "ditherapp sent a line that is not JSON")
            return None
        if not isinstance(msg, dict):
            return None
        kind = msg.get("type")
        if kind in ("pause", "resume"):
            with self._lock:
                self._commands.append(
                    {"msg": msg, "conn": self._conn_id, "seq": self._seq, "t": now})
            self._wake_ctl.set()
        elif kind == "ping":
            self._send({"type": "heartbeat", "t": now})
        elif kind == "welcome":
            with self._lock:
                self._app_camera_id = msg.get("camera")
            self._notify("ditherapp hook: connected to ditherapp")
        elif kind == "error":
            code = msg.get("code")
            self._log("ditherapp reported an error: %s %s" % (code, msg.get("message", "")))
            if code == "unauthorized":
                self._notify("ditherapp refused the hook's TOKEN; set TOKEN in the script")
                return "unauthorized"
        return None

    # ------------------------------------------------------------ messages to the user
    def _log(self, text):
        line = "%s ditherapp hook: %s" % (time.strftime("%H:%M:%S"), text)
        self.log_lines.append(line)
        try:
            print(line)
        except Exception:
            pass

    def _log_error(self, key, error):
        """Log an error at most once a minute per kind, so a stuck tick cannot flood."""
        now = time.time()
        if now - self._error_log_times.get(key, 0.0) >= 60.0:
            self._error_log_times[key] = now
            self._log("%s: %s" % (key, error))

    def _notify(self, text, warning=False):
        if not self._s.NOTIFY and not warning:
            return
        show = getattr(self._sc, "ShowNotification", None)
        if show is None:
            return
        try:
            show(text)
        except Exception:
            pass


def _close(sock):
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except Exception:
        pass
    try:
        sock.close()
    except Exception:
        pass


def _registry():
    registry = getattr(sys, REGISTRY_ATTR, None)
    if not isinstance(registry, dict):
        registry = {}
        setattr(sys, REGISTRY_ATTR, registry)
    return registry


def _on_button(*args):
    """The toolbar button's callback. It finds the current hook through the
    registry, so a button added by an earlier run drives the newest hook."""
    registry = getattr(sys, REGISTRY_ATTR, None)
    hook = registry.get("hook") if isinstance(registry, dict) else None
    if hook is not None:
        hook.toggle()


def _ensure_button(sharpcap, name):
    add = getattr(sharpcap, "AddCustomButton", None)
    if add is None:
        return None
    buttons = getattr(sharpcap, "CustomButtons", None)
    if buttons is not None:
        try:
            existing = buttons.Find(lambda b: b.Name == name)
        except Exception:
            existing = None
            try:
                for button in buttons:
                    if getattr(button, "Name", None) == name:
                        existing = button
            except Exception:
                pass
        if existing is not None:
            return existing
    return add(name, None, "Turn the ditherapp hook off or on", _on_button)


def install(sharpcap, scope):
    """Replace any running hook with a new one built from the settings in scope."""
    registry = _registry()
    old = registry.get("hook")
    if old is not None:
        try:
            old.shutdown()
        except Exception as e:
            print("ditherapp hook: could not stop the previous copy: %s" % e)
    settings = Settings(scope)
    hook = DitherHook(sharpcap, settings)
    registry["hook"] = hook
    for name in settings.unknown:
        hook._log("unknown setting %r in DITHERAPP_SETTINGS ignored" % (name,))
    try:
        _ensure_button(sharpcap, settings.BUTTON_NAME)
    except Exception as e:
        hook._log("cannot add the toolbar button: %s" % e)
    if settings.START_ENABLED:
        hook.start()
    return hook


try:
    _SHARPCAP = SharpCap  # provided by SharpCap in the script's scope
except NameError:
    _SHARPCAP = None

if _SHARPCAP is not None:
    DITHERAPP_HOOK = install(_SHARPCAP, globals())
