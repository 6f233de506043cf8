"""``ditherapp`` with one proposed change applied by monkeypatching, so a benchmark can
measure the change before anyone edits ditherapp/: run it exactly like ``python -m
ditherapp``, with ``--patch NAME`` first.

Patches (comma-separated to combine):
  ledger-thread     The ledger's open/append/fsync runs in a worker thread instead of
                    on the event loop.
  prefill           Not a change: the guide graph starts with its buffer full, as after
                    a long night at BENCH_PREFILL_RATE GuideSteps/s (steps spread over the
                    past at that rate), so a short benchmark measures the steady state.
  downsample        The guide curves let pyqtgraph thin them to the pixels they cover
                    (setDownsampling(auto=True, method="peak")).

Measured and applied since (see bench/RESULTS.md): gather-preflight and no-preflight
(became the early preflight asked while the cameras pause), lazy-events,
fast-parse and compiled-parse (became the generated parser in core/phd2/events.py),
redraw-2hz (REDRAW_MS is 500).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from ditherapp.net import ledger


def _prefill() -> None:
    import math
    import os
    import time

    from ditherapp.ui import plots

    rate = float(os.environ.get("BENCH_PREFILL_RATE", "1"))
    init = plots.GuideGraph.__init__

    def prefilled(self: plots.GuideGraph, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        now = time.time()
        size = self.steps.maxlen or plots.MAX_GUIDE_STEPS
        for i in range(size):
            self.steps.append((now - (size - i) / rate, 0.3 * math.sin(i / 7), 0.1))
        self.mark_dirty()

    plots.GuideGraph.__init__ = prefilled  # type: ignore[method-assign]


def _downsample() -> None:
    from ditherapp.ui import plots

    init = plots.GuideGraph.__init__

    def thinned(self: plots.GuideGraph, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for curve in (self.ra, self.dec):
            curve.setDownsampling(auto=True, method="peak")

    plots.GuideGraph.__init__ = thinned  # type: ignore[method-assign]


def _ledger_thread() -> None:
    write = ledger.JsonlLedger.write
    tasks: set[asyncio.Future[None]] = set()

    def threaded(self: ledger.JsonlLedger, record: dict[str, object]) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, write, self, record)
        tasks.add(future)
        future.add_done_callback(tasks.discard)

    ledger.JsonlLedger.write = threaded  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "ledger-thread": _ledger_thread,
    "prefill": _prefill,
    "downsample": _downsample,
}


def main() -> int:
    argv = sys.argv[1:]
    while argv[:1] == ["--patch"]:
        for name in argv[1].split(","):
            PATCHES[name]()
        argv = argv[2:]
    from ditherapp.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(main())
