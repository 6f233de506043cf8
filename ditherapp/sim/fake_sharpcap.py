# ruff: noqa: N802
# The member names mirror SharpCap's .NET object model (SelectedCamera, FrameCaptured, ...).
"""A fake SharpCap object model, enough to run the real hook script off Windows.

It models what the hook relies on (see ../shared/research/sharpcap-api.md §2):
``SharpCap.SelectedCamera`` with ``DeviceName``, a ``FrameCaptured`` event that
supports ``+=``/``-=`` and calls ``handler(sender, args)``, ``Paused``,
``Capturing``, ``CapturedFrameCount``, ``Controls.Exposure.Value`` (seconds) and
``ExposureMs``, ``PrepareToCapture``/``RunCapture``/``StopCapture``; and
``SharpCap.AddCustomButton``, ``CustomButtons.Find`` and ``ShowNotification``.

A camera exposes continuously on its own thread once ``start()`` is called. A
frame is *saved* when, at the moment its exposure completes, the camera is
capturing and not paused (what we assume SharpCap does); every exposure window is
recorded, then ``FrameCaptured`` fires.

Variants, for what cannot be tried on a real SharpCap here:

* ``FakeCamera(paused_stops_saving=False)``: a SharpCap that goes on saving while
  ``Paused`` is set (its ``CapturedFrameCount`` goes up), the case the hook's
  self-check must catch;
* ``FakeCamera(frame_count=False)``: no ``CapturedFrameCount`` member at all;
* ``FakeSharpCap(version=...)``: any version string, or None for a SharpCap whose
  version cannot be read;
* ``FakeCamera(save_to=folder)`` with ``FakeSharpCap(capture_folder=folder)``: every
  saved frame is written as an (empty) file, so the capture folder has a newest file.

``GetStatus(False).CapturedFrames`` counts every frame the camera delivers, saved or
not (public scripts use it to measure the preview frame rate).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ditherapp.hook_script import hook_script_path

Handler = Callable[[Any, Any], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeExposure:
    """One completed exposure; times are ``time.monotonic()`` seconds."""

    index: int
    start: float
    end: float
    saved: bool
    paused: bool = False
    """``Paused`` was set when it completed (a saved one means SharpCap ignored it)."""
    count: int = 0
    """``CapturedFrameCount`` after this frame."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PausedWrite:
    """Who set ``Paused`` to what: a thread name, or ``"user"`` for the Pause button."""

    writer: str
    value: bool
    at: float


class FakeEvent:
    """A .NET event: ``+=`` adds a handler, ``-=`` removes an equal one (or does nothing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: list[Handler] = []
        self.errors: list[BaseException] = []

    def __iadd__(self, handler: Handler) -> Self:
        with self._lock:
            self._handlers.append(handler)
        return self

    def __isub__(self, handler: Handler) -> Self:
        with self._lock:
            if handler in self._handlers:
                self._handlers.remove(handler)
        return self

    @property
    def handlers(self) -> list[Handler]:
        with self._lock:
            return list(self._handlers)

    def fire(self, sender: object, args: object) -> None:
        """Call every handler; an exception escaping a handler is recorded in ``errors``."""
        for handler in self.handlers:
            try:
                handler(sender, args)
            except Exception as exc:  # noqa: BLE001 - recorded for the tests to see
                self.errors.append(exc)


class FakeExposureControl:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self.fail = False  # reading Value raises, as a flaky driver might

    @property
    def seconds(self) -> float:
        """The exposure, without the failure injection (for the simulated sensor)."""
        return self._seconds

    @property
    def Value(self) -> float:
        if self.fail:
            raise RuntimeError("exposure control unavailable")
        return self._seconds

    @Value.setter
    def Value(self, seconds: float) -> None:
        self._seconds = seconds

    @property
    def ExposureMs(self) -> float:
        return self._seconds * 1000.0

    @ExposureMs.setter
    def ExposureMs(self, milliseconds: float) -> None:
        self._seconds = milliseconds / 1000.0


class FakeValueControl:
    def __init__(self, value: object) -> None:
        self.Value = value


class FakeControls:
    def __init__(self, exposure_s: float) -> None:
        self.Exposure = FakeExposureControl(exposure_s)
        self.Binning = FakeValueControl("1")


@dataclass(frozen=True, slots=True)
class FakeCameraStatus:
    CapturedFrames: int


@dataclass(frozen=True, slots=True)
class FakeFrame:
    Index: int


class FrameEventArgs:
    """What ``FrameCaptured`` handlers get; ``Frame`` raises if ``broken`` is set."""

    def __init__(self, frame: FakeFrame, *, broken: bool = False) -> None:
        self._frame = frame
        self._broken = broken

    @property
    def Frame(self) -> FakeFrame:
        if self._broken:
            raise RuntimeError("frame already disposed")
        return self._frame


class FakeCamera:
    def __init__(
        self,
        name: str = "Fake Camera",
        *,
        exposure_s: float = 0.1,
        paused_stops_saving: bool = True,
        frame_count: bool = True,
        save_to: Path | None = None,
    ) -> None:
        self.DeviceName = name
        self.FrameCaptured = FakeEvent()
        self.Controls = FakeControls(exposure_s)
        self.paused_stops_saving = paused_stops_saving
        self.has_frame_count = frame_count
        self.save_to = save_to
        self._saved_count = 0
        self._delivered = 0
        self.broken_frames = False  # args.Frame raises in handlers
        self.exposures: list[FakeExposure] = []
        self.paused_writes: list[PausedWrite] = []
        self._lock = threading.Condition()
        self._paused = False
        self._capturing = False
        self._prepared = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fail_flags = False  # reading Paused/Capturing raises

    # SharpCap's members
    @property
    def CapturedFrameCount(self) -> int:
        if not self.has_frame_count:
            raise AttributeError("'Camera' object has no attribute 'CapturedFrameCount'")
        with self._lock:
            return self._saved_count

    def GetStatus(self, _full: bool) -> FakeCameraStatus:
        return FakeCameraStatus(CapturedFrames=self._delivered)

    @property
    def Paused(self) -> bool:
        if self.fail_flags:
            raise RuntimeError("camera busy")
        return self._paused

    @Paused.setter
    def Paused(self, value: bool) -> None:
        with self._lock:
            self._paused = bool(value)
            self.paused_writes.append(
                PausedWrite(
                    writer=threading.current_thread().name, value=bool(value), at=time.monotonic()
                )
            )

    @property
    def Capturing(self) -> bool:
        if self.fail_flags:
            raise RuntimeError("camera busy")
        return self._capturing

    def PrepareToCapture(self) -> None:
        self._prepared = True

    def RunCapture(self) -> None:
        with self._lock:
            self._capturing = True
            self._prepared = False

    def StopCapture(self) -> None:
        with self._lock:
            self._capturing = False

    # the simulated world
    def press_pause(self, paused: bool) -> None:
        """The user clicks SharpCap's Pause button."""
        with self._lock:
            self._paused = paused
            self.paused_writes.append(PausedWrite(writer="user", value=paused, at=time.monotonic()))

    def start(self) -> None:
        """Start exposing continuously (frames flow whether capturing or not)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._expose, name=f"fake-camera-{self.DeviceName}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop exposing; the exposure in progress is dropped."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("the fake camera's thread did not stop")

    def frames(self) -> list[FakeExposure]:
        with self._lock:
            return list(self.exposures)

    def wait_frames(self, count: int, timeout: float) -> list[FakeExposure]:
        """Wait until at least ``count`` exposures completed; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.exposures) >= count, timeout):
                raise TimeoutError(f"{len(self.exposures)} of {count} frames in {timeout} s")
            return list(self.exposures)

    def _expose(self) -> None:
        while True:
            start = time.monotonic()
            if self._stop.wait(self.Controls.Exposure.seconds):
                return
            with self._lock:
                paused = self._paused
                saved = self._capturing and not (paused and self.paused_stops_saving)
                self._delivered += 1
                if saved:
                    self._saved_count += 1
                exposure = FakeExposure(
                    index=len(self.exposures) + 1,
                    start=start,
                    end=time.monotonic(),
                    saved=saved,
                    paused=paused,
                    count=self._saved_count,
                )
                if saved and self.save_to is not None:
                    self._write(exposure)
                self.exposures.append(exposure)
                self._lock.notify_all()
                # The count and the event change together for anyone reading the count
                # (under this lock): which of the two SharpCap does first is not known,
                # and the hook takes a save seen before any new frame for the last one's.
                args = FrameEventArgs(FakeFrame(exposure.index), broken=self.broken_frames)
                self.FrameCaptured.fire(self, args)

    def _write(self, exposure: FakeExposure) -> None:
        assert self.save_to is not None  # noqa: S101 - checked by the caller
        try:
            self.save_to.mkdir(parents=True, exist_ok=True)
            (self.save_to / f"{self.DeviceName}_{exposure.count:05d}.fits").write_bytes(b"")
        except OSError:
            pass  # a full disk is not the fake's concern

    def suspect_frames(self) -> list[FakeExposure]:
        """Frames saved while ``Paused`` was set."""
        return [e for e in self.frames() if e.saved and e.paused]


class FakeButton:
    def __init__(
        self, name: str, image: object, tooltip: str, callback: Callable[..., object]
    ) -> None:
        self.Name = name
        self.Image = image
        self.ToolTip = tooltip
        self.Enabled = True
        self._callback = callback

    def click(self) -> None:
        self._callback()


class FakeButtonList(list[FakeButton]):
    def Find(self, predicate: Callable[[FakeButton], object]) -> FakeButton | None:
        return next((button for button in self if predicate(button)), None)


@dataclass(frozen=True, slots=True)
class _FakeAssemblyName:
    Version: str


class _FakeAssembly:
    def __init__(self, version: str) -> None:
        self._version = version

    def GetName(self) -> _FakeAssemblyName:
        return _FakeAssemblyName(self._version)


class _FakeType:
    def __init__(self, version: str) -> None:
        self.Assembly = _FakeAssembly(version)


class FakeSettings:
    def __init__(self, capture_folder: str) -> None:
        self.CaptureFolder = capture_folder


class FakeSharpCap:
    def __init__(
        self,
        camera: FakeCamera | None = None,
        *,
        version: str | None = "4.1.0.0",
        capture_folder: Path | None = None,
    ) -> None:
        self.SelectedCamera = camera
        self.CustomButtons = FakeButtonList()
        self.notifications: list[str] = []
        self._type = None if version is None else _FakeType(version)
        self.Settings = FakeSettings(str(capture_folder) if capture_folder else "")

    def AddCustomButton(
        self, name: str, image: object, tooltip: str, callback: Callable[..., object]
    ) -> FakeButton:
        button = FakeButton(name, image, tooltip, callback)
        self.CustomButtons.append(button)
        return button

    def ShowNotification(self, text: str, status: object = None) -> None:  # noqa: ARG002
        self.notifications.append(text)

    def GetType(self) -> _FakeType:
        if self._type is None:
            raise RuntimeError("no version information")
        return self._type


def run_hook_script(
    sharpcap: object,
    *,
    settings: Mapping[str, object] | None = None,
    path: Path | None = None,
    scope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the hook script the way SharpCap does: exec in a scope that holds ``SharpCap``.

    ``settings`` become the script's ``DITHERAPP_SETTINGS`` overrides. Pass the
    ``scope`` of an earlier run to run again in the same scope (like re-running a
    script in the scripting console). Returns the scope; the running hook is
    ``scope["DITHERAPP_HOOK"]``.
    """
    script = path or hook_script_path()
    if scope is None:
        scope = {"SharpCap": sharpcap, "__name__": "__main__"}
    if settings is not None:
        scope["DITHERAPP_SETTINGS"] = dict(settings)
    code = compile(script.read_text(encoding="utf-8"), str(script), "exec")
    exec(code, scope)  # noqa: S102 - running the hook script is the point
    return scope


def hook_threads() -> Iterator[threading.Thread]:
    """The hook's threads that are still alive in this process."""
    return (t for t in threading.enumerate() if t.name.startswith("ditherapp-"))
