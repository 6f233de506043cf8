"""The composition root: the command line, the settings, and the choice of window or
headless mode. The only place where the layers are wired together."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from ditherapp import __version__
from ditherapp.core.settings import DitherSettings, SettingError
from ditherapp.hook_script import hook_script_path
from ditherapp.net.control_server import ControlServerError
from ditherapp.runtime import Runtime, RuntimeOptions

if TYPE_CHECKING:
    from ditherapp.ui.settings_store import SettingsStore

log = logging.getLogger("ditherapp")

SIMULATE_DEFAULTS: dict[str, object] = {
    "ditherevery": 3,
    "settledelay": 3,
    "settlemax": 30,
    "maxpixels": 3.0,
}
"""A simulated session starts with short cycles, so a new user sees one within seconds."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ditherapp",
        description="Dither controller for SharpCap and PHD2: pauses saving in SharpCap, "
        "dithers through PHD2, waits for the settle, and resumes saving.",
    )
    p.add_argument("--version", action="version", version=f"ditherapp {__version__}")
    p.add_argument(
        "--hook-path",
        action="store_true",
        help="print where the SharpCap hook script is (load it, or a copy, in SharpCap) and exit",
    )
    p.add_argument(
        "--headless", action="store_true", help="run without a window, log to the console"
    )
    p.add_argument(
        "--simulate",
        action="store_true",
        help="start the built-in PHD2 simulator and simulated cameras",
    )
    p.add_argument(
        "--sim-cameras",
        type=int,
        default=1,
        metavar="N",
        help="simulated cameras with --simulate (default 1; 0 leaves the cameras "
        "to real agents such as the SharpCap hook)",
    )
    p.add_argument(
        "--sim-time-scale",
        type=float,
        default=2.0,
        metavar="X",
        help="simulated PHD2 runs X times faster (default 2)",
    )
    p.add_argument("--phd2", metavar="HOST", help="computer PHD2 runs on (default 127.0.0.1)")
    p.add_argument("--phd2-instance", type=int, metavar="N", help="PHD2 instance number")
    p.add_argument("--phd2-port", type=int, metavar="P", help=argparse.SUPPRESS)
    p.add_argument("--phd2-legacy-port", type=int, metavar="P", help=argparse.SUPPRESS)
    p.add_argument(
        "--phd2-backend",
        choices=("event", "legacy", "auto"),
        help="PHD2 protocol: event server, legacy socket server, or auto",
    )
    p.add_argument("--control-port", type=int, metavar="P", help="control socket port (5322)")
    p.add_argument("--control-host", metavar="HOST", help="control socket address (127.0.0.1)")
    p.add_argument(
        "--settings", type=Path, metavar="FILE", help="INI file to use instead of your own settings"
    )
    p.add_argument(
        "--ledger", type=Path, metavar="FILE", help="where to append the dither ledger (JSON Lines)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a dither variable for this run, e.g. --set ditherevery=5",
    )
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--theme", choices=("dark", "red"), help="window theme")
    p.add_argument("--screenshot", type=Path, metavar="PNG", help=argparse.SUPPRESS)
    p.add_argument("--screenshot-after", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--quit-after", type=float, default=0.0, help=argparse.SUPPRESS)
    return p


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    """Settings named on the command line: used for this run, never saved."""
    values: dict[str, object] = {}
    if args.phd2:
        values["phd2host"] = args.phd2
    if args.phd2_instance is not None:
        values["phd2instance"] = args.phd2_instance
    if args.phd2_backend:
        values["phd2backend"] = args.phd2_backend
    if args.control_port is not None:
        values["controlport"] = args.control_port
    if args.control_host:
        values["controlhost"] = args.control_host
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise SettingError(f"--set expects NAME=VALUE, got {item!r}")
        values[name.strip().lower()] = value
    for port in (args.phd2_port, args.phd2_legacy_port):
        if port is not None and not 0 < port < 65536:
            raise SettingError("PHD2 ports must be from 1 to 65535")
    if args.sim_cameras < 0 or args.sim_cameras > 8:
        raise SettingError("--sim-cameras must be from 0 to 8")
    if not 0.1 <= args.sim_time_scale <= 1000:
        raise SettingError("--sim-time-scale must be from 0.1 to 1000")
    return values


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir("ditherapp", appauthor=False))


def default_settings_path(simulate: bool) -> Path | None:
    """None means the user's own QSettings file; a simulated session keeps its own."""
    if simulate:
        return Path(platformdirs.user_config_dir("ditherapp", appauthor=False)) / "simulate.ini"
    return None


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    ledger = args.ledger or data_dir() / (
        "simulate-ledger.jsonl" if args.simulate else "ledger.jsonl"
    )
    return RuntimeOptions(
        phd2_port=args.phd2_port,
        legacy_port=args.phd2_legacy_port,
        simulate=args.simulate,
        sim_cameras=args.sim_cameras,
        sim_time_scale=args.sim_time_scale,
        ledger_path=ledger,
        # beside the ledger: a session with its own ledger (tests, --simulate) keeps its own
        exposure_restore_path=ledger.with_name(ledger.stem + ".settle-exposure.json"),
    )


def load_settings(args: argparse.Namespace) -> tuple[SettingsStore, DitherSettings, list[str]]:
    """(store, settings, problems) with the command line's values applied on top."""
    from ditherapp.ui.settings_store import SettingsStore  # noqa: PLC0415 - QtCore only

    path = args.settings or default_settings_path(args.simulate)
    store = SettingsStore(path)
    fresh = path is not None and not path.exists()
    settings, problems = store.load()
    if args.simulate and fresh:
        settings = settings.with_values(SIMULATE_DEFAULTS)
    overrides = _overrides(args)
    settings = settings.with_values(overrides)
    store.pinned = frozenset(overrides)
    return store, settings, problems


async def run_headless(args: argparse.Namespace) -> int:
    store, settings, problems = load_settings(args)
    for problem in problems:
        log.warning("settings: %s", problem)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    async with Runtime(settings, runtime_options(args), save_settings=store.save_changes) as rt:
        assert rt.control is not None  # noqa: S101 - set by start
        assert rt.service is not None  # noqa: S101
        link = rt.service.guider.status
        log.info(
            "ditherapp %s headless: control socket %s:%d, PHD2 %s:%d (%s)",
            __version__,
            rt.control.host,
            rt.control.port,
            link.host,
            link.port,
            rt.service.guider.backend,
        )
        if args.quit_after > 0:
            loop.call_later(args.quit_after, stop.set)
        await stop.wait()
        log.info("stopping: resuming every camera first")
    return 0


def print_hook_path() -> int:
    if sys.stdout is None:  # the Windows launcher of a GUI script: no console to print to
        from ditherapp.ui.hook_dialog import show_alone  # noqa: PLC0415 - Qt only when needed

        return show_alone()
    try:
        path = hook_script_path()
    except FileNotFoundError as exc:
        print(f"ditherapp: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.hook_path:
        return print_hook_path()
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.headless:
            with contextlib.suppress(KeyboardInterrupt):
                return asyncio.run(run_headless(args))
            return 0
        from ditherapp.ui.window_app import run_window  # noqa: PLC0415 - Qt only when needed

        store, settings, problems = load_settings(args)
        return run_window(args, store, settings, problems, runtime_options(args))
    except (SettingError, ControlServerError) as exc:
        print(f"ditherapp: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
