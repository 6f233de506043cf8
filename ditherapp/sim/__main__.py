"""``ditherapp-sim``: run the PHD2 simulator on PHD2's own ports until Ctrl-C or ``shutdown``.

Instance N listens where PHD2 instance N would: the event server on 4400 + N - 1 and the
legacy socket server on 4300 + N - 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from ditherapp.sim.phd2_sim import Phd2Simulator

log = logging.getLogger("ditherapp.sim")

EVENT_BASE_PORT = 4400
LEGACY_BASE_PORT = 4300


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ditherapp-sim",
        description="A simulated PHD2: event server (JSON-RPC) and legacy socket server.",
    )
    parser.add_argument(
        "--instance",
        type=int,
        default=1,
        metavar="N",
        help="PHD2 instance number: event port 4400+N-1, legacy port 4300+N-1 (default 1)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        metavar="X",
        help="simulated seconds per wall second (default 1)",
    )
    parser.add_argument(
        "--exposure", type=float, default=1.0, metavar="S", help="guide exposure in seconds"
    )
    parser.add_argument(
        "--start",
        choices=["disconnected", "stopped", "looping", "guiding"],
        default="guiding",
        help="state PHD2 starts in (default guiding)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the guiding noise")
    parser.add_argument(
        "--no-legacy", action="store_true", help="do not run the legacy socket server"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request and event")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    instance: int = args.instance
    simulator = Phd2Simulator(
        host=args.host,
        event_port=EVENT_BASE_PORT + instance - 1,
        legacy_port=None if args.no_legacy else LEGACY_BASE_PORT + instance - 1,
        exposure_s=args.exposure,
        time_scale=args.time_scale,
        start=args.start,
        seed=args.seed,
        instance=instance,
    )
    async with simulator:
        log.info("running; Ctrl-C to stop")
        await simulator.wait_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.instance < 1:
        parser.error("--instance must be 1 or more")
    if args.time_scale <= 0 or args.exposure <= 0:
        parser.error("--time-scale and --exposure must be positive")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        log.info("stopped")
    except OSError as exc:
        log.error("cannot start: %s", exc)  # noqa: TRY400 - the reason is enough
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
