"""``ditherapp`` with one proposed change applied by monkeypatching, so a benchmark can
measure the change before anyone edits ditherapp/: run it exactly like ``python -m
ditherapp``, with ``--patch NAME`` first.

Patches (comma-separated to combine):
  gather-preflight  EventGuider's preflight asks get_app_state, get_settling and
                    get_exposure at once (one round trip instead of three).
  lazy-events       ControlServer builds and encodes an event line only when a client
                    has subscribed (today every PHD2 event is encoded for nobody).
  ledger-thread     The ledger's open/append/fsync runs in a worker thread instead of
                    on the event loop.
  fast-parse        parse_event with each field's converter chosen once per event type
                    (today every field of every event re-derives it from the annotation
                    text: str.replace and string compares, 18 calls per GuideStep).
  compiled-parse    parse_event through one generated function per event type (as
                    dataclasses and attrs generate __init__): each field is one dict
                    lookup and an exact-type test, and only a value of another type
                    goes through the general converter.
  prefill           Not a change: the guide graph starts with its buffer full, as after
                    a long night at BENCH_PREFILL_RATE GuideSteps/s (steps spread over the
                    past at that rate), so a short benchmark measures the steady state.
  redraw-2hz        The graphs redraw at most twice a second (REDRAW_MS 500, not 200).
  downsample        The guide curves let pyqtgraph thin them to the pixels they cover
                    (setDownsampling(auto=True, method="peak")).
  no-preflight      No get_app_state/get_settling/get_exposure before each dither: the
                    machine already refuses unless the tracked state is Guiding and not
                    settling, PHD2 itself refuses a dither it cannot do, and the guide
                    exposure is asked once and then kept.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from ditherapp.core.dither import DitherOutcome, DitherRequest, OutcomeKind
from ditherapp.core.phd2.appstate import Phd2State
from ditherapp.net import control_server, guider, ledger
from ditherapp.net.phd2_client import Phd2RpcError
from ditherapp.net.service import ServiceEvent


async def _gathered_dither(
    self: guider.EventGuider, request: DitherRequest, on_settle_started: Callable[[], None]
) -> DitherOutcome:
    client = self.client
    try:
        state, settling, exposure = await asyncio.gather(
            client.request("get_app_state"),
            client.request("get_settling"),
            client.request("get_exposure"),
        )
        parsed = Phd2State.parse(state)
        if parsed is not Phd2State.GUIDING:
            reason = guider._REFUSE_STATES.get(  # noqa: SLF001
                parsed, f"PHD2 is not guiding (state {parsed.value})"
            )
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=reason)
        if settling:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message="PHD2 is already settling")
        exposure_s = float(exposure) / 1000.0
    except (TimeoutError, Phd2RpcError, TypeError, ValueError) as exc:
        return DitherOutcome(kind=OutcomeKind.REFUSED, message=f"PHD2 preflight: {exc}")
    return await self._run_settle(
        "dither",
        request.rpc_params(),
        timeout_s=request.settle_timeout,
        exposure_s=exposure_s,
        on_settle_started=on_settle_started,
    )


_exposures: dict[int, float] = {}


async def _dither_without_preflight(
    self: guider.EventGuider, request: DitherRequest, on_settle_started: Callable[[], None]
) -> DitherOutcome:
    key = id(self)
    if key not in _exposures:
        try:
            _exposures[key] = float(await self.client.request("get_exposure")) / 1000.0
        except (TimeoutError, Phd2RpcError, TypeError, ValueError) as exc:
            return DitherOutcome(kind=OutcomeKind.REFUSED, message=f"PHD2 preflight: {exc}")
    return await self._run_settle(
        "dither",
        request.rpc_params(),
        timeout_s=request.settle_timeout,
        exposure_s=_exposures[key],
        on_settle_started=on_settle_started,
    )


def _converter(kind: str) -> Callable[[Any], Any]:
    """The same checks as events._convert, decided once for ``kind``."""
    nullable = "None" in kind
    base = kind.replace(" | None", "")

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return value

    def to_float(value: Any) -> Any:
        if type(value) is float:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        raise TypeError("expected a number")

    def to_int(value: Any) -> Any:
        if type(value) is int:
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        check(value)
        raise ValueError("expected an integer")

    def to_bool(value: Any) -> Any:
        if isinstance(value, bool):
            return value
        raise ValueError("expected a boolean")

    def to_str(value: Any) -> Any:
        if isinstance(value, str):
            return value
        raise ValueError("expected a string")

    def to_floats(value: Any) -> Any:
        if isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            return tuple(float(v) for v in value)
        raise ValueError("expected a list of numbers")

    convert = {
        "Any": lambda v: v,
        "bool": to_bool,
        "str": to_str,
        "int": to_int,
        "float": to_float,
        "tuple[float, ...]": to_floats,
    }[base]

    def converter(value: Any) -> Any:
        if value is None:
            if nullable:
                return None
            raise ValueError("null")
        return convert(value)

    return converter


def _fast_parse() -> None:
    from ditherapp.core.errors import RemoteProtocolError
    from ditherapp.core.phd2 import connection, events

    plans = {
        name: (cls, tuple((a, k, _converter(kind), req) for a, k, kind, req in plan))
        for name, plan in events._PLANS.items()  # noqa: SLF001
        for cls in (events.EVENT_TYPES[name],)
    }
    slow = events.parse_event

    def parse_event(obj: dict[str, Any]) -> events.Phd2Event:
        name = obj.get("Event")
        entry = plans.get(name) if isinstance(name, str) else None
        if entry is None:
            return slow(obj)  # unknown or nameless: the original handles those
        cls, plan = entry
        kwargs: dict[str, Any] = {}
        for attr, key, convert, required in plan:
            if key in obj:
                try:
                    kwargs[attr] = convert(obj[key])
                except (ValueError, TypeError, OverflowError) as exc:
                    raise RemoteProtocolError(
                        f"{cls.NAME}.{key}: {exc} (got {obj[key]!r})"
                    ) from exc
            elif required:
                raise RemoteProtocolError(f"{cls.NAME} event without {key}")
        return cls(**kwargs)

    events.parse_event = parse_event
    connection.parse_event = parse_event  # type: ignore[attr-defined]


_EXACT = {"float": "float", "int": "int", "str": "str", "bool": "bool"}


def _compiled_parse() -> None:
    from ditherapp.core.errors import RemoteProtocolError
    from ditherapp.core.phd2 import connection, events

    missing = object()
    namespace: dict[str, Any] = {"missing": missing, "RemoteProtocolError": RemoteProtocolError}
    parsers: dict[str, Callable[[dict[str, Any]], events.Phd2Event]] = {}
    for name, plan in events._PLANS.items():  # noqa: SLF001
        lines = ["def parse(obj):", "    kw = {}"]
        for i, (attr, key, kind, required) in enumerate(plan):
            namespace[f"convert_{name}_{i}"] = _converter(kind)
            exact = _EXACT.get(kind.replace(" | None", ""))
            lines.append(f"    v = obj.get({key!r}, missing)")
            lines.append("    if v is missing:")
            if required:
                lines.append(
                    f"        raise RemoteProtocolError({name + ' event without ' + key!r})"
                )
            else:
                lines.append("        pass")
            test = f"type(v) is not {exact}" if exact else "True"
            lines += [
                "    else:",
                f"        if {test}:",
                "            try:",
                f"                v = convert_{name}_{i}(v)",
                "            except (ValueError, TypeError, OverflowError) as exc:",
                "                raise RemoteProtocolError(",
                f"                    f'{name}.{key}: {{exc}} (got {{v!r}})'",
                "                ) from exc",
                f"        kw[{attr!r}] = v",
            ]
        lines.append(f"    return cls_{name}(**kw)")
        namespace[f"cls_{name}"] = events.EVENT_TYPES[name]
        code: dict[str, Any] = {}
        exec("\n".join(lines), namespace, code)
        parsers[name] = code["parse"]
    slow = events.parse_event

    def parse_event(obj: dict[str, Any]) -> events.Phd2Event:
        name = obj.get("Event")
        parse = parsers.get(name) if isinstance(name, str) else None
        return slow(obj) if parse is None else parse(obj)

    events.parse_event = parse_event
    connection.parse_event = parse_event  # type: ignore[attr-defined]


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


def _redraw_2hz() -> None:
    from ditherapp.ui import plots

    plots.REDRAW_MS = 500


def _downsample() -> None:
    from ditherapp.ui import plots

    init = plots.GuideGraph.__init__

    def thinned(self: plots.GuideGraph, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        for curve in (self.ra, self.dec):
            curve.setDownsampling(auto=True, method="peak")

    plots.GuideGraph.__init__ = thinned  # type: ignore[method-assign]


def _lazy_events() -> None:
    original = control_server.ControlServer._on_service_event  # noqa: SLF001

    def on_service_event(self: control_server.ControlServer, event: ServiceEvent) -> None:
        if any(s.subscribed for s in self._sessions):
            original(self, event)

    control_server.ControlServer._on_service_event = on_service_event  # type: ignore[method-assign]  # noqa: SLF001


def _ledger_thread() -> None:
    write = ledger.JsonlLedger.write
    tasks: set[asyncio.Future[None]] = set()

    def threaded(self: ledger.JsonlLedger, record: dict[str, object]) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, write, self, record)
        tasks.add(future)
        future.add_done_callback(tasks.discard)

    ledger.JsonlLedger.write = threaded  # type: ignore[method-assign]


PATCHES: dict[str, Callable[[], None]] = {
    "gather-preflight": lambda: setattr(guider.EventGuider, "_dither", _gathered_dither),
    "lazy-events": _lazy_events,
    "ledger-thread": _ledger_thread,
    "fast-parse": _fast_parse,
    "compiled-parse": _compiled_parse,
    "prefill": _prefill,
    "redraw-2hz": _redraw_2hz,
    "downsample": _downsample,
    "no-preflight": lambda: setattr(guider.EventGuider, "_dither", _dither_without_preflight),
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
