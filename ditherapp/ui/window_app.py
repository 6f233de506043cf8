"""Start the window: QApplication, the qasync event loop, the runtime, the bridge and the
main window; run until the window closes, then shut down cleanly (the runtime resumes
every camera before anything else closes)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import traceback
from collections.abc import Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any

# PySide6 before qasync: qasync picks the binding already imported (or QT_API).
from PySide6.QtCore import QCoreApplication, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

import qasync  # isort: skip

from ditherapp.core.settings import DitherSettings
from ditherapp.runtime import Runtime, RuntimeOptions
from ditherapp.ui.bridge import ServiceBridge
from ditherapp.ui.main_window import MainWindow
from ditherapp.ui.platform_check import platform_problem
from ditherapp.ui.qt_utils import app_icon
from ditherapp.ui.settings_store import SettingsStore

log = logging.getLogger(__name__)

SCREENSHOT_SIZE = (1366, 768)


class PatchedQEventLoop(qasync.QEventLoop):  # type: ignore[misc]
    """qasync's loop with its last ``processEvents`` run as the running loop.

    ``run_until_complete`` processes Qt events once more after ``run_forever`` has
    cleared the running loop; a callback that then touches asyncio fails, and on
    Python 3.14 asyncio checks that strictly (qasync issue 176, worked around the
    same way in FeelUOwn). Same behaviour otherwise.
    """

    def run_until_complete(self, future: Any) -> Any:
        if self.is_running():
            raise RuntimeError("Event loop already running")
        task = asyncio.ensure_future(future, loop=self)

        def stop(_: object) -> None:
            self.stop()

        task.add_done_callback(stop)
        try:
            self.run_forever()
        finally:
            task.remove_done_callback(stop)
        previous = asyncio.events._get_running_loop()  # noqa: SLF001
        asyncio.events._set_running_loop(self)  # noqa: SLF001
        try:
            QCoreApplication.processEvents()
        finally:
            asyncio.events._set_running_loop(previous)  # noqa: SLF001
        if not task.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return task.result()


def run_in_qt_loop(app: QApplication, main: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=lambda: PatchedQEventLoop(app)) as runner:
        return runner.run(main)


class ErrorReporter:
    """Errors nobody caught, in a Qt slot (PySide6 and qasync's async slots hand them to
    ``sys.excepthook``) or in an asyncio callback: logged with the traceback and shown
    in the window, never silently lost."""

    def __init__(self) -> None:
        self.window: MainWindow | None = None
        self._previous = sys.excepthook

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        sys.excepthook = self.excepthook
        if loop is not None:
            loop.set_exception_handler(self.loop_exception)

    def uninstall(self) -> None:
        sys.excepthook = self._previous

    def excepthook(
        self,
        kind: type[BaseException],
        value: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            self._previous(kind, value, tb)
            return
        text = "".join(traceback.format_exception(kind, value, tb))
        log.error("unexpected error:\n%s", text)
        self.show(f"{kind.__name__}: {value}")

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.excepthook(type(exc), exc, exc.__traceback__)
        else:
            loop.default_exception_handler(context)

    def show(self, text: str) -> None:
        if self.window is not None:
            self.window.show_error(text)


def run_window(
    args: argparse.Namespace,
    store: SettingsStore,
    settings: DitherSettings,
    problems: list[str],
    options: RuntimeOptions,
) -> int:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        problem = platform_problem()
        if problem is not None:  # Qt would abort the process in QApplication()
            print(problem, file=sys.stderr)  # noqa: T201 - one line, before any window
            return 2
        app = QApplication(sys.argv[:1])
    app.setApplicationName("ditherapp")
    app.setOrganizationName("ditherapp")
    app.setDesktopFileName("ditherapp")
    app.setWindowIcon(app_icon())
    # The window closing ends main(), which stops the runtime and then the loop; Qt must
    # not quit the loop by itself first.
    app.setQuitOnLastWindowClosed(False)
    reporter = ErrorReporter()
    try:
        return run_in_qt_loop(app, _main(args, store, settings, problems, options, reporter))
    finally:
        reporter.uninstall()


async def _main(  # noqa: PLR0917 - the composition root's pieces
    args: argparse.Namespace,
    store: SettingsStore,
    settings: DitherSettings,
    problems: list[str],
    options: RuntimeOptions,
    reporter: ErrorReporter,
) -> int:
    reporter.install(asyncio.get_running_loop())
    closed = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        try:
            runtime = await stack.enter_async_context(
                Runtime(settings, options, save_settings=store.save_changes)
            )
        except Exception as exc:
            _tell_start_failure(exc)
            raise
        service = runtime.service
        assert service is not None  # noqa: S101 - set by start
        control = runtime.control
        address = f"{control.host}:{control.port}" if control is not None else ""
        bridge = ServiceBridge(service)
        window = MainWindow(bridge, store, theme=args.theme, control_address=address)
        reporter.window = window
        window.closed.connect(closed.set)
        window.show_problems(problems)
        window.show()
        _schedule(args, window)
        _quit_on_sigint(window)
        await closed.wait()
        reporter.window = None
        bridge.detach()
    return 0


def _schedule(args: argparse.Namespace, window: MainWindow) -> None:
    """--screenshot and --quit-after, so the window can be rendered without a person."""
    shot: Path | None = getattr(args, "screenshot", None)
    if shot is not None:
        window.resize(*SCREENSHOT_SIZE)  # the size a small field laptop gives it
        after_ms = round(max(0.0, float(getattr(args, "screenshot_after", 0.0))) * 1000)
        QTimer.singleShot(after_ms, window, lambda: window.save_screenshot(shot))
    quit_after = float(getattr(args, "quit_after", 0.0) or 0.0)
    if quit_after > 0:
        QTimer.singleShot(round(quit_after * 1000), window, window.close)


def _quit_on_sigint(window: MainWindow) -> None:
    """Ctrl+C in the console closes the window (and so resumes every camera)."""

    def handler(_sig: int, _frame: Any) -> None:
        window.close()

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        return
    # Python runs signal handlers only between bytecodes; let it in now and then.
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(500)


def _tell_start_failure(exc: Exception) -> None:
    log.error("could not start: %s", exc)
    if QGuiApplication.platformName() not in ("offscreen", "minimal"):
        QMessageBox.critical(None, "ditherapp cannot start", str(exc))
