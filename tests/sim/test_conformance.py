"""The simulator against the recorded transcripts of a real PHD2 (tests/data/transcripts).

Each transcript is replayed: the simulator starts in the state the recording starts in,
the clients connect when the recorded ones did, and every recorded request (JSON lines
byte for byte, legacy command bytes) is sent in order. Before a request goes out, the
harness waits until each client has received what the recorded client had received by
then. Afterwards each connection's stream is compared with the recording:

- the non-periodic messages (every reply and every event except GuideStep,
  LoopingExposures, Settling and Calibrating) must match one for one, in order: event
  names, key lists in order, string and boolean values (except Host), zero-ness of
  numbers, decimal places as printed; reply ids, result values (numeric arrays by
  shape), error codes and messages;
- between two consecutive non-periodic events, each periodic kind the recording shows
  must appear too, first occurrences in the same order (replies float between frames,
  so they do not split these stretches);
- every periodic event has a key list PHD2 was recorded sending, and its numbers are
  printed with the recorded decimals;
- legacy replies match (GETSTATUS and the rest exactly; REQDIST and LOOPFRAMECOUNT by
  zero-ness, since their values depend on noise and frame counts).

The one fault injected is in b2, whose recorded star was lost the frame after find_star:
the harness asks the simulator to lose the star there too.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ditherapp.sim.phd2_sim import Phd2Simulator

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "data" / "transcripts"
START_STATES = {
    "a-connect-initial": "disconnected",
    "b-connect-loop-findstar-guide": "disconnected",
    "b2-findstar-star-lost-then-guide": "disconnected",
    "c-dither-5px": "guiding",
    "d-dither-ra-only": "guiding",
    "e-errors-and-misc": "guiding",
    "f-two-clients": "guiding",
    "g-legacy-socket-server": "guiding",
}
PERIODIC = frozenset({"GuideStep", "LoopingExposures", "Settling", "Calibrating"})
GENERAL_FORMAT = {("Calibrating", "dist"), ("Calibrating", "dx"), ("Calibrating", "dy")}
"""Fields PHD2 prints with %g: their decimals vary."""
ZERO_COMPARED_LEGACY = {"REQDIST", "LOOPFRAMECOUNT"}
WAIT_S = 5.0
"""Wall seconds to wait for the simulator to catch up with the recording."""
_NUMBER = re.compile(r'"(\w+)":(-?\d+(?:\.(\d+))?)(?=[,}\]])')


@dataclass(frozen=True, slots=True)
class Msg:
    obj: Any
    raw: str

    @property
    def event(self) -> str | None:
        return self.obj.get("Event") if isinstance(self.obj, dict) else None

    @property
    def periodic(self) -> bool:
        return self.event in PERIODIC

    @property
    def is_reply(self) -> bool:
        return self.event is None


@dataclass(slots=True)
class Replay:
    expected: dict[str, list[Msg]] = field(default_factory=lambda: defaultdict(list))
    legacy: dict[str, list[tuple[str, int, int]]] = field(default_factory=lambda: defaultdict(list))
    closed_streams: dict[str, list[Msg]] = field(default_factory=dict)
    gave_up: str | None = None
    """The recorded line the replay could not get to (the simulator never caught up)."""


def load(name: str) -> list[dict[str, Any]]:
    path = TRANSCRIPTS / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def to_msg(raw: str) -> Msg:
    text = raw.removesuffix("\n").removesuffix("\r")
    return Msg(json.loads(text, strict=False), text)


def decimals(raw: str) -> dict[str, int]:
    """Decimal places of each top-level-looking numeric field as printed."""
    return {m.group(1): len(m.group(3) or "") for m in _NUMBER.finditer(raw)}


# ---------------------------------------------------------------------------- waiting


def _non_periodic(msgs: list[Msg]) -> list[int]:
    return [i for i, m in enumerate(msgs) if not m.periodic]


def caught_up(actual: list[Msg], expected: list[Msg]) -> bool:
    """The client has what the recorded one had: its non-periodic messages and, after
    the last of them, at least one of each periodic kind that followed it."""
    np_expected = _non_periodic(expected)
    np_actual = _non_periodic(actual)
    if len(np_actual) < len(np_expected):
        return False
    tail_from = np_expected[-1] + 1 if np_expected else 0
    kinds = {m.event for m in expected[tail_from:]}
    actual_from = np_actual[len(np_expected) - 1] + 1 if np_expected else 0
    have = {m.event for m in actual[actual_from:]}
    return kinds <= have


# ---------------------------------------------------------------------------- comparing


def compare_event(exp: Msg, act: Msg, where: str) -> list[str]:
    problems: list[str] = []
    if exp.event != act.event:
        return [f"{where}: expected event {exp.event}, got {act.event or act.raw}"]
    exp_keys, act_keys = list(exp.obj), list(act.obj)
    if exp_keys != act_keys:
        problems.append(f"{where} {exp.event}: keys {act_keys} != recorded {exp_keys}")
        return problems
    for key, value in exp.obj.items():
        got = act.obj[key]
        if key in ("Host", "Timestamp"):
            continue
        if isinstance(value, str | bool) and got != value:
            problems.append(f"{where} {exp.event}.{key}: {got!r} != recorded {value!r}")
        elif isinstance(value, int | float) and (value == 0) != (got == 0):
            problems.append(f"{where} {exp.event}.{key}: {got!r} vs recorded {value!r} (zero-ness)")
    exp_dec, act_dec = decimals(exp.raw), decimals(act.raw)
    for key, places in exp_dec.items():
        if (exp.event, key) not in GENERAL_FORMAT and act_dec.get(key) != places:
            problems.append(f"{where} {exp.event}.{key}: printed {act.raw!r}, recorded {exp.raw!r}")
    return problems


def _numeric_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )


def compare_reply(exp: Any, act: Any, where: str) -> list[str]:
    if isinstance(exp, list):
        if not isinstance(act, list) or len(act) != len(exp):
            return [f"{where}: batch {act!r} != recorded {exp!r}"]
        return [p for e, a in zip(exp, act, strict=True) for p in compare_reply(e, a, where)]
    if not isinstance(act, dict) or "jsonrpc" not in act:
        return [f"{where}: expected reply {exp!r}, got {act!r}"]
    if list(act) != list(exp):
        return [f"{where}: reply keys {list(act)} != recorded {list(exp)}"]
    if act["id"] != exp["id"]:
        return [f"{where}: reply id {act['id']!r} != recorded {exp['id']!r}"]
    if "error" in exp:
        if act["error"] != exp["error"]:
            return [f"{where}: error {act['error']!r} != recorded {exp['error']!r}"]
        return []
    want, got = exp["result"], act["result"]
    if _numeric_list(want):
        if not _numeric_list(got) or len(got) != len(want):
            return [f"{where}: result {got!r}, recorded {want!r}"]
    elif got != want:
        return [f"{where}: result {got!r} != recorded {want!r}"]
    return []


def stretches(msgs: list[Msg]) -> list[list[str]]:
    """Periodic kinds (first occurrences, in order) between consecutive non-periodic events."""
    out: list[list[str]] = [[]]
    for m in msgs:
        if m.periodic:
            if m.event not in out[-1]:
                out[-1].append(str(m.event))
        elif not m.is_reply:
            out.append([])
    return out


def compare_stream(label: str, expected: list[Msg], actual: list[Msg]) -> list[str]:
    problems: list[str] = []
    exp_np = [m for m in expected if not m.periodic]
    act_np = [m for m in actual if not m.periodic]
    for index, (exp, act) in enumerate(zip(exp_np, act_np, strict=False)):
        where = f"{label}#{index}"
        if exp.is_reply:
            problems += compare_reply(exp.obj, act.obj, where)
        else:
            problems += compare_event(exp, act, where)
    if len(exp_np) != len(act_np):
        problems.append(
            f"{label}: {len(act_np)} non-periodic messages, recorded {len(exp_np)}; "
            f"recorded tail {[m.event or 'reply' for m in exp_np[len(act_np) :]]}, "
            f"extra {[m.raw for m in act_np[len(exp_np) :]]}"
        )
    if problems:
        return problems
    exp_stretch, act_stretch = stretches(expected), stretches(actual)
    for index, (want, got) in enumerate(zip(exp_stretch, act_stretch, strict=True)):
        missing = [kind for kind in want if kind not in got]
        order = [kind for kind in got if kind in want]
        if missing or order != want:
            after = (
                "start" if index == 0 else [m for m in exp_np if not m.is_reply][index - 1].event
            )
            problems.append(f"{label}: after {after} (stretch {index}) got {got}, recorded {want}")
    return problems


def recorded_periodic_shapes() -> dict[str, set[tuple[str, ...]]]:
    shapes: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for name in START_STATES:
        for record in load(name):
            if record["dir"] == "S->C" and "raw" in record:
                msg = to_msg(record["raw"])
                if msg.periodic:
                    shapes[str(msg.event)].add(tuple(msg.obj))
    return shapes


def recorded_periodic_decimals() -> dict[tuple[str, str], set[int]]:
    places: dict[tuple[str, str], set[int]] = defaultdict(set)
    for name in START_STATES:
        for record in load(name):
            if record["dir"] == "S->C" and "raw" in record:
                msg = to_msg(record["raw"])
                if msg.periodic:
                    for key, count in decimals(msg.raw).items():
                        places[str(msg.event), key].add(count)
    return places


def check_periodic_format(label: str, actual: list[Msg]) -> list[str]:
    shapes = recorded_periodic_shapes()
    places = recorded_periodic_decimals()
    problems = []
    for msg in actual:
        if not msg.periodic:
            continue
        event = str(msg.event)
        if tuple(msg.obj) not in shapes[event]:
            problems.append(f"{label}: {event} keys {list(msg.obj)} never recorded")
        for key, count in decimals(msg.raw).items():
            if (event, key) in GENERAL_FORMAT:
                value = msg.obj[key]
                if f"{value:g}" != re.search(rf'"{key}":([^,}}]+)', msg.raw).group(1):  # type: ignore[union-attr]
                    problems.append(f"{label}: {event}.{key} not %g: {msg.raw}")
            elif count not in places[event, key]:
                problems.append(f"{label}: {event}.{key} printed with {count} decimals: {msg.raw}")
    return problems


def check_invariants(label: str, actual: list[Msg]) -> list[str]:
    """Periodic events only where PHD2 can send them."""
    problems = []
    settling = calibrating = guiding = False
    for index, msg in enumerate(actual):
        event = msg.event
        if event == "SettleBegin":
            settling = True
        elif event == "SettleDone":
            settling = False
        elif event == "StartCalibration":
            calibrating = True
        elif event in ("CalibrationComplete", "CalibrationFailed", "GuidingStopped"):
            calibrating = False
        if event == "StartGuiding" or (event == "AppState" and msg.obj["State"] == "Guiding"):
            guiding = True
        elif event in ("GuidingStopped", "LoopingExposuresStopped"):
            guiding = False
        if event == "Settling" and not settling:
            problems.append(f"{label}#{index}: Settling outside a settle")
        if event == "Calibrating" and not calibrating:
            problems.append(f"{label}#{index}: Calibrating outside a calibration")
        if event == "LoopingExposures" and guiding:
            problems.append(f"{label}#{index}: LoopingExposures while guiding")
    return problems


# ---------------------------------------------------------------------------- replaying


def hooks(name: str, record: dict[str, Any], sim: Phd2Simulator) -> None:
    """Faults the recording shows happening, injected where they happened."""
    if name.startswith("b2-") and '"find_star"' in record.get("raw", ""):
        sim.lose_star(1)


def messages(conn: Any) -> list[Msg]:
    return [Msg(obj, raw) for obj, raw in zip(conn.messages, conn.lines, strict=True)]


class Replayer:
    """Plays one recording's client side against a simulator."""

    def __init__(
        self, name: str, sim: Phd2Simulator, connect: Callable[..., Any], legacy: Callable[..., Any]
    ) -> None:
        self.name = name
        self.sim = sim
        self.connect = connect
        self.connect_legacy = legacy
        self.result = Replay()
        self.conns: dict[str, Any] = {}
        self.legacy: dict[str, Any] = {}
        self.pending_legacy: dict[str, tuple[str, int]] = {}

    async def run(self) -> Replay:
        try:
            for record in load(self.name):
                self.result.gave_up = record.get("raw") or record.get("text") or "a legacy reply"
                await self.play(record)
            self.result.gave_up = "the end of the recording"
            await self.wait_caught_up(list(self.conns))
            self.result.gave_up = None
        except TimeoutError:
            pass  # compare what arrived: the comparison names what is missing
        for label, conn in self.conns.items():
            self.result.closed_streams[label] = messages(conn)
        return self.result

    async def wait_caught_up(self, labels: list[str]) -> None:
        for label in labels:
            conn = self.conns[label]
            expected = list(self.result.expected[label])
            await conn.wait_until(
                lambda c=conn, e=expected: caught_up(messages(c), e), timeout=WAIT_S
            )

    async def play(self, record: dict[str, Any]) -> None:
        label, direction = record["conn"], record["dir"]
        if direction == "note":
            await self.note(label, record["text"])
        elif direction == "S->C":
            if "raw" in record:
                self.result.expected[label].append(to_msg(record["raw"]))
            else:
                command, actual = self.pending_legacy.pop(label)
                self.result.legacy[label].append((command, record["bytes"][0], actual))
        else:
            await self.wait_caught_up(list(self.conns))
            hooks(self.name, record, self.sim)
            if "raw" in record:
                self.conns[label].send_raw(record["raw"].encode())
            else:
                reply = await self.legacy[label].command(record["bytes"][0])
                self.pending_legacy[label] = (record["name"], reply)

    async def note(self, label: str, text: str) -> None:
        if text.startswith("TCP connected to event server"):
            self.conns[label] = await self.connect(self.sim, catch_up=False)
        elif text.startswith("TCP connected to legacy"):
            self.legacy[label] = await self.connect_legacy(self.sim)
        elif text == "client closes connection":
            if label in self.conns:
                await self.wait_caught_up([label])
                conn = self.conns.pop(label)
                self.result.closed_streams[label] = messages(conn)
                await conn.close()
            else:
                await self.legacy.pop(label).close()


@pytest.mark.parametrize("name", sorted(START_STATES))
async def test_transcript(name, make_sim, connect, connect_legacy):
    sim = await make_sim(start=START_STATES[name], time_scale=60.0, seed=11)
    sim.star_saturated = True  # the recorded simulator camera flags its star saturated
    result = await Replayer(name, sim, connect, connect_legacy).run()
    problems: list[str] = []
    if result.gave_up is not None:
        problems.append(f"the simulator never caught up before: {result.gave_up}")
    for label, expected in result.expected.items():
        actual = result.closed_streams[label]
        problems += compare_stream(label, expected, actual)
        problems += check_periodic_format(label, actual)
        problems += check_invariants(label, actual)
    for label, replies in result.legacy.items():
        for command, want, got in replies:
            zero_only = command.split()[0] in ZERO_COMPARED_LEGACY
            same = (want == 0) == (got == 0) if zero_only else want == got
            if not same:
                problems.append(f"{label}: {command} replied {got}, recorded {want}")
    assert not problems, "\n".join(problems)


def test_every_transcript_is_replayed():
    assert {p.stem for p in TRANSCRIPTS.glob("*.jsonl")} == set(START_STATES)


def _recorded_stream(name: str, label: str) -> list[Msg]:
    return [
        to_msg(r["raw"])
        for r in load(name)
        if r["conn"] == label and r["dir"] == "S->C" and "raw" in r
    ]


def test_comparison_catches_a_missing_renamed_reordered_or_reshaped_event():
    """The comparison must fail on exactly the mistakes it is meant to catch."""
    recorded = _recorded_stream("e-errors-and-misc", "A")
    assert compare_stream("A", recorded, recorded) == []
    settle_done = next(i for i, m in enumerate(recorded) if m.event == "SettleDone")

    missing = recorded[:settle_done] + recorded[settle_done + 1 :]
    assert compare_stream("A", recorded, missing)

    renamed_obj = dict(recorded[settle_done].obj, Event="SettleFinished")
    renamed = list(recorded)
    renamed[settle_done] = Msg(renamed_obj, json.dumps(renamed_obj))
    assert compare_stream("A", recorded, renamed)

    begin = next(i for i, m in enumerate(recorded) if m.event == "SettleBegin")
    reordered = list(recorded)
    reordered[begin - 1], reordered[begin] = reordered[begin], reordered[begin - 1]
    assert compare_stream("A", recorded, reordered)

    reshaped_obj = {k: v for k, v in recorded[settle_done].obj.items() if k != "DroppedFrames"}
    reshaped = list(recorded)
    reshaped[settle_done] = Msg(reshaped_obj, json.dumps(reshaped_obj))
    assert compare_stream("A", recorded, reshaped)

    no_settling = [m for m in recorded if m.event != "Settling"]
    assert compare_stream("A", recorded, no_settling)

    wrong_format = list(recorded)
    index = next(i for i, m in enumerate(recorded) if m.event == "Settling")
    raw = recorded[index].raw.replace('"Time":0.0', '"Time":0')
    wrong_format[index] = Msg(json.loads(raw), raw)
    assert check_periodic_format("A", wrong_format)
